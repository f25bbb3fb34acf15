"""Third-party lookups: /thirdparty/protocols, /protocol/{protocol}, /location[/{protocol}] and
/user[/{protocol}], answered by the application services that declare the protocol."""

from hs.api.app import Resource
from hs.api.routes import add_client_route


class ProtocolsResource(Resource):
    guest_access = frozenset({"GET"})  # as Synapse

    def __init__(self, thirdparty):
        self.thirdparty = thirdparty

    def on_get(self, req, resp):
        resp.media = self.thirdparty.protocols()


class ProtocolResource(ProtocolsResource):
    def on_get(self, req, resp, protocol):
        resp.media = self.thirdparty.protocol(protocol)


class LookupResource(Resource):
    """kind "user" or "location"; with a protocol the query parameters are the fields to match,
    without one `userid=` / `alias=` is the Matrix ID to look up."""
    guest_access = frozenset({"GET"})

    def __init__(self, thirdparty, kind: str):
        self.thirdparty = thirdparty
        self.kind = kind

    def on_get(self, req, resp, protocol=None):
        fields = {name: value for name, value in req.params.items() if name != "access_token"}
        resp.media = self.thirdparty.lookup(self.kind, protocol, fields)


def register(app, hs):
    add_client_route(app, "/thirdparty/protocols", ProtocolsResource(hs.thirdparty))
    add_client_route(app, "/thirdparty/protocol/{protocol}", ProtocolResource(hs.thirdparty))
    for kind in ("user", "location"):
        lookup = LookupResource(hs.thirdparty, kind)
        add_client_route(app, f"/thirdparty/{kind}", lookup)
        add_client_route(app, f"/thirdparty/{kind}/{{protocol}}", lookup)
