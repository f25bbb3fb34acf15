"""/profile/{userId} and /profile/{userId}/{displayname|avatar_url}."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route


class ProfileResource(Resource):
    public = frozenset({"GET"})

    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp, user_id):
        resp.media = self.handler.get_profile(user_id)


class ProfileFieldResource(Resource):
    guest_access = frozenset({"PUT"})
    public = frozenset({"GET"})

    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp, user_id, field):
        resp.media = self.handler.get_field(user_id, field)

    def on_put(self, req, resp, user_id, field):
        self.handler.set_field(req.context.requester, user_id, field, json_body(req))
        resp.media = {}


def register(app, hs):
    add_client_route(app, "/profile/{user_id}", ProfileResource(hs.profile))
    add_client_route(app, "/profile/{user_id}/{field}", ProfileFieldResource(hs.profile))
