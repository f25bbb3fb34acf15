"""Faults with real processes: a cut replication connection, the master restarting alone, and a
worker left 50,000 rows behind. In each case clients get every event exactly once afterwards,
and nothing has to be restarted by hand."""

import json
import time

import pytest

from tests.harness import create, new_user, q
from tests.workers.cluster import TcpProxy, WorkerProcess, master_with_replication, on, sync, wait_caught_up


@pytest.fixture(scope="module")
def cluster(db_dsn):
    master = master_with_replication(db_dsn).start()
    proxy = TcpProxy(master.replication_port)
    worker = WorkerProcess(master, "synchrotron", "sync1", worker_replication_port=proxy.port)
    try:
        worker.start()
        yield master, worker, proxy
    finally:
        worker.resume() if worker.proc and worker.proc.poll() is None else None
        worker.stop()
        proxy.close()
        master.stop()


def send(client, room_id, txn):
    resp = client.put(f"/rooms/{q(room_id)}/send/m.room.message/{txn}", {"msgtype": "m.text", "body": txn})
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"]


def timeline_until(client, room_id, since, count, timeout=20.0):
    """Syncs from `since` until `count` events of the room arrived; returns them and the token."""
    events = []
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        body = sync(client, since=since, timeout=2000)
        since = body["next_batch"]
        room = body["rooms"]["join"].get(room_id)
        if room is not None:
            events += [e["event_id"] for e in room["timeline"]["events"]]
    return events, since


def test_a_cut_replication_connection_reconnects_and_loses_nothing(cluster):
    master, worker, proxy = cluster
    alice = new_user(master, "alice")
    room_id = create(alice)
    wait_caught_up(master, worker)
    since = sync(on(worker, alice))["next_batch"]
    assert proxy.cut() == 1
    sent = [send(alice, room_id, f"cut{i}") for i in range(5)]
    events, since = timeline_until(on(worker, alice), room_id, since, 5)
    assert events == sent
    later = send(alice, room_id, "after")
    assert timeline_until(on(worker, alice), room_id, since, 1)[0] == [later]


def test_after_the_master_restarts_alone_sync_and_typing_keep_working(cluster):
    master, worker, proxy = cluster
    alice = new_user(master, "alice")
    room_id = create(alice)
    first = send(alice, room_id, "before")
    wait_caught_up(master, worker)
    since = sync(on(worker, alice))["next_batch"]
    master.stop_process()
    master.start()
    sent = [send(alice, room_id, f"restart{i}") for i in range(3)]
    events, since = timeline_until(on(worker, alice), room_id, since, 3)
    assert events == sent and first not in events
    # The classic failure: typing broken on workers after a master-only restart.
    assert alice.put(f"/rooms/{q(room_id)}/typing/{q(alice.user_id)}", {"typing": True, "timeout": 30000}
                     ).status_code == 200
    deadline = time.monotonic() + 10
    typers = None
    while typers is None and time.monotonic() < deadline:
        body = sync(on(worker, alice), since=since, timeout=2000)
        since = body["next_batch"]
        for event in body["rooms"]["join"].get(room_id, {}).get("ephemeral", {}).get("events", []):
            if event["type"] == "m.typing":
                typers = event["content"]["user_ids"]
    assert typers == [alice.user_id]


def test_a_worker_50000_rows_behind_catches_up_from_the_database(cluster):
    master, worker, proxy = cluster
    sender = new_user(master, "sender")
    recipients = [new_user(master, "rcpt") for _ in range(100)]
    watcher = recipients[0]
    wait_caught_up(master, worker)
    since = sync(on(worker, watcher))["next_batch"]
    pages_before = worker.metric("hs_replication_catch_up_pages_total")
    worker.pause()
    try:
        messages = {r.user_id: {"*": {"n": 0}} for r in recipients}
        for i in range(500):  # 500 requests x 100 recipients: 50,000 rows of the to_device stream
            body = json.loads(json.dumps({"messages": messages}).replace('"n": 0', f'"n": {i}'))
            resp = sender.put(f"/sendToDevice/org.example.flood/flood{i}", body)
            assert resp.status_code == 200, resp.text
        # Whatever the socket buffers held is lost with the connection: the gap is only in
        # PostgreSQL now.
        proxy.cut()
    finally:
        worker.resume()
    wait_caught_up(master, worker, timeout=120)
    # What reached the worker's socket buffer before the cut is applied as RDATA; the rest, read
    # from PostgreSQL in pages.
    assert worker.metric("hs_replication_catch_up_pages_total") > pages_before
    received = []
    while len(received) < 500:
        body = sync(on(worker, watcher), since=since)
        since = body["next_batch"]
        batch = [e["content"]["n"] for e in body["to_device"]["events"]]
        assert batch, "messages stopped before all 500 arrived"
        received += batch
    assert received == list(range(500))
    resp = sender.put("/sendToDevice/org.example.flood/last", {"messages": {watcher.user_id: {"*": {"n": 500}}}})
    assert resp.status_code == 200
    body = sync(on(worker, watcher), since=since, timeout=10000)
    assert [e["content"]["n"] for e in body["to_device"]["events"]] == [500]
