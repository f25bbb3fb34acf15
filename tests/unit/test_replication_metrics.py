"""Replication metrics read from a real ReplicationServer and ReplicationClient over loopback TCP:
positions, lag while a worker catches up, connections and their outbound queues."""

import gevent
import gevent.event
import gevent.socket

from hs import metrics
from hs.streams import ReplicatedPosition, Stream
from replication.client import ReplicationClient
from replication.server import ReplicationServer
from tests.harness import free_port
from tests.unit.test_replication_protocol import Applied, Writer, master, wait_for, worker  # noqa: F401 - fixture

sample = metrics.REGISTRY.get_sample_value


def test_master_exposes_sent_positions_connections_and_per_connection_queue_depth(master):  # noqa: F811
    server, writer, port = master
    metrics.register_replication_server(server)
    writer.write({"n": 1})
    writer.write({"n": 2})
    client, stream, _ = worker(port, writer, name="synchrotron1")
    client.start()
    try:
        wait_for(lambda: stream.position.get_current_token() == 2)
        assert sample("hs_replication_sent_position", {"stream": "things"}) == 2
        assert sample("hs_replication_connections") == 1
        wait_for(lambda: sample("hs_replication_queue_lines", {"connection": "synchrotron1"}) == 0)
    finally:
        client.stop()
    wait_for(lambda: sample("hs_replication_connections") == 0)
    assert sample("hs_replication_queue_lines", {"connection": "synchrotron1"}) is None


def test_a_consumer_that_does_not_read_shows_its_queue_growing():
    writer = Writer()
    server = ReplicationServer("test.local", [Stream("things", writer, writer.get_rows)], queue_lines=100_000)
    port = free_port()
    server.start([("127.0.0.1", port)])
    metrics.register_replication_server(server)
    try:
        sock = gevent.socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"NAME stuck\nREPLICATE\n")
        wait_for(lambda: any(c.subscribed for c in server.connections))
        (connection,) = server.connections
        big = {"pad": "x" * 4000}
        for _ in range(3000):  # ~12 MB: more than the socket buffers hold, fewer lines than the queue
            writer.write(big)
        gevent.sleep(0.1)
        depth = connection.conn.queue_depth()
        assert depth > 0
        assert sample("hs_replication_queue_lines", {"connection": "stuck"}) == depth
        assert sample("hs_replication_sent_position", {"stream": "things"}) == 3000
        sock.close()
    finally:
        server.stop()


def test_worker_exposes_lag_while_catching_up_and_none_once_caught_up(master):  # noqa: F811
    server, writer, port = master
    for n in range(1, 1201):
        writer.write({"n": n})
    gate = gevent.event.Event()

    def gated_rows(from_id, upto_id, limit):
        gate.wait()  # the worker's database read, held so the lag can be seen
        return writer.get_rows(from_id, upto_id, limit)

    stream = Stream("things", ReplicatedPosition("things", 0), gated_rows, Applied())
    client = ReplicationClient("test.local", "127.0.0.1", port, "w1", [stream])
    client.known.add("things")  # it followed this stream before and stopped at 0
    metrics.register_replication_client(client)
    assert sample("hs_replication_connected") == 0
    client.start()
    try:
        wait_for(lambda: client.master_positions.get("things") == 1200)
        assert sample("hs_replication_connected") == 1
        assert sample("hs_replication_applied_position", {"stream": "things"}) == 0
        assert sample("hs_replication_lag", {"stream": "things"}) == 1200
        assert sample("hs_replication_catch_up_pages_total") == 0
        gate.set()
        wait_for(lambda: stream.position.get_current_token() == 1200)
        assert sample("hs_replication_applied_position", {"stream": "things"}) == 1200
        assert sample("hs_replication_lag", {"stream": "things"}) == 0
        assert sample("hs_replication_catch_up_pages_total") == 3
    finally:
        client.stop()


def test_worker_reports_no_lag_for_a_stream_whose_master_position_is_unknown():
    writer = Writer()
    stream = Stream("things", ReplicatedPosition("things", 7), writer.get_rows, Applied())
    client = ReplicationClient("test.local", "127.0.0.1", free_port(), "w1", [stream])
    metrics.register_replication_client(client)
    assert sample("hs_replication_applied_position", {"stream": "things"}) == 7
    assert sample("hs_replication_lag", {"stream": "things"}) == 0
