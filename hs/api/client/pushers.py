"""GET /pushers and POST /pushers/set."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route


class PushersResource(Resource):
    def __init__(self, reader):
        self.reader = reader

    def on_get(self, req, resp):
        resp.media = {"pushers": self.reader.get_pushers(req.context.requester)}


class SetPusherResource(Resource):
    def __init__(self, writer):
        self.writer = writer

    def on_post(self, req, resp):
        self.writer.set_pusher(req.context.requester, json_body(req))
        resp.media = {}


def register(app, hs):
    add_client_route(app, "/pushers", PushersResource(hs.pusher_reader))
    add_client_route(app, "/pushers/set", SetPusherResource(hs.pushers))
