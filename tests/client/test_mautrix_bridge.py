"""A bridge built with mautrix-python against the homeserver: it registers namespace users, sets
their profiles, creates and joins rooms and sends as them; it receives the transactions for a
room it is in; it answers an alias query by creating the room, so a user's join by that alias
succeeds; it pings itself through the homeserver. Then the same traffic through the appservice
worker, killed and restarted: every event reaches the bridge once, in order."""

import time
import uuid

import pytest
from mautrix.api import Method, Path
from mautrix.types import RoomCreatePreset

from tests.client.mautrix_bridge import MautrixBridge
from tests.harness import Client, HomeserverProcess, new_user, q
from tests.workers.cluster import WorkerProcess, master_with_replication

SERVER = "test.local"


def wait_until(done, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (result := done()):
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)
    return result


def send(client: Client, room_id: str, body: str) -> str:
    resp = client.put(f"/rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}", {"msgtype": "m.text",
                                                                                       "body": body})
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"]


@pytest.fixture(scope="module")
def bridged(db_dsn):
    server = HomeserverProcess(db_dsn)
    bridge = MautrixBridge(server.base_url, SERVER)  # the bridge needs the URL, the server its registration
    server.config["app_service_config_files"] = [bridge.registration()]
    try:
        server.start()
        bridge.start()
        yield server, bridge
    finally:
        bridge.stop()
        server.stop()


def test_bridge_registers_ghosts_creates_rooms_and_speaks_as_them(bridged):
    server, bridge = bridged
    alice = new_user(server, "human")
    ghost = bridge.ghost("remote_bob")
    bridge.run(ghost.set_displayname("Bob (bridged)"))
    avatar = f"mxc://{SERVER}/{'A' * 24}"
    bridge.run(ghost.set_avatar_url(avatar))
    room_id = bridge.run(ghost.create_room(name="Bridged chat", preset=RoomCreatePreset.PUBLIC,
                                           invitees=[alice.user_id]))
    assert alice.post(f"/join/{q(room_id)}", {}).status_code == 200
    event_id = bridge.run(ghost.send_text(room_id, "hello from the other network"))
    messages = alice.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 5}).json()["chunk"]
    sent = next(e for e in messages if e["event_id"] == event_id)
    assert (sent["sender"], sent["content"]["body"]) == (ghost.mxid, "hello from the other network")
    assert alice.get(f"/profile/{q(ghost.mxid)}").json() == {"displayname": "Bob (bridged)", "avatar_url": avatar}
    # Its users' namespace is exclusive: nobody else may register there.
    taken = Client(server).post("/register", {"username": "bridge_someone", "password": "pw-pw-pw-pw",
                                              "auth": {"type": "m.login.dummy"}})
    assert (taken.status_code, taken.json()["errcode"]) == (400, "M_EXCLUSIVE")


def test_bridge_receives_the_events_of_a_room_its_ghost_is_in(bridged):
    server, bridge = bridged
    alice = new_user(server, "human")
    ghost = bridge.ghost(f"carol{uuid.uuid4().hex[:6]}")
    room_id = Client(server, alice.access_token).post("/createRoom", {"preset": "public_chat"}).json()["room_id"]
    bridge.run(ghost.join_room(room_id))
    said = [send(alice, room_id, f"message {i} for the remote side") for i in range(3)]
    wait_until(lambda: set(said) <= set(bridge.event_ids(room_id)), "alice's messages reached the bridge")
    received = [e for e in bridge.events if e["event_id"] in said]
    assert [e["content"]["body"] for e in received] == [f"message {i} for the remote side" for i in range(3)]
    assert all(e["sender"] == alice.user_id for e in received)


def test_join_by_an_unknown_alias_in_the_namespace_lets_the_bridge_create_the_room(bridged):
    server, bridge = bridged
    alice = new_user(server, "human")
    alias = f"#bridge_portal{uuid.uuid4().hex[:6]}:{SERVER}"
    resp = alice.post(f"/join/{q(alias)}", {})
    assert resp.status_code == 200, resp.text
    assert alias in bridge.alias_queries
    resolved = alice.get(f"/directory/room/{q(alias)}").json()
    assert resolved["room_id"] == resp.json()["room_id"]
    # An alias outside the namespace is not asked about.
    assert alice.post(f"/join/{q('#elsewhere_x:' + SERVER)}", {}).status_code == 404
    assert f"#elsewhere_x:{SERVER}" not in bridge.alias_queries


def test_bridge_pings_itself_through_the_homeserver(bridged):
    _, bridge = bridged
    # mautrix's ping_self() turns a duration of 0 ms into -1 (`or -1`), and loopback is that fast:
    # read the homeserver's answer through mautrix's own client instead.
    intent = bridge.appservice.intent
    answer = bridge.run(intent.api.request(Method.POST, Path.v1.appservice[bridge.id].ping,
                                           content={"transaction_id": "mautrix-ping-1"}))
    assert isinstance(answer["duration_ms"], int) and answer["duration_ms"] >= 0


def test_through_the_appservice_worker_killed_and_restarted_every_event_arrives_once(db_dsn):
    master = master_with_replication(db_dsn, notify_appservices=False)
    bridge = MautrixBridge(master.base_url, SERVER, as_token="mautrix-as-w", hs_token="mautrix-hs-w",
                           service_id="mautrix-worker")
    master.config["app_service_config_files"] = [bridge.registration()]
    worker = WorkerProcess(master, "appservice", "as1")
    try:
        master.start()
        worker.start()
        bridge.start()
        alice = new_user(master, "human")
        ghost = bridge.ghost(f"dave{uuid.uuid4().hex[:6]}")
        room_id = master_client_room(alice)
        bridge.run(ghost.join_room(room_id))
        before = [send(alice, room_id, f"before {i}") for i in range(3)]
        wait_until(lambda: set(before) <= set(bridge.event_ids(room_id)), "the worker's first transactions")
        worker.kill()
        while_down = [send(alice, room_id, f"while the worker is down {i}") for i in range(3)]
        worker.start()
        after = send(alice, room_id, "after the restart")
        wait_until(lambda: after in bridge.event_ids(room_id), "the message after the restart")
        time.sleep(1)
        messages = [e for e in bridge.event_ids(room_id) if e in {*before, *while_down, after}]
        assert messages == [*before, *while_down, after]
    finally:
        bridge.stop()
        worker.stop()
        master.stop()


def master_client_room(client: Client) -> str:
    resp = client.post("/createRoom", {"preset": "public_chat"})
    assert resp.status_code == 200, resp.text
    return resp.json()["room_id"]
