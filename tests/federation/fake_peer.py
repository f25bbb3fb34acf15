"""A remote homeserver played by the test: it serves its signing key and the events the test
gives it over TLS (a certificate from the test CA), and signs whatever the test makes it send,
valid or not. What our server does with bad input is the point, so nothing here checks it."""

import copy
import re
import shutil
import tempfile
from urllib.parse import parse_qs, quote, unquote, urlsplit

import requests

from hs.clock import now_ms
from hs.events.event_signing import sign_event
from hs.events.hashing import compute_event_id
from hs.events.room_versions import get_room_version
from hs.events.signing import generate_signing_key, sign_json
from hs.federation.request_auth import build_authorization_header
from tests.harness import free_port
from tests.json_http import QuietHandler, start_server


class FakePeer:
    def __init__(self, ca):
        self.dir = tempfile.mkdtemp(prefix="hs-test-fakepeer-")
        cert, key = ca.issue(self.dir)
        self.ca = ca
        self.port = free_port()
        self.name = f"127.0.0.1:{self.port}"
        self.key = generate_signing_key()
        self.events: dict[str, dict] = {}  # what /event and /get_missing_events serve
        self.missing_answer: list[dict] = []
        self.state_ids_answers: dict[str, dict] = {}  # event ID -> what /state_ids answers for it
        self.garbage = False  # answer every federation request with 200 and a body that is not JSON
        # (method, unquoted path) -> (status, JSON body): canned answers a test sets, before the rest.
        self.answers: dict[tuple[str, str], tuple[int, object]] = {}
        self.requests: list[str] = []
        self.transactions: list[dict] = []
        peer = self

        class Handler(QuietHandler):
            def _canned(self, method: str) -> bool:
                answer = peer.answers.get((method, unquote(urlsplit(self.path).path)))
                if answer is not None:
                    self.answer_json(*answer)
                return answer is not None

            def do_GET(self):
                peer.requests.append(f"GET {self.path}")
                if self._canned("GET"):
                    return
                path = urlsplit(self.path).path
                if peer.garbage and path.startswith("/_matrix/federation/"):
                    return self._garbage()
                if path == "/_matrix/key/v2/server":
                    return self.answer_json(200, peer.key_response())
                state_for = re.fullmatch(r"/_matrix/federation/v1/state_ids/.+", path) and parse_qs(
                    urlsplit(self.path).query).get("event_id", [""])[0]
                if state_for in peer.state_ids_answers:
                    return self.answer_json(200, peer.state_ids_answers[state_for])
                found = re.fullmatch(r"/_matrix/federation/v1/event/(.+)", path)
                if found and found.group(1).replace("%24", "$") in peer.events:
                    return self.answer_json(200, {"origin": peer.name, "origin_server_ts": now_ms(),
                                              "pdus": [peer.events[found.group(1).replace("%24", "$")]]})
                self.answer_json(404, {"errcode": "M_NOT_FOUND", "error": "not here"})

            def do_POST(self):
                peer.requests.append(f"POST {self.path}")
                self.read_json()
                if self._canned("POST"):
                    return
                if peer.garbage:
                    return self._garbage()
                if "/get_missing_events/" in self.path:
                    return self.answer_json(200, {"events": peer.missing_answer})
                self.answer_json(404, {"errcode": "M_NOT_FOUND", "error": "not here"})

            def do_PUT(self):
                peer.requests.append(f"PUT {self.path}")
                body = self.read_json()
                if "/send/" in self.path:
                    peer.transactions.append(body)
                    return self.answer_json(200, {"pdus": {}})
                self.answer_json(404, {"errcode": "M_NOT_FOUND", "error": "not here"})

            def _garbage(self):
                self.answer_raw(200, b"<html>surely not JSON")

        self.server = start_server(Handler, self.port, tls=(cert, key))

    def key_response(self) -> dict:
        body = {"server_name": self.name, "valid_until_ts": now_ms() + 3_600_000,
                "verify_keys": {self.key.key_id: {"key": self.key.verify_key_base64}}, "old_verify_keys": {}}
        return sign_json(body, self.name, self.key)

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.name}"

    # --- requests to our server ----------------------------------------------------------------

    def request(self, server, method: str, path: str, body=None, *, origin: str | None = None,
                params: dict | None = None, key=None) -> requests.Response:
        """A request to `server` (a FederatingHomeserver) signed as `origin` (this peer by default)
        with `key` (this peer's by default)."""
        uri = path
        if params:
            uri += "?" + "&".join(f"{quote(k)}={quote(str(v), safe='')}" for k, vs in params.items()
                                  for v in (vs if isinstance(vs, list) else [vs]))
        header = build_authorization_header(origin or self.name, server.server_name, key or self.key, method, uri,
                                            body)
        return requests.request(method, server.fed_url + uri, json=body, headers={"Authorization": header},
                                verify=self.ca.cert_path, timeout=30)

    def send(self, server, txn_id: str, pdus: list, edus: list = ()) -> requests.Response:
        return self.request(server, "PUT", f"/_matrix/federation/v1/send/{txn_id}",
                            {"origin": self.name, "origin_server_ts": now_ms(), "pdus": pdus, "edus": list(edus)})

    # --- events --------------------------------------------------------------------------------

    def sign(self, room_version_id: str, pdu: dict) -> dict:
        signed = sign_event(get_room_version(room_version_id), pdu, self.name, self.key)
        self.events[self.event_id(room_version_id, signed)] = signed
        return signed

    @staticmethod
    def event_id(room_version_id: str, pdu: dict) -> str:
        return compute_event_id(get_room_version(room_version_id), pdu)

    def join(self, server, room_id: str, localpart: str) -> tuple[str, dict, dict]:
        """make_join + send_join for a user of this peer: (room version, the join, send_join's answer)."""
        user_id = self.user(localpart)
        made = self.request(server, "GET", f"/_matrix/federation/v1/make_join/{quote(room_id, safe='')}/"
                                           f"{quote(user_id, safe='')}", params={"ver": [str(v) for v in range(1, 13)]})
        assert made.status_code == 200, made.text
        version = made.json()["room_version"]
        pdu = dict(made.json()["event"], origin_server_ts=now_ms())
        join = self.sign(version, pdu)
        sent = self.request(server, "PUT", f"/_matrix/federation/v2/send_join/{quote(room_id, safe='')}/"
                                           f"{quote(self.event_id(version, join), safe='')}", join)
        assert sent.status_code == 200, sent.text
        return version, join, sent.json()

    @staticmethod
    def auth_for_message(local, room_id: str, version: str, sender: str) -> list[str]:
        """What a message of `sender` must cite (/server-server-api#auth-events-selection), read
        from our server's current state through `local`, a member's client."""
        wanted = {("m.room.power_levels", ""), ("m.room.member", sender)}
        if not get_room_version(version).room_id_from_create_event:
            wanted.add(("m.room.create", ""))
        state = local.get(f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state")
        assert state.status_code == 200, state.text
        return [e["event_id"] for e in state.json() if (e["type"], e.get("state_key")) in wanted]

    def message(self, version: str, room_id: str, sender: str, prev: list[str], auth: list[str], depth: int,
                body: str, **extra) -> dict:
        """A signed m.room.message (extra fields override, before signing)."""
        pdu = {"room_id": room_id, "type": "m.room.message", "sender": sender, "origin_server_ts": now_ms(),
               "content": {"msgtype": "m.text", "body": body}, "prev_events": prev, "auth_events": auth,
               "depth": depth, **extra}
        return self.sign(version, pdu)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)


def tampered(pdu: dict, **changes) -> dict:
    """A copy of a signed event with fields changed after signing."""
    changed = copy.deepcopy(pdu)
    changed.update(changes)
    return changed
