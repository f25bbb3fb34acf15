"""POST /rooms/{roomId}/upgrade (client-server API "Room Upgrades", server behaviour): who may
upgrade, the replacement room's create event (predecessor, creators), the state carried over
(power levels with the v12 creator rules), aliases and directory listing moved, the tombstone,
and the old room's power levels restricted. Versions 11->12, 12->12, 1->11 and 12->11."""

import uuid

import jsonschema
import pytest

from tests.api.test_response_schemas import response_schema
from tests.harness import Client, create, new_user, q

PATH = "/_matrix/client/v3/rooms/{roomId}/upgrade"


@pytest.fixture(scope="module")
def alice(homeserver):
    return new_user(homeserver)


@pytest.fixture
def bob(homeserver):
    return new_user(homeserver)


def join(client, room_id):
    resp = client.post(f"/join/{q(room_id)}", {})
    assert resp.status_code == 200, resp.text


def state(client, room_id, event_type, state_key="") -> dict:
    resp = client.get(f"/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}?format=event")
    assert resp.status_code == 200, (event_type, resp.text)
    return resp.json()


def put_state(client, room_id, event_type, content, state_key=""):
    resp = client.put(f"/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}", content)
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"]


def send(client, room_id, body="hi"):
    return client.put(f"/rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}",
                      {"msgtype": "m.text", "body": body})


def upgrade(client, room_id, new_version, **extra) -> str:
    resp = client.post(f"/rooms/{q(room_id)}/upgrade", {"new_version": new_version, **extra})
    assert resp.status_code == 200, resp.text
    jsonschema.validate(resp.json(), response_schema(PATH, "post", 200), cls=jsonschema.Draft202012Validator)
    return resp.json()["replacement_room"]


def assert_error(resp, status, errcode):
    assert resp.status_code == status, resp.text
    assert resp.json()["errcode"] == errcode, resp.text
    jsonschema.validate(resp.json(), response_schema(PATH, "post", status), cls=jsonschema.Draft202012Validator)


