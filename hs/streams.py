"""The stream catalogue and the sync token.

A sync token is `s<room>_<presence>_<typing>_<receipt>_<account_data>_<push_rules>_<to_device>_<device_list>`:
one position per stream. New streams are only ever appended, and missing trailing keys read
as 0, so tokens handed out by an older server stay valid.
"""

import re
from dataclasses import dataclass, fields

from hs.errors import Codes, MatrixError

_TOKEN = re.compile(r"^s\d+(_\d+)*$")
CATCH_UP_WAIT_S = 10.0
# Sync token key -> replication stream. Typing is left out: a typing position ahead of this
# process (a token from before a master restart) already reads as now.
_REPLICATED_KEYS = {"room": "events", "presence": "presence", "receipt": "receipts",
                    "account_data": "account_data", "push_rules": "push_rules", "to_device": "to_device",
                    "device_list": "device_lists"}


@dataclass(frozen=True)
class StreamToken:
    room: int = 0
    presence: int = 0
    typing: int = 0
    receipt: int = 0
    account_data: int = 0
    push_rules: int = 0
    to_device: int = 0
    device_list: int = 0

    @classmethod
    def parse(cls, token: str) -> "StreamToken":
        if not _TOKEN.match(token):
            raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid sync token {token!r}")
        parts = [int(p) for p in token[1:].split("_")]
        names = [f.name for f in fields(cls)]
        if len(parts) > len(names):
            raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid sync token {token!r}")
        # Missing trailing keys read as 0.
        return cls(**dict(zip(names, parts, strict=False)))

    def __str__(self) -> str:
        return "s" + "_".join(str(getattr(self, f.name)) for f in fields(self))


class Streams:
    """Where each stream stands in this process: positions that may be handed out."""

    def __init__(self, event_stream):
        self.event_stream = event_stream
        # StreamToken key -> position source (get_current_token()), added by the composition root.
        self._sources = {"room": event_stream}
        # On a worker (hs/worker.py): (targets {replication stream: position}, timeout) -> whether
        # this process follows the master yet; waits until it has applied the targets.
        self.catch_up = None

    def wait_until_reached(self, token: "StreamToken", timeout: float = CATCH_UP_WAIT_S) -> None:
        """On a worker, before answering for `token` (a client's since, from this or another
        instance): waits until this process has applied what the token covers, so that nothing
        before it is sent again. 503 if this worker does not follow the master yet."""
        if self.catch_up is None:
            return
        targets = {name: getattr(token, key) for key, name in _REPLICATED_KEYS.items()}
        if not self.catch_up(targets, timeout):
            raise MatrixError(503, Codes.UNKNOWN, "This worker is not yet following the master; try again")

    def add(self, key: str, source) -> None:
        if key not in {f.name for f in fields(StreamToken)}:
            raise ValueError(f"{key} is not a sync token key")
        self._sources[key] = source

    def current_token(self) -> StreamToken:
        """Every stream's position now; a stream this process does not have reads as 0."""
        return StreamToken(**{key: source.get_current_token() for key, source in self._sources.items()})


@dataclass(frozen=True)
class Stream:
    """One entry of the catalogue the replication protocol serves (hs/server.py builds it).

    `position` has get_current_token() and add_listener(): the writer's StreamIdGenerator on the
    master, a ReplicatedPosition on a worker. `get_rows(from_id, upto_id, limit)` returns the rows
    with from_id < id <= upto_id as [(id, row dict)], in id order, at most `limit` ids (None: all),
    never splitting the rows of one id: the master streams them, and a worker that is behind reads
    them itself from PostgreSQL. An `in_memory` stream (typing) has no
    rows in the database: its whole state is resent on every connect. `on_rows(token, rows)` is
    what a worker does with rows it applied (invalidate caches, wake the notifier), called after
    the position has moved to `token`."""
    name: str
    position: object
    get_rows: object
    on_rows: object = None
    in_memory: bool = False


class ReplicatedPosition:
    """A worker's stand-in for a stream's StreamIdGenerator: the position it has applied from
    replication. Workers never allocate ids, so get_next refuses."""

    def __init__(self, name: str, token: int = 0):
        self.name = name
        self._token = token
        self._listeners = []

    def get_current_token(self) -> int:
        return self._token

    def add_listener(self, callback) -> None:
        self._listeners.append(callback)

    def advance(self, token: int) -> None:
        if token == self._token:
            return
        self._token = token
        for listener in self._listeners:
            listener(token)

    def get_next(self):
        raise RuntimeError(f"a worker does not write the {self.name} stream: send the write to the master")

    get_next_mult = get_next
