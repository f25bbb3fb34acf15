"""Targeted tests of the tricky authorization rules. Rule numbers are room version 12's unless
a version is named (see hs/events/auth_rules.py for the mapping)."""

import copy

import nacl.signing
import pytest

from hs.events.auth_rules import (
    AuthError,
    auth_types_for_event,
    check_auth_events_list,
    check_auth_rules,
)
from hs.events.canonical_json import urlsafe_unpadded_b64encode
from hs.events.event import Event
from hs.events.room_versions import KNOWN_ROOM_VERSIONS
from hs.events.signing import SigningKey, sign_json
from tests.unit.event_factory import ALL_VERSIONS, CREATOR, Room, standard_room

ALICE = "@alice:origin.example"
BOB = "@bob:other.example"
CAROL = "@carol:third.example"


def n(v):
    return int(v)


def rejected(room, event):
    with pytest.raises(AuthError) as info:
        room.check(event)
    return info.value.reason


# Rule 1: m.room.create.

@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_create_with_prev_events_is_rejected(v):  # 1.1
    room = Room(v)
    create = room.event("m.room.create", CREATOR, dict(room.create.content), state_key="",
                        prev_events=[room.create.event_id])
    with pytest.raises(AuthError, match="prev_events"):
        check_auth_rules(create, {})


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_create_room_id_rule(v):  # 1.2
    room = Room(v)
    pdu = copy.deepcopy(room.create.pdu)
    if n(v) >= 12:
        pdu["room_id"] = "!anything:origin.example"  # v12: any room_id at all is refused
    else:
        pdu["room_id"] = "!room:elsewhere.example"  # v1-v11: must be on the sender's server
    with pytest.raises(AuthError, match="room_id"):
        check_auth_rules(Event(pdu, room.version, room.create.event_id), {})
    check_auth_rules(room.create, {})


@pytest.mark.parametrize("claimed, ok", [("1", True), ("12", True), ("13", False), ("org.example.v1", False), (12, False)])
def test_create_with_an_unknown_room_version_is_rejected(claimed, ok):  # 1.3
    room = Room("11")
    create = room.event("m.room.create", CREATOR, {"room_version": claimed}, state_key="", prev_events=[])
    if ok:
        check_auth_rules(create, {})
    else:
        with pytest.raises(AuthError, match="room version"):
            check_auth_rules(create, {})


def test_create_without_room_version_means_v1_and_is_allowed():
    room = Room("5")
    create = room.event("m.room.create", CREATOR, {"creator": CREATOR}, state_key="", prev_events=[])
    check_auth_rules(create, {})


@pytest.mark.parametrize("additional, ok", [
    ([BOB, CAROL], True), ([], True), (BOB, False), ([BOB, 7], False), (["bob"], False), ([BOB, "@x"], False),
])
def test_v12_additional_creators_must_be_user_ids(additional, ok):  # v12 1.4
    room = Room("12")
    create = room.event("m.room.create", CREATOR, {"room_version": "12", "additional_creators": additional},
                        state_key="", prev_events=[])
    if ok:
        check_auth_rules(create, {})
    else:
        with pytest.raises(AuthError, match="additional_creators"):
            check_auth_rules(create, {})


def test_v11_does_not_look_at_additional_creators():
    room = Room("11")
    create = room.event("m.room.create", CREATOR, {"room_version": "11", "additional_creators": "junk"},
                        state_key="", prev_events=[])
    check_auth_rules(create, {})


# Rule 2 (v12): the room ID is the accepted create event's ID.

def test_v12_event_whose_room_id_is_not_the_create_events_id_is_rejected():
    room = standard_room("12")
    other = Room("12")
    message = room.event("m.room.message", CREATOR, {"body": "x"})
    with pytest.raises(AuthError, match="room ID"):
        check_auth_rules(message, dict(room.state), create_event=other.create)


def test_v12_event_in_a_room_whose_create_event_was_rejected_is_rejected():
    room = standard_room("12")
    room.create.rejected_reason = "auth"
    assert "rejected" in rejected(room, room.event("m.room.message", CREATOR, {"body": "x"}))


def test_v12_create_event_is_read_from_a_full_state_map_when_not_passed():
    room = standard_room("12")
    message = room.event("m.room.message", CREATOR, {"body": "x"})
    check_auth_rules(message, dict(room.state))  # the state map holds the create event
    with pytest.raises(AuthError):
        check_auth_rules(message, {k: e for k, e in room.state.items() if k[0] != "m.room.create"})