def full_room(client, version, **extra) -> str:
    return create(client, room_version=version, preset="public_chat", name="The room", topic="Talk here",
                  initial_state=[{"type": "m.room.avatar", "content": {"url": "mxc://test.local/avatar"}},
                                 {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
                                 {"type": "m.room.server_acl", "content": {"allow": ["*"], "deny": ["evil.example"],
                                                                           "allow_ip_literals": False}}],
                  **extra)


COPIED = {"m.room.join_rules", "m.room.history_visibility", "m.room.guest_access", "m.room.name", "m.room.topic",
          "m.room.avatar", "m.room.encryption", "m.room.server_acl"}


def assert_state_copied(client, old, new):
    for event_type in COPIED:
        assert state(client, new, event_type)["content"] == state(client, old, event_type)["content"], event_type


def assert_old_room_retired(client, old, new, upgrader):
    tombstone = state(client, old, "m.room.tombstone")
    assert tombstone["sender"] == upgrader
    assert tombstone["content"]["replacement_room"] == new
    assert isinstance(tombstone["content"]["body"], str) and tombstone["content"]["body"]
    levels = state(client, old, "m.room.power_levels")["content"]
    assert levels["events_default"] == 50 and levels["invite"] == 50


# --- the versions --------------------------------------------------------------------------------

def test_upgrade_from_11_to_12(alice):
    old = full_room(alice, "11")
    new = upgrade(alice, old, "12")
    assert new.startswith("!") and ":" not in new  # a v12 room ID is the create event's hash
    create_event = state(alice, new, "m.room.create")
    assert create_event["sender"] == alice.user_id
    assert create_event["content"]["room_version"] == "12"
    assert create_event["content"]["predecessor"] == {"room_id": old}
    assert "creator" not in create_event["content"]
    levels = state(alice, new, "m.room.power_levels")["content"]
    old_levels = state(alice, old, "m.room.power_levels")["content"]
    # The upgrader is the creator now, with unlimited power: not listed in users.
    assert alice.user_id not in levels["users"]
    assert levels["events"]["m.room.tombstone"] == 150
    assert {k: v for k, v in levels["events"].items() if k != "m.room.tombstone"} == {
        k: v for k, v in old_levels["events"].items() if k != "m.room.tombstone"}
    assert state(alice, new, "m.room.member", alice.user_id)["content"]["membership"] == "join"
    assert_state_copied(alice, old, new)
    assert_old_room_retired(alice, old, new, alice.user_id)


def test_upgrade_from_12_to_12_keeps_the_other_admins_and_takes_additional_creators(alice, bob, homeserver):
    carol = new_user(homeserver)
    old = full_room(alice, "12")
    for user in (bob, carol):
        join(user, old)
    levels = state(alice, old, "m.room.power_levels")["content"]
    levels["users"] = {bob.user_id: 100, carol.user_id: 50}
    put_state(alice, old, "m.room.power_levels", levels)
    new = upgrade(alice, old, "12", additional_creators=[bob.user_id])
    create_event = state(alice, new, "m.room.create")
    assert create_event["content"]["predecessor"] == {"room_id": old}
    assert create_event["content"]["additional_creators"] == [bob.user_id]
    new_levels = state(alice, new, "m.room.power_levels")["content"]
    # Creators are never in users (v12); the others keep their levels.
    assert new_levels["users"] == {carol.user_id: 50}
    assert new_levels["events"]["m.room.tombstone"] == 150
    assert_state_copied(alice, old, new)
    assert_old_room_retired(alice, old, new, alice.user_id)
    # bob, an additional creator, may do anything in the new room once he joins.
    join(bob, new)
    assert bob.put(f"/rooms/{q(new)}/state/m.room.tombstone/", {"body": "x", "replacement_room": old}
                   ).status_code == 200


def test_upgrade_from_1_to_11(alice):
    old = full_room(alice, "1")
    last = send(alice, old).json()["event_id"]
    new = upgrade(alice, old, "11")
    assert new.endswith(":test.local")
    create_event = state(alice, new, "m.room.create")
    content = create_event["content"]
    assert content["room_version"] == "11"
    assert "creator" not in content and create_event["sender"] == alice.user_id
    # Before v12 the predecessor also names the old room's last event before the upgrade.
    assert content["predecessor"] == {"room_id": old, "event_id": last}
    levels = state(alice, new, "m.room.power_levels")["content"]
    assert levels == state(alice, old, "m.room.power_levels")["content"] | {"events_default": 0, "invite": 50}
    assert levels["users"] == {alice.user_id: 100}
    assert_state_copied(alice, old, new)
    assert_old_room_retired(alice, old, new, alice.user_id)


def test_upgrade_to_10_names_the_creator_in_content(alice):
    old = create(alice, room_version="11")
    new = upgrade(alice, old, "10")
    assert state(alice, new, "m.room.create")["content"]["creator"] == alice.user_id


def test_string_power_levels_of_an_old_room_become_integers(alice, bob):
    old = create(alice, room_version="1")
    join_rules = put_state(alice, old, "m.room.join_rules", {"join_rule": "public"})
    assert join_rules
    join(bob, old)
    levels = state(alice, old, "m.room.power_levels")["content"]
    levels["users"][bob.user_id] = "25"
    levels["ban"] = " 60 "
    put_state(alice, old, "m.room.power_levels", levels)
    new = upgrade(alice, old, "11")
    new_levels = state(alice, new, "m.room.power_levels")["content"]
    assert new_levels["users"] == {alice.user_id: 100, bob.user_id: 25}
    assert new_levels["ban"] == 60


def test_downgrading_from_12_keeps_the_creators_on_top(alice):
    old = create(alice, room_version="12")
    new = upgrade(alice, old, "11")
    levels = state(alice, new, "m.room.power_levels")["content"]
    # Unlimited power is not expressible in v11: the old creator gets the room's top level.
    assert levels["users"][alice.user_id] == 150
    assert send(alice, new).status_code == 200


# --- what else moves -----------------------------------------------------------------------------

def test_local_aliases_and_the_canonical_alias_move_to_the_new_room(alice):
    localpart = f"room{uuid.uuid4().hex[:8]}"
    old = create(alice, room_alias_name=localpart)
    alias = f"#{localpart}:test.local"
    extra = f"#{localpart}-alt:test.local"
    assert alice.put(f"/directory/room/{q(extra)}", {"room_id": old}).status_code == 200
    put_state(alice, old, "m.room.canonical_alias", {"alias": alias, "alt_aliases": [extra]})
    new = upgrade(alice, old, "12")
    for name in (alias, extra):
        resp = alice.get(f"/directory/room/{q(name)}")
        assert resp.status_code == 200 and resp.json()["room_id"] == new
    assert state(alice, new, "m.room.canonical_alias")["content"] == {"alias": alias, "alt_aliases": [extra]}
    assert state(alice, old, "m.room.canonical_alias")["content"] == {}


def test_a_published_room_is_replaced_in_the_directory(alice):
    old = create(alice, visibility="public")
    new = upgrade(alice, old, "12")
    assert alice.get(f"/directory/list/room/{q(old)}").json() == {"visibility": "private"}
    assert alice.get(f"/directory/list/room/{q(new)}").json() == {"visibility": "public"}


def test_a_private_room_stays_out_of_the_directory(alice):
    old = create(alice)
    new = upgrade(alice, old, "12")
    assert alice.get(f"/directory/list/room/{q(new)}").json() == {"visibility": "private"}


def test_bans_carry_over(alice, bob):
    old = create(alice, preset="public_chat")
    join(bob, old)
    assert alice.post(f"/rooms/{q(old)}/ban", {"user_id": bob.user_id, "reason": "spam"}).status_code == 200
    new = upgrade(alice, old, "12")
    ban = state(alice, new, "m.room.member", bob.user_id)["content"]
    assert ban == {"membership": "ban", "reason": "spam"}
    assert bob.post(f"/join/{q(new)}", {}).status_code == 403


def test_members_cannot_talk_in_the_old_room_after_the_upgrade(alice, bob):
    old = create(alice, preset="public_chat", room_version="11")
    join(bob, old)
    assert send(bob, old).status_code == 200
    new = upgrade(alice, old, "12")
    resp = send(bob, old)
    assert resp.status_code == 403 and resp.json()["errcode"] == "M_FORBIDDEN"
    join(bob, new)
    assert send(bob, new).status_code == 200


def test_a_space_keeps_its_type_and_children(alice):
    child = create(alice)
    old = create(alice, room_version="11", creation_content={"type": "m.space"})
    put_state(alice, old, "m.space.child", {"via": ["test.local"]}, state_key=child)
    new = upgrade(alice, old, "12")
    assert state(alice, new, "m.room.create")["content"]["type"] == "m.space"
    assert state(alice, new, "m.space.child", child)["content"] == {"via": ["test.local"]}


def test_an_upgrader_short_of_some_state_levels_gets_them_only_while_copying(alice, bob):
    old = full_room(alice, "11")
    join(bob, old)
    levels = state(alice, old, "m.room.power_levels")["content"]
    # bob may tombstone (upgrade) but not send server ACLs, encryption or power levels.
    levels["users"][bob.user_id] = 60
    levels["events"]["m.room.tombstone"] = 60
    put_state(alice, old, "m.room.power_levels", levels)
    new = upgrade(bob, old, "11")
    new_levels = state(bob, new, "m.room.power_levels")["content"]
    assert new_levels["users"] == {alice.user_id: 100, bob.user_id: 60}
    assert state(bob, new, "m.room.server_acl")["content"]["deny"] == ["evil.example"]
    assert state(bob, new, "m.room.encryption")["sender"] == bob.user_id
    assert state(bob, old, "m.room.tombstone")["content"]["replacement_room"] == new
    # Restricting the old room needs power bob lacks there: the upgrade goes on without it.
    assert state(bob, old, "m.room.power_levels")["content"] == levels


# --- refusals ------------------------------------------------------------------------------------

def test_an_unknown_room_version_is_refused(alice):
    old = create(alice)
    assert_error(alice.post(f"/rooms/{q(old)}/upgrade", {"new_version": "99"}), 400, "M_UNSUPPORTED_ROOM_VERSION")


def test_a_member_without_tombstone_power_is_forbidden(alice, bob):
    old = create(alice, preset="public_chat", room_version="11")
    join(bob, old)
    assert_error(bob.post(f"/rooms/{q(old)}/upgrade", {"new_version": "12"}), 403, "M_FORBIDDEN")
    assert bob.get(f"/rooms/{q(old)}/state/m.room.tombstone/").status_code == 404


def test_a_v12_admin_below_the_tombstone_level_is_forbidden(alice, bob):
    old = create(alice, preset="public_chat", room_version="12")
    join(bob, old)
    levels = state(alice, old, "m.room.power_levels")["content"]
    levels["users"][bob.user_id] = 100
    put_state(alice, old, "m.room.power_levels", levels)
    assert_error(bob.post(f"/rooms/{q(old)}/upgrade", {"new_version": "12"}), 403, "M_FORBIDDEN")


def test_a_non_member_is_forbidden(alice, bob):
    old = create(alice, preset="public_chat")
    assert_error(bob.post(f"/rooms/{q(old)}/upgrade", {"new_version": "12"}), 403, "M_FORBIDDEN")


def test_an_unknown_room_is_not_found(alice):
    resp = alice.post(f"/rooms/{q('!nope:test.local')}/upgrade", {"new_version": "12"})
    assert resp.status_code == 404 and resp.json()["errcode"] == "M_NOT_FOUND"


@pytest.mark.parametrize("body, errcode", [
    ({}, "M_MISSING_PARAM"),
    ({"new_version": 12}, "M_BAD_JSON"),
    ({"new_version": "12", "additional_creators": "@a:b"}, "M_BAD_JSON"),
    ({"new_version": "12", "additional_creators": [5]}, "M_BAD_JSON"),
    ({"new_version": "12", "additional_creators": ["not a user"]}, "M_INVALID_PARAM"),
])
def test_malformed_requests_are_refused(alice, body, errcode):
    old = create(alice)
    resp = alice.post(f"/rooms/{q(old)}/upgrade", body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["errcode"] == errcode
    assert alice.get(f"/rooms/{q(old)}/state/m.room.tombstone/").status_code == 404


def test_upgrading_needs_an_access_token(homeserver, alice):
    old = create(alice)
    resp = Client(homeserver).post(f"/rooms/{q(old)}/upgrade", {"new_version": "12"})
    assert resp.status_code == 401 and resp.json()["errcode"] == "M_MISSING_TOKEN"
