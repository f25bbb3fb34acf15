"""Profile changes carried into rooms: PUT /profile/{userId}/displayname|avatar_url sends a new
join event, with the new profile, into every room the user is joined to (as Synapse does), so
member state, /joined_members and the timeline show the new name."""

import uuid

import jsonschema
import pytest

from tests.api.test_response_schemas import response_schema
from tests.harness import Client, q


@pytest.fixture(scope="module")
def alice(homeserver):
    return Client(homeserver).register("alice")


@pytest.fixture
def bob(homeserver):
    """A fresh user per test, so one test's rooms and names do not leak into another's."""
    return Client(homeserver).register("bob_" + uuid.uuid4().hex[:8])


def create_room(client, version="12", **body) -> str:
    resp = client.post("/createRoom", {"preset": "public_chat", "room_version": version, **body})
    assert resp.status_code == 200, resp.text
    return resp.json()["room_id"]


def join(client, room_id) -> None:
    resp = client.post(f"/join/{q(room_id)}", {})
    assert resp.status_code == 200, resp.text


def set_profile(client, field, value) -> None:
    resp = client.put(f"/profile/{q(client.user_id)}/{field}", {field: value})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}


def member_event(reader, room_id, user_id) -> dict:
    resp = reader.get(f"/rooms/{q(room_id)}/state/m.room.member/{q(user_id)}", params={"format": "event"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def joined_members(reader, room_id) -> dict:
    resp = reader.get(f"/rooms/{q(room_id)}/joined_members")
    assert resp.status_code == 200, resp.text
    jsonschema.validate(resp.json(), response_schema("/_matrix/client/v3/rooms/{roomId}/joined_members", "GET", 200),
                        cls=jsonschema.Draft202012Validator)
    return resp.json()["joined"]


def member_events_of(reader, room_id, user_id) -> list[dict]:
    resp = reader.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 1000})
    assert resp.status_code == 200, resp.text
    return [e for e in resp.json()["chunk"] if e["type"] == "m.room.member" and e["state_key"] == user_id]


def test_new_displayname_shows_in_the_member_state_of_every_joined_room(alice, bob):
    rooms = [create_room(alice, version) for version in ("12", "11", "1")]
    for room_id in rooms:
        join(bob, room_id)
    set_profile(bob, "displayname", "Bobby Tables")
    for room_id in rooms:
        event = member_event(alice, room_id, bob.user_id)
        assert event["sender"] == bob.user_id
        assert event["content"] == {"membership": "join", "displayname": "Bobby Tables"}


def test_new_displayname_shows_in_joined_members_of_every_joined_room(alice, bob):
    rooms = [create_room(alice, "12"), create_room(alice, "11")]
    for room_id in rooms:
        join(bob, room_id)
    set_profile(bob, "displayname", "Robert")
    for room_id in rooms:
        assert joined_members(alice, room_id)[bob.user_id] == {"display_name": "Robert"}


def test_new_avatar_shows_in_member_state_and_joined_members_and_keeps_the_name(alice, bob):
    rooms = [create_room(alice, "12"), create_room(alice, "11")]
    for room_id in rooms:
        join(bob, room_id)
    set_profile(bob, "avatar_url", "mxc://test.local/bobface")
    localpart = bob.user_id[1:].split(":")[0]
    for room_id in rooms:
        assert member_event(alice, room_id, bob.user_id)["content"] == {
            "membership": "join", "displayname": localpart, "avatar_url": "mxc://test.local/bobface"}
        assert joined_members(alice, room_id)[bob.user_id] == {"display_name": localpart,
                                                               "avatar_url": "mxc://test.local/bobface"}


def test_the_timeline_shows_the_change_with_the_previous_name_as_prev_content(alice, bob):
    room_id = create_room(alice, "12")
    join(bob, room_id)
    set_profile(bob, "displayname", "Before")
    set_profile(bob, "displayname", "After")
    latest = member_events_of(alice, room_id, bob.user_id)[0]
    assert latest["content"] == {"membership": "join", "displayname": "After"}
    assert latest["unsigned"]["prev_content"] == {"membership": "join", "displayname": "Before"}


