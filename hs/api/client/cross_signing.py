"""POST /keys/device_signing/upload, /keys/signatures/upload (hs/handlers/cross_signing.py)."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route


class _SigningKeysResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_post(self, req, resp):
        self.handler.upload_signing_keys(req, req.context.requester, json_body(req, allow_empty=True))
        resp.media = {}


class _SignaturesResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_post(self, req, resp):
        resp.media = self.handler.upload_signatures(req.context.requester, json_body(req, allow_empty=True))


def register(app, hs):
    add_client_route(app, "/keys/device_signing/upload", _SigningKeysResource(hs.cross_signing))
    add_client_route(app, "/keys/signatures/upload", _SignaturesResource(hs.cross_signing))
