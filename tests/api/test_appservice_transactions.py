"""Transactions from the homeserver to application services (Application Service API:
PUT /_matrix/app/v1/transactions/{txnId}): which events go, in what order, retried until
accepted with the same ID, and nothing lost or duplicated across a master restart. The services
are real HTTP servers on loopback (tests/appservice_fixture.py)."""

import os
import signal
import tempfile
import uuid

import pytest

from tests.appservice_fixture import AppServiceServer
from tests.harness import Client, HomeserverProcess, create, new_user, q, query

SERVER = "test.local"


@pytest.fixture(scope="module")
def services():
    bridge = AppServiceServer(hs_token="hs-bridge").start()
    ephemeral = AppServiceServer(hs_token="hs-eph").start()
    try:
        yield bridge, ephemeral
    finally:
        bridge.stop()
        ephemeral.stop()


@pytest.fixture(scope="module")
def server(db_dsn, services):
    bridge, ephemeral = services
    directory = tempfile.mkdtemp(prefix="as-reg-")
    paths = [
        bridge.write_registration(directory, id="bridge", as_token="as-bridge", sender_localpart="bridgebot",
                                  namespaces={"users": [{"regex": f"@bridge_.*:{SERVER}", "exclusive": False}],
                                              "aliases": [{"regex": f"#bridged_.*:{SERVER}", "exclusive": False}]}),
        ephemeral.write_registration(directory, id="eph", as_token="as-eph", sender_localpart="ephbot",
                                     namespaces={"users": [{"regex": f"@eph_.*:{SERVER}", "exclusive": False}]},
                                     receive_ephemeral=True),
        # A service without a URL wants no traffic (and gets none).
        bridge.write_registration(directory, id="silent", as_token="as-silent", sender_localpart="silentbot",
                                  url=None, filename="silent.yaml",
                                  namespaces={"users": [{"regex": f"@bridge_.*:{SERVER}", "exclusive": False}]}),
    ]
    hs = HomeserverProcess(db_dsn, app_service_config_files=paths, presence={"enabled": True})
    try:
        yield hs.start()
    finally:
        hs.stop()


def user(server, prefix: str) -> Client:
    return Client(server).register(f"{prefix}{uuid.uuid4().hex[:10]}")


def send(client: Client, room_id: str, body: str) -> str:
    resp = client.put(f"/rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}", {"msgtype": "m.text",
                                                                                       "body": body})
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"]


def room_events(service: AppServiceServer, room_id: str) -> list:
    return [e for e in service.events() if e.get("room_id") == room_id]


def wait_for_event(service: AppServiceServer, event_id: str) -> None:
    # Generous: a retry after a long outage may come a full backoff (60 s) later on a loaded machine.
    service.wait_for(lambda: any(e["event_id"] == event_id for e in service.events()), timeout=150)


def attempts_carrying(service: AppServiceServer, event_ids: list) -> list:
    """Every transaction request (accepted or not) carrying any of these events."""
    return [r for r in service.requests_to(r"^/_matrix/app/v1/transactions/")
            if any(e["event_id"] in event_ids for e in r.body["events"])]


def at_least(n: int, items: list) -> list | None:
    return items if len(items) >= n else None


def test_events_of_namespace_users_reach_the_service_in_order_with_the_hs_token(server, services):
    bridge, _ = services
    puppet = user(server, "bridge_")
    room_id = create(puppet)
    sent = [send(puppet, room_id, f"message {i}") for i in range(5)]
    wait_for_event(bridge, sent[-1])
    events = room_events(bridge, room_id)
    ids = [e["event_id"] for e in events]
    # The room's creation events first (the sender is in the namespace), then the messages, once each.
    assert ids[-5:] == sent and len(ids) == len(set(ids))
    assert [e["type"] for e in events[:1]] == ["m.room.create"]
    message = events[-1]
    assert message["sender"] == puppet.user_id
    assert message["content"] == {"msgtype": "m.text", "body": "message 4"}
    assert isinstance(message["origin_server_ts"], int)
    transactions = bridge.requests_to(r"^/_matrix/app/v1/transactions/")
    assert transactions and all(r.method == "PUT" and r.authorized and not r.token_in_query for r in transactions)


def test_events_outside_every_namespace_are_not_sent(server, services):
    bridge, _ = services
    alice = new_user(server, "alice")
    private_room = create(alice)
    send(alice, private_room, "not for bridges")
    puppet = user(server, "bridge_")
    marker = send(puppet, create(puppet), "after alice's message")
    wait_for_event(bridge, marker)
    assert room_events(bridge, private_room) == []


def test_a_namespace_member_in_a_room_makes_every_room_event_go_until_it_leaves(server, services):
    bridge, _ = services
    alice = new_user(server, "alice")
    puppet = user(server, "bridge_")
    room_id = create(alice)
    before = send(alice, room_id, "before the puppet")
    # Interest is decided on the room's members when the event is read, as Synapse: the sender
    # must have read past `before` before the puppet joins.
    wait_for_event(bridge, send(puppet, create(puppet), "marker"))
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": puppet.user_id}).status_code == 200
    assert puppet.post(f"/join/{q(room_id)}", {}).status_code == 200
    while_joined = send(alice, room_id, "the puppet is here")
    wait_for_event(bridge, while_joined)
    assert puppet.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    after = send(alice, room_id, "the puppet left")
    marker = send(puppet, create(puppet), "marker")
    wait_for_event(bridge, marker)
    ids = [e["event_id"] for e in room_events(bridge, room_id)]
    assert while_joined in ids
    assert before not in ids and after not in ids
    members = [e for e in room_events(bridge, room_id) if e["type"] == "m.room.member"]
    assert [e["content"]["membership"] for e in members] == ["invite", "join", "leave"]


