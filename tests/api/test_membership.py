"""Membership (client-server API "Room membership"): join, invite, leave, kick, ban, unban,
knock, forget, restricted joins, /joined_rooms, and the errors of each, against a real server."""

import uuid

import jsonschema
import pytest

from tests.api.test_response_schemas import response_schema
from tests.harness import Client, create, q, running_homeserver


def new_user(homeserver, prefix="m") -> Client:
    return Client(homeserver).register(f"{prefix}{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def alice(homeserver):
    return Client(homeserver).register("alice")


@pytest.fixture(scope="module")
def bob(homeserver):
    return new_user(homeserver, "bob")


@pytest.fixture(scope="module")
def carol(homeserver):
    return new_user(homeserver, "carol")


@pytest.fixture
def newcomer(homeserver):
    """A user in no room yet, for exact /joined_rooms answers."""
    return new_user(homeserver, "new")


def member(client, room_id, user_id) -> dict:
    resp = client.get(f"/rooms/{q(room_id)}/state/m.room.member/{q(user_id)}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def join(client, room_id_or_alias):
    return client.post(f"/join/{q(room_id_or_alias)}", {})


def assert_error(resp, status, errcode):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["errcode"] == errcode, resp.text
    assert isinstance(body["error"], str) and body["error"], resp.text
    return body


def joined_rooms(client) -> list[str]:
    resp = client.get("/joined_rooms")
    assert resp.status_code == 200, resp.text
    return resp.json()["joined_rooms"]


# --- join, leave, joined_rooms -----------------------------------------------------------------

def test_join_a_public_room_by_id_and_it_appears_in_joined_rooms(alice, newcomer):
    bob = newcomer
    room_id = create(alice, preset="public_chat")
    resp = bob.post(f"/rooms/{q(room_id)}/join", {})
    assert resp.status_code == 200, resp.text
    jsonschema.validate(resp.json(), response_schema("/_matrix/client/v3/rooms/{roomId}/join", "post", 200))
    assert resp.json() == {"room_id": room_id}
    assert member(alice, room_id, bob.user_id)["membership"] == "join"
    rooms = bob.get("/joined_rooms")
    jsonschema.validate(rooms.json(), response_schema("/_matrix/client/v3/joined_rooms", "get", 200))
    assert rooms.json()["joined_rooms"] == [room_id]


def test_joined_rooms_lists_every_joined_room_and_not_left_ones(alice, newcomer):
    bob = newcomer
    rooms = [create(alice, preset="public_chat") for _ in range(3)]
    for room_id in rooms:
        assert join(bob, room_id).status_code == 200
    own = create(bob)
    assert sorted(joined_rooms(bob)) == sorted([*rooms, own])
    assert bob.post(f"/rooms/{q(rooms[0])}/leave", {}).status_code == 200
    assert sorted(joined_rooms(bob)) == sorted([*rooms[1:], own])


def test_join_by_alias(alice, bob):
    local = f"alias{uuid.uuid4().hex[:8]}"
    room_id = create(alice, preset="public_chat", room_alias_name=local)
    resp = join(bob, f"#{local}:test.local")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"room_id": room_id}
    assert room_id in joined_rooms(bob)


def test_join_by_unknown_alias_is_not_found(bob):
    assert_error(join(bob, "#nosuchalias:test.local"), 404, "M_NOT_FOUND")


def test_join_sets_the_profile_in_the_member_event(alice, bob):
    assert bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Bob B"}).status_code == 200
    room_id = create(alice, preset="public_chat")
    assert join(bob, room_id).status_code == 200
    content = member(alice, room_id, bob.user_id)
    assert content["membership"] == "join"
    assert content["displayname"] == "Bob B"


def test_join_an_invite_only_room_without_an_invite_is_forbidden_with_a_reason(alice, bob):
    room_id = create(alice, preset="private_chat")
    body = assert_error(bob.post(f"/rooms/{q(room_id)}/join", {}), 403, "M_FORBIDDEN")
    assert "invite" in body["error"].lower() or "join rule" in body["error"].lower()
    assert room_id not in joined_rooms(bob)


def test_invite_then_join(alice, bob):
    room_id = create(alice, preset="private_chat")
    resp = alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id, "reason": "come in"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    invite = member(alice, room_id, bob.user_id)
    assert invite["membership"] == "invite" and invite["reason"] == "come in"
    assert join(bob, room_id).status_code == 200
    assert member(bob, room_id, bob.user_id)["membership"] == "join"


def test_inviting_an_already_invited_user_succeeds(alice, bob):
    room_id = create(alice)
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}).status_code == 200
    resp = alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id})
    assert resp.status_code == 200, resp.text
    assert member(alice, room_id, bob.user_id)["membership"] == "invite"


