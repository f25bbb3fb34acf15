"""GET /capabilities."""

from hs.api.app import Resource
from hs.api.routes import add_client_route
from hs.events.room_versions import KNOWN_ROOM_VERSIONS


class CapabilitiesResource(Resource):
    guest_access = frozenset({"GET"})

    def __init__(self, config):
        self.config = config

    def on_get(self, req, resp):
        password = self.config.password_enabled
        resp.media = {"capabilities": {
            "m.room_versions": {"default": self.config.default_room_version,
                                "available": {v: "stable" for v in KNOWN_ROOM_VERSIONS}},
            "m.change_password": {"enabled": password},
            "m.set_displayname": {"enabled": True},
            "m.set_avatar_url": {"enabled": True},
            "m.3pid_changes": {"enabled": self.config.email.enabled},
            "m.get_login_token": {"enabled": self.config.login_token_enabled},
        }}


def register(app, hs):
    add_client_route(app, "/capabilities", CapabilitiesResource(hs.config))
