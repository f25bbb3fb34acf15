"""GET /_matrix/key/v2/server: our signing keys, as JSON signed by themselves, with the keys we
signed with before (config old_signing_keys) as old_verify_keys."""

from hs.api.app import Resource
from hs.federation.keyring import local_key_response


class ServerKeyResource(Resource):
    public = frozenset({"GET"})

    def __init__(self, config, signing_keys):
        self.config = config
        self.signing_keys = signing_keys

    def on_get(self, req, resp):
        resp.media = local_key_response(self.config, self.signing_keys)

    def on_get_by_id(self, req, resp, key_id):
        self.on_get(req, resp)


def register(app, hs):
    server_key = ServerKeyResource(hs.config, hs.signing_keys)
    app.add_route("/_matrix/key/v2/server", server_key)
    # The key ID in the path is deprecated; servers that still send it get every key.
    app.add_route("/_matrix/key/v2/server/{key_id}", server_key, suffix="by_id")
