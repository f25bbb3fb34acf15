"""The replication protocol over real loopback TCP: parsing, batching, catch-up from a stream's
rows, bad lines, authentication, epochs and a consumer that does not read.

The streams here keep their rows in memory (as typing does on the master); the streams backed by
PostgreSQL are exercised through real worker processes in tests/workers/."""

import gevent
import gevent.socket
import pytest

from hs.streams import ReplicatedPosition, Stream
from replication.client import ReplicationClient
from replication.protocol import Command, ProtocolError, parse_line, rdata_lines
from replication.server import ReplicationServer
from tests.harness import free_port


class Writer:
    """A master-side stream: rows in memory, a position that advances as rows are written."""

    def __init__(self):
        self.rows: list[tuple[int, dict]] = []
        self.token = 0
        self._listeners = []

    def get_current_token(self):
        return self.token

    def add_listener(self, callback):
        self._listeners.append(callback)

    def write(self, *rows, token=None):
        self.token = token if token is not None else self.token + 1
        self.rows += [(self.token, row) for row in rows]
        for listener in self._listeners:
            listener(self.token)

    def get_rows(self, from_id, upto_id, limit):
        rows = [(t, r) for t, r in self.rows if from_id < t <= upto_id]
        if limit is not None:
            tokens = sorted({t for t, _ in rows})[:limit]
            rows = [(t, r) for t, r in rows if t in tokens]
        return rows


class Applied:
    def __init__(self):
        self.rows = []

    def __call__(self, token, rows):
        self.rows += [(token, r) for r in rows]


def wait_for(predicate, timeout=5.0):
    deadline = gevent.get_hub().loop.now() + timeout
    while not predicate():
        if gevent.get_hub().loop.now() > deadline:
            raise AssertionError("condition not reached in time")
        gevent.sleep(0.01)


@pytest.fixture
def master():
    writer = Writer()
    server = ReplicationServer("test.local", [Stream("things", writer, writer.get_rows)])
    port = free_port()
    server.start([("127.0.0.1", port)])
    yield server, writer, port
    server.stop()


def worker(port, writer, *, name="w1", secret=None, position=0):
    applied = Applied()
    stream = Stream("things", ReplicatedPosition("things", position), writer.get_rows, applied)
    client = ReplicationClient("test.local", "127.0.0.1", port, name, [stream], secret=secret)
    return client, stream, applied


# --- parsing -------------------------------------------------------------------------------------

def test_lines_parse_into_typed_arguments():
    assert parse_line("POSITION events 3 7") == Command("POSITION", ("events", 3, 7))
    assert parse_line('RDATA events batch {"a": "b c"}') == Command("RDATA", ("events", "batch", {"a": "b c"}))
    assert parse_line("USER_SYNC @a:hs - start 17") == Command("USER_SYNC", ("@a:hs", None, "start", 17))
    assert parse_line("ERROR something went wrong here") == Command("ERROR", ("something went wrong here",))
    assert parse_line("REPLICATE") == Command("REPLICATE", ())


@pytest.mark.parametrize("line", ["FOO bar", "POSITION events 3", "POSITION events x 7", "RDATA events 3 {nope",
                                  "USER_SYNC @a:hs D maybe 1", "PING", "REPLICATE extra"])
def test_malformed_lines_are_protocol_errors(line):
    with pytest.raises(ProtocolError):
        parse_line(line)


def test_rows_sharing_a_token_are_sent_as_a_batch_ending_in_the_token():
    lines = rdata_lines("s", [(1, {"n": 1}), (2, {"n": 2}), (2, {"n": 3}), (3, {"n": 4})])
    assert lines == ['RDATA s 1 {"n":1}', 'RDATA s batch {"n":2}', 'RDATA s 2 {"n":3}', 'RDATA s 3 {"n":4}']


# --- a worker following the master ---------------------------------------------------------------

def test_a_fresh_worker_takes_the_masters_position_and_then_receives_every_new_row_in_order(master):
    server, writer, port = master
    writer.write({"n": 1})
    client, stream, applied = worker(port, writer)
    client.start()
    try:
        assert client.ready.wait(5)
        assert stream.position.get_current_token() == 1 and applied.rows == []
        writer.write({"n": 2})
        writer.write({"n": 3}, {"n": 4})
        wait_for(lambda: stream.position.get_current_token() == 3)
        assert applied.rows == [(2, {"n": 2}), (3, {"n": 3}), (3, {"n": 4})]
    finally:
        client.stop()


def test_a_worker_behind_reads_the_gap_from_the_stream_in_pages(master, monkeypatch):
    server, writer, port = master
    for n in range(1, 1201):
        writer.write({"n": n})
    client, stream, applied = worker(port, writer, position=0)
    client.known.add("things")  # it has followed this stream before and stopped at 0
    client.start()
    try:
        assert client.ready.wait(5)
        wait_for(lambda: stream.position.get_current_token() == 1200)
        assert [r["n"] for _, r in applied.rows] == list(range(1, 1201))
        assert client.catch_up_pages == 3
    finally:
        client.stop()


