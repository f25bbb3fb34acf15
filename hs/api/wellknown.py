"""/.well-known/matrix/client and /.well-known/matrix/server."""

from hs.api.app import Resource
from hs.errors import Codes, MatrixError


class ClientWellKnownResource(Resource):
    public = frozenset({"GET"})

    def __init__(self, config):
        self.config = config

    def on_get(self, req, resp):
        resp.media = {"m.homeserver": {"base_url": self.config.client_base_url()}}


class ServerWellKnownResource(Resource):
    """Only served when `serve_server_wellknown` is on, as in Synapse: answering with a wrong
    delegation would send other servers to the wrong place."""

    public = frozenset({"GET"})

    def __init__(self, config):
        self.config = config

    def on_get(self, req, resp):
        if not self.config.serve_server_wellknown:
            raise MatrixError(404, Codes.NOT_FOUND, ".well-known not available")
        host = self.config.server_name
        if ":" not in host.rsplit("]", 1)[-1]:
            host += ":443"
        resp.media = {"m.server": host}


def register(app, hs):
    app.add_route("/.well-known/matrix/client", ClientWellKnownResource(hs.config))
    app.add_route("/.well-known/matrix/server", ServerWellKnownResource(hs.config))
