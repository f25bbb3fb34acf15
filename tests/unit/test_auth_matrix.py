"""Who may send what, at which power level, in each room version 1-12 (/rooms/vN
"Authorisation rules"). Each test runs over all twelve versions and states the expectation per
version, so a rule that changes between versions shows where it changes."""

import copy

import pytest

from hs.events.auth_rules import AuthError, check_auth_rules
from tests.unit.event_factory import ALL_VERSIONS, CREATOR, Room, standard_room

MOD = "@mod:origin.example"
MOD2 = "@mod2:origin.example"
USER = "@user:other.example"
USER2 = "@user2:other.example"
OUTSIDER = "@outsider:third.example"
BIG_ADMIN = "@bigadmin:origin.example"
BOB = "@bob:other.example"

pytestmark = pytest.mark.parametrize("v", ALL_VERSIONS)


def n(v):
    return int(v)


def room_with_staff(v, **levels):
    """A public room: the creator, two moderators at 50 and two users at 0, all joined."""
    return standard_room(v, users={MOD: 50, MOD2: 50}, members=(MOD, MOD2, USER, USER2), power_levels=levels)


def message(room, sender):
    return room.event("m.room.message", sender, {"msgtype": "m.text", "body": "hello"})


def topic(room, sender):
    return room.event("m.room.topic", sender, {"topic": "news"}, state_key="")


def power_levels_change(room, sender, change):
    content = copy.deepcopy(room.state[("m.room.power_levels", "")].content)
    change(content)
    return room.event("m.room.power_levels", sender, content, state_key="")


def redaction(room, sender, target):
    if room.version.redacts_in_content:
        return room.event("m.room.redaction", sender, {"redacts": target.event_id})
    return room.event("m.room.redaction", sender, {}, redacts=target.event_id)


# Sending at events_default / state_default / per-type levels (rule 8).

def test_messages_need_events_default(v):
    room = room_with_staff(v, events_default=10)
    assert not room.allows(message(room, USER))
    assert room.allows(message(room, MOD))


def test_messages_at_the_default_events_default_are_open_to_members(v):
    room = room_with_staff(v)
    assert room.allows(message(room, USER))


def test_state_needs_state_default(v):
    room = room_with_staff(v)
    assert not room.allows(topic(room, USER))
    assert room.allows(topic(room, MOD))


def test_per_type_levels_override_the_defaults(v):
    room = room_with_staff(v, events={"m.room.topic": 0, "m.room.message": 20})
    assert room.allows(topic(room, USER))
    assert not room.allows(message(room, USER))
    assert room.allows(message(room, MOD))


def test_non_members_cannot_send_anything(v):
    room = room_with_staff(v)
    room.set_member(USER, "leave")
    assert not room.allows(message(room, USER))
    assert not room.allows(message(room, OUTSIDER))


def test_state_keyed_by_another_user_id_is_refused(v):
    room = room_with_staff(v, events={"m.custom": 0})
    assert room.allows(room.event("m.custom", USER, {}, state_key=USER))
    assert not room.allows(room.event("m.custom", USER, {}, state_key=USER2))
    # Power does not help: the rule is about ownership (rule 9; no v11/v12 exceptions).
    assert not room.allows(room.event("m.custom", MOD, {}, state_key=USER2))


# Invites (rule 5.4).

def test_invite_level_default_lets_any_member_invite(v):
    room = room_with_staff(v)
    assert room.allows(room.member(OUTSIDER, "invite", sender=USER))


def test_invite_level_is_enforced(v):
    room = room_with_staff(v, invite=50)
    assert not room.allows(room.member(OUTSIDER, "invite", sender=USER))
    assert room.allows(room.member(OUTSIDER, "invite", sender=MOD))


def test_cannot_invite_a_joined_or_banned_user(v):
    room = room_with_staff(v)
    room.set_member(OUTSIDER, "ban", sender=MOD)
    assert not room.allows(room.member(USER2, "invite", sender=MOD))
    assert not room.allows(room.member(OUTSIDER, "invite", sender=MOD))


