"""/login, /login/get_token, /refresh, /logout, /logout/all."""

from hs.api.app import Resource
from hs.api.request import field, json_body
from hs.api.routes import add_client_route
from hs.errors import Codes, MatrixError
from hs.handlers.appservice_auth import APP_SERVICE_LOGIN_TYPE
from hs.handlers.auth import AuthHandler
from hs.handlers.uia import PASSWORD


class LoginResource(Resource):
    public = frozenset({"GET", "POST"})

    def __init__(self, config, sessions):
        self.config = config
        self.sessions = sessions

    def on_get(self, req, resp):
        flows = []
        if self.config.password_enabled:
            flows.append({"type": "m.login.password"})
        if self.config.login_token_enabled:
            flows.append({"type": "m.login.token", "get_login_token": True})
        if self.config.app_services.services:
            flows.append({"type": APP_SERVICE_LOGIN_TYPE})
        resp.media = {"flows": flows}

    def on_post(self, req, resp):
        body = json_body(req)
        # Only this login type reads the Authorization header; others ignore whatever it holds.
        as_token = AuthHandler.token_from_request(req) if body.get("type") == APP_SERVICE_LOGIN_TYPE else None
        resp.media = self.sessions.login(body, req.context.client_ip, as_token=as_token)


class LoginTokenResource(Resource):
    """MSC3882: a signed-in device mints a short-lived token to sign in another one."""

    def __init__(self, config, sessions, uia):
        self.config = config
        self.sessions = sessions
        self.uia = uia

    def on_post(self, req, resp):
        if not self.config.login_token_enabled:
            raise MatrixError(404, Codes.UNRECOGNIZED, "Login tokens are not enabled")
        body = json_body(req, allow_empty=True)
        requester = req.context.requester
        if self.config.login_token_require_ui_auth:
            self.uia.check(req, body, [[PASSWORD]], user_id=requester.user_id)
        resp.media = self.sessions.create_login_token(requester.user_id)


class RefreshResource(Resource):
    public = frozenset({"POST"})

    def __init__(self, sessions):
        self.sessions = sessions

    def on_post(self, req, resp):
        resp.media = self.sessions.refresh(field(json_body(req), "refresh_token", str))


class LogoutResource(Resource):
    guest_access = frozenset({"POST"})
    allow_expired = frozenset({"POST"})
    def __init__(self, sessions, everywhere: bool):
        self.sessions = sessions
        self.everywhere = everywhere

    def on_post(self, req, resp):
        if self.everywhere:
            self.sessions.logout_all(req.context.requester)
        else:
            self.sessions.logout(req.context.requester)
        resp.media = {}


def register(app, hs):
    add_client_route(app, "/login", LoginResource(hs.config, hs.sessions))
    add_client_route(app, "/login/get_token", LoginTokenResource(hs.config, hs.sessions, hs.uia),
                     prefixes=("/_matrix/client/v1",))
    add_client_route(app, "/refresh", RefreshResource(hs.sessions), prefixes=("/_matrix/client/v3",))
    add_client_route(app, "/logout", LogoutResource(hs.sessions, everywhere=False))
    add_client_route(app, "/logout/all", LogoutResource(hs.sessions, everywhere=True))
