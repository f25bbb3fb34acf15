"""Receipts and read markers (client-server API "Receipts", "Fully read markers"): POST
/rooms/{roomId}/receipt/{receiptType}/{eventId} and /rooms/{roomId}/read_markers, and the
m.receipt event in /sync's rooms.join[room].ephemeral."""

import threading
import time

import pytest

from tests.api.test_response_schemas import assert_matches_spec
from tests.api.test_sync import (
    SYNC_PATH,
    assert_error,
    create,
    new_user,
    post,
    q,
    send,
    set_state,
    sync,
)

RECEIPT = "/_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}"
READ_MARKERS = "/_matrix/client/v3/rooms/{roomId}/read_markers"


def me(client) -> str:
    return client.get("/account/whoami").json()["user_id"]


def receipt(client, room_id, receipt_type, event_id, body=None):
    return client.post(f"/rooms/{q(room_id)}/receipt/{q(receipt_type)}/{q(event_id)}",
                       {} if body is None else body)


def receipt_content(body, room_id) -> dict:
    """The merged content of the room's m.receipt events ({} if none)."""
    room = body["rooms"]["join"].get(room_id)
    events = [] if room is None else [e for e in room["ephemeral"]["events"] if e["type"] == "m.receipt"]
    assert len(events) <= 1
    return events[0]["content"] if events else {}


def shared_room(homeserver, **create_body):
    alice, bob = new_user(homeserver, "rc"), new_user(homeserver, "rc")
    room_id = create(alice, preset="public_chat", **create_body)
    post(bob, f"/join/{q(room_id)}")
    return alice, bob, room_id


@pytest.mark.parametrize("room_version", ["1", "11", "12"])
def test_read_receipt_shows_in_other_members_incremental_sync(homeserver, room_version):
    alice, bob, room_id = shared_room(homeserver, room_version=room_version)
    event_id = send(alice, room_id)
    since = sync(alice)["next_batch"]
    before = int(time.time() * 1000)
    resp = receipt(bob, room_id, "m.read", event_id)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert_matches_spec(resp, RECEIPT)
    resp = alice.get("/sync", params={"since": since, "timeout": 0})
    assert_matches_spec(resp, SYNC_PATH)
    content = receipt_content(resp.json(), room_id)
    assert list(content) == [event_id]
    assert list(content[event_id]) == ["m.read"]
    data = content[event_id]["m.read"][me(bob)]
    assert before - 1000 <= data["ts"] <= int(time.time() * 1000) + 1000
    assert "thread_id" not in data
    # Nothing new since: no receipt again.
    assert receipt_content(sync(alice, since=resp.json()["next_batch"], timeout=0), room_id) == {}


def test_initial_sync_holds_the_current_receipts(homeserver):
    alice, bob, room_id = shared_room(homeserver)
    first, second = send(alice, room_id), send(alice, room_id)
    assert receipt(alice, room_id, "m.read", first).status_code == 200
    assert receipt(bob, room_id, "m.read", second).status_code == 200
    content = receipt_content(sync(bob), room_id)
    assert set(content) == {first, second}
    assert list(content[first]["m.read"]) == [me(alice)]
    assert list(content[second]["m.read"]) == [me(bob)]


def test_private_read_receipt_is_shown_only_to_its_owner(homeserver):
    alice, bob, room_id = shared_room(homeserver)
    event_id = send(alice, room_id)
    assert receipt(bob, room_id, "m.read.private", event_id).status_code == 200
    assert list(receipt_content(sync(bob), room_id)[event_id]["m.read.private"]) == [me(bob)]
    assert receipt_content(sync(alice), room_id) == {}


def test_receipt_for_an_older_event_is_ignored(homeserver):
    alice, bob, room_id = shared_room(homeserver)
    first, second = send(alice, room_id), send(alice, room_id)
    assert receipt(bob, room_id, "m.read", second).status_code == 200
    since = sync(alice)["next_batch"]
    assert receipt(bob, room_id, "m.read", first).status_code == 200
    assert receipt_content(sync(alice, since=since, timeout=0), room_id) == {}
    assert set(receipt_content(sync(alice), room_id)) == {second}


def test_threaded_receipt_carries_its_thread_id_separately_from_the_unthreaded_one(homeserver):
    alice, bob, room_id = shared_room(homeserver)
    first, second = send(alice, room_id), send(alice, room_id)
    assert receipt(bob, room_id, "m.read", second).status_code == 200
    assert receipt(bob, room_id, "m.read", first, {"thread_id": "main"}).status_code == 200
    content = receipt_content(sync(alice), room_id)
    assert content[first]["m.read"][me(bob)]["thread_id"] == "main"
    assert "thread_id" not in content[second]["m.read"][me(bob)]


def test_invalid_thread_id_is_refused(homeserver):
    alice, _, room_id = shared_room(homeserver)
    event_id = send(alice, room_id)
    assert_error(receipt(alice, room_id, "m.read", event_id, {"thread_id": ""}), 400, "M_INVALID_PARAM")
    assert_error(receipt(alice, room_id, "m.read", event_id, {"thread_id": 5}), 400, "M_INVALID_PARAM")
    assert_error(receipt(alice, room_id, "m.fully_read", event_id, {"thread_id": "main"}), 400, "M_INVALID_PARAM")


