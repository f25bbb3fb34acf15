"""POST /keys/upload, /keys/query, /keys/claim (hs/handlers/e2e_keys.py)."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route


class _KeysResource(Resource):
    # Guests may use end-to-end encryption (as Synapse allows).
    guest_access = frozenset({"POST"})

    def __init__(self, respond):
        self.respond = respond

    def on_post(self, req, resp):
        resp.media = self.respond(req.context.requester, json_body(req, allow_empty=True))


def register(app, hs):
    add_client_route(app, "/keys/upload", _KeysResource(hs.e2e_keys.upload))
    add_client_route(app, "/keys/query", _KeysResource(hs.e2e_keys_reader.query))
    add_client_route(app, "/keys/claim", _KeysResource(hs.e2e_keys.claim))
