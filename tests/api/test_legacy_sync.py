"""The deprecated sync API older clients and bots use (old_sync.yaml, room_initial_sync.yaml):
GET /initialSync, GET /rooms/{roomId}/initialSync, GET /events (a long-poll from a sync
token) and GET /events/{eventId}: their shapes, who may read what, and tokens that chain."""

import threading
import time

from tests.api.test_response_schemas import assert_matches_spec
from tests.api.test_sync import assert_error, create, new_user, post, q, send, set_state

INITIAL_SYNC = "/_matrix/client/v3/initialSync"
ROOM_INITIAL_SYNC = "/_matrix/client/v3/rooms/{roomId}/initialSync"
EVENTS = "/_matrix/client/v3/events"
EVENT = "/_matrix/client/v3/events/{eventId}"


def get(client, path, **params) -> dict:
    resp = client.get(path, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def room_info(body, room_id) -> dict:
    found = [r for r in body["rooms"] if r["room_id"] == room_id]
    assert len(found) == 1, body["rooms"]
    return found[0]


def bodies(events) -> list:
    return [e["content"].get("body") for e in events if e["type"] == "m.room.message"]


def test_initial_sync_holds_each_room_with_recent_messages_current_state_and_account_data(homeserver):
    alice = new_user(homeserver, "ls")
    room_id = create(alice, preset="public_chat", visibility="public", name="Old")
    set_state(alice, room_id, "m.room.name", {"name": "New"})
    for n in range(3):
        send(alice, room_id, f"m{n}")
    assert alice.put(f"/user/{q(alice.user_id)}/rooms/{q(room_id)}/tags/work", {"order": 0.5}).status_code == 200
    assert alice.put(f"/user/{q(alice.user_id)}/account_data/org.example.cfg", {"k": 1}).status_code == 200
    resp = alice.get("/initialSync", params={"limit": 2})
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, INITIAL_SYNC)
    body = resp.json()
    room = room_info(body, room_id)
    assert room["membership"] == "join"
    assert room["visibility"] == "public"
    assert bodies(room["messages"]["chunk"]) == ["m1", "m2"]
    assert all(e["room_id"] == room_id for e in room["messages"]["chunk"] + room["state"])
    assert room["messages"]["end"] == body["end"]
    state = {(e["type"], e["state_key"]): e for e in room["state"]}
    assert state[("m.room.name", "")]["content"] == {"name": "New"}
    assert state[("m.room.member", alice.user_id)]["content"]["membership"] == "join"
    assert {"type": "m.tag", "content": {"tags": {"work": {"order": 0.5}}}} in room["account_data"]
    assert {"type": "org.example.cfg", "content": {"k": 1}} in body["account_data"]
    # `start` pages back through /messages to the message before the chunk.
    older = get(alice, f"/rooms/{q(room_id)}/messages", dir="b", **{"from": room["messages"]["start"], "limit": 1})
    assert bodies(older["chunk"]) == ["m0"]


def test_initial_sync_shows_invites_with_their_event_and_left_rooms_only_when_archived(homeserver):
    alice, bob = new_user(homeserver, "ls"), new_user(homeserver, "ls")
    invited = create(alice)
    post(alice, f"/rooms/{q(invited)}/invite", {"user_id": bob.user_id})
    left = create(alice, preset="public_chat")
    post(bob, f"/rooms/{q(left)}/join")
    send(bob, left, "before leaving")
    post(bob, f"/rooms/{q(left)}/leave")
    send(alice, left, "after they left")
    body = get(bob, "/initialSync")
    invite = room_info(body, invited)
    assert invite["membership"] == "invite"
    assert invite["invite"]["type"] == "m.room.member"
    assert invite["invite"]["sender"] == alice.user_id
    assert invite["invite"]["content"]["membership"] == "invite"
    assert left not in [r["room_id"] for r in body["rooms"]]
    archived = get(bob, "/initialSync", archived="true")
    room = room_info(archived, left)
    assert room["membership"] == "leave"
    assert bodies(room["messages"]["chunk"]) == ["before leaving"]
    assert room["messages"]["chunk"][-1]["content"]["membership"] == "leave"


