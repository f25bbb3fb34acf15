"""A master and real worker processes over real replication: what is written on the master
reaches clients of the workers, and the workers survive what goes wrong."""

import time

import pytest
import requests

from tests.harness import Client, create, new_user, q
from tests.workers.cluster import WorkerProcess, master_with_replication, on, park_sync, sync, wait_caught_up


@pytest.fixture(scope="module")
def cluster(db_dsn):
    master = master_with_replication(db_dsn).start()
    workers = []
    try:
        workers.append(WorkerProcess(master, "synchrotron", "sync1").start())
        workers.append(WorkerProcess(master, "client_reader", "reader1").start())
        yield master, workers[0], workers[1]
    finally:
        for worker in workers:
            worker.stop()
        master.stop()


def timeline(body, room_id):
    room = body["rooms"]["join"].get(room_id)
    return [] if room is None else [e["event_id"] for e in room["timeline"]["events"]]


def test_a_message_sent_on_the_master_wakes_a_sync_parked_on_the_synchrotron(cluster):
    master, synchrotron, _ = cluster
    alice = new_user(master, "alice")
    room_id = create(alice)
    wait_caught_up(master, synchrotron)
    alice_sync = on(synchrotron, alice)
    thread, result = park_sync(alice_sync, sync(alice_sync)["next_batch"])
    sent = alice.put(f"/rooms/{q(room_id)}/send/m.room.message/t1", {"msgtype": "m.text", "body": "hi"})
    sent_at = time.monotonic()
    thread.join(30)
    assert timeline(result["body"], room_id) == [sent.json()["event_id"]]
    assert result["at"] - sent_at < 2.0