def test_rows_the_worker_already_applied_are_not_applied_again(master):
    server, writer, port = master
    writer.write({"n": 1})
    writer.write({"n": 2})
    client, stream, applied = worker(port, writer, position=2)
    client.known.add("things")
    client.start()
    try:
        assert client.ready.wait(5)
        writer.write({"n": 3})
        wait_for(lambda: stream.position.get_current_token() == 3)
        assert applied.rows == [(3, {"n": 3})]
    finally:
        client.stop()


def test_a_worker_reconnects_and_catches_up_after_the_connection_drops(master):
    server, writer, port = master
    client, stream, applied = worker(port, writer)
    client.start()
    try:
        assert client.ready.wait(5)
        for connection in list(server.connections):
            connection.conn.close()
        writer.write({"n": 1})  # written while the worker is away
        wait_for(lambda: client.connected and server.connections)
        writer.write({"n": 2})
        wait_for(lambda: stream.position.get_current_token() == 2)
        assert applied.rows == [(1, {"n": 1}), (2, {"n": 2})]
    finally:
        client.stop()


def test_ids_with_no_row_still_move_the_worker_on(master):
    server, writer, port = master
    client, stream, applied = worker(port, writer)
    client.start()
    try:
        assert client.ready.wait(5)
        writer.write(token=5)  # ids 1..5 allocated, none wrote a row (failed writes)
        wait_for(lambda: stream.position.get_current_token() == 5)
        assert applied.rows == []
    finally:
        client.stop()


# --- bad peers -----------------------------------------------------------------------------------

def _raw(port):
    sock = gevent.socket.create_connection(("127.0.0.1", port))
    return sock, sock.makefile("rb")


def _read_until(reader, prefix):
    while True:
        line = reader.readline().decode()
        if not line:
            return None
        if line.startswith(prefix):
            return line.strip()


def test_a_bad_line_gets_error_and_close_and_the_server_keeps_serving(master):
    server, writer, port = master
    sock, reader = _raw(port)
    assert reader.readline().decode().startswith("SERVER test.local ")
    sock.sendall(b"BOGUS stuff\n")
    assert _read_until(reader, "ERROR") == "ERROR unknown command 'BOGUS'"
    assert _read_until(reader, "ZZZ") is None  # closed
    sock.close()
    client, stream, _ = worker(port, writer)
    client.start()
    try:
        assert client.ready.wait(5)
    finally:
        client.stop()


def test_a_server_only_command_from_a_worker_is_refused(master):
    server, writer, port = master
    sock, reader = _raw(port)
    sock.sendall(b"RDATA things 1 {}\n")
    assert _read_until(reader, "ERROR") == "ERROR RDATA is not allowed here"
    sock.close()


def test_with_a_secret_a_worker_must_authenticate_first():
    writer = Writer()
    server = ReplicationServer("test.local", [Stream("things", writer, writer.get_rows)], secret="s3cret")
    port = free_port()
    server.start([("127.0.0.1", port)])
    try:
        sock, reader = _raw(port)
        sock.sendall(b"REPLICATE\n")
        assert _read_until(reader, "ERROR") == "ERROR authentication required"
        sock.close()
        sock, reader = _raw(port)
        sock.sendall(b"AUTH wrong\n")
        assert _read_until(reader, "ERROR") == "ERROR authentication required"
        sock.close()
        client, stream, _ = worker(port, writer, secret="s3cret")
        client.start()
        try:
            assert client.ready.wait(5)
        finally:
            client.stop()
    finally:
        server.stop()


def test_a_consumer_that_does_not_read_is_disconnected_when_its_queue_overflows():
    writer = Writer()
    server = ReplicationServer("test.local", [Stream("things", writer, writer.get_rows)], queue_lines=50)
    port = free_port()
    server.start([("127.0.0.1", port)])
    try:
        sock = gevent.socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"REPLICATE\n")
        wait_for(lambda: any(c.subscribed for c in server.connections))
        big = {"pad": "x" * 4000}
        for _ in range(2000):  # ~8 MB: more than the socket buffers and the queue hold
            writer.write(big)
            gevent.sleep(0)
        wait_for(lambda: not server.connections, timeout=10)
        sock.close()
    finally:
        server.stop()


def test_a_new_epoch_tells_the_worker_the_master_restarted():
    writer = Writer()
    port = free_port()
    restarts = []
    stream = Stream("things", ReplicatedPosition("things"), writer.get_rows, Applied())
    client = ReplicationClient("test.local", "127.0.0.1", port, "w1", [stream],
                               on_new_epoch=lambda: restarts.append(1))
    first = ReplicationServer("test.local", [Stream("things", writer, writer.get_rows)])
    first.start([("127.0.0.1", port)])
    client.start()
    try:
        assert client.ready.wait(5)
        first.stop()
        second = ReplicationServer("test.local", [Stream("things", writer, writer.get_rows)])
        second.start([("127.0.0.1", port)])
        try:
            wait_for(lambda: restarts == [1], timeout=10)
        finally:
            second.stop()
    finally:
        client.stop()


def test_a_worker_of_another_server_name_is_refused_by_the_worker_itself(master):
    server, writer, port = master
    stream = Stream("things", ReplicatedPosition("things"), writer.get_rows, Applied())
    client = ReplicationClient("other.local", "127.0.0.1", port, "w1", [stream])
    client.start()
    try:
        assert not client.ready.wait(1)
    finally:
        client.stop()
