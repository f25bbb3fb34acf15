"""GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event (client-server API, "Room
participation"): the closest event at or after (dir=f) or at or before (dir=b) a time, among
the events the user may see; 404 when there is none."""

import time
import uuid

import jsonschema
import pytest

from tests.api.test_response_schemas import response_schema
from tests.harness import Client, assert_error, create, new_user, q

PATH = "/_matrix/client/v1/rooms/{roomId}/timestamp_to_event"


@pytest.fixture(scope="module")
def alice(homeserver):
    return new_user(homeserver)


@pytest.fixture
def bob(homeserver):
    return new_user(homeserver)


def send(client, room_id, body="hello") -> tuple[str, int]:
    resp = client.put(f"/rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}",
                      {"msgtype": "m.text", "body": body})
    assert resp.status_code == 200, resp.text
    event_id = resp.json()["event_id"]
    event = client.get(f"/rooms/{q(room_id)}/event/{q(event_id)}").json()
    return event_id, event["origin_server_ts"]


def lookup(client, room_id, ts, direction):
    return client.get(f"/_matrix/client/v1/rooms/{q(room_id)}/timestamp_to_event?ts={ts}&dir={direction}")


def found(client, room_id, ts, direction) -> dict:
    resp = lookup(client, room_id, ts, direction)
    assert resp.status_code == 200, resp.text
    jsonschema.validate(resp.json(), response_schema(PATH, "get", 200), cls=jsonschema.Draft202012Validator)
    return resp.json()


def spaced_messages(client, room_id, count=3) -> list[tuple[str, int]]:
    sent = []
    for i in range(count):
        time.sleep(0.01)
        sent.append(send(client, room_id, f"m{i}"))
    return sent


@pytest.mark.parametrize("version", ["12", "11", "1"])
def test_forwards_finds_the_first_event_at_or_after_the_time(alice, version):
    room = create(alice, room_version=version)
    (first, t1), (second, t2), _ = spaced_messages(alice, room)
    assert found(alice, room, t1, "f") == {"event_id": first, "origin_server_ts": t1}
    assert found(alice, room, t1 + 1, "f") == {"event_id": second, "origin_server_ts": t2}


@pytest.mark.parametrize("version", ["12", "11", "1"])
def test_backwards_finds_the_last_event_at_or_before_the_time(alice, version):
    room = create(alice, room_version=version)
    _, (second, t2), (third, t3) = spaced_messages(alice, room)
    assert found(alice, room, t3, "b") == {"event_id": third, "origin_server_ts": t3}
    assert found(alice, room, t3 - 1, "b") == {"event_id": second, "origin_server_ts": t2}


def test_a_time_after_every_event_finds_nothing_forwards(alice):
    room = create(alice)
    _, (last, t) = spaced_messages(alice, room, 2)
    assert_error(lookup(alice, room, t + 60_000, "f"), 404, "M_NOT_FOUND")
    assert found(alice, room, t + 60_000, "b")["event_id"] == last


def test_a_time_before_the_room_finds_nothing_backwards(alice):
    room = create(alice)
    resp = lookup(alice, room, 1000, "b")
    assert_error(resp, 404, "M_NOT_FOUND")
    jsonschema.validate(resp.json(), response_schema(PATH, "get", 404))
    # Forwards from the dawn of time: the create event.
    create_event = found(alice, room, 0, "f")
    state = alice.get(f"/rooms/{q(room)}/state/m.room.create?format=event").json()
    assert create_event["event_id"] == state["event_id"]


def test_a_member_who_left_sees_nothing_after_their_leave(alice, bob):
    room = create(alice, preset="public_chat")
    assert bob.post(f"/join/{q(room)}", {}).status_code == 200
    before, _ = send(alice, room)
    assert bob.post(f"/rooms/{q(room)}/leave", {}).status_code == 200
    time.sleep(0.01)
    _, t_after = send(alice, room)
    result = found(bob, room, t_after, "b")
    assert result["event_id"] != before  # bob's own leave is the last thing he saw
    leave = bob.get(f"/rooms/{q(room)}/state/m.room.member/{q(bob.user_id)}?format=event")
    assert result["event_id"] == leave.json()["event_id"]
    assert_error(lookup(bob, room, t_after, "f"), 404, "M_NOT_FOUND")


def test_events_hidden_by_history_visibility_are_skipped(alice, bob):
    room = create(alice, preset="public_chat",
                  initial_state=[{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}])
    (hidden, t_hidden), = spaced_messages(alice, room, 1)
    time.sleep(0.01)
    assert bob.post(f"/join/{q(room)}", {}).status_code == 200
    result = found(bob, room, t_hidden, "f")
    assert result["event_id"] != hidden
    join = bob.get(f"/rooms/{q(room)}/state/m.room.member/{q(bob.user_id)}?format=event").json()
    assert result["event_id"] == join["event_id"]
    # Backwards, the hidden message is passed over for the last event before it that bob may
    # see: the history visibility change itself, visible because "shared" applied before it.
    visibility = bob.get(f"/rooms/{q(room)}/state/m.room.history_visibility?format=event").json()
    assert found(bob, room, t_hidden, "b")["event_id"] == visibility["event_id"]


def test_a_non_member_is_forbidden(alice, bob):
    room = create(alice, preset="private_chat")
    assert_error(lookup(bob, room, 0, "f"), 403, "M_FORBIDDEN")


def test_a_world_readable_room_can_be_read_without_joining(alice, bob):
    room = create(alice, preset="public_chat",
                  initial_state=[{"type": "m.room.history_visibility",
                                  "content": {"history_visibility": "world_readable"}}])
    event_id, t = send(alice, room)
    assert found(bob, room, t, "b")["event_id"] == event_id


def test_an_unknown_room_is_not_found(alice):
    assert_error(lookup(alice, "!unknown:test.local", 0, "f"), 404, "M_NOT_FOUND")


@pytest.mark.parametrize("query, errcode", [
    ("dir=f", "M_MISSING_PARAM"),
    ("ts=0", "M_MISSING_PARAM"),
    ("ts=abc&dir=f", "M_INVALID_PARAM"),
    ("ts=0&dir=x", "M_INVALID_PARAM"),
])
def test_bad_parameters_are_refused(alice, query, errcode):
    room = create(alice)
    assert_error(alice.get(f"/_matrix/client/v1/rooms/{q(room)}/timestamp_to_event?{query}"), 400, errcode)


def test_the_lookup_needs_an_access_token(homeserver, alice):
    room = create(alice)
    assert_error(Client(homeserver).get(f"/_matrix/client/v1/rooms/{q(room)}/timestamp_to_event?ts=0&dir=f"),
                 401, "M_MISSING_TOKEN")
