"""/account/whoami, /account/password, /account/deactivate."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route


class WhoamiResource(Resource):
    guest_access = frozenset({"GET"})

    def on_get(self, req, resp):
        requester = req.context.requester
        resp.media = {"user_id": requester.user_id, "device_id": requester.device_id,
                      "is_guest": requester.is_guest}
        if requester.device_id is None:
            del resp.media["device_id"]  # an application service acting without device_id=


class PasswordResource(Resource):
    def __init__(self, account):
        self.account = account

    def on_post(self, req, resp):
        self.account.change_password(req, req.context.requester, json_body(req))
        resp.media = {}


class DeactivateResource(Resource):
    def __init__(self, account):
        self.account = account

    def on_post(self, req, resp):
        resp.media = self.account.deactivate(req, req.context.requester, json_body(req, allow_empty=True))


def register(app, hs):
    add_client_route(app, "/account/whoami", WhoamiResource())
    add_client_route(app, "/account/password", PasswordResource(hs.account))
    add_client_route(app, "/account/deactivate", DeactivateResource(hs.account))
