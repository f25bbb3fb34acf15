"""The master's internal HTTP API for worker writes: `POST /_hs/replication/{action}/{txn_id}`.

A worker that must write (a filter upload on a client_reader, say) calls an action on the master
and replies to its client only once it has applied the stream positions the master answered
with: the client then reads its own write from that worker. A retry with the same txn id (the
worker lost the answer) gets the first answer again, so a write is never done twice.

Served only on master listeners that name the `replication` resource (loopback, as the
replication listener), and only to loopback peers unless `replication_secret` is set, which
then must come as the bearer token.
"""

import hmac
import ipaddress
import logging
import uuid

import gevent
import requests

from hs.api.app import Resource
from hs.api.request import json_body
from hs.caches import LruCache
from hs.errors import Codes, MatrixError

logger = logging.getLogger(__name__)

CALL_ATTEMPTS = 4
CALL_TIMEOUT_S = 30.0
POSITION_WAIT_S = 10.0


class ReplicationActionResource(Resource):
    """`actions`: {name: callable(body dict) -> JSON-able result}; `positions()`: the master's
    stream positions after the action."""

    public = frozenset({"POST"})

    def __init__(self, actions: dict, positions, secret: str | None):
        self.actions = actions
        self.positions = positions
        self.secret = secret
        self._answers = LruCache("replication_answers", 10_000,
                                 invalidated_by="nothing: the answer to a txn id never changes")

    def on_post(self, req, resp, action, txn_id):
        self._check_caller(req)
        handler = self.actions.get(action)
        if handler is None:
            raise MatrixError(404, Codes.UNRECOGNIZED, f"No replication action {action!r}")
        key = (action, txn_id)
        answer = self._answers.get(key)
        if answer is None:
            answer = {"result": handler(json_body(req)), "positions": self.positions()}
            self._answers.put(key, answer)
        resp.media = answer

    def _check_caller(self, req) -> None:
        if self.secret is not None:
            header = req.get_header("Authorization") or ""
            if not hmac.compare_digest(header.encode(), f"Bearer {self.secret}".encode()):
                raise MatrixError(403, Codes.FORBIDDEN, "Replication secret required")
            return
        try:
            loopback = ipaddress.ip_address(req.remote_addr).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise MatrixError(403, Codes.FORBIDDEN, "Only served to workers on this machine")


def register(app, actions: dict, positions, secret: str | None) -> None:
    app.add_route("/_hs/replication/{action}/{txn_id}", ReplicationActionResource(actions, positions, secret))


class MasterClient:
    """A worker's caller of the master's actions. `wait_for(positions, timeout)` is the
    replication client's: the call returns once this worker has applied what the write did."""

    def __init__(self, host: str, port: int, secret: str | None, wait_for):
        host = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{host}:{port}/_hs/replication/"
        self.secret = secret
        self.wait_for = wait_for
        self.session = requests.Session()

    def call(self, action: str, body: dict):
        txn_id = uuid.uuid4().hex
        headers = {"Authorization": f"Bearer {self.secret}"} if self.secret else {}
        for attempt in range(CALL_ATTEMPTS):
            try:
                answer = self.session.post(f"{self.base_url}{action}/{txn_id}", json=body, headers=headers,
                                           timeout=CALL_TIMEOUT_S)
                break
            except requests.RequestException as e:
                logger.warning("replication: %s to the master failed (%s): retrying", action, e)
                gevent.sleep(0.5 * 2 ** attempt)
        else:
            raise MatrixError(502, Codes.UNKNOWN, "The master is not answering")
        try:
            payload = answer.json()
        except ValueError:
            payload = {}
        if answer.status_code != 200:
            # The master's own Matrix error, passed on to the client as it is.
            raise MatrixError(answer.status_code, payload.get("errcode", Codes.UNKNOWN),
                              payload.get("error", "The master refused the request"))
        self.wait_for(payload.get("positions", {}), POSITION_WAIT_S)
        return payload.get("result")
