"""POST /search: server-side search of room events."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route


class SearchResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_post(self, req, resp):
        resp.media = self.handler.search(req.context.requester, json_body(req), req.get_param("next_batch"))


def register(app, hs):
    add_client_route(app, "/search", SearchResource(hs.search))