def test_room_initial_sync_for_a_member(homeserver):
    alice = new_user(homeserver, "ls")
    room_id = create(alice, preset="private_chat")
    for n in range(4):
        last = send(alice, room_id, f"m{n}")
    post(alice, f"/rooms/{q(room_id)}/receipt/m.read/{q(last)}")
    resp = alice.get(f"/rooms/{q(room_id)}/initialSync", params={"limit": 3})
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, ROOM_INITIAL_SYNC)
    body = resp.json()
    assert body["room_id"] == room_id
    assert body["membership"] == "join"
    assert body["visibility"] == "private"
    assert bodies(body["messages"]["chunk"]) == ["m1", "m2", "m3"]
    assert ("m.room.create", "") in {(e["type"], e["state_key"]) for e in body["state"]}
    assert body["account_data"] == []
    [receipt] = body["receipts"]
    assert (receipt["type"], receipt["room_id"]) == ("m.receipt", room_id)
    assert list(receipt["content"][last]["m.read"]) == [alice.user_id]
    older = get(alice, f"/rooms/{q(room_id)}/messages", dir="b", **{"from": body["messages"]["start"], "limit": 1})
    assert bodies(older["chunk"]) == ["m0"]


def test_room_initial_sync_of_a_former_member_stops_at_their_leave(homeserver):
    alice, bob = new_user(homeserver, "ls"), new_user(homeserver, "ls")
    room_id = create(alice, preset="public_chat")
    post(bob, f"/rooms/{q(room_id)}/join")
    send(alice, room_id, "seen")
    post(bob, f"/rooms/{q(room_id)}/leave")
    send(alice, room_id, "not seen")
    set_state(alice, room_id, "m.room.topic", {"topic": "later"})
    body = get(bob, f"/rooms/{q(room_id)}/initialSync")
    assert body["membership"] == "leave"
    assert bodies(body["messages"]["chunk"]) == ["seen"]
    assert ("m.room.topic", "") not in {(e["type"], e["state_key"]) for e in body["state"]}


def test_room_initial_sync_refuses_strangers_unless_the_room_is_world_readable(homeserver):
    alice, eve = new_user(homeserver, "ls"), new_user(homeserver, "ls")
    private = create(alice, preset="private_chat")
    assert_error(eve.get(f"/rooms/{q(private)}/initialSync"), 403, "M_FORBIDDEN")
    assert_error(eve.get(f"/rooms/{q('!nosuchroom:test.local')}/initialSync"), 403, "M_FORBIDDEN")
    assert_error(eve.get(f"/rooms/{q('not-a-room')}/initialSync"), 400, "M_INVALID_PARAM")
    readable = create(alice, preset="public_chat")
    set_state(alice, readable, "m.room.history_visibility", {"history_visibility": "world_readable"})
    send(alice, readable, "for anyone")
    body = get(eve, f"/rooms/{q(readable)}/initialSync")
    assert "membership" not in body
    assert bodies(body["messages"]["chunk"]) == ["for anyone"]


def test_events_returns_what_happened_after_from_and_chains(homeserver):
    alice, bob = new_user(homeserver, "ls"), new_user(homeserver, "ls")
    room_id = create(alice, preset="public_chat")
    post(bob, f"/rooms/{q(room_id)}/join")
    end = get(bob, "/initialSync")["end"]
    send(alice, room_id, "one")
    send(alice, room_id, "two")
    resp = bob.get("/events", params={"from": end, "timeout": 0})
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, EVENTS)
    body = resp.json()
    assert body["start"] == end
    assert bodies(body["chunk"]) == ["one", "two"]
    assert all(e["room_id"] == room_id for e in body["chunk"])
    again = get(bob, "/events", **{"from": body["end"], "timeout": 0})
    assert again["chunk"] == []
    assert again["start"] == body["end"]


def test_events_capped_by_limit_continues_from_its_end(homeserver):
    alice = new_user(homeserver, "ls")
    room_a, room_b = create(alice), create(alice)
    end = get(alice, "/initialSync")["end"]
    for n in range(5):
        send(alice, room_a if n % 2 else room_b, f"m{n}")
    first = get(alice, "/events", **{"from": end, "limit": 3})
    assert bodies(first["chunk"]) == ["m0", "m1", "m2"]
    second = get(alice, "/events", **{"from": first["end"], "limit": 3, "timeout": 10000})
    assert bodies(second["chunk"]) == ["m3", "m4"]


