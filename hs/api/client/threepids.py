"""GET /account/3pid, POST /account/3pid/email/requestToken, /account/3pid/add, /account/3pid/delete."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route


class ThreepidsResource(Resource):
    def __init__(self, threepids):
        self.threepids = threepids

    def on_get(self, req, resp):
        resp.media = {"threepids": self.threepids.list(req.context.requester)}


class EmailRequestTokenResource(Resource):
    def __init__(self, threepids):
        self.threepids = threepids

    def on_post(self, req, resp):
        resp.media = self.threepids.request_email_token(json_body(req))


class AddThreepidResource(Resource):
    def __init__(self, threepids):
        self.threepids = threepids

    def on_post(self, req, resp):
        self.threepids.add(req, req.context.requester, json_body(req))
        resp.media = {}


class DeleteThreepidResource(Resource):
    def __init__(self, threepids):
        self.threepids = threepids

    def on_post(self, req, resp):
        resp.media = self.threepids.delete(req.context.requester, json_body(req))


def register(app, hs):
    add_client_route(app, "/account/3pid", ThreepidsResource(hs.threepids))
    add_client_route(app, "/account/3pid/email/requestToken", EmailRequestTokenResource(hs.threepids))
    add_client_route(app, "/account/3pid/add", AddThreepidResource(hs.threepids))
    add_client_route(app, "/account/3pid/delete", DeleteThreepidResource(hs.threepids))
