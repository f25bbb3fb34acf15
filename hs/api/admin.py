"""Synapse-compatible admin endpoints: shared-secret registration."""

from hs.api.app import Resource
from hs.api.request import json_body


class SharedSecretRegisterResource(Resource):
    public = frozenset({"GET", "POST"})

    def __init__(self, handler, limiters):
        self.handler = handler
        self.limiters = limiters

    def on_get(self, req, resp):
        resp.media = {"nonce": self.handler.new_nonce()}

    def on_post(self, req, resp):
        # Each guess at the MAC costs a nonce and a slot of the registration limit.
        self.limiters.registration.check(req.context.client_ip)
        resp.media = self.handler.register(json_body(req))


def register(app, hs):
    app.add_route("/_synapse/admin/v1/register", SharedSecretRegisterResource(hs.admin_registration, hs.limiters))