# Rule 3 (v1-v11: 2): the event's auth_events list.

def auth_events_of(room, event):
    by_id = {e.event_id: e for e in room.state.values()}
    return [by_id[i] for i in event.auth_event_ids]


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_auth_events_list_is_keyed_for_check_auth_rules(v):
    room = standard_room(v, members=(ALICE,))
    message = room.event("m.room.message", ALICE, {"body": "x"})
    keyed = check_auth_events_list(message, auth_events_of(room, message))
    expected = {("m.room.power_levels", ""), ("m.room.member", ALICE)}
    if n(v) <= 11:
        expected.add(("m.room.create", ""))
    assert set(keyed) == expected
    check_auth_rules(message, keyed, create_event=room.create)


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_duplicate_auth_events_for_one_key_are_rejected(v):  # 3.1
    room = standard_room(v, members=(ALICE,))
    message = room.event("m.room.message", ALICE, {"body": "x"})
    auth_events = auth_events_of(room, message)
    auth_events.append(room.set_power_levels({"users": {}}))
    with pytest.raises(AuthError, match="Duplicate"):
        check_auth_events_list(message, auth_events)


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_auth_events_the_selection_would_not_choose_are_rejected(v):  # 3.2
    room = standard_room(v, members=(ALICE, BOB))
    message = room.event("m.room.message", ALICE, {"body": "x"})
    extra = [room.state[("m.room.member", BOB)]]
    with pytest.raises(AuthError, match="not one the event may cite"):
        check_auth_events_list(message, auth_events_of(room, message) + extra)
    join_rules = [room.state[("m.room.join_rules", "")]]  # only member events cite join rules
    with pytest.raises(AuthError, match="not one the event may cite"):
        check_auth_events_list(message, auth_events_of(room, message) + join_rules)


def test_v12_create_event_among_auth_events_is_rejected():  # v12 3.2
    room = standard_room("12", members=(ALICE,))
    message = room.event("m.room.message", ALICE, {"body": "x"})
    with pytest.raises(AuthError, match="not one the event may cite"):
        check_auth_events_list(message, auth_events_of(room, message) + [room.create])


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_rejected_auth_events_are_rejected(v):  # 3.3
    room = standard_room(v, members=(ALICE,))
    message = room.event("m.room.message", ALICE, {"body": "x"})
    room.state[("m.room.power_levels", "")].rejected_reason = "auth"
    with pytest.raises(AuthError, match="rejected"):
        check_auth_events_list(message, auth_events_of(room, message))


@pytest.mark.parametrize("v", ALL_VERSIONS[:11])
def test_v1_to_v11_auth_events_without_the_create_event_are_rejected(v):  # v1-v11 2.4
    room = standard_room(v, members=(ALICE,))
    message = room.event("m.room.message", ALICE, {"body": "x"})
    without_create = [e for e in auth_events_of(room, message) if e.type != "m.room.create"]
    with pytest.raises(AuthError, match="No m.room.create"):
        check_auth_events_list(message, without_create)
    with pytest.raises(AuthError, match="No m.room.create"):
        check_auth_rules(message, {(e.type, e.state_key): e for e in without_create})


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_auth_events_from_another_room_are_rejected(v):  # 3.5
    room = standard_room(v, members=(ALICE,))
    elsewhere = standard_room(v, members=(ALICE,))
    message = room.event("m.room.message", ALICE, {"body": "x"})
    auth_events = [e for e in auth_events_of(room, message) if e.type != "m.room.member"]
    auth_events.append(elsewhere.state[("m.room.member", ALICE)])
    if n(v) <= 11:
        # The factory gives every v1-v11 room of one creator the same ID: move the event by hand.
        elsewhere.state[("m.room.member", ALICE)].pdu["room_id"] = "!other:origin.example"
    with pytest.raises(AuthError, match="another room"):
        check_auth_events_list(message, auth_events)
    state = dict(room.state)
    state[("m.room.member", ALICE)] = elsewhere.state[("m.room.member", ALICE)]
    with pytest.raises(AuthError, match="another room"):
        check_auth_rules(message, state, create_event=room.create)


# Rule 4: m.federate.

@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_unfederated_room_refuses_events_from_other_servers(v):
    room = standard_room(v, members=(ALICE, BOB), create_content={"m.federate": False})
    assert "other servers" in rejected(room, room.event("m.room.message", BOB, {"body": "x"}))
    room.check(room.event("m.room.message", ALICE, {"body": "x"}))


