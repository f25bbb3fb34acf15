"""Synapse's media admin API (docs/admin_api/media_admin_api.md), same paths and shapes, so admin
tools work: served wherever the media repository is (the master with enable_media_repo, else
the media_repository worker). Every method needs a server admin."""

from hs.api.app import Resource
from hs.api.request import query_bool, query_int
from hs.errors import Codes, MatrixError

V1 = "/_synapse/admin/v1"


class _AdminResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def _admin(self, req):
        self.handler.require_admin(req.context.requester)
        return req.context.requester


class MediaResource(_AdminResource):
    def on_get(self, req, resp, server_name, media_id):
        self._admin(req)
        resp.media = self.handler.info(server_name, media_id)

    def on_delete(self, req, resp, server_name, media_id):
        self._admin(req)
        resp.media = self.handler.delete(server_name, media_id)


class QuarantineResource(_AdminResource):
    def __init__(self, handler, quarantined: bool):
        super().__init__(handler)
        self.quarantined = quarantined

    def on_post(self, req, resp, server_name, media_id):
        resp.media = self.handler.quarantine(self._admin(req), server_name, media_id, self.quarantined)


class ProtectResource(_AdminResource):
    def __init__(self, handler, protected: bool):
        super().__init__(handler)
        self.protected = protected

    def on_post(self, req, resp, media_id):
        self._admin(req)
        resp.media = self.handler.protect(media_id, self.protected)


class UserMediaQuarantineResource(_AdminResource):
    def on_post(self, req, resp, user_id):
        resp.media = self.handler.quarantine_user_media(self._admin(req), user_id)


class RoomMediaQuarantineResource(_AdminResource):
    def on_post(self, req, resp, room_id):
        resp.media = self.handler.quarantine_room_media(self._admin(req), room_id)


class RoomMediaResource(_AdminResource):
    def on_get(self, req, resp, room_id):
        self._admin(req)
        resp.media = self.handler.room_media(room_id)


def _page(req) -> tuple:
    return (query_int(req, "from", 0, minimum=0), query_int(req, "limit", 100, minimum=0),
            req.get_param("order_by"), req.get_param("dir"))


class UserMediaResource(_AdminResource):
    def on_get(self, req, resp, user_id):
        self._admin(req)
        resp.media = self.handler.list_user_media(user_id, *_page(req))

    def on_delete(self, req, resp, user_id):
        self._admin(req)
        resp.media = self.handler.delete_user_media(user_id, *_page(req))


class DeleteOldMediaResource(_AdminResource):
    def on_post(self, req, resp, server_name=None):
        self._admin(req)
        before_ts = query_int(req, "before_ts", minimum=0)
        if before_ts is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing integer query parameter 'before_ts'")
        resp.media = self.handler.delete_old(server_name or self.handler.server_name, before_ts,
                                             query_int(req, "size_gt", 0, minimum=0),
                                             query_bool(req, "keep_profiles", True))


class PurgeMediaCacheResource(_AdminResource):
    def on_post(self, req, resp):
        self._admin(req)
        before_ts = query_int(req, "before_ts", minimum=0)
        if before_ts is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing integer query parameter 'before_ts'")
        resp.media = self.handler.purge_media_cache(before_ts)


def register(app, hs):
    handler = hs.media_admin
    app.add_route(V1 + "/media/{server_name}/{media_id}", MediaResource(handler))
    app.add_route(V1 + "/media/quarantine/{server_name}/{media_id}", QuarantineResource(handler, True))
    app.add_route(V1 + "/media/unquarantine/{server_name}/{media_id}", QuarantineResource(handler, False))
    app.add_route(V1 + "/media/protect/{media_id}", ProtectResource(handler, True))
    app.add_route(V1 + "/media/unprotect/{media_id}", ProtectResource(handler, False))
    app.add_route(V1 + "/user/{user_id}/media/quarantine", UserMediaQuarantineResource(handler))
    app.add_route(V1 + "/room/{room_id}/media/quarantine", RoomMediaQuarantineResource(handler))
    app.add_route(V1 + "/quarantine_media/{room_id}", RoomMediaQuarantineResource(handler))  # Synapse's old path
    app.add_route(V1 + "/room/{room_id}/media", RoomMediaResource(handler))
    for prefix in (V1, "/_synapse/admin/v2"):
        app.add_route(prefix + "/users/{user_id}/media", UserMediaResource(handler))
    app.add_route(V1 + "/media/delete", DeleteOldMediaResource(handler))
    app.add_route(V1 + "/media/{server_name}/delete", DeleteOldMediaResource(handler))
    app.add_route(V1 + "/purge_media_cache", PurgeMediaCacheResource(handler))
