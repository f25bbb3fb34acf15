"""A real application service for tests: an HTTP server on loopback that answers the application
service API (/_matrix/app/v1: transactions, ping, users, rooms, thirdparty), checks the hs_token,
and records every request it gets.

    service = AppServiceServer(hs_token="hs-secret").start()
    try:
        path = service.write_registration(tmp_dir, id="bridge", as_token="as-secret",
                                          sender_localpart="bridgebot",
                                          namespaces={"users": [{"regex": "@bridge_.*", "exclusive": True}]})
        with running_homeserver(db_dsn, app_service_config_files=[path]) as server:
            ...
            service.wait_for(lambda: service.events(), timeout=30)
    finally:
        service.stop()

Behaviour is set with plain attributes and `respond_with`, readable and writable from the test
thread at any time:
- `known_users` / `known_aliases`: sets answering GET /users/{userId} and /rooms/{alias} with 200
  (else 404); `on_user_query(user_id)` / `on_alias_query(alias)` callables, when set, decide instead
  (they run in the server's thread and may call the homeserver, e.g. to create the room for an alias).
- `protocols`: {protocol: metadata} for GET /thirdparty/protocol/{p} (404 when absent);
  `thirdparty_users` / `thirdparty_locations`: lists of result objects; GET /thirdparty/user[/{p}]
  and /location[/{p}] return those whose `protocol` matches (all of them without a protocol) and
  whose `fields` contain every query parameter given.
- `respond_with(path_regex, status, body=None, delay_s=0)`: requests whose path (after
  /_matrix/app/v1) matches get this answer instead, until `clear_responses()` — a service that
  is down (503), slow (delay_s), or answers an error.
- `stop()` then `start()` again keeps the port, so a registration's URL stays valid across an
  outage where connections are refused.

What it recorded: `requests` (every request, `Recorded`), `transactions` (every PUT
/transactions it answered 200, repeats included, as (txn_id, body)), `events()` /
`ephemeral()` / `to_device()` (the contents of distinct accepted transactions, in order), `pings`
(transaction_id of each accepted ping).
"""

import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

PREFIX = "/_matrix/app/v1"
# MSC2409/MSC3202 keys Synapse writes for to-device messages in transactions.
TO_DEVICE_KEYS = ("de.sorunome.msc2409.to_device", "to_device")


@dataclass
class Recorded:
    method: str
    path: str  # percent-decoded, full (with /_matrix/app/v1)
    query: dict  # name -> [values]
    headers: dict
    body: object  # parsed JSON, or None
    token: str | None  # the hs_token presented (header or access_token param)
    token_in_query: bool
    authorized: bool