def test_events_of_a_room_with_an_alias_in_the_namespace_are_sent(server, services):
    bridge, _ = services
    alice = new_user(server, "alice")
    room_id = create(alice, room_alias_name=f"bridged_{uuid.uuid4().hex[:8]}")
    message = send(alice, room_id, "in an aliased room")
    wait_for_event(bridge, message)
    assert [e["event_id"] for e in room_events(bridge, room_id)][-1] == message


def test_a_failing_service_gets_every_transaction_once_with_the_same_txn_id(server, services):
    bridge, _ = services
    puppet = user(server, "bridge_")
    room_id = create(puppet)
    marker = send(puppet, room_id, "settled")
    wait_for_event(bridge, marker)
    bridge.respond_with(r"^/transactions/", 500, {"errcode": "M_UNKNOWN"})
    try:
        sent = [send(puppet, room_id, f"while down {i}") for i in range(3)]
        failed = bridge.wait_for(lambda: at_least(2, attempts_carrying(bridge, sent)), timeout=60)
    finally:
        bridge.clear_responses()
    wait_for_event(bridge, sent[-1])
    # The retry carried the same ID (and body) as the attempts that failed.
    assert failed[0].path == failed[1].path
    retried_id = failed[0].path.rsplit("/", 1)[1]
    accepted = dict(bridge.transactions)
    assert accepted[retried_id]["events"] == failed[0].body["events"]
    ids = [e["event_id"] for e in room_events(bridge, room_id)]
    assert ids[ids.index(marker):] == [marker, *sent]


def test_a_backlog_goes_in_transactions_of_at_most_100_events_in_order(server, services):
    bridge, _ = services
    puppet = user(server, "bridge_")
    room_id = create(puppet)
    marker = send(puppet, room_id, "settled")
    wait_for_event(bridge, marker)
    bridge.respond_with(r"^/transactions/", 503, {"errcode": "M_UNKNOWN"})
    try:
        sent = [send(puppet, room_id, f"backlog {i}") for i in range(130)]
    finally:
        bridge.clear_responses()
    wait_for_event(bridge, sent[-1])
    ids = [e["event_id"] for e in room_events(bridge, room_id)]
    assert ids[ids.index(marker):] == [marker, *sent]
    sizes = [len(body["events"]) for _, body in bridge.transactions
             if any(e["event_id"] in sent for e in body["events"])]
    assert max(sizes) == 100


def test_typing_and_receipts_go_to_a_service_with_receive_ephemeral(server, services):
    bridge, ephemeral = services
    puppet = user(server, "eph_")
    room_id = create(puppet)
    event_id = send(puppet, room_id, "read me")
    assert puppet.put(f"/rooms/{q(room_id)}/typing/{q(puppet.user_id)}", {"typing": True, "timeout": 30000}
                      ).status_code == 200
    assert puppet.post(f"/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {}).status_code == 200

    def of_room(kind):
        return [e for e in ephemeral.ephemeral() if e["type"] == kind and e.get("room_id") == room_id]
    typing = ephemeral.wait_for(lambda: of_room("m.typing"), timeout=60)
    assert typing[0]["content"] == {"user_ids": [puppet.user_id]}
    receipts = ephemeral.wait_for(lambda: of_room("m.receipt"), timeout=60)
    assert receipts[-1]["content"][event_id]["m.read"][puppet.user_id]["ts"] > 0
    # The spec's key and MSC2409's carry the same list.
    body = next(b for _, b in ephemeral.transactions if b.get("ephemeral"))
    assert body["de.sorunome.msc2409.ephemeral"] == body["ephemeral"]
    # A service without receive_ephemeral gets no ephemeral events.
    assert bridge.ephemeral() == []


def test_presence_of_namespace_users_goes_to_a_service_with_receive_ephemeral(server, services):
    _, ephemeral = services
    puppet = user(server, "eph_")
    assert puppet.put(f"/presence/{q(puppet.user_id)}/status", {"presence": "online", "status_msg": "bridging"}
                      ).status_code == 200
    found = ephemeral.wait_for(lambda: [e for e in ephemeral.ephemeral()
                                        if e["type"] == "m.presence" and e["sender"] == puppet.user_id], timeout=60)
    assert found[-1]["content"]["presence"] == "online"
    assert found[-1]["content"]["status_msg"] == "bridging"


def test_a_service_without_a_url_gets_nothing(server, db_dsn):
    rows = query(db_dsn, "SELECT service_id FROM appservice_stream_positions ORDER BY service_id")
    assert [r[0] for r in rows] == ["bridge", "eph"]


def test_a_master_killed_mid_backlog_loses_nothing_and_sends_nothing_twice(server, services):
    # Last in the module: it restarts the module's master.
    bridge, _ = services
    puppet = user(server, "bridge_")
    room_id = create(puppet)
    marker = send(puppet, room_id, "settled")
    wait_for_event(bridge, marker)
    bridge.respond_with(r"^/transactions/", 503, {"errcode": "M_UNKNOWN"})
    try:
        before = [send(puppet, room_id, f"before the crash {i}") for i in range(5)]
        # One transaction in flight: the first attempt carries the first events, the rest wait unsent.
        bridge.wait_for(lambda: attempts_carrying(bridge, before), timeout=60)
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        server.start()
        after = [send(puppet, room_id, f"after the restart {i}") for i in range(3)]
    finally:
        bridge.clear_responses()
    wait_for_event(bridge, after[-1])
    ids = [e["event_id"] for e in room_events(bridge, room_id)]
    assert ids[ids.index(marker):] == [marker, *before, *after]