def test_typing_and_receipts_on_the_master_reach_the_synchrotron(cluster):
    master, synchrotron, _ = cluster
    alice = new_user(master, "alice")
    room_id = create(alice)
    event_id = alice.put(f"/rooms/{q(room_id)}/send/m.room.message/t1", {"msgtype": "m.text", "body": "x"}).json()[
        "event_id"]
    since = sync(on(synchrotron, alice))["next_batch"]
    assert alice.put(f"/rooms/{q(room_id)}/typing/{q(alice.user_id)}", {"typing": True, "timeout": 30000}
                     ).status_code == 200
    assert alice.post(f"/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {}).status_code == 200
    deadline = time.monotonic() + 10
    seen = set()
    while time.monotonic() < deadline and seen != {"m.typing", "m.receipt"}:
        body = sync(on(synchrotron, alice), since=since, timeout=5000)
        since = body["next_batch"]
        room = body["rooms"]["join"].get(room_id, {})
        seen |= {e["type"] for e in room.get("ephemeral", {}).get("events", [])}
    assert seen == {"m.typing", "m.receipt"}


def test_logout_on_the_master_makes_the_token_fail_on_the_workers_at_once(cluster):
    master, synchrotron, reader = cluster
    alice = new_user(master, "alice")
    assert on(synchrotron, alice).get("/sync").status_code == 200
    assert alice.post("/logout", {}).status_code == 200
    for worker in (synchrotron, reader):
        resp = on(worker, alice).get("/sync" if worker is synchrotron else "/publicRooms")
        assert resp.status_code == 401 and resp.json()["errcode"] == "M_UNKNOWN_TOKEN"


def test_a_worker_answers_only_the_paths_its_type_owns(cluster):
    master, synchrotron, reader = cluster
    alice = new_user(master, "alice")
    room_id = create(alice)
    resp = on(reader, alice).put(f"/rooms/{q(room_id)}/send/m.room.message/t2", {"msgtype": "m.text", "body": "x"})
    assert resp.status_code == 404 and resp.json()["errcode"] == "M_UNRECOGNIZED"
    assert on(synchrotron, alice).get("/publicRooms").status_code == 404
    assert on(reader, alice).get(f"/rooms/{q(room_id)}/messages", params={"dir": "b"}).status_code == 200


def test_a_filter_uploaded_on_a_client_reader_is_written_by_the_master(cluster):
    master, _, reader = cluster
    alice = new_user(master, "alice")
    resp = on(reader, alice).post(f"/user/{q(alice.user_id)}/filter", {"room": {"timeline": {"limit": 3}}})
    assert resp.status_code == 200, resp.text
    filter_id = resp.json()["filter_id"]
    assert alice.get(f"/user/{q(alice.user_id)}/filter/{filter_id}").json() == {"room": {"timeline": {"limit": 3}}}


def test_syncing_on_the_synchrotron_marks_the_user_online_on_the_master(cluster):
    master, synchrotron, _ = cluster
    alice = new_user(master, "alice")
    sync(on(synchrotron, alice), set_presence="online")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status = alice.get(f"/presence/{q(alice.user_id)}/status").json()
        if status["presence"] == "online":
            break
        time.sleep(0.1)
    assert status["presence"] == "online"


def test_a_killed_synchrotron_comes_back_and_delivers_every_event_once(cluster):
    master, synchrotron, _ = cluster
    alice = new_user(master, "alice")
    room_id = create(alice)
    wait_caught_up(master, synchrotron)
    since = sync(on(synchrotron, alice))["next_batch"]
    before = [alice.put(f"/rooms/{q(room_id)}/send/m.room.message/a{i}", {"msgtype": "m.text", "body": str(i)}
                        ).json()["event_id"] for i in range(3)]
    synchrotron.kill()
    during = [alice.put(f"/rooms/{q(room_id)}/send/m.room.message/b{i}", {"msgtype": "m.text", "body": str(i)}
                        ).json()["event_id"] for i in range(3)]
    synchrotron.start()
    body = sync(on(synchrotron, alice), since=since)
    assert timeline(body, room_id) == before + during
    after = alice.put(f"/rooms/{q(room_id)}/send/m.room.message/c", {"msgtype": "m.text", "body": "c"}).json()[
        "event_id"]
    body = sync(on(synchrotron, alice), since=body["next_batch"], timeout=10000)
    assert timeline(body, room_id) == [after]


def test_the_master_status_lists_positions_and_workers_report_theirs(cluster):
    master, synchrotron, _ = cluster
    master_status = requests.get(master.url("/_hs/status"), timeout=5).json()
    assert master_status["app"] == "master" and master_status["streams"]["events"] > 0
    worker_status = synchrotron.status()
    assert worker_status["app"] == "synchrotron" and worker_status["name"] == "sync1"
    assert set(worker_status["streams"]) == set(master_status["streams"])


def test_a_push_rule_changed_on_the_master_reaches_the_synchrotrons_cached_rules(cluster):
    master, synchrotron, _ = cluster
    alice = new_user(master, "alice")
    wait_caught_up(master, synchrotron)
    since = sync(on(synchrotron, alice))["next_batch"]  # reads (and caches) alice's rules there
    resp = alice.put("/pushrules/global/content/cheese", {"pattern": "cheese", "actions": ["notify"]})
    assert resp.status_code == 200, resp.text
    body = sync(on(synchrotron, alice), since=since, timeout=10000)
    rules = next(e for e in body["account_data"]["events"] if e["type"] == "m.push_rules")
    assert "cheese" in [r["rule_id"] for r in rules["content"]["global"]["content"]]


def test_a_room_joined_on_the_master_shows_in_the_synchrotrons_next_sync(cluster):
    # The synchrotron reuses a user's membership rows while the events stream shows no change.
    master, synchrotron, _ = cluster
    alice, bob = new_user(master, "alice"), new_user(master, "bob")
    room_id = create(alice, preset="public_chat")
    wait_caught_up(master, synchrotron)
    since = sync(on(synchrotron, bob))["next_batch"]
    since = sync(on(synchrotron, bob), since=since)["next_batch"]
    assert bob.post(f"/join/{q(room_id)}", {}).status_code == 200
    body = sync(on(synchrotron, bob), since=since, timeout=10000)
    assert room_id in body["rooms"]["join"]


def test_a_login_on_the_master_wakes_a_room_mates_sync_parked_on_the_synchrotron(cluster):
    # The device_lists stream: a new device is a device list change for everyone in a room with it.
    master, synchrotron, _ = cluster
    alice, bob = new_user(master, "dlw"), new_user(master, "dlw")
    room_id = create(alice, preset="public_chat")
    assert bob.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    wait_caught_up(master, synchrotron)
    bob_sync = on(synchrotron, bob)
    thread, result = park_sync(bob_sync, sync(bob_sync)["next_batch"])
    Client(master).login(alice.user_id.split(":")[0][1:])
    logged_in_at = time.monotonic()
    thread.join(30)
    assert result["body"]["device_lists"] == {"changed": [alice.user_id], "left": []}
    assert result["at"] - logged_in_at < 2.0
    wait_caught_up(master, synchrotron)
    assert synchrotron.status()["streams"]["device_lists"] > 0


def test_a_joiner_appears_in_device_lists_changed_of_a_sync_on_the_synchrotron(cluster):
    # Where no member event came into the user's rooms the synchrotron skips the membership
    # query (MembershipChanges from the events stream); a join must still be reported.
    master, synchrotron, _ = cluster
    alice, bob, carol = new_user(master, "dlj"), new_user(master, "dlj"), new_user(master, "dlj")
    room_id = create(alice, preset="public_chat")
    assert bob.post(f"/join/{q(room_id)}", {}).status_code == 200
    wait_caught_up(master, synchrotron)
    bob_sync = on(synchrotron, bob)
    since = sync(bob_sync)["next_batch"]
    alice.put(f"/rooms/{q(room_id)}/send/m.room.message/m1", {"msgtype": "m.text", "body": "no join here"})
    body = sync(bob_sync, since=since, timeout=10000)
    assert timeline(body, room_id) and body["device_lists"] == {"changed": [], "left": []}
    assert carol.post(f"/join/{q(room_id)}", {}).status_code == 200
    body = sync(bob_sync, since=body["next_batch"], timeout=10000)
    assert body["device_lists"]["changed"] == [carol.user_id]
    assert carol.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    body = sync(bob_sync, since=body["next_batch"], timeout=10000)
    assert body["device_lists"]["left"] == [carol.user_id]
