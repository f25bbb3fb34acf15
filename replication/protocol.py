"""The replication line protocol: commands, their wire form, and one connection's plumbing.

One UTF-8 command per `\\n`-terminated line, `NAME args`. Only the last argument of a command
may hold spaces; anything structured is one-line JSON. docs/replication.md is the reference.

A connection (either side) runs three greenlets: a reader that parses lines and hands each
command to its owner in order, a writer that drains a bounded outbound queue (a peer that does
not read fills it, and the connection is closed rather than the process's memory), and a
keep-alive that pings every PING_INTERVAL_S and drops a peer silent for PEER_TIMEOUT_S.
"""

import json
import logging
import socket
import time
from dataclasses import dataclass

import gevent
import gevent.event
import gevent.queue

logger = logging.getLogger(__name__)

PING_INTERVAL_S = 5.0
PEER_TIMEOUT_S = 25.0
MAX_LINE_BYTES = 1024 * 1024
OUTBOUND_QUEUE_LINES = 10_000

# What each side may send; anything else from the peer is a protocol error.
SERVER_COMMANDS = frozenset({"SERVER", "POSITION", "RDATA", "PING", "ERROR"})
CLIENT_COMMANDS = frozenset({"AUTH", "NAME", "REPLICATE", "PING", "USER_SYNC", "CLEAR_USER_SYNC", "USER_IP",
                             "ERROR"})


class ProtocolError(Exception):
    """A line the peer should not have sent: answered with ERROR, then the connection closes."""


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple

    def __str__(self) -> str:
        return " ".join((self.name, *map(str, self.args)))


# name -> (number of space-separated arguments, the last of which takes the rest of the line)
_ARITY = {
    "SERVER": 2, "AUTH": 1, "NAME": 1, "REPLICATE": 0, "POSITION": 3, "RDATA": 3, "PING": 1,
    "USER_SYNC": 4, "CLEAR_USER_SYNC": 0, "USER_IP": 1, "ERROR": 1,
}


def parse_line(line: str) -> Command:
    name, _, rest = line.partition(" ")
    arity = _ARITY.get(name)
    if arity is None:
        raise ProtocolError(f"unknown command {name[:40]!r}")
    if arity == 0:
        args = ()
        if rest:
            raise ProtocolError(f"{name} takes no arguments")
    else:
        args = tuple(rest.split(" ", arity - 1)) if rest else ()
    if len(args) != arity:
        raise ProtocolError(f"{name} takes {arity} argument(s)")
    if name == "POSITION":
        stream, prev, new = args
        return Command(name, (stream, _int(prev), _int(new)))
    if name == "RDATA":
        stream, token, row = args
        return Command(name, (stream, "batch" if token == "batch" else _int(token), _json(row)))
    if name == "PING":
        return Command(name, (_int(args[0]),))
    if name == "USER_SYNC":
        user_id, device_id, state, ms = args
        if state not in ("start", "end"):
            raise ProtocolError("USER_SYNC state must be start or end")
        return Command(name, (user_id, None if device_id == "-" else device_id, state, _int(ms)))
    if name == "USER_IP":
        return Command(name, (_json(args[0]),))
    return Command(name, args)


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ProtocolError(f"{value[:40]!r} is not an integer") from None


def _json(value: str):
    try:
        return json.loads(value)
    except ValueError:
        raise ProtocolError("malformed JSON argument") from None


def rdata(stream: str, token, row) -> str:
    return f"RDATA {stream} {token} {json.dumps(row, separators=(',', ':'), ensure_ascii=True)}"


def rdata_lines(stream: str, rows: list[tuple[int, dict]]) -> list[str]:
    """Rows in token order as RDATA lines: every row but the last of a run sharing one token is
    sent as `batch`, so the receiver applies a token's rows together and only then moves on."""
    lines = []
    for i, (token, row) in enumerate(rows):
        last_of_token = i + 1 == len(rows) or rows[i + 1][0] != token
        lines.append(rdata(stream, token if last_of_token else "batch", row))
    return lines


def now_ms() -> int:
    return int(time.time() * 1000)


class Connection:
    """One replication TCP connection, either side. `handle(command)` runs in the reader
    greenlet, one command at a time and in order; it may block (a worker catching up reads
    the database there), which only delays this connection's later commands."""

    def __init__(self, sock, handle, *, accepts: frozenset, label: str, queue_lines: int = OUTBOUND_QUEUE_LINES):
        self.sock = sock
        self.handle = handle
        self.accepts = accepts
        self.label = label
        self.closed = gevent.event.Event()
        self._outbound = gevent.queue.Queue(queue_lines)
        self._last_received = time.monotonic()
        self._greenlets = []

    def start(self) -> None:
        self._greenlets = [gevent.spawn(self._read_loop), gevent.spawn(self._write_loop),
                           gevent.spawn(self._keepalive_loop)]

    def send(self, line: str) -> None:
        if self.closed.is_set():
            return
        try:
            self._outbound.put_nowait(line)
        except gevent.queue.Full:
            logger.warning("replication %s: outbound queue full (%d lines): closing", self.label,
                           self._outbound.maxsize)
            self.close()

    def queue_depth(self) -> int:
        return self._outbound.qsize()

    def send_error(self, message: str) -> None:
        """ERROR, flushed ahead of anything queued, then close."""
        if self.closed.is_set():
            return
        try:
            self.sock.sendall(f"ERROR {message}\n".encode())
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        try:
            # shutdown first: the reader's makefile() holds the descriptor open past close().
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        current = gevent.getcurrent()
        for greenlet in self._greenlets:
            if greenlet is not current:
                greenlet.kill(block=False)

    def _read_loop(self) -> None:
        try:
            reader = self.sock.makefile("rb")
            while True:
                raw = reader.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    break
                self._last_received = time.monotonic()
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    self.send_error("line too long")
                    break
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    continue
                try:
                    command = parse_line(line)
                    if command.name not in self.accepts:
                        raise ProtocolError(f"{command.name} is not allowed here")
                except ProtocolError as e:
                    logger.warning("replication %s: bad line: %s", self.label, e)
                    self.send_error(str(e))
                    break
                if command.name == "PING":
                    continue
                if command.name == "ERROR":
                    logger.warning("replication %s: peer reported an error: %s", self.label, command.args[0])
                    break
                try:
                    self.handle(command)
                except ProtocolError as e:
                    self.send_error(str(e))
                    break
                except gevent.GreenletExit:
                    raise
                except Exception:
                    # A bug in one command's handling must not leave the peer half-applied and
                    # unaware: drop the connection; the worker reconnects and catches up.
                    logger.exception("replication %s: failed to handle %s", self.label, command.name)
                    self.send_error(f"failed to handle {command.name}")
                    break
        except OSError as e:
            logger.info("replication %s: connection lost: %s", self.label, e)
        finally:
            self.close()

    def _write_loop(self) -> None:
        try:
            while True:
                lines = [self._outbound.get()]
                while not self._outbound.empty() and len(lines) < 1000:
                    lines.append(self._outbound.get_nowait())
                self.sock.sendall(("\n".join(lines) + "\n").encode("utf-8"))
        except OSError as e:
            logger.info("replication %s: write failed: %s", self.label, e)
        finally:
            self.close()

    def _keepalive_loop(self) -> None:
        while not self.closed.is_set():
            self.send(f"PING {now_ms()}")
            if time.monotonic() - self._last_received > PEER_TIMEOUT_S:
                logger.warning("replication %s: nothing received for %.0fs: closing", self.label, PEER_TIMEOUT_S)
                self.close()
                return
            gevent.sleep(PING_INTERVAL_S)
