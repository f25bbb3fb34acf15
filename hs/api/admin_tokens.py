"""/_synapse/admin/v1/registration_tokens: server admins manage registration tokens."""

from hs.api.app import Resource
from hs.api.request import json_body, query_bool

PREFIX = "/_synapse/admin/v1/registration_tokens"


class TokenListResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp):
        self.handler.require_admin(req.context.requester)
        valid = query_bool(req, "valid") if req.get_param("valid") is not None else None
        resp.media = self.handler.list(valid)


class NewTokenResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_post(self, req, resp):
        self.handler.require_admin(req.context.requester)
        resp.media = self.handler.create(json_body(req, allow_empty=True))


class TokenResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp, token):
        self.handler.require_admin(req.context.requester)
        resp.media = self.handler.get(token)

    def on_put(self, req, resp, token):
        self.handler.require_admin(req.context.requester)
        resp.media = self.handler.update(token, json_body(req, allow_empty=True))

    def on_delete(self, req, resp, token):
        self.handler.require_admin(req.context.requester)
        self.handler.delete(token)
        resp.media = {}


def register(app, hs):
    handler = hs.registration_token_admin
    app.add_route(PREFIX, TokenListResource(handler))
    # Falcon prefers the literal segment, so "new" is never taken for a token name on POST.
    app.add_route(PREFIX + "/new", NewTokenResource(handler))
    app.add_route(PREFIX + "/{token}", TokenResource(handler))
