"""Server-side key backups: /room_keys/version[/{version}] and
/room_keys/keys[/{roomId}[/{sessionId}]]?version=."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route
from hs.errors import Codes, MatrixError
from hs.events.canonical_json import json_has_nul
from hs.storage.key_backup import RoomKey

# The largest index or count we store: JSON numbers past 2**53 lose precision in most clients.
_MAX_COUNTER = 2 ** 53 - 1
# Room IDs are capped at 255 bytes by the spec; session IDs (43 characters for megolm) get the
# same bound, which keeps both well inside what a PostgreSQL index entry holds.
_MAX_ID_BYTES = 255


def _check_id(value, what: str) -> str:
    if not isinstance(value, str) or not value or "\x00" in value or len(value.encode("utf-8")) > _MAX_ID_BYTES:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid {what}")
    return value


def _object(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise MatrixError(400, Codes.BAD_JSON, f"{what} must be an object")
    return value


def _room_key(data) -> RoomKey:
    data = _object(data, "Key data")
    for name in ("first_message_index", "forwarded_count"):
        value = data.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_COUNTER:
            raise MatrixError(400, Codes.BAD_JSON, f"{name} must be a non-negative integer")
    if not isinstance(data.get("is_verified"), bool):
        raise MatrixError(400, Codes.BAD_JSON, "is_verified must be a boolean")
    session_data = _object(data.get("session_data"), "session_data")
    if json_has_nul(session_data):
        raise MatrixError(400, Codes.BAD_JSON, "session_data must not contain NUL characters")
    return RoomKey(data["first_message_index"], data["forwarded_count"], data["is_verified"], session_data)


def _room_keys(room_id: str, room) -> list[tuple[str, str, RoomKey]]:
    sessions = _object(_object(room, "Room key backup").get("sessions"), "sessions")
    return [(room_id, _check_id(session_id, "session ID"), _room_key(data)) for session_id, data in sessions.items()]


def _version_param(req) -> str:
    version = req.get_param("version")
    if version is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: version")
    return version


class VersionsResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_post(self, req, resp):
        resp.media = {"version": self.handler.create_version(req.context.requester.user_id, json_body(req))}

    def on_get(self, req, resp):
        resp.media = self.handler.get_version(req.context.requester.user_id, None)


class VersionResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp, version):
        resp.media = self.handler.get_version(req.context.requester.user_id, version)

    def on_put(self, req, resp, version):
        self.handler.update_version(req.context.requester.user_id, version, json_body(req))
        resp.media = {}

    def on_delete(self, req, resp, version):
        self.handler.delete_version(req.context.requester.user_id, version)
        resp.media = {}


class AllKeysResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_put(self, req, resp):
        version = _version_param(req)
        rooms = _object(json_body(req).get("rooms"), "rooms")
        keys = [key for room_id, room in rooms.items() for key in _room_keys(_check_id(room_id, "room ID"), room)]
        resp.media = self.handler.upload_keys(req.context.requester.user_id, version, keys)

    def on_get(self, req, resp):
        resp.media = self.handler.get_keys(req.context.requester.user_id, _version_param(req))

    def on_delete(self, req, resp):
        resp.media = self.handler.delete_keys(req.context.requester.user_id, _version_param(req))


class RoomKeysResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_put(self, req, resp, room_id):
        version = _version_param(req)
        keys = _room_keys(_check_id(room_id, "room ID"), json_body(req))
        resp.media = self.handler.upload_keys(req.context.requester.user_id, version, keys)

    def on_get(self, req, resp, room_id):
        version = _version_param(req)
        resp.media = self.handler.get_keys(req.context.requester.user_id, version, _check_id(room_id, "room ID"))

    def on_delete(self, req, resp, room_id):
        version = _version_param(req)
        resp.media = self.handler.delete_keys(req.context.requester.user_id, version, _check_id(room_id, "room ID"))


class SessionKeyResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_put(self, req, resp, room_id, session_id):
        version = _version_param(req)
        key = (_check_id(room_id, "room ID"), _check_id(session_id, "session ID"), _room_key(json_body(req)))
        resp.media = self.handler.upload_keys(req.context.requester.user_id, version, [key])

    def on_get(self, req, resp, room_id, session_id):
        version = _version_param(req)
        resp.media = self.handler.get_keys(req.context.requester.user_id, version, _check_id(room_id, "room ID"),
                                           _check_id(session_id, "session ID"))

    def on_delete(self, req, resp, room_id, session_id):
        version = _version_param(req)
        resp.media = self.handler.delete_keys(req.context.requester.user_id, version,
                                              _check_id(room_id, "room ID"), _check_id(session_id, "session ID"))


def register(app, hs):
    handler = hs.key_backup
    add_client_route(app, "/room_keys/version", VersionsResource(handler))
    add_client_route(app, "/room_keys/version/{version}", VersionResource(handler))
    add_client_route(app, "/room_keys/keys", AllKeysResource(handler))
    add_client_route(app, "/room_keys/keys/{room_id}", RoomKeysResource(handler))
    add_client_route(app, "/room_keys/keys/{room_id}/{session_id}", SessionKeyResource(handler))