def test_inviting_a_joined_member_is_forbidden(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert join(bob, room_id).status_code == 200
    assert_error(alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}), 403, "M_FORBIDDEN")


def test_invite_needs_the_invite_level_in_a_public_room(alice, bob, carol):
    room_id = create(alice, preset="public_chat")
    assert join(bob, room_id).status_code == 200
    assert_error(bob.post(f"/rooms/{q(room_id)}/invite", {"user_id": carol.user_id}), 403, "M_FORBIDDEN")


def test_non_member_cannot_invite(alice, bob, carol):
    room_id = create(alice)
    assert_error(bob.post(f"/rooms/{q(room_id)}/invite", {"user_id": carol.user_id}), 403, "M_FORBIDDEN")


def test_rejecting_an_invite_is_a_leave(alice, bob):
    room_id = create(alice)
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}).status_code == 200
    resp = bob.post(f"/rooms/{q(room_id)}/leave", {"reason": "no thanks"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert member(alice, room_id, bob.user_id) == {"membership": "leave", "reason": "no thanks"}


@pytest.mark.parametrize("body, errcode", [
    ({}, "M_MISSING_PARAM"), ({"user_id": 5}, "M_BAD_JSON"), ({"user_id": "bob"}, "M_INVALID_PARAM"),
    ({"user_id": "@bob:test.local", "reason": 5}, "M_BAD_JSON"),
])
def test_invite_body_is_checked(alice, body, errcode):
    room_id = create(alice)
    assert_error(alice.post(f"/rooms/{q(room_id)}/invite", body), 400, errcode)


def test_leave_puts_the_reason_in_the_member_event(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert join(bob, room_id).status_code == 200
    assert bob.post(f"/rooms/{q(room_id)}/leave", {"reason": "bye"}).status_code == 200
    assert member(alice, room_id, bob.user_id) == {"membership": "leave", "reason": "bye"}
    assert room_id not in joined_rooms(bob)


def test_leave_without_a_body_works(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert join(bob, room_id).status_code == 200
    resp = bob.request("POST", f"/rooms/{q(room_id)}/leave")
    assert resp.status_code == 200, resp.text
    assert member(alice, room_id, bob.user_id) == {"membership": "leave"}


def test_leaving_a_room_you_are_not_in_is_forbidden(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert_error(bob.post(f"/rooms/{q(room_id)}/leave", {}), 403, "M_FORBIDDEN")


# --- kick, ban, unban ------------------------------------------------------------------------

def test_kick_with_reason(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert join(bob, room_id).status_code == 200
    resp = alice.post(f"/rooms/{q(room_id)}/kick", {"user_id": bob.user_id, "reason": "spam"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    event = bob.get(f"/rooms/{q(room_id)}/state/m.room.member/{q(bob.user_id)}", params={"format": "event"})
    assert event.status_code == 200, event.text
    assert event.json()["content"] == {"membership": "leave", "reason": "spam"}
    assert event.json()["sender"] == alice.user_id
    assert room_id not in joined_rooms(bob)
    # A kick is not a ban: the user may come back to a public room.
    assert join(bob, room_id).status_code == 200


def test_kick_needs_the_kick_level(alice, bob, carol):
    room_id = create(alice, preset="public_chat")
    assert join(bob, room_id).status_code == 200
    assert join(carol, room_id).status_code == 200
    assert_error(bob.post(f"/rooms/{q(room_id)}/kick", {"user_id": carol.user_id}), 403, "M_FORBIDDEN")
    assert member(alice, room_id, carol.user_id)["membership"] == "join"


def test_kicking_a_user_who_is_not_in_the_room_is_forbidden(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert_error(alice.post(f"/rooms/{q(room_id)}/kick", {"user_id": bob.user_id}), 403, "M_FORBIDDEN")


def test_kick_rescinds_an_invite(alice, bob):
    room_id = create(alice)
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}).status_code == 200
    assert alice.post(f"/rooms/{q(room_id)}/kick", {"user_id": bob.user_id}).status_code == 200
    assert member(alice, room_id, bob.user_id) == {"membership": "leave"}
    assert_error(join(bob, room_id), 403, "M_FORBIDDEN")


def test_banned_user_cannot_rejoin_until_unbanned(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert join(bob, room_id).status_code == 200
    resp = alice.post(f"/rooms/{q(room_id)}/ban", {"user_id": bob.user_id, "reason": "rude"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert member(alice, room_id, bob.user_id) == {"membership": "ban", "reason": "rude"}
    assert room_id not in joined_rooms(bob)
    assert_error(join(bob, room_id), 403, "M_FORBIDDEN")
    # Banned users cannot be invited either.
    assert_error(alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}), 403, "M_FORBIDDEN")
    resp = alice.post(f"/rooms/{q(room_id)}/unban", {"user_id": bob.user_id, "reason": "forgiven"})
    assert resp.status_code == 200, resp.text
    assert member(alice, room_id, bob.user_id) == {"membership": "leave", "reason": "forgiven"}
    assert join(bob, room_id).status_code == 200
    assert room_id in joined_rooms(bob)


def test_ban_a_user_who_never_joined(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert alice.post(f"/rooms/{q(room_id)}/ban", {"user_id": bob.user_id}).status_code == 200
    assert_error(join(bob, room_id), 403, "M_FORBIDDEN")


def test_ban_needs_the_ban_level(alice, bob, carol):
    room_id = create(alice, preset="public_chat")
    assert join(bob, room_id).status_code == 200
    assert join(carol, room_id).status_code == 200
    assert_error(bob.post(f"/rooms/{q(room_id)}/ban", {"user_id": carol.user_id}), 403, "M_FORBIDDEN")
    assert member(alice, room_id, carol.user_id)["membership"] == "join"


def test_unban_needs_the_ban_level(alice, bob, carol):
    room_id = create(alice, preset="public_chat")
    assert join(bob, room_id).status_code == 200
    assert alice.post(f"/rooms/{q(room_id)}/ban", {"user_id": carol.user_id}).status_code == 200
    assert_error(bob.post(f"/rooms/{q(room_id)}/unban", {"user_id": carol.user_id}), 403, "M_FORBIDDEN")
    assert member(alice, room_id, carol.user_id)["membership"] == "ban"


def test_unbanning_a_user_who_is_not_banned_is_forbidden(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert join(bob, room_id).status_code == 200
    assert_error(alice.post(f"/rooms/{q(room_id)}/unban", {"user_id": bob.user_id}), 403, "M_FORBIDDEN")
    assert member(alice, room_id, bob.user_id)["membership"] == "join"


def test_v11_moderator_with_power_may_kick(alice, bob, carol):
    room_id = create(alice, room_version="11", preset="public_chat",
                     power_level_content_override={"users": {alice.user_id: 100, bob.user_id: 50}})
    assert join(bob, room_id).status_code == 200
    assert join(carol, room_id).status_code == 200
    assert bob.post(f"/rooms/{q(room_id)}/kick", {"user_id": carol.user_id}).status_code == 200
    # But not someone of their own level or above.
    assert_error(bob.post(f"/rooms/{q(room_id)}/kick", {"user_id": alice.user_id}), 403, "M_FORBIDDEN")


# --- knock ------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["7", "11", "12"])
def test_knock_on_a_knock_room_then_get_invited_and_join(alice, bob, version):
    room_id = create(alice, room_version=version, preset="private_chat",
                     initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}])
    resp = bob.post(f"/knock/{q(room_id)}", {"reason": "let me in"})
    assert resp.status_code == 200, resp.text
    jsonschema.validate(resp.json(), response_schema("/_matrix/client/v3/knock/{roomIdOrAlias}", "post", 200))
    assert resp.json() == {"room_id": room_id}
    knock = member(alice, room_id, bob.user_id)
    assert knock["membership"] == "knock" and knock["reason"] == "let me in"
    knocks = alice.get(f"/rooms/{q(room_id)}/members", params={"membership": "knock"}).json()["chunk"]
    assert [m["state_key"] for m in knocks] == [bob.user_id]
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}).status_code == 200
    assert join(bob, room_id).status_code == 200
    assert room_id in joined_rooms(bob)


def test_knock_by_alias(alice, bob):
    local = f"knock{uuid.uuid4().hex[:8]}"
    room_id = create(alice, room_alias_name=local,
                     initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}])
    resp = bob.post(f"/knock/{q(f'#{local}:test.local')}", {})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"room_id": room_id}


def test_knocking_on_a_public_room_is_forbidden(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert_error(bob.post(f"/knock/{q(room_id)}", {}), 403, "M_FORBIDDEN")


def test_knocking_on_an_invite_only_room_is_forbidden(alice, bob):
    room_id = create(alice, preset="private_chat")
    assert_error(bob.post(f"/knock/{q(room_id)}", {}), 403, "M_FORBIDDEN")


def test_knocking_is_forbidden_before_room_version_7(alice, bob):
    room_id = create(alice, room_version="6",
                     initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}])
    assert_error(bob.post(f"/knock/{q(room_id)}", {}), 403, "M_FORBIDDEN")


def test_knocking_on_an_unknown_room_is_not_found(bob):
    assert_error(bob.post(f"/knock/{q('!nosuchroom:test.local')}", {}), 404, "M_NOT_FOUND")


def test_banned_user_cannot_knock(alice, bob):
    room_id = create(alice, initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}])
    assert alice.post(f"/rooms/{q(room_id)}/ban", {"user_id": bob.user_id}).status_code == 200
    assert_error(bob.post(f"/knock/{q(room_id)}", {}), 403, "M_FORBIDDEN")


