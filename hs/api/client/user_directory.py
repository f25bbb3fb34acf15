"""POST /user_directory/search."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route


class UserDirectorySearchResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_post(self, req, resp):
        body = json_body(req)
        resp.media = self.handler.search(req.context.requester, body.get("search_term"), body.get("limit"))


def register(app, hs):
    add_client_route(app, "/user_directory/search", UserDirectorySearchResource(hs.user_directory))