def test_non_members_cannot_invite(v):
    room = room_with_staff(v)
    assert not room.allows(room.member(USER, "invite", sender=OUTSIDER))


# Kicks, bans, unbans (rules 5.5, 5.6).

def test_kick_needs_kick_level_and_a_lower_target(v):
    room = room_with_staff(v)
    assert room.allows(room.member(USER, "leave", sender=MOD))
    assert not room.allows(room.member(USER2, "leave", sender=USER))
    assert not room.allows(room.member(MOD2, "leave", sender=MOD))  # peers cannot kick each other
    assert room.allows(room.member(MOD, "leave", sender=CREATOR))


def test_kick_level_is_read_from_power_levels(v):
    room = room_with_staff(v, kick=60)
    assert not room.allows(room.member(USER, "leave", sender=MOD))


def test_ban_needs_ban_level_and_a_lower_target(v):
    room = room_with_staff(v)
    assert room.allows(room.member(USER, "ban", sender=MOD))
    assert room.allows(room.member(OUTSIDER, "ban", sender=MOD))  # pre-emptive ban of a non-member
    assert not room.allows(room.member(USER2, "ban", sender=USER))
    assert not room.allows(room.member(MOD2, "ban", sender=MOD))
    assert room.allows(room.member(MOD, "ban", sender=CREATOR))


def test_ban_level_is_read_from_power_levels(v):
    room = room_with_staff(v, ban=51)
    assert not room.allows(room.member(USER, "ban", sender=MOD))


@pytest.mark.parametrize("ban, kick, allowed", [(50, 50, True), (50, 80, False), (80, 50, False)])
def test_unban_needs_both_ban_and_kick_levels(v, ban, kick, allowed):
    room = room_with_staff(v, ban=ban, kick=kick)
    room.set_member(USER, "ban", sender=CREATOR)
    assert room.allows(room.member(USER, "leave", sender=MOD)) is allowed


def test_a_banned_user_cannot_lift_their_own_ban(v):
    room = room_with_staff(v)
    room.set_member(USER, "ban", sender=MOD)
    assert not room.allows(room.member(USER, "leave"))


# Redactions (v1/v2 rule 11; v3+ only the events level, the redact level applies later).

def test_redaction_of_another_servers_event_by_a_user_below_redact_level(v):
    room = room_with_staff(v)
    target = room.force(message(room, MOD))  # event ID on origin.example in v1/v2
    assert room.allows(redaction(room, USER, target)) is (n(v) >= 3)
    assert room.allows(redaction(room, MOD, target))


def test_redaction_of_an_event_from_the_same_server_is_allowed_in_every_version(v):
    room = room_with_staff(v)
    target = room.force(message(room, USER2))
    assert room.allows(redaction(room, USER, target))


def test_redaction_follows_the_events_level(v):
    room = room_with_staff(v, events={"m.room.redaction": 50})
    target = room.force(message(room, USER))
    assert not room.allows(redaction(room, USER, target))
    assert room.allows(redaction(room, MOD, target))


# Power level changes (rule 10).

def test_can_grant_up_to_own_level_but_not_above(v):
    room = room_with_staff(v)
    assert room.allows(power_levels_change(room, MOD, lambda c: c["users"].update({USER: 50})))
    assert not room.allows(power_levels_change(room, MOD, lambda c: c["users"].update({USER: 51})))


def test_cannot_change_a_peers_level(v):
    room = room_with_staff(v)
    assert not room.allows(power_levels_change(room, MOD, lambda c: c["users"].update({MOD2: 0})))
    assert not room.allows(power_levels_change(room, MOD, lambda c: c["users"].pop(MOD2)))


def test_a_superior_can_demote_and_anyone_can_demote_themselves(v):
    room = room_with_staff(v)
    assert room.allows(power_levels_change(room, CREATOR, lambda c: c["users"].update({MOD: 0})))
    assert room.allows(power_levels_change(room, MOD, lambda c: c["users"].update({MOD: 10})))