def test_unknown_receipt_type_is_refused(homeserver):
    alice, _, room_id = shared_room(homeserver)
    assert_error(receipt(alice, room_id, "m.seen", send(alice, room_id)), 400, "M_INVALID_PARAM")


def test_receipt_in_a_room_one_is_not_joined_to_is_forbidden(homeserver):
    alice, bob = new_user(homeserver, "rc"), new_user(homeserver, "rc")
    room_id = create(alice, preset="public_chat")
    assert_error(receipt(bob, room_id, "m.read", send(alice, room_id)), 403, "M_FORBIDDEN")


def test_receipt_for_an_event_of_another_room_is_not_found(homeserver):
    alice, _, room_id = shared_room(homeserver)
    other = send(alice, create(alice))
    assert_error(receipt(alice, room_id, "m.read", other), 404, "M_NOT_FOUND")
    assert_error(receipt(alice, room_id, "m.read", "$nosuchevent"), 404, "M_NOT_FOUND")


def test_receipt_for_an_event_hidden_by_history_visibility_is_not_found(homeserver):
    alice, bob = new_user(homeserver, "rc"), new_user(homeserver, "rc")
    room_id = create(alice, preset="public_chat")
    set_state(alice, room_id, "m.room.history_visibility", {"history_visibility": "joined"})
    hidden = send(alice, room_id)
    post(bob, f"/join/{q(room_id)}")
    assert_error(receipt(bob, room_id, "m.read", hidden), 404, "M_NOT_FOUND")


def test_fully_read_receipt_sets_the_room_account_data_and_is_not_a_receipt(homeserver):
    alice, bob, room_id = shared_room(homeserver)
    event_id = send(alice, room_id)
    assert receipt(bob, room_id, "m.fully_read", event_id).status_code == 200
    resp = bob.get(f"/user/{q(me(bob))}/rooms/{q(room_id)}/account_data/m.fully_read")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"event_id": event_id}
    body = sync(bob)
    assert receipt_content(body, room_id) == {}
    assert {"type": "m.fully_read", "content": {"event_id": event_id}} in \
        body["rooms"]["join"][room_id]["account_data"]["events"]


def test_read_markers_set_the_fully_read_marker_and_both_receipts(homeserver):
    alice, bob, room_id = shared_room(homeserver)
    first, second = send(alice, room_id), send(alice, room_id)
    resp = bob.post(f"/rooms/{q(room_id)}/read_markers",
                    {"m.fully_read": first, "m.read": second, "m.read.private": second})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert_matches_spec(resp, READ_MARKERS)
    assert bob.get(f"/user/{q(me(bob))}/rooms/{q(room_id)}/account_data/m.fully_read").json() == \
        {"event_id": first}
    content = receipt_content(sync(bob), room_id)
    assert list(content) == [second]
    assert list(content[second]["m.read"]) == [me(bob)]
    assert list(content[second]["m.read.private"]) == [me(bob)]


def test_read_markers_in_a_room_one_is_not_joined_to_are_forbidden(homeserver):
    alice, bob = new_user(homeserver, "rc"), new_user(homeserver, "rc")
    room_id = create(alice, preset="public_chat")
    resp = bob.post(f"/rooms/{q(room_id)}/read_markers", {"m.read": send(alice, room_id)})
    assert_error(resp, 403, "M_FORBIDDEN")


def test_receipt_wakes_a_parked_sync_of_another_member(homeserver):
    alice, bob, room_id = shared_room(homeserver)
    event_id = send(alice, room_id)
    since = sync(alice)["next_batch"]
    result = {}

    def long_poll():
        started = time.monotonic()
        result["body"] = sync(alice, since=since, timeout=10000)
        result["elapsed"] = time.monotonic() - started

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.5)
    assert receipt(bob, room_id, "m.read", event_id).status_code == 200
    poller.join(15)
    assert result["elapsed"] < 5
    assert list(receipt_content(result["body"], room_id)[event_id]["m.read"]) == [me(bob)]


def test_fully_read_marker_does_not_move_back_to_an_older_event(homeserver):
    alice, bob, room_id = shared_room(homeserver)
    first, second = send(alice, room_id), send(alice, room_id)
    assert receipt(bob, room_id, "m.fully_read", second).status_code == 200
    assert bob.post(f"/rooms/{q(room_id)}/read_markers", {"m.fully_read": first}).status_code == 200
    assert bob.get(f"/user/{q(me(bob))}/rooms/{q(room_id)}/account_data/m.fully_read").json() == \
        {"event_id": second}


def test_ephemeral_filter_can_leave_receipts_out(homeserver):
    alice, bob, room_id = shared_room(homeserver)
    event_id = send(alice, room_id)
    assert receipt(bob, room_id, "m.read", event_id).status_code == 200
    assert receipt_content(sync(alice, filter={"room": {"ephemeral": {"not_types": ["m.receipt"]}}}), room_id) == {}
    assert event_id in receipt_content(sync(alice, filter={"room": {"ephemeral": {"types": ["m.receipt"]}}}),
                                       room_id)
