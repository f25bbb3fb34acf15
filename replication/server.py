"""The master's replication server: a gevent StreamServer per `type: replication` listener, in the
master's own process and hub, and the streamer that tells every worker what changed.

The streamer is one greenlet woken by `poke()` (every stream's position listener calls it). Each
pass reads, for every stream that moved, the rows between what was last sent and the stream's
current position from PostgreSQL (the same `get_rows` a worker uses to catch up) and queues them
to every subscribed connection. A poke that lands during a pass sets the event again, so the loop
runs once more: no wake-up is lost. With no worker connected a pass only moves the positions on.

A connection subscribes with REPLICATE and is answered with POSITION for every stream at what the
streamer last sent: rows after it will reach this connection as RDATA, rows before it the worker
reads from the database itself. In-memory streams (typing) send their whole state first.
"""

import hmac
import logging
import secrets

import gevent
import gevent.event
from gevent.server import StreamServer

from replication.protocol import CLIENT_COMMANDS, OUTBOUND_QUEUE_LINES, Connection, ProtocolError, now_ms, rdata_lines

logger = logging.getLogger(__name__)

ROWS_PER_READ = 500


class _WorkerConnection:
    def __init__(self, server: "ReplicationServer", sock, address):
        self.server = server
        self.name = f"{address[0]}:{address[1]}"
        self.authenticated = server.secret is None
        self.subscribed = False
        self.syncing: set[tuple[str, str | None]] = set()
        self.conn = Connection(sock, self._handle, accepts=CLIENT_COMMANDS, label=self.name,
                               queue_lines=server.queue_lines)

    def run(self) -> None:
        self.conn.send(f"SERVER {self.server.server_name} {self.server.epoch}")
        self.conn.start()
        try:
            self.conn.closed.wait()
        finally:
            self.server.connection_closed(self)

    def _handle(self, command) -> None:
        if not self.authenticated:
            if command.name != "AUTH" or not hmac.compare_digest(command.args[0].encode(),
                                                                   self.server.secret.encode()):
                raise ProtocolError("authentication required")
            self.authenticated = True
            return
        if command.name == "NAME":
            self.name = command.args[0][:100]
            self.conn.label = self.name
        elif command.name == "REPLICATE":
            self.server.subscribe(self)
        elif command.name == "USER_SYNC":
            user_id, device_id, state, ms = command.args
            key = (user_id, device_id)
            if state == "start":
                self.syncing.add(key)
            else:
                self.syncing.discard(key)
            self.server.user_sync(user_id, device_id, state == "start", ms)
        elif command.name == "CLEAR_USER_SYNC":
            self.server.clear_user_syncs(self)
        elif command.name == "USER_IP":
            self.server.user_ip(command.args[0])


class ReplicationServer:
    """`catalogue`: the hs.streams.Stream entries of the master. `presence` (optional) takes
    USER_SYNC from synchrotrons; `on_user_ip(row)` last-seen reports from workers."""

    def __init__(self, server_name: str, catalogue: list, *, secret: str | None = None, presence=None,
                 on_user_ip=None, queue_lines: int = OUTBOUND_QUEUE_LINES):
        self.server_name = server_name
        self.queue_lines = queue_lines
        self.secret = secret
        self.presence = presence
        self.on_user_ip = on_user_ip
        # Changes with every start of the master: a worker seeing a new epoch drops in-memory
        # state (typing) that belonged to the previous run.
        self.epoch = f"{now_ms()}{secrets.token_hex(4)}"
        self.streams = {s.name: s for s in catalogue}
        self.connections: set[_WorkerConnection] = set()
        self._sent = {name: s.position.get_current_token() for name, s in self.streams.items()}
        self._poked = gevent.event.Event()
        self._servers: list[StreamServer] = []
        self._streamer = None
        for stream in catalogue:
            stream.position.add_listener(lambda _token: self.poke())

    def start(self, binds: list[tuple[str, int]]) -> None:
        for host, port in binds:
            server = StreamServer((host, port), self._accept)
            server.start()
            self._servers.append(server)
            logger.info("replication listening on %s:%d", host, port)
        self._streamer = gevent.spawn(self._stream_loop)

    def stop(self) -> None:
        for server in self._servers:
            server.stop(timeout=1)
        for connection in list(self.connections):
            connection.conn.close()
        if self._streamer is not None:
            self._streamer.kill()

    def poke(self) -> None:
        self._poked.set()

    def positions(self) -> dict[str, int]:
        return dict(self._sent)

    # --- connections -----------------------------------------------------------------------------

    def _accept(self, sock, address) -> None:
        connection = _WorkerConnection(self, sock, address)
        self.connections.add(connection)
        logger.info("replication: connection from %s:%d", *address)
        connection.run()

    def subscribe(self, connection: _WorkerConnection) -> None:
        for name, stream in self.streams.items():
            sent = self._sent[name]
            if stream.in_memory:
                for line in rdata_lines(name, stream.get_rows(0, sent, None)):
                    connection.conn.send(line)
            connection.conn.send(f"POSITION {name} {sent} {sent}")
        connection.subscribed = True

    def connection_closed(self, connection: _WorkerConnection) -> None:
        self.connections.discard(connection)
        # A worker that went away without CLEAR_USER_SYNC (killed) stops syncing its users.
        self.clear_user_syncs(connection)
        logger.info("replication: %s disconnected", connection.name)

    def user_sync(self, user_id: str, device_id: str | None, syncing: bool, ms: int) -> None:
        if self.presence is not None:
            self.presence.remote_user_sync(user_id, device_id, syncing, ms)

    def clear_user_syncs(self, connection: _WorkerConnection) -> None:
        for user_id, device_id in list(connection.syncing):
            self.user_sync(user_id, device_id, False, now_ms())
        connection.syncing.clear()

    def user_ip(self, row) -> None:
        if self.on_user_ip is not None and isinstance(row, dict):
            self.on_user_ip(row)

    # --- the streamer ----------------------------------------------------------------------------

    def _stream_loop(self) -> None:
        while True:
            self._poked.wait()
            self._poked.clear()
            try:
                self._stream_once()
            except Exception:
                # The rows stay unsent; the next poke tries again from the same positions.
                logger.exception("replication: streaming failed")
                gevent.sleep(1)
                self.poke()

    def _stream_once(self) -> None:
        for name, stream in self.streams.items():
            upto = stream.position.get_current_token()
            sent = self._sent[name]
            if upto == sent:
                continue
            subscribed = [c for c in self.connections if c.subscribed]
            if not subscribed or upto < sent:
                # Nobody to tell (a worker that connects later reads the database), or an
                # in-memory stream that started again.
                self._sent[name] = upto
                continue
            while sent < upto:
                rows = stream.get_rows(sent, upto, ROWS_PER_READ)
                page_end = rows[-1][0] if rows and len(rows) >= ROWS_PER_READ else upto
                lines = rdata_lines(name, rows)
                last_row = rows[-1][0] if rows else sent
                if last_row < page_end:
                    # Ids with no row (a failed write's hole, a row deleted since): nothing
                    # between the last row and page_end.
                    lines.append(f"POSITION {name} {last_row} {page_end}")
                for connection in [c for c in self.connections if c.subscribed]:
                    for line in lines:
                        connection.conn.send(line)
                sent = page_end
                self._sent[name] = sent