def test_cannot_change_a_level_that_is_above_own(v):
    room = room_with_staff(v, events={"m.room.power_levels": 50, "m.room.tombstone": 100})
    assert not room.allows(power_levels_change(room, MOD, lambda c: c["events"].update({"m.room.tombstone": 50})))
    assert not room.allows(power_levels_change(room, MOD, lambda c: c["events"].pop("m.room.tombstone")))
    assert room.allows(power_levels_change(room, MOD, lambda c: c.update({"kick": 40})))
    assert not room.allows(power_levels_change(room, MOD, lambda c: c.update({"ban": 60})))
    assert not room.allows(power_levels_change(room, MOD, lambda c: c["events"].update({"m.room.name": 51})))


def test_power_levels_event_itself_needs_the_state_level(v):
    room = room_with_staff(v)
    assert not room.allows(power_levels_change(room, USER, lambda c: c.update({"kick": 0})))


def test_notifications_levels_are_protected_from_v6(v):
    room = room_with_staff(v, notifications={"room": 100})
    change = power_levels_change(room, MOD, lambda c: c["notifications"].update({"room": 0}))
    assert room.allows(change) is (n(v) <= 5)


def test_string_power_levels_are_refused_from_v10(v):
    room = room_with_staff(v)
    assert room.allows(power_levels_change(room, CREATOR, lambda c: c.update({"ban": "50"}))) is (n(v) < 10)
    assert room.allows(power_levels_change(room, CREATOR, lambda c: c["users"].update({USER: "10"}))) is (n(v) < 10)
    assert room.allows(power_levels_change(room, CREATOR, lambda c: c["events"].update({"m.x": "10"}))) is (n(v) < 10)


# Joining (rule 5.3).

def test_banned_user_cannot_join_a_public_room(v):
    room = room_with_staff(v)
    room.set_member(OUTSIDER, "ban", sender=MOD)
    assert not room.allows(room.member(OUTSIDER, "join"))
    room.set_member(OUTSIDER, "leave", sender=MOD)
    assert room.allows(room.member(OUTSIDER, "join"))


def test_invite_only_join_needs_an_invite(v):
    room = standard_room(v, join_rule="invite")
    assert not room.allows(room.member(OUTSIDER, "join"))
    room.set_member(OUTSIDER, "invite", sender=CREATOR)
    assert room.allows(room.member(OUTSIDER, "join"))


def test_cannot_join_on_someone_elses_behalf(v):
    room = room_with_staff(v)
    assert not room.allows(room.member(OUTSIDER, "join", sender=CREATOR))


def test_knock_is_allowed_only_in_v7_plus_knock_rooms(v):
    room = standard_room(v, join_rule="knock")
    assert room.allows(room.member(OUTSIDER, "knock")) is (n(v) >= 7)
    public = standard_room(v, join_rule="public")
    assert not public.allows(public.member(OUTSIDER, "knock"))


def test_knock_restricted_accepts_knocks_from_v10(v):
    room = standard_room(v, join_rule="knock_restricted")
    assert room.allows(room.member(OUTSIDER, "knock")) is (n(v) >= 10)


def test_invited_user_may_join_a_knock_room_from_v7(v):
    room = standard_room(v, join_rule="knock")
    room.set_member(OUTSIDER, "invite", sender=CREATOR)
    assert room.allows(room.member(OUTSIDER, "join")) is (n(v) >= 7)


@pytest.mark.parametrize("join_rule, since", [("restricted", 8), ("knock_restricted", 10)])
def test_restricted_join_with_an_authorising_member_who_can_invite(v, join_rule, since):
    room = standard_room(v, join_rule=join_rule, users={MOD: 50}, members=(MOD,))
    join = room.member(OUTSIDER, "join", join_authorised_via_users_server=MOD)
    join.pdu["signatures"]["origin.example"] = {"ed25519:1": "sig"}
    assert room.allows(join) is (n(v) >= since)
    # Without an authorising user only an invite gets in.
    assert not room.allows(room.member(OUTSIDER, "join"))


def test_restricted_join_authorised_by_a_user_below_the_invite_level_is_refused(v):
    room = standard_room(v, join_rule="restricted", power_levels={"invite": 50}, members=(USER,))
    join = room.member(OUTSIDER, "join", join_authorised_via_users_server=USER)
    join.pdu["signatures"]["other.example"] = {"ed25519:1": "sig"}
    assert not room.allows(join)