def test_removing_the_displayname_removes_it_from_the_member_events(alice, bob):
    room_id = create_room(alice, "12")
    join(bob, room_id)
    set_profile(bob, "displayname", None)
    assert member_event(alice, room_id, bob.user_id)["content"] == {"membership": "join"}
    assert joined_members(alice, room_id)[bob.user_id] == {}


def test_other_member_content_is_kept_and_the_join_reason_dropped(alice, bob):
    room_id = create_room(alice, "12")
    resp = bob.post(f"/join/{q(room_id)}", {"reason": "saying hi"})
    assert resp.status_code == 200, resp.text
    localpart = bob.user_id[1:].split(":")[0]
    resp = bob.put(f"/rooms/{q(room_id)}/state/m.room.member/{q(bob.user_id)}",
                   {"membership": "join", "displayname": localpart, "org.example.badge": "gold"})
    assert resp.status_code == 200, resp.text
    set_profile(bob, "displayname", "Gold Bob")
    assert member_event(alice, room_id, bob.user_id)["content"] == {
        "membership": "join", "displayname": "Gold Bob", "org.example.badge": "gold"}


def test_rooms_the_user_left_or_is_invited_to_get_no_event(alice, bob):
    left = create_room(alice, "12")
    join(bob, left)
    assert bob.post(f"/rooms/{q(left)}/leave", {}).status_code == 200
    invited = create_room(alice, "12", preset="private_chat")
    assert alice.post(f"/rooms/{q(invited)}/invite", {"user_id": bob.user_id}).status_code == 200
    set_profile(bob, "displayname", "Elsewhere")
    assert member_event(alice, left, bob.user_id)["content"] == {"membership": "leave"}
    assert member_event(alice, invited, bob.user_id)["content"]["membership"] == "invite"
    assert member_event(alice, invited, bob.user_id)["content"].get("displayname") != "Elsewhere"
    assert len(member_events_of(alice, left, bob.user_id)) == 2  # the join and the leave only


def test_setting_the_same_name_again_sends_no_new_event(alice, bob):
    room_id = create_room(alice, "12")
    join(bob, room_id)
    set_profile(bob, "displayname", "Same")
    before = [e["event_id"] for e in member_events_of(alice, room_id, bob.user_id)]
    set_profile(bob, "displayname", "Same")
    assert [e["event_id"] for e in member_events_of(alice, room_id, bob.user_id)] == before
    assert len(before) == 2  # the join and one rename


def test_a_room_refusing_the_new_join_does_not_stop_the_other_rooms_or_the_profile(alice, bob):
    # A "private" join rule (reserved, never implemented) refuses every join, even a member's
    # own re-join (auth rule 5.3.7), so the profile update's join event is refused there.
    refusing = create_room(alice, "12")
    accepting = create_room(alice, "12")
    join(bob, refusing)
    join(bob, accepting)
    resp = alice.put(f"/rooms/{q(refusing)}/state/m.room.join_rules/", {"join_rule": "private"})
    assert resp.status_code == 200, resp.text
    localpart = bob.user_id[1:].split(":")[0]
    resp = bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Persistent"})
    assert resp.status_code == 200, resp.text
    assert bob.get(f"/profile/{q(bob.user_id)}").json() == {"displayname": "Persistent"}
    assert member_event(alice, accepting, bob.user_id)["content"] == {"membership": "join",
                                                                       "displayname": "Persistent"}
    assert member_event(alice, refusing, bob.user_id)["content"] == {"membership": "join",
                                                                      "displayname": localpart}


def test_a_user_in_no_room_can_still_change_their_name(bob):
    set_profile(bob, "displayname", "Loner")
    assert bob.get(f"/profile/{q(bob.user_id)}/displayname").json() == {"displayname": "Loner"}
