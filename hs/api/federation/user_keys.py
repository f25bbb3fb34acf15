"""Other servers asking about our users' encryption keys: POST /user/keys/query,
POST /user/keys/claim and GET /user/devices/{userId} (hs/handlers/e2e_federation.py)."""

from hs.api.federation.base import FederationResource
from hs.api.request import json_body


class _UserKeysResource(FederationResource):
    def __init__(self, respond):
        self.respond = respond

    def on_post(self, req, resp):
        resp.media = self.respond(json_body(req))


class UserDevicesResource(FederationResource):
    def __init__(self, e2e_federation):
        self.e2e_federation = e2e_federation

    def on_get(self, req, resp, user_id):
        resp.media = self.e2e_federation.serve_user_devices(user_id)


def register(app, hs):
    base = "/_matrix/federation/v1/user"
    app.add_route(f"{base}/keys/query", _UserKeysResource(hs.e2e_federation.serve_query))
    app.add_route(f"{base}/keys/claim", _UserKeysResource(hs.e2e_federation.serve_claim))
    app.add_route(f"{base}/devices/{{user_id}}", UserDevicesResource(hs.e2e_federation))
