"""GET /_matrix/key/v2/server: our signing keys, as JSON signed by themselves."""

from hs.api.app import Resource
from hs.clock import now_ms
from hs.events.signing import sign_json


class ServerKeyResource(Resource):
    public = frozenset({"GET"})

    def __init__(self, config, signing_keys):
        self.config = config
        self.signing_keys = signing_keys

    def on_get(self, req, resp):
        body = {
            "server_name": self.config.server_name,
            "valid_until_ts": now_ms() + self.config.key_refresh_interval_ms,
            "verify_keys": {key.key_id: {"key": key.verify_key_base64} for key in self.signing_keys},
            "old_verify_keys": {},
        }
        for key in self.signing_keys:
            sign_json(body, self.config.server_name, key)
        resp.media = body

    def on_get_by_id(self, req, resp, key_id):
        self.on_get(req, resp)


def register(app, hs):
    server_key = ServerKeyResource(hs.config, hs.signing_keys)
    app.add_route("/_matrix/key/v2/server", server_key)
    # The key ID in the path is deprecated; servers that still send it get every key.
    app.add_route("/_matrix/key/v2/server/{key_id}", server_key, suffix="by_id")