@pytest.mark.parametrize("value", [True, "false", 0, None])
def test_only_m_federate_false_restricts_the_room(value):
    # The rule says "set to false"; other values leave the room federated.
    room = standard_room("11", members=(BOB,), create_content={"m.federate": value})
    room.check(room.event("m.room.message", BOB, {"body": "x"}))


# v1-v5 rule 4: m.room.aliases.

@pytest.mark.parametrize("v", ["1", "5"])
def test_aliases_state_key_must_be_the_senders_server(v):
    room = standard_room(v)
    event = room.event("m.room.aliases", BOB, {"aliases": []}, state_key="origin.example")
    assert "server name" in rejected(room, event)
    no_key = room.event("m.room.aliases", BOB, {"aliases": []})
    assert "state event" in rejected(room, no_key)


# Rule 5.1-5.3: joins.

@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_creators_first_join_right_after_create_is_allowed(v):  # 5.3.1
    room = Room(v)
    room.send(room.member(CREATOR, "join"))


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_first_join_rule_needs_the_create_event_as_only_prev_event(v):  # 5.3.1
    room = Room(v)
    join = room.event("m.room.member", CREATOR, {"membership": "join"}, state_key=CREATOR,
                      prev_events=[room.create.event_id, "$other:origin.example"])
    # Falls through to the join rules: no join rules event reads as invite, and no invite.
    assert "not invited" in rejected(room, join)


@pytest.mark.parametrize("v", ALL_VERSIONS[:10])
def test_up_to_v10_the_first_join_is_for_content_creator(v):
    room = Room(v, create_content={"creator": ALICE})
    room.check(room.member(ALICE, "join"))
    assert "not invited" in rejected(room, room.member(CREATOR, "join"))


@pytest.mark.parametrize("v", ["11", "12"])
def test_from_v11_the_first_join_is_for_the_create_sender(v):
    room = Room(v, create_content={"creator": ALICE})
    room.check(room.member(CREATOR, "join"))
    assert "not invited" in rejected(room, room.member(ALICE, "join"))


def test_v12_additional_creators_first_join_is_not_special():
    room = Room("12", create_content={"additional_creators": [BOB]})
    assert "not invited" in rejected(room, room.member(BOB, "join"))


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_member_event_without_membership_or_state_key_is_rejected(v):  # 5.1
    room = standard_room(v)
    assert "membership" in rejected(room, room.event("m.room.member", ALICE, {}, state_key=ALICE))
    assert "membership" in rejected(room, room.event("m.room.member", ALICE, {"membership": "join"}))


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_unknown_membership_is_rejected(v):  # 5.8
    room = standard_room(v, members=(ALICE,))
    assert "Unknown membership" in rejected(room, room.member(ALICE, "lurk"))


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_authorised_join_must_carry_the_authorising_servers_signature(v):  # 5.2 (v8+)
    room = standard_room(v, join_rule="restricted", members=(BOB,))
    join = room.member(ALICE, "join", join_authorised_via_users_server=BOB)
    if n(v) >= 8:
        assert "signed by the authorising" in rejected(room, join)
        join.pdu["signatures"]["other.example"] = {"ed25519:k": "sig"}
        room.check(join)
    else:
        assert "not allowed to join" in rejected(room, join)  # v1-v7 have no restricted rule


@pytest.mark.parametrize("v", ALL_VERSIONS[7:])
def test_authorising_key_is_checked_even_in_a_public_room(v):  # 5.2 precedes the join rule
    room = standard_room(v, join_rule="public", members=(BOB,))
    join = room.member(ALICE, "join", join_authorised_via_users_server=BOB)
    assert "signed by the authorising" in rejected(room, join)
    join.pdu["content"]["join_authorised_via_users_server"] = None
    assert "signed by the authorising" in rejected(room, join)


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_a_room_without_join_rules_behaves_as_invite_only(v):
    room = Room(v)
    room.force(room.member(CREATOR, "join"))
    assert "not invited" in rejected(room, room.member(ALICE, "join"))
    room.set_member(ALICE, "invite", sender=CREATOR)
    room.check(room.member(ALICE, "join"))


# Rule 5.4.1: third party invites.

# This seed's public key has '+' and '/', so its URL-safe encoding differs.
IS_KEY = SigningKey("0", nacl.signing.SigningKey(b"\x02" * 32))
OTHER_KEY = SigningKey("0", nacl.signing.SigningKey(b"\x01" * 32))
TOKEN = "abc123"