class AppServiceServer:
    def __init__(self, hs_token: str = "hs-secret", port: int = 0):
        self.hs_token = hs_token
        self.port = port
        self.known_users = set()
        self.known_aliases = set()
        self.on_user_query = None
        self.on_alias_query = None
        self.protocols = {}
        self.thirdparty_users = []
        self.thirdparty_locations = []
        self.requests = []
        self.transactions = []
        self.pings = []
        self._overrides = []
        self._lock = threading.Lock()
        self._httpd = None
        self._thread = None

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "AppServiceServer":
        handler = type("Handler", (_Handler,), {"service": self})
        self._httpd = _Server(("127.0.0.1", self.port), handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name=f"appservice-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(5)
            self._httpd = None

    def __enter__(self):
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc):
        self.stop()

    def write_registration(self, directory: str, *, id: str, as_token: str, sender_localpart: str,
                           namespaces: dict | None = None, url: str | None = "", filename: str | None = None,
                           **extra) -> str:
        """Writes a registration YAML for this service (url defaults to this server's; pass None for
        a service without a URL) and returns its path. `extra`: rate_limited, protocols,
        receive_ephemeral, ..., written as given."""
        registration = {"id": id, "url": self.url if url == "" else url, "as_token": as_token,
                        "hs_token": self.hs_token, "sender_localpart": sender_localpart,
                        "namespaces": namespaces if namespaces is not None else {}, **extra}
        path = os.path.join(directory, filename or f"appservice-{id}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(registration, f)
        return path

    # --- behaviour -------------------------------------------------------------------------------

    def respond_with(self, path_regex: str, status: int, body=None, delay_s: float = 0.0) -> None:
        with self._lock:
            self._overrides.append((re.compile(path_regex), status, body if body is not None else {}, delay_s))

    def clear_responses(self) -> None:
        with self._lock:
            self._overrides.clear()

    # --- what was received -----------------------------------------------------------------------

    def requests_to(self, path_regex: str) -> list:
        pattern = re.compile(path_regex)
        with self._lock:
            return [r for r in self.requests if pattern.search(r.path)]

    def _distinct_transactions(self) -> list:
        seen, bodies = set(), []
        with self._lock:
            for txn_id, body in self.transactions:
                if txn_id not in seen:
                    seen.add(txn_id)
                    bodies.append(body)
        return bodies

    def events(self) -> list:
        return [e for body in self._distinct_transactions() for e in body.get("events", [])]

    def ephemeral(self) -> list:
        return [e for body in self._distinct_transactions()
                for e in body.get("ephemeral", body.get("de.sorunome.msc2409.ephemeral", []))]

    def to_device(self) -> list:
        return [m for body in self._distinct_transactions()
                for key in TO_DEVICE_KEYS for m in body.get(key, [])]

    def wait_for(self, predicate, timeout: float = 30.0, interval: float = 0.1):
        """The first truthy value of predicate(); AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"application service: condition not met in {timeout}s; "
                                     f"{len(self.requests)} requests received")
            time.sleep(interval)

    # --- answers (called by _Handler, in the server's threads) ----------------------------------

    def _answer(self, method: str, path: str, query: dict, body) -> tuple:
        sub = path[len(PREFIX):] if path.startswith(PREFIX) else None
        if sub is None:
            return 404, {"errcode": "M_UNRECOGNIZED", "error": "not an application service path"}
        with self._lock:
            override = next((o for o in self._overrides if o[0].search(sub)), None)
        if override is not None:
            _, status, answer, delay_s = override
            if delay_s:
                time.sleep(delay_s)
            return status, answer
        if method == "PUT" and sub.startswith("/transactions/"):
            if not isinstance(body, dict) or not isinstance(body.get("events"), list):
                return 400, {"errcode": "M_BAD_JSON", "error": "events must be a list"}
            with self._lock:
                self.transactions.append((sub[len("/transactions/"):], body))
            return 200, {}
        if method == "POST" and sub == "/ping":
            with self._lock:
                self.pings.append((body or {}).get("transaction_id"))
            return 200, {}
        if method == "GET" and sub.startswith("/users/"):
            user_id = sub[len("/users/"):]
            found = self.on_user_query(user_id) if self.on_user_query else user_id in self.known_users
            return (200, {}) if found else (404, {"errcode": "M_NOT_FOUND"})
        if method == "GET" and sub.startswith("/rooms/"):
            alias = sub[len("/rooms/"):]
            found = self.on_alias_query(alias) if self.on_alias_query else alias in self.known_aliases
            return (200, {}) if found else (404, {"errcode": "M_NOT_FOUND"})
        if method == "GET" and sub.startswith("/thirdparty/"):
            return self._thirdparty(sub[len("/thirdparty/"):], query)
        return 404, {"errcode": "M_UNRECOGNIZED", "error": f"no such endpoint {method} {sub}"}

    def _thirdparty(self, rest: str, query: dict) -> tuple:
        kind, _, protocol = rest.partition("/")
        if kind == "protocol":
            if protocol in self.protocols:
                return 200, self.protocols[protocol]
            return 404, {"errcode": "M_NOT_FOUND", "error": "unknown protocol"}
        if kind not in ("user", "location"):
            return 404, {"errcode": "M_UNRECOGNIZED"}
        if protocol and protocol not in self.protocols:
            return 404, {"errcode": "M_NOT_FOUND", "error": "unknown protocol"}
        fields = {k: v[-1] for k, v in query.items() if k != "access_token"}
        candidates = self.thirdparty_users if kind == "user" else self.thirdparty_locations
        found = [r for r in candidates
                 if (not protocol or r.get("protocol") == protocol)
                 and all(r.get("fields", {}).get(k) == v for k, v in fields.items()
                         if protocol or k not in ("userid", "alias"))
                 and (protocol or _matches_id(kind, r, fields))]
        return 200, found


def _matches_id(kind: str, result: dict, fields: dict) -> bool:
    """Without a protocol the lookup is by Matrix ID (`userid=` / `alias=`)."""
    key = "userid" if kind == "user" else "alias"
    return key not in fields or result.get(key) == fields[key]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        super().server_bind()


class _Handler(BaseHTTPRequestHandler):
    service: AppServiceServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # the test output is not the place for an access log
        pass

    def _handle(self):
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        header = self.headers.get("Authorization", "")
        token = header[len("Bearer "):] if header.startswith("Bearer ") else None
        token_in_query = token is None and "access_token" in query
        if token_in_query:
            token = query["access_token"][-1]
        service = self.service
        authorized = token == service.hs_token
        with service._lock:
            service.requests.append(Recorded(self.command, path, query, dict(self.headers), body, token,
                                             token_in_query, authorized))
        if token is None:
            status, answer = 401, {"errcode": "M_UNAUTHORIZED", "error": "no hs_token"}
        elif not authorized:
            status, answer = 403, {"errcode": "M_FORBIDDEN", "error": "wrong hs_token"}
        else:
            try:
                status, answer = service._answer(self.command, path, query, body)
            except Exception as e:  # a failing test callback: answer 500 and keep serving
                status, answer = 500, {"errcode": "M_UNKNOWN", "error": repr(e)}
        data = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the homeserver gave up (timeout test)
            pass

    do_GET = do_PUT = do_POST = do_DELETE = _handle
