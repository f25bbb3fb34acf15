"""The notary API (/server-server-api#querying-keys-through-another-server): other servers'
keys as we hold or fetch them, each answer co-signed by us. Unauthenticated, as in the spec.

GET /_matrix/key/v2/query/{serverName} and POST /_matrix/key/v2/query.
"""

import copy

import gevent.pool

from hs.api.app import Resource
from hs.api.request import json_body, query_int
from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.events.signing import sign_json
from hs.federation.server_name import parse_server_name

MAX_SERVERS_PER_QUERY = 100
# Fetches of different servers for one query run side by side, at most this many at once.
FETCH_CONCURRENCY = 10


class KeyQueryResource(Resource):
    public = frozenset({"GET", "POST"})

    def __init__(self, config, keyring, signing_keys):
        self.server_name = config.server_name
        self.keyring = keyring
        self.signing_keys = signing_keys

    def on_get_one(self, req, resp, server_name):
        minimum = query_int(req, "minimum_valid_until_ts", now_ms(), minimum=0)
        resp.media = {"server_keys": self._answer({server_name: ([], minimum)})}

    def on_post(self, req, resp):
        server_keys = json_body(req).get("server_keys")
        if not isinstance(server_keys, dict):
            raise MatrixError(400, Codes.BAD_JSON, "server_keys must be an object")
        if len(server_keys) > MAX_SERVERS_PER_QUERY:
            raise MatrixError(400, Codes.BAD_JSON, f"At most {MAX_SERVERS_PER_QUERY} servers per query")
        queries = {}
        for server_name, criteria in server_keys.items():
            if not isinstance(criteria, dict):
                raise MatrixError(400, Codes.BAD_JSON, "server_keys values must be objects")
            minimum = now_ms()
            for criterion in criteria.values():
                value = criterion.get("minimum_valid_until_ts") if isinstance(criterion, dict) else None
                if isinstance(value, int) and not isinstance(value, bool):
                    minimum = max(minimum, value)
            queries[server_name] = (list(criteria), minimum)
        resp.media = {"server_keys": self._answer(queries)}

    def _answer(self, queries: dict) -> list:
        def lookup(item):
            server_name, (key_ids, minimum) = item
            try:
                parse_server_name(server_name)
            except ValueError:
                return []  # no such server: nothing held, nothing to fetch
            return self.keyring.key_responses_for_notary(server_name, key_ids, minimum)

        answers = []
        for responses in gevent.pool.Pool(FETCH_CONCURRENCY).imap(lookup, queries.items()):
            for response in responses:
                signed = copy.deepcopy(response)
                if not isinstance(signed.get("signatures"), dict):
                    signed["signatures"] = {}
                if not isinstance(signed["signatures"].get(self.server_name), dict):
                    signed["signatures"][self.server_name] = {}
                for key in self.signing_keys:
                    sign_json(signed, self.server_name, key)
                answers.append(signed)
        return answers


def register(app, hs):
    resource = KeyQueryResource(hs.config, hs.keyring, hs.signing_keys)
    app.add_route("/_matrix/key/v2/query", resource)
    app.add_route("/_matrix/key/v2/query/{server_name}", resource, suffix="one")