def third_party_room(v, *, public_key=None, public_keys=None, sender=ALICE):
    room = standard_room(v, members=(ALICE, BOB))
    content = {"display_name": "c...@example.com", "key_validity_url": "https://id.example/isvalid"}
    if public_key is not None:
        content["public_key"] = public_key
    if public_keys is not None:
        content["public_keys"] = public_keys
    room.force(room.event("m.room.third_party_invite", sender, content, state_key=TOKEN))
    return room


def signed_block(key=IS_KEY, mxid=CAROL, token=TOKEN):
    return sign_json({"mxid": mxid, "token": token}, "id.example", key)


def third_party_invite(room, signed, sender=ALICE, target=CAROL):
    return room.member(target, "invite", sender=sender,
                       third_party_invite={"display_name": "c...@example.com", "signed": signed})


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_third_party_invite_signed_by_the_public_key_is_allowed(v):  # 5.4.1.7
    room = third_party_room(v, public_key=IS_KEY.verify_key_base64)
    room.check(third_party_invite(room, signed_block()))


def test_third_party_invite_accepts_any_key_of_public_keys_in_either_base64_alphabet():  # 5.4.1.7.2
    urlsafe = urlsafe_unpadded_b64encode(bytes(IS_KEY.verify_key))
    assert urlsafe != IS_KEY.verify_key_base64
    room = third_party_room("11", public_key=OTHER_KEY.verify_key_base64,
                            public_keys=[{"public_key": "not base64!"}, {"public_key": urlsafe}])
    room.check(third_party_invite(room, signed_block()))


def test_third_party_invite_signed_by_another_key_is_rejected():  # 5.4.1.8
    room = third_party_room("11", public_key=IS_KEY.verify_key_base64)
    assert "not signed by any" in rejected(room, third_party_invite(room, signed_block(key=OTHER_KEY)))


def test_third_party_invite_with_a_tampered_signed_block_is_rejected():  # 5.4.1.8
    room = third_party_room("11", public_key=IS_KEY.verify_key_base64)
    signed = signed_block()
    signed["extra"] = "added after signing"
    assert "not signed by any" in rejected(room, third_party_invite(room, signed))


def test_third_party_invite_with_a_non_ed25519_signature_is_rejected():
    room = third_party_room("11", public_key=IS_KEY.verify_key_base64)
    signed = signed_block()
    signed["signatures"]["id.example"] = {"curve25519:0": signed["signatures"]["id.example"]["ed25519:0"]}
    assert "not signed by any" in rejected(room, third_party_invite(room, signed))


@pytest.mark.parametrize("mutate, reason", [
    (lambda s: s.pop("token"), "mxid and token"),  # 5.4.1.3
    (lambda s: s.pop("mxid"), "mxid and token"),  # 5.4.1.3
    (lambda s: s.update({"mxid": BOB}), "not the invited user"),  # 5.4.1.4
    (lambda s: s.update({"token": "other"}), "No m.room.third_party_invite"),  # 5.4.1.5
])
def test_third_party_invite_signed_block_must_match(mutate, reason):
    room = third_party_room("11", public_key=IS_KEY.verify_key_base64)
    signed = {"mxid": CAROL, "token": TOKEN}
    mutate(signed)
    signed = sign_json(signed, "id.example", IS_KEY)
    assert reason in rejected(room, third_party_invite(room, signed))


def test_third_party_invite_without_signed_is_rejected():  # 5.4.1.2
    room = third_party_room("11", public_key=IS_KEY.verify_key_base64)
    event = room.member(CAROL, "invite", sender=ALICE, third_party_invite={"display_name": "c"})
    assert "no signed object" in rejected(room, event)


def test_third_party_invite_must_come_from_the_sender_of_the_third_party_invite():  # 5.4.1.6
    room = third_party_room("11", public_key=IS_KEY.verify_key_base64)
    assert "Only the sender" in rejected(room, third_party_invite(room, signed_block(), sender=BOB))


def test_third_party_invite_of_a_banned_user_is_rejected():  # 5.4.1.1
    room = third_party_room("11", public_key=IS_KEY.verify_key_base64)
    room.set_member(CAROL, "ban", sender=CREATOR)
    assert "banned" in rejected(room, third_party_invite(room, signed_block()))


# Rules 5.5-5.7: leave, ban, knock.

