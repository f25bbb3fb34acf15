"""A worker's replication client: one greenlet that keeps a connection to the master, and the
positions this process has applied.

On connect the client sends REPLICATE; the master answers POSITION for every stream. A worker
behind a POSITION's `prev` (just started, reconnected, or behind a gap) reads the missing rows
itself from PostgreSQL in pages, applying each page, then takes the new position: the master
never replays a backlog. RDATA rows arrive in order on the connection; `batch` rows are held
until their token's last row, and a token at or below the applied position is already applied.

Applying rows: the position moves to their token first, then the stream's `on_rows` invalidates
caches and wakes the notifier (a woken request must read the new position). A first POSITION on
a worker with no position yet is taken as is: a fresh process has nothing to catch up.

The master restarting is seen as a new epoch in its SERVER line: in-memory streams (typing)
belonged to the old run, so `on_new_epoch` drops them before the new state arrives.
"""

import logging

import gevent
import gevent.event
import gevent.socket

from hs.streams import ReplicatedPosition
from replication.protocol import SERVER_COMMANDS, Connection, ProtocolError, now_ms

logger = logging.getLogger(__name__)

CATCH_UP_PAGE = 500
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 5.0


class ReplicationClient:
    def __init__(self, server_name: str, host: str, port: int, worker_name: str, catalogue: list, *,
                 secret: str | None = None, on_new_epoch=None):
        self.server_name = server_name
        self.address = (host, port)
        self.worker_name = worker_name
        self.secret = secret
        self.streams = {s.name: s for s in catalogue}
        for stream in catalogue:
            if not isinstance(stream.position, ReplicatedPosition):
                raise TypeError(f"stream {stream.name}: a worker's positions come from replication")
        self.on_new_epoch = on_new_epoch
        self.known: set[str] = set()  # streams whose position came from this master at least once
        self.ready = gevent.event.Event()  # every stream has a position
        self.connected = False
        self.catch_up_pages = 0
        self.master_positions: dict[str, int] = {}
        self._epoch = None
        self._pending: dict[str, list] = {}
        self._conn = None
        self._greenlet = None
        self._on_connect: list = []  # callables returning lines to send on every (re)connect
        self._moved = gevent.event.Event()  # set (and replaced) whenever a position advances
        for stream in catalogue:
            stream.position.add_listener(self._position_moved)

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.send("CLEAR_USER_SYNC")
            gevent.sleep(0)  # let the writer flush it
            self._conn.close()
        if self._greenlet is not None:
            self._greenlet.kill()

    def send(self, line: str) -> bool:
        """Sends a command now if connected; False if not (on_connect re-announces state)."""
        if self._conn is None or self._conn.closed.is_set():
            return False
        self._conn.send(line)
        return True

    def add_on_connect(self, lines_fn) -> None:
        self._on_connect.append(lines_fn)

    def positions(self) -> dict[str, int]:
        return {name: s.position.get_current_token() for name, s in self.streams.items()}

    def wait_for(self, targets: dict[str, int], timeout: float) -> bool:
        """Waits until this worker has applied every stream up to `targets` (positions the master
        answered a write with, or a sync token from another instance). False on timeout."""
        deadline = gevent.get_hub().loop.now() + timeout
        while True:
            behind = [name for name, token in targets.items()
                      if name in self.streams and self.streams[name].position.get_current_token() < token]
            if not behind:
                return True
            remaining = deadline - gevent.get_hub().loop.now()
            if remaining <= 0 or not self._moved.wait(remaining):
                logger.warning("replication: still behind on %s after %.1fs", ", ".join(behind), timeout)
                return False

    def _position_moved(self, _token: int) -> None:
        moved, self._moved = self._moved, gevent.event.Event()
        moved.set()

    # --- the connection --------------------------------------------------------------------------

    def _run(self) -> None:
        delay = RECONNECT_MIN_S
        while True:
            try:
                sock = gevent.socket.create_connection(self.address, timeout=10)
                sock.settimeout(None)
            except OSError as e:
                logger.info("replication: cannot connect to %s:%d: %s", *self.address, e)
                gevent.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            delay = RECONNECT_MIN_S
            self._pending.clear()
            self._conn = Connection(sock, self._handle, accepts=SERVER_COMMANDS, label="master")
            self._conn.start()
            self._conn.closed.wait()
            self.connected = False
            self._conn = None
            logger.info("replication: disconnected from the master; reconnecting")
            gevent.sleep(RECONNECT_MIN_S)

    def _handle(self, command) -> None:
        if command.name == "SERVER":
            self._on_server(*command.args)
        elif command.name == "POSITION":
            self._on_position(*command.args)
        elif command.name == "RDATA":
            self._on_rdata(*command.args)

    def _on_server(self, server_name: str, epoch: str) -> None:
        if server_name != self.server_name:
            raise ProtocolError(f"wrong server: this worker belongs to {self.server_name}")
        if self._epoch is not None and epoch != self._epoch:
            logger.info("replication: the master restarted (new epoch)")
            for stream in self.streams.values():
                if stream.in_memory:
                    self.known.discard(stream.name)
            if self.on_new_epoch is not None:
                self.on_new_epoch()
        self._epoch = epoch
        if self.secret is not None:
            self._conn.send(f"AUTH {self.secret}")
        self._conn.send(f"NAME {self.worker_name}")
        self._conn.send(f"PING {now_ms()}")
        self._conn.send("REPLICATE")
        for lines_fn in self._on_connect:
            for line in lines_fn():
                self._conn.send(line)
        self.connected = True

    def _on_position(self, name: str, prev: int, new: int) -> None:
        stream = self.streams.get(name)
        if stream is None:
            return  # a stream this worker does not follow
        self.master_positions[name] = new
        self._pending.pop(name, None)
        position = stream.position
        if name not in self.known:
            # A fresh worker, or an in-memory stream after the master restarted: nothing to
            # catch up from (in-memory state arrived as RDATA just before).
            self.known.add(name)
            position.advance(new)
            self._maybe_ready()
            return
        current = position.get_current_token()
        if current < prev and not stream.in_memory:
            self._catch_up(stream, current, new)
        elif current < new:
            position.advance(new)
        self._maybe_ready()

    def _catch_up(self, stream, current: int, upto: int) -> None:
        logger.info("replication: %s is behind (%d < %d): reading the gap from the database",
                    stream.name, current, upto)
        while current < upto:
            rows = stream.get_rows(current, upto, CATCH_UP_PAGE)
            self.catch_up_pages += 1
            if not rows:
                break
            by_token: dict[int, list] = {}
            for token, row in rows:
                by_token.setdefault(token, []).append(row)
            for token, token_rows in by_token.items():
                self._apply(stream, token, token_rows)
            current = rows[-1][0]
        stream.position.advance(upto)

    def _on_rdata(self, name: str, token, row) -> None:
        stream = self.streams.get(name)
        if stream is None:
            return
        if token == "batch":
            self._pending.setdefault(name, []).append(row)
            return
        self.master_positions[name] = max(token, self.master_positions.get(name, 0))
        rows = self._pending.pop(name, []) + [row]
        if name not in self.known:
            # In-memory state sent ahead of its stream's POSITION on (re)connect.
            if stream.in_memory:
                self._apply(stream, token, rows, advance=False)
            return
        if token <= stream.position.get_current_token():
            return
        self._apply(stream, token, rows)

    @staticmethod
    def _apply(stream, token: int, rows: list, advance: bool = True) -> None:
        if advance:
            stream.position.advance(token)
        if stream.on_rows is not None:
            stream.on_rows(token, rows)

    def _maybe_ready(self) -> None:
        if not self.ready.is_set() and self.known >= set(self.streams):
            self.ready.set()
            logger.info("replication: positions known for every stream")