def test_restricted_join_authorised_by_a_non_member_is_refused(v):
    room = standard_room(v, join_rule="restricted", users={MOD: 50})
    join = room.member(OUTSIDER, "join", join_authorised_via_users_server=MOD)
    join.pdu["signatures"]["origin.example"] = {"ed25519:1": "sig"}
    assert not room.allows(join)


def test_invited_user_joins_a_restricted_room_without_an_authoriser_from_v8(v):
    room = standard_room(v, join_rule="restricted")
    room.set_member(OUTSIDER, "invite", sender=CREATOR)
    assert room.allows(room.member(OUTSIDER, "join")) is (n(v) >= 8)


# Room creation (rule 1) and creators (v11, v12).

def test_create_without_creator_is_allowed_from_v11(v):
    room = Room(v)
    content = {"room_version": v}
    create = room.event("m.room.create", CREATOR, content, state_key="", prev_events=[])
    if n(v) <= 10:
        with pytest.raises(AuthError):
            check_auth_rules(create, {})
    else:
        check_auth_rules(create, {})


def test_v12_creator_cannot_be_kicked_or_banned_even_by_a_higher_listed_admin(v):
    room = standard_room(v, users={BIG_ADMIN: 150}, members=(BIG_ADMIN,))
    assert room.allows(room.member(CREATOR, "leave", sender=BIG_ADMIN)) is (n(v) < 12)
    assert room.allows(room.member(CREATOR, "ban", sender=BIG_ADMIN)) is (n(v) < 12)


def test_v12_creator_cannot_be_kicked_by_a_pl_100_admin(v):
    room = standard_room(v, users={MOD: 100}, members=(MOD,))
    # Before v12 the creator is at 100 too: a peer, so also refused; v12: unlimited.
    assert not room.allows(room.member(CREATOR, "leave", sender=MOD))
    assert not room.allows(room.member(CREATOR, "ban", sender=MOD))
    # Only the unlimited v12 creator outranks an admin at 100.
    assert room.allows(room.member(MOD, "ban", sender=CREATOR)) is (n(v) >= 12)


def test_creators_cannot_be_listed_in_power_levels_from_v12(v):
    room = standard_room(v, users={BIG_ADMIN: 150}, members=(BIG_ADMIN,))
    change = power_levels_change(room, BIG_ADMIN, lambda c: c["users"].update({CREATOR: 0}))
    assert room.allows(change) is (n(v) < 12)


def test_additional_creators_are_creators_in_v12_only(v):
    room = standard_room(v, create_content={"additional_creators": [BOB]}, users={MOD: 99}, members=(MOD, BOB))
    assert room.allows(room.member(MOD, "ban", sender=BOB)) is (n(v) >= 12)
    assert room.allows(power_levels_change(room, BOB, lambda c: c["events"].update({"m.x": 1000}))) is (n(v) >= 12)
    listing_bob = power_levels_change(room, CREATOR, lambda c: c["users"].update({BOB: 10}))
    assert room.allows(listing_bob) is (n(v) < 12)


def test_creator_can_set_any_level_in_v12_but_only_up_to_100_before(v):
    room = room_with_staff(v)
    change = power_levels_change(room, CREATOR, lambda c: c["users"].update({MOD: 1000}))
    assert room.allows(change) is (n(v) >= 12)


# m.room.aliases (v1-v5 rule 4).

def test_aliases_belong_to_the_senders_server_in_v1_to_v5(v):
    room = room_with_staff(v, events={"m.room.aliases": 0})
    own = room.event("m.room.aliases", OUTSIDER, {"aliases": ["#a:third.example"]}, state_key="third.example")
    other = room.event("m.room.aliases", USER, {"aliases": ["#a:third.example"]}, state_key="third.example")
    # v1-v5: any server, member or not, manages its own entry; v6+: ordinary state rules.
    assert room.allows(own) is (n(v) <= 5)
    assert room.allows(other) is (n(v) >= 6)
