"""History visibility on the read paths (client-server API "Room History Visibility"): what a late
joiner, a user who left and a stranger see on /messages, /event, /context and /state under each
`history_visibility` value."""

import uuid

import pytest

from tests.harness import Client, q


def new_user(homeserver, prefix="v") -> Client:
    return Client(homeserver).register(f"{prefix}{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def alice(homeserver):
    return new_user(homeserver, "alice")


@pytest.fixture(scope="module")
def bob(homeserver):
    return new_user(homeserver, "bob")


def create(client, visibility, **body) -> str:
    resp = client.post("/createRoom", {"preset": "public_chat", "initial_state": [
        {"type": "m.room.history_visibility", "content": {"history_visibility": visibility}}], **body})
    assert resp.status_code == 200, resp.text
    return resp.json()["room_id"]


def say(client, room_id, body) -> str:
    resp = client.put(f"/rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}",
                      {"msgtype": "m.text", "body": body})
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"]


def bodies(client, room_id, direction="b") -> list[str]:
    """Every visible message body, oldest first, paging through the whole room."""
    found, token = [], None
    while True:
        params = {"dir": direction, "limit": 4}
        if token:
            params["from"] = token
        resp = client.get(f"/rooms/{q(room_id)}/messages", params=params)
        assert resp.status_code == 200, resp.text
        found += [e["content"]["body"] for e in resp.json()["chunk"] if e["type"] == "m.room.message"]
        token = resp.json().get("end")
        if token is None:
            return found[::-1] if direction == "b" else found


def event_status(client, room_id, event_id) -> int:
    resp = client.get(f"/rooms/{q(room_id)}/event/{q(event_id)}")
    if resp.status_code != 200:
        assert resp.json()["errcode"] in ("M_NOT_FOUND", "M_FORBIDDEN"), resp.text
    return resp.status_code


def join(client, room_id):
    assert client.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200


def leave(client, room_id):
    assert client.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200


@pytest.mark.parametrize("direction", ["b", "f"])
def test_shared_history_is_visible_to_a_late_joiner(alice, bob, direction):
    room_id = create(alice, "shared")
    before = say(alice, room_id, "before")
    join(bob, room_id)
    say(alice, room_id, "after")
    assert bodies(bob, room_id, direction) == ["before", "after"]
    assert event_status(bob, room_id, before) == 200


@pytest.mark.parametrize("direction", ["b", "f"])
def test_joined_history_hides_what_came_before_the_join(alice, bob, direction):
    room_id = create(alice, "joined")
    before = say(alice, room_id, "before")
    join(bob, room_id)
    after = say(alice, room_id, "after")
    assert bodies(bob, room_id, direction) == ["after"]
    assert event_status(bob, room_id, before) == 404
    assert event_status(bob, room_id, after) == 200
    assert bob.get(f"/rooms/{q(room_id)}/context/{q(before)}").status_code == 404
    # The member who was there sees both.
    assert bodies(alice, room_id, direction) == ["before", "after"]


def test_invited_history_shows_from_the_invite(alice, bob):
    room_id = create(alice, "invited", preset="private_chat")
    before = say(alice, room_id, "before invite")
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}).status_code == 200
    during = say(alice, room_id, "while invited")
    join(bob, room_id)
    say(alice, room_id, "after join")
    assert bodies(bob, room_id) == ["while invited", "after join"]
    assert event_status(bob, room_id, before) == 404
    assert event_status(bob, room_id, during) == 200


def test_invited_user_who_has_not_joined_cannot_read(alice, bob):
    room_id = create(alice, "invited", preset="private_chat")
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}).status_code == 200
    say(alice, room_id, "while invited")
    resp = bob.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b"})
    assert resp.status_code == 403 and resp.json()["errcode"] == "M_FORBIDDEN"


def test_world_readable_room_is_readable_by_a_non_member(alice, bob):
    room_id = create(alice, "world_readable")
    first = say(alice, room_id, "one")
    say(alice, room_id, "two")
    assert bodies(bob, room_id) == ["one", "two"]
    assert bodies(bob, room_id, "f") == ["one", "two"]
    assert event_status(bob, room_id, first) == 200
    resp = bob.get(f"/rooms/{q(room_id)}/context/{q(first)}")
    assert resp.status_code == 200, resp.text
    assert [e["content"]["body"] for e in resp.json()["events_after"]] == ["two"]
    # Reading is not joining.
    assert room_id not in bob.get("/joined_rooms").json()["joined_rooms"]
    # But a non-member cannot write.
    resp = bob.put(f"/rooms/{q(room_id)}/send/m.room.message/x", {"msgtype": "m.text", "body": "hi"})
    assert resp.status_code == 403 and resp.json()["errcode"] == "M_FORBIDDEN"


def test_world_readable_events_stay_readable_after_the_room_closes_its_history(alice, bob):
    room_id = create(alice, "world_readable")
    say(alice, room_id, "public")
    assert alice.put(f"/rooms/{q(room_id)}/state/m.room.history_visibility/",
                     {"history_visibility": "shared"}).status_code == 200
    say(alice, room_id, "members only")
    # The room is no longer world readable: a stranger is turned away altogether.
    resp = bob.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b"})
    assert resp.status_code == 403 and resp.json()["errcode"] == "M_FORBIDDEN"
    # A member who joins now sees both (shared).
    join(bob, room_id)
    assert bodies(bob, room_id) == ["public", "members only"]