@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_own_leave_needs_a_membership_to_leave(v):  # 5.5.1
    room = standard_room(v, join_rule="knock")
    room.set_member(ALICE, "invite", sender=CREATOR)
    room.check(room.member(ALICE, "leave"))  # rejecting an invite
    room.set_member(ALICE, "knock")
    if n(v) >= 7:
        room.check(room.member(ALICE, "leave"))  # retracting a knock
    else:
        rejected(room, room.member(ALICE, "leave"))
    for membership in ("leave", "ban"):
        room.set_member(ALICE, membership, sender=CREATOR)
        rejected(room, room.member(ALICE, "leave"))


@pytest.mark.parametrize("v", ALL_VERSIONS[6:])
@pytest.mark.parametrize("current", ["ban", "invite", "join"])
def test_knock_refused_when_banned_invited_or_joined(v, current):  # 5.7.3
    room = standard_room(v, join_rule="knock")
    room.set_member(ALICE, current, sender=CREATOR)
    assert "cannot knock" in rejected(room, room.member(ALICE, "knock"))


@pytest.mark.parametrize("v", ALL_VERSIONS[6:])
def test_cannot_knock_for_someone_else(v):  # 5.7.2
    room = standard_room(v, join_rule="knock", members=(BOB,))
    assert "another user" in rejected(room, room.member(ALICE, "knock", sender=BOB))


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_kick_and_ban_need_the_sender_joined(v):  # 5.5.2, 5.6.1
    room = standard_room(v, members=(ALICE,))
    room.set_member(CREATOR, "leave")
    assert "not in the room" in rejected(room, room.member(ALICE, "leave", sender=CREATOR))
    assert "not in the room" in rejected(room, room.member(ALICE, "ban", sender=CREATOR))


# Rules 7-9.

@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_third_party_invite_event_follows_the_invite_level_not_state_default(v):  # 7
    room = standard_room(v, members=(ALICE,), power_levels={"events": {"m.room.third_party_invite": 100}})
    event = room.event("m.room.third_party_invite", ALICE, {"public_key": "x"}, state_key="tok")
    room.check(event)  # invite level 0, even though events says 100
    room = standard_room(v, members=(ALICE,), power_levels={"invite": 10})
    assert "invite" in rejected(room, room.event("m.room.third_party_invite", ALICE, {}, state_key="tok"))


# Rule 10: power levels.

def levels_change(room, sender, change):
    content = copy.deepcopy(room.state[("m.room.power_levels", "")].content)
    change(content)
    return room.event("m.room.power_levels", sender, content, state_key="")


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_first_power_levels_event_is_allowed_whatever_it_grants(v):  # 10.5
    room = Room(v)
    room.force(room.member(CREATOR, "join"))
    levels = {"users": {ALICE: 1_000_000}, "ban": 1_000_000}
    room.check(room.event("m.room.power_levels", CREATOR, levels, state_key=""))


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_power_levels_users_keys_must_be_user_ids(v):  # 10.3
    room = standard_room(v)
    event = levels_change(room, CREATOR, lambda c: c["users"].update({"not-a-user": 0}))
    assert "invalid user ID" in rejected(room, event)
    event = levels_change(room, CREATOR, lambda c: c.update({"users": [ALICE]}))
    assert "must be an object" in rejected(room, event)


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_power_levels_user_values_must_be_integers_or_before_v10_numeric_strings(v):  # 10.3
    room = standard_room(v)
    for value in ("ten", True, None, []):
        event = levels_change(room, CREATOR, lambda c, value=value: c["users"].update({ALICE: value}))
        assert "Invalid power levels" in rejected(room, event), value
    # v1-v5 read floats by truncating them; v6+ have no floats (canonical JSON).
    event = levels_change(room, CREATOR, lambda c: c["users"].update({ALICE: 1.5}))
    assert room.allows(event) is (n(v) <= 5)
    event = levels_change(room, CREATOR, lambda c: c["users"].update({ALICE: "+07"}))
    assert room.allows(event) is (n(v) < 10)


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_v10_events_and_notifications_must_be_objects_of_integers(v):  # 10.2
    for bad in ({"events": {"m.room.name": 50.0}}, {"events": []}, {"notifications": {"room": "50"}},
                {"notifications": None}, {"invite": None}):
        room = Room(v)  # no previous power levels: only 10.1-10.3 can refuse it
        room.force(room.member(CREATOR, "join"))
        event = room.event("m.room.power_levels", CREATOR, {"users": {}, **bad}, state_key="")
        assert room.allows(event) is (n(v) < 10), bad


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_power_levels_change_to_the_same_value_written_as_a_string_is_no_change(v):  # 10.6
    room = standard_room(v, users={ALICE: 50}, members=(ALICE,), power_levels={"ban": 100})
    event = levels_change(room, ALICE, lambda c: c.update({"ban": "100"}))
    assert room.allows(event) is (n(v) < 10)


