"""GET /_matrix/federation/v1/version: which implementation this is. Public, as in the spec."""

from hs import __version__
from hs.api.app import Resource


class FederationVersionResource(Resource):
    public = frozenset({"GET"})

    def on_get(self, req, resp):
        resp.media = {"server": {"name": "gevent-homeserver", "version": __version__}}


def register(app, hs):
    app.add_route("/_matrix/federation/v1/version", FederationVersionResource())
