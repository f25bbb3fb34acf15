"""/user/{userId}/account_data/{type}, /user/{userId}/rooms/{roomId}/account_data/{type},
/user/{userId}/rooms/{roomId}/tags and /user/{userId}/rooms/{roomId}/tags/{tag}."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route

_GUESTS = frozenset({"GET", "PUT", "DELETE"})


class GlobalAccountDataResource(Resource):
    guest_access = _GUESTS

    def __init__(self, handler):
        self.handler = handler

    def on_put(self, req, resp, user_id, data_type):
        self.handler.set(req.context.requester, user_id, None, data_type, json_body(req))
        resp.media = {}

    def on_get(self, req, resp, user_id, data_type):
        resp.media = self.handler.get(req.context.requester, user_id, None, data_type)


class RoomAccountDataResource(Resource):
    guest_access = _GUESTS

    def __init__(self, handler):
        self.handler = handler

    def on_put(self, req, resp, user_id, room_id, data_type):
        self.handler.set(req.context.requester, user_id, room_id, data_type, json_body(req))
        resp.media = {}

    def on_get(self, req, resp, user_id, room_id, data_type):
        resp.media = self.handler.get(req.context.requester, user_id, room_id, data_type)


class TagsResource(Resource):
    guest_access = _GUESTS

    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp, user_id, room_id):
        resp.media = self.handler.get_tags(req.context.requester, user_id, room_id)


class TagResource(Resource):
    guest_access = _GUESTS

    def __init__(self, handler):
        self.handler = handler

    def on_put(self, req, resp, user_id, room_id, tag):
        self.handler.add_tag(req.context.requester, user_id, room_id, tag, json_body(req))
        resp.media = {}

    def on_delete(self, req, resp, user_id, room_id, tag):
        self.handler.remove_tag(req.context.requester, user_id, room_id, tag)
        resp.media = {}


def register(app, hs):
    handler = hs.account_data
    add_client_route(app, "/user/{user_id}/account_data/{data_type}", GlobalAccountDataResource(handler))
    add_client_route(app, "/user/{user_id}/rooms/{room_id}/account_data/{data_type}",
                     RoomAccountDataResource(handler))
    add_client_route(app, "/user/{user_id}/rooms/{room_id}/tags", TagsResource(handler))
    add_client_route(app, "/user/{user_id}/rooms/{room_id}/tags/{tag}", TagResource(handler))