@pytest.mark.parametrize("visibility", ["shared", "invited", "joined"])
def test_never_member_gets_403_on_messages(alice, bob, visibility):
    room_id = create(alice, visibility)
    event_id = say(alice, room_id, "hidden")
    resp = bob.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b"})
    assert resp.status_code == 403 and resp.json()["errcode"] == "M_FORBIDDEN"
    resp = bob.get(f"/rooms/{q(room_id)}/event/{q(event_id)}")
    assert resp.status_code in (403, 404), resp.text
    resp = bob.get(f"/rooms/{q(room_id)}/context/{q(event_id)}")
    assert resp.status_code in (403, 404), resp.text


@pytest.mark.parametrize("visibility", ["shared", "joined", "world_readable"])
@pytest.mark.parametrize("direction", ["b", "f"])
def test_user_who_left_does_not_see_events_after_the_leave(alice, bob, visibility, direction):
    room_id = create(alice, visibility)
    join(bob, room_id)
    seen = say(alice, room_id, "while in")
    leave(bob, room_id)
    later = say(alice, room_id, "after leave")
    # "After a user has left a room, they may see any events which they were allowed to see
    # before they left the room, but no events received after they left": even in a
    # world-readable room the reader who left is held at their leave (as Synapse does).
    assert bodies(bob, room_id, direction) == ["while in"]
    assert event_status(bob, room_id, seen) == 200
    assert event_status(bob, room_id, later) == 404


def test_user_who_left_sees_their_own_leave_last(alice, bob):
    room_id = create(alice, "joined")
    join(bob, room_id)
    say(alice, room_id, "while in")
    leave(bob, room_id)
    say(alice, room_id, "after leave")
    resp = bob.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 1})
    assert resp.status_code == 200, resp.text
    newest = resp.json()["chunk"][0]
    assert (newest["type"], newest["state_key"], newest["content"]["membership"]) == (
        "m.room.member", bob.user_id, "leave")


def test_context_after_leaving_stops_at_the_leave(alice, bob):
    room_id = create(alice, "shared")
    join(bob, room_id)
    seen = say(alice, room_id, "while in")
    leave(bob, room_id)
    say(alice, room_id, "after leave")
    resp = bob.get(f"/rooms/{q(room_id)}/context/{q(seen)}", params={"limit": 10})
    assert resp.status_code == 200, resp.text
    after = resp.json()["events_after"]
    assert [(e["type"], e.get("state_key")) for e in after] == [("m.room.member", bob.user_id)]


def test_kicked_user_does_not_see_later_events(alice, bob):
    room_id = create(alice, "shared")
    join(bob, room_id)
    say(alice, room_id, "while in")
    assert alice.post(f"/rooms/{q(room_id)}/kick", {"user_id": bob.user_id}).status_code == 200
    say(alice, room_id, "after kick")
    assert bodies(bob, room_id) == ["while in"]


def test_rejoining_under_joined_history_hides_the_gap(alice, bob):
    room_id = create(alice, "joined")
    join(bob, room_id)
    say(alice, room_id, "first stay")
    leave(bob, room_id)
    gap = say(alice, room_id, "while away")
    join(bob, room_id)
    say(alice, room_id, "second stay")
    assert bodies(bob, room_id) == ["first stay", "second stay"]
    assert event_status(bob, room_id, gap) == 404


def test_rejoining_under_shared_history_shows_the_gap(alice, bob):
    room_id = create(alice, "shared")
    join(bob, room_id)
    say(alice, room_id, "first stay")
    leave(bob, room_id)
    say(alice, room_id, "while away")
    join(bob, room_id)
    say(alice, room_id, "second stay")
    assert bodies(bob, room_id) == ["first stay", "while away", "second stay"]


def test_visibility_change_applies_from_the_change_on(alice, bob):
    room_id = create(alice, "shared")
    say(alice, room_id, "shared era")
    assert alice.put(f"/rooms/{q(room_id)}/state/m.room.history_visibility/",
                     {"history_visibility": "joined"}).status_code == 200
    say(alice, room_id, "joined era")
    join(bob, room_id)
    say(alice, room_id, "after join")
    assert bodies(bob, room_id) == ["shared era", "after join"]


def test_lazy_loaded_members_of_hidden_events_are_not_leaked(alice, bob, homeserver):
    carol = new_user(homeserver, "carol")
    room_id = create(alice, "joined")
    join(carol, room_id)
    say(carol, room_id, "before bob")
    join(bob, room_id)
    say(alice, room_id, "after bob")
    lazy = '{"lazy_load_members": true, "types": ["m.room.message"]}'
    resp = bob.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 50, "filter": lazy})
    assert resp.status_code == 200, resp.text
    assert [e["content"]["body"] for e in resp.json()["chunk"]] == ["after bob"]
    assert [e["state_key"] for e in resp.json()["state"]] == [alice.user_id]