def test_a_knock_can_be_withdrawn_and_denied(alice, bob, carol):
    room_id = create(alice, initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}])
    assert bob.post(f"/knock/{q(room_id)}", {}).status_code == 200
    assert bob.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    assert member(alice, room_id, bob.user_id) == {"membership": "leave"}
    assert carol.post(f"/knock/{q(room_id)}", {}).status_code == 200
    assert alice.post(f"/rooms/{q(room_id)}/kick", {"user_id": carol.user_id, "reason": "no"}).status_code == 200
    assert member(alice, room_id, carol.user_id) == {"membership": "leave", "reason": "no"}


# --- forget -----------------------------------------------------------------------------------

def test_forget_is_refused_while_joined_and_allowed_after_leaving(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert join(bob, room_id).status_code == 200
    assert_error(bob.post(f"/rooms/{q(room_id)}/forget", {}), 400, "M_UNKNOWN")
    assert bob.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    resp = bob.post(f"/rooms/{q(room_id)}/forget", {})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    # Forgetting twice is harmless.
    assert bob.post(f"/rooms/{q(room_id)}/forget", {}).status_code == 200


def test_forget_is_refused_while_invited(alice, bob):
    room_id = create(alice)
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}).status_code == 200
    assert_error(bob.post(f"/rooms/{q(room_id)}/forget", {}), 400, "M_UNKNOWN")