@pytest.mark.parametrize("v", ALL_VERSIONS[:9])
def test_unreadable_current_power_levels_reject_rather_than_crash(v):
    room = standard_room(v, members=(ALICE,), power_levels={"events_default": "lots"})
    assert "Invalid power levels" in rejected(room, room.event("m.room.message", ALICE, {"body": "x"}))


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_removing_a_level_counts_as_changing_it(v):  # 10.6
    room = standard_room(v, users={ALICE: 50}, members=(ALICE,), power_levels={"kick": 100})
    assert "above your power level" in rejected(room, levels_change(room, ALICE, lambda c: c.pop("kick")))


# v1/v2 rule 11: redactions.

@pytest.mark.parametrize("v", ["1", "2"])
def test_v1_redaction_without_redacts_needs_the_redact_level(v):
    room = standard_room(v, members=(ALICE,))
    event = room.event("m.room.redaction", ALICE, {})
    assert "redact" in rejected(room, event)


# auth_types_for_event (/server-server-api#auth-events-selection).

PL = ("m.room.power_levels", "")
CREATE = ("m.room.create", "")
JR = ("m.room.join_rules", "")


def member_key(user_id):
    return ("m.room.member", user_id)


def with_create(v, keys):
    return keys | {CREATE} if n(v) <= 11 else keys


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_auth_types_for_a_create_event_are_empty(v):
    assert auth_types_for_event(KNOWN_ROOM_VERSIONS[v], "m.room.create", "", ALICE, {}) == set()


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_auth_types_for_a_message_are_create_power_levels_and_sender(v):
    got = auth_types_for_event(KNOWN_ROOM_VERSIONS[v], "m.room.message", None, ALICE, {"body": "x"})
    assert got == with_create(v, {PL, member_key(ALICE)})


@pytest.mark.parametrize("v", ALL_VERSIONS)
@pytest.mark.parametrize("membership, join_rules", [
    ("join", True), ("invite", True), ("knock", True), ("leave", False), ("ban", False),
])
def test_auth_types_for_member_events(v, membership, join_rules):
    got = auth_types_for_event(KNOWN_ROOM_VERSIONS[v], "m.room.member", BOB, ALICE, {"membership": membership})
    expected = {PL, member_key(ALICE), member_key(BOB)} | ({JR} if join_rules else set())
    assert got == with_create(v, expected)


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_auth_types_for_a_third_party_invite_include_the_token(v):
    content = {"membership": "invite", "third_party_invite": {"signed": {"mxid": BOB, "token": "tok"}}}
    got = auth_types_for_event(KNOWN_ROOM_VERSIONS[v], "m.room.member", BOB, ALICE, content)
    assert got == with_create(v, {PL, member_key(ALICE), member_key(BOB), JR, ("m.room.third_party_invite", "tok")})


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_auth_types_for_an_authorised_join_include_the_authoriser_from_v8(v):
    content = {"membership": "join", "join_authorised_via_users_server": CAROL}
    got = auth_types_for_event(KNOWN_ROOM_VERSIONS[v], "m.room.member", ALICE, ALICE, content)
    expected = {PL, member_key(ALICE), JR} | ({member_key(CAROL)} if n(v) >= 8 else set())
    assert got == with_create(v, expected)


def test_auth_types_ignore_malformed_tokens_and_authorisers():
    content = {"membership": "invite", "third_party_invite": {"signed": {"token": 5}}}
    got = auth_types_for_event(KNOWN_ROOM_VERSIONS["11"], "m.room.member", BOB, ALICE, content)
    assert got == {CREATE, PL, member_key(ALICE), member_key(BOB), JR}
    content = {"membership": "join", "join_authorised_via_users_server": ["x"]}
    got = auth_types_for_event(KNOWN_ROOM_VERSIONS["11"], "m.room.member", ALICE, ALICE, content)
    assert got == {CREATE, PL, member_key(ALICE), JR}


def test_auth_error_carries_a_reason():
    room = standard_room("12")
    error = AuthError("You are banned from this room")
    assert error.reason == str(error) == "You are banned from this room"
    assert rejected(room, room.event("m.room.message", ALICE, {"body": "x"})) == f"{ALICE} is not in the room"
