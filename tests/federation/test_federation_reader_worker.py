"""The federation_reader worker (issue 10 item 7): a real master and a real worker on one
database, a peer played by the test sending signed requests to the worker. It verifies the
signature itself (fetching the peer's key over TLS), serves reads from PostgreSQL, and the writes
of a request (a transaction) are made by the master."""

import types
import uuid

import pytest

from tests.federation.fake_peer import FakePeer
from tests.federation_fixture import FederatingHomeserver, SyncWatcher, create_room, ok, register, send_text
from tests.harness import assert_error, free_port, q
from tests.workers.cluster import WorkerProcess

V1 = "/_matrix/federation/v1"


@pytest.fixture(scope="module")
def deployment(db_dsn, test_ca):
    master = FederatingHomeserver(db_dsn, test_ca)
    master.replication_port, master.replication_http_port = free_port(), free_port()
    master.config["listeners"] += [
        {"type": "replication", "port": master.replication_port, "bind_addresses": ["127.0.0.1"]},
        {"type": "http", "port": master.replication_http_port, "bind_addresses": ["127.0.0.1"],
         "resources": [{"names": ["replication"]}]},
    ]
    worker = WorkerProcess(master, "federation_reader", "fed1")
    peer = FakePeer(test_ca)
    try:
        master.start()
        worker.start()
        # The peer addresses the master's server name, over the worker's listener (as HAProxy would).
        via_worker = types.SimpleNamespace(server_name=master.server_name, fed_url=worker.base_url)
        yield master, worker, via_worker, peer
    finally:
        peer.stop()
        worker.stop()
        master.stop()


@pytest.fixture(scope="module")
def room(deployment):
    master, _, _, peer = deployment
    local = register(master, "o")
    room_id = create_room(local, preset="public_chat")
    localpart = "p" + uuid.uuid4().hex[:8]
    version, join, _ = peer.join(master, room_id, localpart)
    SyncWatcher(local).wait_for_membership(room_id, peer.user(localpart), "join")
    return local, room_id, version, peer.user(localpart), join


def test_the_worker_serves_room_reads(deployment, room):
    _, _, via_worker, peer = deployment
    local, room_id, version, _, _ = room
    event_id = send_text(local, room_id, "read on the worker")
    [pdu] = ok(peer.request(via_worker, "GET", f"{V1}/event/{q(event_id)}"))["pdus"]
    assert peer.event_id(version, pdu) == event_id and pdu["content"]["body"] == "read on the worker"
    state = ok(peer.request(via_worker, "GET", f"{V1}/state_ids/{q(room_id)}", params={"event_id": event_id}))
    assert {e["event_id"] for e in ok(local.get(f"/rooms/{q(room_id)}/state"))} == set(state["pdu_ids"])
    back = ok(peer.request(via_worker, "GET", f"{V1}/backfill/{q(room_id)}", params={"v": event_id, "limit": 2}))
    assert peer.event_id(version, back["pdus"][0]) == event_id


def test_the_worker_refuses_what_the_master_would(deployment, room):
    _, _, via_worker, peer = deployment
    _, room_id, _, _, _ = room
    assert_error(peer.request(via_worker, "GET", f"{V1}/event/%24nosuchevent"), 404, "M_NOT_FOUND")
    other = register(deployment[0], "x")
    private = create_room(other, preset="private_chat")
    assert_error(peer.request(via_worker, "GET", f"{V1}/state_ids/{q(private)}", params={"event_id": "$x"}),
                 403, "M_FORBIDDEN")


def test_the_workers_queries(deployment):
    master, _, via_worker, peer = deployment
    user = register(master, "prof")
    ok(user.put(f"/profile/{q(user.user_id)}/displayname", {"displayname": "On the worker"}))
    answer = ok(peer.request(via_worker, "GET", f"{V1}/query/profile", params={"user_id": user.user_id}))
    assert answer == {"displayname": "On the worker"}


def test_a_transaction_sent_to_the_worker_is_applied_by_the_master(deployment, room):
    _, _, via_worker, peer = deployment
    local, room_id, version, user, join = room
    join_id = peer.event_id(version, join)
    auth = peer.auth_for_message(local, room_id, version, user)
    message = peer.message(version, room_id, user, [join_id], auth, join["depth"] + 1, "sent via the worker")
    answer = ok(peer.send(via_worker, uuid.uuid4().hex, [message]))
    assert answer["pdus"] == {peer.event_id(version, message): {}}
    SyncWatcher(local).wait_for_message(room_id, "sent via the worker")