def test_forget_after_a_ban(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert join(bob, room_id).status_code == 200
    assert alice.post(f"/rooms/{q(room_id)}/ban", {"user_id": bob.user_id}).status_code == 200
    assert bob.post(f"/rooms/{q(room_id)}/forget", {}).status_code == 200


def test_forgotten_room_comes_back_on_rejoin(alice, bob, db_dsn):
    import psycopg2
    room_id = create(alice, preset="public_chat")
    assert join(bob, room_id).status_code == 200
    assert bob.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    assert bob.post(f"/rooms/{q(room_id)}/forget", {}).status_code == 200
    with psycopg2.connect(db_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM room_forgotten WHERE user_id = %s AND room_id = %s",
                    (bob.user_id, room_id))
        assert cur.fetchone() == (1,)
        assert join(bob, room_id).status_code == 200
        cur.execute("SELECT count(*) FROM room_forgotten WHERE user_id = %s AND room_id = %s",
                    (bob.user_id, room_id))
        assert cur.fetchone() == (0,)
    conn.close()


# --- restricted rooms -------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["10", "12"])
def test_joining_a_restricted_room_through_an_allowed_room_is_authorised_by_a_member(alice, bob, version):
    space = create(alice, preset="public_chat", room_version=version)
    room_id = create(alice, room_version=version, initial_state=[{"type": "m.room.join_rules", "content": {
        "join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}}])
    # Not in the allowed room yet: the restricted room is closed.
    assert_error(join(bob, room_id), 403, "M_FORBIDDEN")
    assert join(bob, space).status_code == 200
    resp = join(bob, room_id)
    assert resp.status_code == 200, resp.text
    content = member(alice, room_id, bob.user_id)
    assert content["membership"] == "join"
    assert content["join_authorised_via_users_server"] == alice.user_id


def test_restricted_join_is_authorised_by_a_moderator_when_the_creator_left(alice, bob, carol, homeserver):
    dave = new_user(homeserver, "dave")
    space = create(alice, preset="public_chat", room_version="10")
    room_id = create(alice, room_version="10", power_level_content_override={
        "users": {alice.user_id: 100, dave.user_id: 50}, "invite": 50},
        initial_state=[{"type": "m.room.join_rules", "content": {
            "join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}}])
    assert join(dave, space).status_code == 200
    assert join(dave, room_id).status_code == 200
    assert member(alice, room_id, dave.user_id)["join_authorised_via_users_server"] == alice.user_id
    assert join(carol, space).status_code == 200
    assert join(carol, room_id).status_code == 200
    assert alice.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    assert join(bob, space).status_code == 200
    assert join(bob, room_id).status_code == 200
    # Carol (level 0, below invite 50) cannot vouch; Dave (50) can.
    assert member(dave, room_id, bob.user_id)["join_authorised_via_users_server"] == dave.user_id


def test_restricted_join_is_authorised_by_any_member_when_everyone_may_invite(alice, bob, carol):
    space = create(alice, preset="public_chat", room_version="10")
    room_id = create(alice, room_version="10", initial_state=[{"type": "m.room.join_rules", "content": {
        "join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}}])
    assert state_levels(alice, room_id)["invite"] == 0
    assert join(carol, space).status_code == 200
    assert join(carol, room_id).status_code == 200
    assert alice.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    assert join(bob, space).status_code == 200
    assert join(bob, room_id).status_code == 200
    assert member(carol, room_id, bob.user_id)["join_authorised_via_users_server"] == carol.user_id


def test_restricted_join_fails_when_nobody_in_the_room_may_vouch(alice, bob):
    space = create(alice, preset="public_chat", room_version="10")
    room_id = create(alice, room_version="10", initial_state=[{"type": "m.room.join_rules", "content": {
        "join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}}])
    assert alice.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    assert join(bob, space).status_code == 200
    assert_error(join(bob, room_id), 403, "M_FORBIDDEN")


def state_levels(client, room_id) -> dict:
    return client.get(f"/rooms/{q(room_id)}/state/m.room.power_levels/").json()


def test_invited_user_joins_a_restricted_room_without_an_authoriser(alice, bob):
    room_id = create(alice, room_version="10", initial_state=[{"type": "m.room.join_rules", "content": {
        "join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": "!other:test.local"}]}}])
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}).status_code == 200
    assert join(bob, room_id).status_code == 200
    assert "join_authorised_via_users_server" not in member(alice, room_id, bob.user_id)


# --- errors on the room itself ----------------------------------------------------------------

@pytest.mark.parametrize("path", ["/rooms/{}/join", "/join/{}", "/rooms/{}/leave", "/rooms/{}/forget"])
def test_unknown_room_is_not_found(bob, path):
    assert_error(bob.post(path.format(q("!nosuchroom:test.local")), {}), 404, "M_NOT_FOUND")


@pytest.mark.parametrize("action", ["invite", "kick", "ban", "unban"])
def test_actions_on_an_unknown_room_are_not_found(alice, bob, action):
    resp = alice.post(f"/rooms/{q('!nosuchroom:test.local')}/{action}", {"user_id": bob.user_id})
    assert_error(resp, 404, "M_NOT_FOUND")


@pytest.mark.parametrize("path", ["/rooms/{}/join", "/rooms/{}/leave", "/rooms/{}/invite", "/rooms/{}/kick",
                                  "/rooms/{}/ban", "/rooms/{}/unban", "/rooms/{}/forget", "/join/{}",
                                  "/knock/{}"])
def test_malformed_room_id_is_invalid_param(alice, bob, path):
    resp = alice.post(path.format("notaroom"), {"user_id": bob.user_id})
    assert_error(resp, 400, "M_INVALID_PARAM")


def test_non_member_sending_is_forbidden(alice, bob):
    room_id = create(alice, preset="public_chat")
    resp = bob.put(f"/rooms/{q(room_id)}/send/m.room.message/txn1", {"msgtype": "m.text", "body": "hi"})
    assert_error(resp, 403, "M_FORBIDDEN")


def test_left_member_sending_is_forbidden(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert join(bob, room_id).status_code == 200
    assert bob.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    resp = bob.put(f"/rooms/{q(room_id)}/send/m.room.message/txn1", {"msgtype": "m.text", "body": "hi"})
    assert_error(resp, 403, "M_FORBIDDEN")


def test_join_reason_must_be_a_string(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert_error(bob.post(f"/rooms/{q(room_id)}/join", {"reason": 5}), 400, "M_BAD_JSON")


def test_join_reason_appears_in_the_member_event(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert bob.post(f"/rooms/{q(room_id)}/join", {"reason": "hello"}).status_code == 200
    assert member(alice, room_id, bob.user_id)["reason"] == "hello"


def _timeline_members(client, room_id, user_id) -> list[str]:
    chunk = client.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 50}).json()["chunk"]
    return [e["content"]["membership"] for e in chunk if e["type"] == "m.room.member" and e["state_key"] == user_id]


def test_joining_twice_does_not_add_a_second_join_event(alice, bob):
    room_id = create(alice, preset="public_chat")
    first = join(bob, room_id)
    again = join(bob, room_id)
    assert first.status_code == again.status_code == 200
    assert again.json() == {"room_id": room_id}
    assert _timeline_members(alice, room_id, bob.user_id) == ["join"]


def test_joining_again_with_a_new_reason_is_a_new_event(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert join(bob, room_id).status_code == 200
    assert bob.post(f"/rooms/{q(room_id)}/join", {"reason": "back"}).status_code == 200
    assert _timeline_members(alice, room_id, bob.user_id) == ["join", "join"]


def test_inviting_twice_does_not_add_a_second_invite_event(alice, bob):
    room_id = create(alice)
    for _ in range(2):
        assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}).status_code == 200
    assert _timeline_members(alice, room_id, bob.user_id) == ["invite"]


def test_a_remote_user_can_be_banned_but_not_invited(alice):
    room_id = create(alice, preset="public_chat")
    remote = "@spammer:elsewhere.example"
    resp = alice.post(f"/rooms/{q(room_id)}/ban", {"user_id": remote, "reason": "spam"})
    assert resp.status_code == 200, resp.text
    assert member(alice, room_id, remote) == {"membership": "ban", "reason": "spam"}
    assert alice.post(f"/rooms/{q(room_id)}/unban", {"user_id": remote}).status_code == 200
    assert member(alice, room_id, remote) == {"membership": "leave"}
    assert_error(alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": remote}), 403, "M_FORBIDDEN")


# --- guests (Guest Access module) ------------------------------------------------------------

@pytest.fixture(scope="module")
def guest_server(pg_server_dsn, template_db):
    # Its own database: two masters must not write events into one.
    from tests.pg import fresh_database
    with fresh_database(pg_server_dsn, "hs_test_guests", template=template_db) as dsn, \
            running_homeserver(dsn, allow_guest_access=True) as server:
        yield server


def new_guest(server) -> Client:
    resp = Client(server).post("/register?kind=guest", {})
    assert resp.status_code == 200, resp.text
    guest = Client(server, resp.json()["access_token"])
    guest.user_id = resp.json()["user_id"]
    return guest


@pytest.fixture(scope="module")
def host(guest_server):
    return new_user(guest_server, "host")


def _guest_room(host, guest_access="can_join") -> str:
    return create(host, preset="public_chat", initial_state=[
        {"type": "m.room.guest_access", "content": {"guest_access": guest_access}}])


def test_guest_joins_a_room_that_allows_guests_and_sends_a_message(host, guest_server):
    guest = new_guest(guest_server)
    room_id = _guest_room(host)
    resp = guest.post(f"/rooms/{q(room_id)}/join", {})
    assert resp.status_code == 200, resp.text
    assert member(host, room_id, guest.user_id)["membership"] == "join"
    resp = guest.put(f"/rooms/{q(room_id)}/send/m.room.message/g1", {"msgtype": "m.text", "body": "hi"})
    assert resp.status_code == 200, resp.text
    body = guest.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 1})
    assert body.status_code == 200 and body.json()["chunk"][0]["content"]["body"] == "hi"
    assert guest.get(f"/rooms/{q(room_id)}/state").status_code == 200
    assert guest.get(f"/rooms/{q(room_id)}/members").status_code == 200
    assert guest.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200


def test_guest_cannot_join_a_room_that_forbids_guests(host, guest_server):
    guest = new_guest(guest_server)
    for room_id in (create(host, preset="public_chat"), _guest_room(host, "forbidden")):
        assert_error(guest.post(f"/join/{q(room_id)}", {}), 403, "M_FORBIDDEN")


def test_guest_may_send_only_messages(host, guest_server):
    guest = new_guest(guest_server)
    room_id = _guest_room(host)
    assert guest.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    resp = guest.put(f"/rooms/{q(room_id)}/send/m.reaction/g2", {})
    assert_error(resp, 403, "M_GUEST_ACCESS_FORBIDDEN")
    assert_error(guest.put(f"/rooms/{q(room_id)}/state/org.example/", {}), 403, "M_GUEST_ACCESS_FORBIDDEN")
    assert_error(guest.post("/createRoom", {}), 403, "M_GUEST_ACCESS_FORBIDDEN")
    assert_error(guest.post(f"/rooms/{q(room_id)}/invite", {"user_id": host.user_id}), 403,
                 "M_GUEST_ACCESS_FORBIDDEN")


def test_closing_guest_access_makes_joined_guests_leave(host, guest_server):
    guests = [new_guest(guest_server) for _ in range(2)]
    room_id = _guest_room(host)
    for guest in guests:
        assert guest.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    resp = host.put(f"/rooms/{q(room_id)}/state/m.room.guest_access/", {"guest_access": "forbidden"})
    assert resp.status_code == 200, resp.text
    for guest in guests:
        event = host.get(f"/rooms/{q(room_id)}/state/m.room.member/{q(guest.user_id)}",
                         params={"format": "event"}).json()
        assert event["content"] == {"membership": "leave"}
        assert event["sender"] == guest.user_id
    joined = host.get(f"/rooms/{q(room_id)}/joined_members").json()["joined"]
    assert list(joined) == [host.user_id]


def test_forgotten_room_history_can_no_longer_be_read(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert join(bob, room_id).status_code == 200
    event_id = alice.put(f"/rooms/{q(room_id)}/send/m.room.message/f1", {"msgtype": "m.text", "body": "x"}).json()[
        "event_id"]
    assert bob.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    assert bob.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b"}).status_code == 200
    assert bob.post(f"/rooms/{q(room_id)}/forget", {}).status_code == 200
    assert_error(bob.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b"}), 403, "M_FORBIDDEN")
    assert_error(bob.get(f"/rooms/{q(room_id)}/state"), 403, "M_FORBIDDEN")
    assert_error(bob.get(f"/rooms/{q(room_id)}/members"), 403, "M_FORBIDDEN")
    assert_error(bob.get(f"/rooms/{q(room_id)}/event/{q(event_id)}"), 403, "M_FORBIDDEN")
    # Joining again brings the room back.
    assert join(bob, room_id).status_code == 200
    assert bob.get(f"/rooms/{q(room_id)}/event/{q(event_id)}").status_code == 200


@pytest.mark.parametrize("path", ["/join/{}", "/knock/{}"])
def test_alias_with_nul_is_invalid_param(bob, path):
    assert_error(bob.post(path.format(q("#a\u0000b:test.local")), {}), 400, "M_INVALID_PARAM")