def test_events_long_polls_until_something_happens(homeserver):
    alice, bob = new_user(homeserver, "ls"), new_user(homeserver, "ls")
    room_id = create(alice, preset="public_chat")
    post(bob, f"/rooms/{q(room_id)}/join")
    end = get(bob, "/initialSync")["end"]
    result = {}

    def poll():
        started = time.monotonic()
        result["body"] = get(bob, "/events", **{"from": end, "timeout": 10000})
        result["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive(), "returned before anything happened"
    send(alice, room_id, "wake")
    thread.join(30)
    assert not thread.is_alive()
    assert bodies(result["body"]["chunk"]) == ["wake"]
    assert result["elapsed"] < 5, result["elapsed"]
    # With no `from`, it waits from now: an empty chunk after the timeout.
    quiet = get(bob, "/events", timeout=100)
    assert quiet["chunk"] == []


def test_events_brings_invites_and_not_other_peoples_rooms(homeserver):
    alice, bob, carol = new_user(homeserver, "ls"), new_user(homeserver, "ls"), new_user(homeserver, "ls")
    end = get(bob, "/initialSync")["end"]
    elsewhere = create(carol)
    send(carol, elsewhere, "private")
    room_id = create(alice)
    post(alice, f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id})
    body = get(bob, "/events", **{"from": end})
    room_events = [e for e in body["chunk"] if "event_id" in e]
    assert [(e["type"], e["room_id"], e["content"]["membership"]) for e in room_events] == [
        ("m.room.member", room_id, "invite")]


def test_get_single_event_needs_the_right_to_see_it(homeserver):
    alice, eve = new_user(homeserver, "ls"), new_user(homeserver, "ls")
    room_id = create(alice, preset="private_chat")
    event_id = send(alice, room_id, "secret")
    resp = alice.get(f"/events/{q(event_id)}")
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, EVENT)
    assert resp.json()["event_id"] == event_id
    assert_error(eve.get(f"/events/{q(event_id)}"), 404, "M_NOT_FOUND")
    assert_error(alice.get(f"/events/{q('$missing')}"), 404, "M_NOT_FOUND")


def test_bad_parameters_and_missing_tokens_are_refused(homeserver):
    alice = new_user(homeserver, "ls")
    assert_error(alice.get("/events", params={"from": "garbage"}), 400, "M_INVALID_PARAM")
    assert_error(alice.get("/events", params={"timeout": "soon"}), 400, "M_INVALID_PARAM")
    assert_error(alice.get("/initialSync", params={"limit": "-1"}), 400, "M_INVALID_PARAM")
    assert_error(alice.get("/initialSync", params={"archived": "maybe"}), 400, "M_INVALID_PARAM")
    room_id = create(alice)
    stranger = type(alice)(alice.server)
    for path in ("/events", "/initialSync", f"/rooms/{q(room_id)}/initialSync", f"/events/{q('$x')}"):
        assert_error(stranger.get(path), 401, "M_MISSING_TOKEN")


def test_events_carries_typing_with_its_room_id(homeserver):
    alice, bob = new_user(homeserver, "ls"), new_user(homeserver, "ls")
    room_id = create(alice, preset="public_chat")
    post(bob, f"/rooms/{q(room_id)}/join")
    end = get(bob, "/initialSync")["end"]
    resp = alice.put(f"/rooms/{q(room_id)}/typing/{q(alice.user_id)}", {"typing": True, "timeout": 30000})
    assert resp.status_code == 200, resp.text
    body = get(bob, "/events", **{"from": end})
    assert {"type": "m.typing", "room_id": room_id, "content": {"user_ids": [alice.user_id]}} in body["chunk"]


def test_events_of_a_room_left_after_from_stop_at_the_leave(homeserver):
    alice, bob = new_user(homeserver, "ls"), new_user(homeserver, "ls")
    room_id = create(alice, preset="public_chat")
    post(bob, f"/rooms/{q(room_id)}/join")
    end = get(bob, "/initialSync")["end"]
    send(alice, room_id, "before")
    post(bob, f"/rooms/{q(room_id)}/leave")
    send(alice, room_id, "after")
    body = get(bob, "/events", **{"from": end})
    room_events = [e for e in body["chunk"] if "event_id" in e]
    assert bodies(room_events) == ["before"]
    assert (room_events[-1]["type"], room_events[-1]["content"]["membership"]) == ("m.room.member", "leave")
