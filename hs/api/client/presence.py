"""PUT/GET /presence/{userId}/status."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route


class PresenceStatusResource(Resource):
    # Guest Access lists both methods.
    guest_access = frozenset({"GET", "PUT"})

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer

    def on_get(self, req, resp, user_id):
        resp.media = self.reader.get_presence(req.context.requester, user_id)

    def on_put(self, req, resp, user_id):
        self.writer.set_presence(req.context.requester, user_id, json_body(req))
        resp.media = {}


def register(app, hs):
    add_client_route(app, "/presence/{user_id}/status", PresenceStatusResource(hs.presence, hs.presence_writer))
