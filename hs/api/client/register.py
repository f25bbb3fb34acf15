"""/register, /register/available, /register/m.login.registration_token/validity."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route
from hs.clock import now_ms
from hs.errors import Codes, MatrixError


class RegisterResource(Resource):
    public = frozenset({"POST"})

    def __init__(self, registration):
        self.registration = registration

    def on_post(self, req, resp):
        kind = req.get_param("kind") or "user"
        resp.media = self.registration.register(req, json_body(req), kind)


class AvailableResource(Resource):
    public = frozenset({"GET"})

    def __init__(self, config, registration, limiters):
        self.config = config
        self.registration = registration
        self.limiters = limiters

    def on_get(self, req, resp):
        # Probing names is a cheap way to enumerate accounts: it shares registration's limit.
        self.limiters.registration.check(req.context.client_ip)
        username = req.get_param("username")
        if not username:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: username")
        if not self.config.enable_registration:
            raise MatrixError(403, Codes.FORBIDDEN, "Registration has been disabled")
        self.registration.check_username(username)
        resp.media = {"available": True}


class RegistrationTokenValidityResource(Resource):
    public = frozenset({"GET"})

    def __init__(self, config, registration_tokens, limiters):
        self.config = config
        self.registration_tokens = registration_tokens
        self.limiters = limiters

    def on_get(self, req, resp):
        # As the spec words it, 403 means "registration is not permitted, so no token is valid".
        # With tokens not required the table still answers (Synapse does the same).
        self.limiters.registration.check(req.context.client_ip)
        if not self.config.enable_registration:
            raise MatrixError(403, Codes.FORBIDDEN, "Registration is not enabled on this homeserver.")
        token = req.get_param("token")
        if token is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: token")
        resp.media = {"valid": self.registration_tokens.is_valid(token, now_ms())}


def register(app, hs):
    add_client_route(app, "/register", RegisterResource(hs.registration))
    add_client_route(app, "/register/available", AvailableResource(hs.config, hs.registration, hs.limiters))
    add_client_route(app, "/register/m.login.registration_token/validity",
                     RegistrationTokenValidityResource(hs.config, hs.registration_tokens, hs.limiters),
                     prefixes=("/_matrix/client/v1",))
