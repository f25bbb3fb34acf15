"""Deactivation and rooms: POST /account/deactivate makes the user leave every room they are
joined to, reject every pending invite and rescind every knock, as Synapse does; the profile
is cleared first, so the leave events carry no name."""

import uuid

import pytest

from tests.harness import Client, q

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def alice(homeserver):
    return Client(homeserver).register("alice")


@pytest.fixture
def bob(homeserver):
    return Client(homeserver).register("bob_" + uuid.uuid4().hex[:8], PASSWORD)


def create_room(client, version="12", preset="public_chat", **body) -> str:
    resp = client.post("/createRoom", {"preset": preset, "room_version": version, **body})
    assert resp.status_code == 200, resp.text
    return resp.json()["room_id"]


def deactivate(client, **body) -> None:
    first = client.post("/account/deactivate", body)
    assert first.status_code == 401, first.text
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": client.user_id},
            "password": PASSWORD, "session": first.json()["session"]}
    resp = client.post("/account/deactivate", {**body, "auth": auth})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"id_server_unbind_result": "no-support"}


def member_event(reader, room_id, user_id) -> dict:
    resp = reader.get(f"/rooms/{q(room_id)}/state/m.room.member/{q(user_id)}", params={"format": "event"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def joined(reader, room_id) -> set[str]:
    resp = reader.get(f"/rooms/{q(room_id)}/joined_members")
    assert resp.status_code == 200, resp.text
    return set(resp.json()["joined"])


def test_deactivated_user_leaves_every_joined_room_with_a_nameless_leave(alice, bob):
    rooms = [create_room(alice, version) for version in ("12", "11", "1")]
    for room_id in rooms:
        assert bob.post(f"/join/{q(room_id)}", {}).status_code == 200
    assert bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Bob"}).status_code == 200
    deactivate(bob)
    for room_id in rooms:
        event = member_event(alice, room_id, bob.user_id)
        assert event["sender"] == bob.user_id
        assert event["content"] == {"membership": "leave"}
        assert event["unsigned"]["prev_content"]["membership"] == "join"
        assert joined(alice, room_id) == {alice.user_id}


def test_deactivation_rejects_pending_invites(alice, bob):
    room_id = create_room(alice, "12", preset="private_chat")
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}).status_code == 200
    deactivate(bob)
    event = member_event(alice, room_id, bob.user_id)
    assert event["sender"] == bob.user_id
    assert event["content"] == {"membership": "leave"}
    assert event["unsigned"]["prev_content"]["membership"] == "invite"


def test_deactivation_rescinds_knocks(alice, bob):
    room_id = create_room(alice, "11", preset="private_chat",
                          initial_state=[{"type": "m.room.join_rules", "state_key": "",
                                          "content": {"join_rule": "knock"}}])
    assert bob.post(f"/knock/{q(room_id)}", {}).status_code == 200
    deactivate(bob)
    event = member_event(alice, room_id, bob.user_id)
    assert event["content"] == {"membership": "leave"}
    assert event["unsigned"]["prev_content"]["membership"] == "knock"


def test_deactivation_with_erase_also_leaves_rooms(alice, bob):
    room_id = create_room(alice, "12")
    assert bob.post(f"/join/{q(room_id)}", {}).status_code == 200
    deactivate(bob, erase=True)
    assert member_event(alice, room_id, bob.user_id)["content"] == {"membership": "leave"}
    assert joined(alice, room_id) == {alice.user_id}


def test_deactivation_leaves_bans_and_left_rooms_untouched(alice, bob):
    banned_from = create_room(alice, "12")
    left = create_room(alice, "12")
    for room_id in (banned_from, left):
        assert bob.post(f"/join/{q(room_id)}", {}).status_code == 200
    assert alice.post(f"/rooms/{q(banned_from)}/ban", {"user_id": bob.user_id}).status_code == 200
    assert bob.post(f"/rooms/{q(left)}/leave", {}).status_code == 200
    ban_id = member_event(alice, banned_from, bob.user_id)["event_id"]
    leave_id = member_event(alice, left, bob.user_id)["event_id"]
    deactivate(bob)
    assert member_event(alice, banned_from, bob.user_id)["event_id"] == ban_id
    assert member_event(alice, left, bob.user_id)["event_id"] == leave_id


def test_deactivated_user_is_no_longer_listed_among_joined_members(alice, bob):
    room_id = create_room(alice, "12")
    assert bob.post(f"/join/{q(room_id)}", {}).status_code == 200
    deactivate(bob)
    resp = alice.get(f"/rooms/{q(room_id)}/members", params={"membership": "join"})
    assert resp.status_code == 200, resp.text
    assert [e["state_key"] for e in resp.json()["chunk"]] == [alice.user_id]
