"""A real push gateway for tests: an HTTP server on loopback answering POST
/_matrix/push/v1/notify, validating every body against the request schema of the push gateway
API (/work/shared/spec/bundled/push-gateway-api.json) and recording what it got.

    gateway = PushGateway().start()
    try:
        ... set a pusher with data.url = gateway.url ...
        gateway.wait_for(lambda: gateway.notifications, timeout=20)
    finally:
        gateway.stop()

- `fail_next(n, status=500)`: the next n requests are answered `status` (recorded in
  `failed`, not in `notifications`).
- `recover()`: drop the failures still to come.
- `rejected`: pushkeys named in every answer's `rejected` list.
- `notifications`: the `notification` of every request answered 200, in arrival order;
  `invalid`: (body, error) of every body that did not match the schema (answered 400).
"""

import json
import os
import threading
import time

import jsonschema

from tests.json_http import QuietHandler, start_server

NOTIFY_PATH = "/_matrix/push/v1/notify"
# The spec's bundled OpenAPI document (every $ref inlined), as tests/api/test_response_schemas.py reads it.
_SPEC = os.path.join(os.environ.get("MATRIX_SPEC_BUNDLED", "/work/shared/spec/bundled"), "push-gateway-api.json")


def _request_schema() -> dict:
    with open(_SPEC, encoding="utf-8") as f:
        spec = json.load(f)
    return spec["paths"][NOTIFY_PATH]["post"]["requestBody"]["content"]["application/json"]["schema"]


class PushGateway:
    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.validator = jsonschema.Draft202012Validator(_request_schema())
        self.notifications = []
        self.failed = []
        self.invalid = []
        self.rejected = set()
        self._failures = []  # statuses for the next requests
        self._lock = threading.Lock()
        self._server = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._server.server_address[1]}{NOTIFY_PATH}"

    def start(self) -> "PushGateway":
        gateway = self

        class Handler(QuietHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.answer_json(*gateway._answer(self.path, self.rfile.read(length)))

        self._server = start_server(Handler, host=self.host)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def fail_next(self, n: int, status: int = 500) -> None:
        with self._lock:
            self._failures.extend([status] * n)

    def recover(self) -> None:
        """Answer 200 again from the next request on."""
        with self._lock:
            self._failures.clear()

    def wait_for(self, predicate, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"gateway: condition not met in {timeout}s; got {self.notifications}"
                             f" (failed {len(self.failed)}, invalid {self.invalid})")

    def _answer(self, path: str, raw: bytes) -> tuple[int, dict]:
        if path != NOTIFY_PATH:
            return 404, {"errcode": "M_UNRECOGNIZED"}
        try:
            body = json.loads(raw)
            self.validator.validate(body)
        except (ValueError, jsonschema.ValidationError) as e:
            with self._lock:
                self.invalid.append((raw, str(e)))
            return 400, {"errcode": "M_BAD_JSON"}
        with self._lock:
            if self._failures:
                status = self._failures.pop(0)
                self.failed.append(body["notification"])
                return status, {"errcode": "M_UNKNOWN"}
            self.notifications.append(body["notification"])
            pushkeys = {d["pushkey"] for d in body["notification"]["devices"]}
            return 200, {"rejected": sorted(pushkeys & self.rejected)}
