import math

import pytest

from hs.events.power_levels import (
    InvalidPowerLevelError,
    LevelChange,
    diff_power_levels,
    get_named_level,
    get_required_level,
    get_room_creators,
    get_user_power_level,
    is_valid_user_id,
    parse_power_level,
)
from hs.events.room_versions import KNOWN_ROOM_VERSIONS
from tests.unit.event_factory import ALL_VERSIONS, CREATOR, Room

ALICE = "@alice:origin.example"
BOB = "@bob:other.example"


def version(n):
    return KNOWN_ROOM_VERSIONS[str(n)]


def power_levels_event(room: Room, content: dict):
    return room.event("m.room.power_levels", room.creator, content, state_key="")


# /rooms/v1 "m.room.power_levels events accept values as strings": the format examples.
STRING_LEVELS = [("100", 100), ("000100", 100), ("+100", 100), ("-100", -100), (" 100 ", 100),
                 (" 00100 ", 100), (" +100 ", 100), (" -100 ", -100), ("\t7\n", 7)]


@pytest.mark.parametrize("v", ALL_VERSIONS)
@pytest.mark.parametrize("value, expected", STRING_LEVELS)
def test_string_levels_are_read_before_v10_and_refused_from_v10(v, value, expected):
    if int(v) >= 10:
        with pytest.raises(InvalidPowerLevelError):
            parse_power_level(value, version(v))
    else:
        assert parse_power_level(value, version(v)) == expected


@pytest.mark.parametrize("v", ALL_VERSIONS)
@pytest.mark.parametrize("value", ["1_000", "5.5", "1e3", "", " ", "+-1", "٣", "50abc", True, False, None, [], {}])
def test_values_that_are_not_integers_are_refused_in_every_version(v, value):
    with pytest.raises(InvalidPowerLevelError):
        parse_power_level(value, version(v))


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_integers_are_read_in_every_version(v):
    assert parse_power_level(50, version(v)) == 50
    assert parse_power_level(-(2**53) + 1, version(v)) == -(2**53) + 1


# /rooms/v1 "m.room.power_levels events accept values as floats": 50.57 is 50, 5.114698E4 is
# 51146. Only v1-v5 (v6+ enforce canonical JSON, which has no floats).
@pytest.mark.parametrize("v", ALL_VERSIONS)
@pytest.mark.parametrize("value, expected", [(50.57, 50), (5.114698e4, 51146), (-3.9, -3)])
def test_floats_are_truncated_in_v1_to_v5_only(v, value, expected):
    if int(v) <= 5:
        assert parse_power_level(value, version(v)) == expected
    else:
        with pytest.raises(InvalidPowerLevelError):
            parse_power_level(value, version(v))


@pytest.mark.parametrize("v", ["1", "5"])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_floats_are_refused(v, value):
    with pytest.raises(InvalidPowerLevelError):
        parse_power_level(value, version(v))


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_without_power_levels_the_creator_has_100_before_v12_and_unlimited_in_v12(v):
    room = Room(v)
    expected = math.inf if int(v) >= 12 else 100
    assert get_user_power_level(CREATOR, None, room.create) == expected
    assert get_user_power_level(ALICE, None, room.create) == 0


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_creator_is_content_creator_up_to_v10_and_the_sender_from_v11(v):
    # A v1-v10 create event whose content.creator differs from its sender.
    room = Room(v, create_content={"creator": ALICE})
    assert get_room_creators(room.create) == ({ALICE} if int(v) <= 10 else {CREATOR})
    assert get_user_power_level(ALICE, None, room.create) == (100 if int(v) <= 10 else 0)


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_additional_creators_have_unlimited_power_only_in_v12(v):
    room = Room(v, create_content={"additional_creators": [BOB]})
    levels = power_levels_event(room, {"users_default": 10})
    if int(v) >= 12:
        assert get_room_creators(room.create) == {CREATOR, BOB}
        assert get_user_power_level(BOB, levels, room.create) == math.inf
        assert get_user_power_level(BOB, None, room.create) == math.inf
    else:
        assert BOB not in get_room_creators(room.create)
        assert get_user_power_level(BOB, levels, room.create) == 10
        assert get_user_power_level(BOB, None, room.create) == 0


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_a_power_levels_event_sets_the_creators_level_before_v12_but_not_in_v12(v):
    room = Room(v)
    levels = power_levels_event(room, {"users": {ALICE: 75}, "users_default": 5})
    assert get_user_power_level(CREATOR, levels, room.create) == (math.inf if int(v) >= 12 else 5)
    assert get_user_power_level(ALICE, levels, room.create) == 75
    assert get_user_power_level(BOB, levels, room.create) == 5


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_missing_or_null_users_default_is_zero(v):
    room = Room(v)
    assert get_user_power_level(ALICE, power_levels_event(room, {}), room.create) == 0
    assert get_user_power_level(ALICE, power_levels_event(room, {"users_default": None}), room.create) == 0
    # A null entry falls back to users_default, as Synapse reads it.
    levels = power_levels_event(room, {"users": {ALICE: None}, "users_default": 3})
    assert get_user_power_level(ALICE, levels, room.create) == 3


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_string_user_levels_are_read_before_v10(v):
    room = Room(v)
    levels = power_levels_event(room, {"users": {ALICE: " 42 "}})
    if int(v) >= 10:
        with pytest.raises(InvalidPowerLevelError):
            get_user_power_level(ALICE, levels, room.create)
    else:
        assert get_user_power_level(ALICE, levels, room.create) == 42


def test_required_level_without_power_levels_is_50_for_state_and_0_for_messages():
    # m.room.power_levels schema: state_default and events_default when there is no event.
    assert get_required_level("m.room.topic", "", None) == 50
    assert get_required_level("m.room.message", None, None) == 0


def test_required_level_prefers_the_events_entry_then_the_defaults():
    room = Room("11")
    levels = power_levels_event(room, {"events": {"m.room.topic": 10, "m.reaction": 7},
                                       "state_default": 60, "events_default": 20})
    assert get_required_level("m.room.topic", "", levels) == 10
    assert get_required_level("m.reaction", None, levels) == 7
    assert get_required_level("m.room.name", "", levels) == 60
    assert get_required_level("m.room.message", None, levels) == 20
    # The events entry applies whether or not the event is state.
    assert get_required_level("m.room.topic", None, levels) == 10


def test_required_level_defaults_when_the_event_lacks_the_keys():
    room = Room("11")
    levels = power_levels_event(room, {"events": {"m.room.topic": None}})
    assert get_required_level("m.room.topic", "", levels) == 50
    assert get_required_level("m.room.message", None, levels) == 0


def test_named_levels_default_to_invite_0_and_kick_ban_redact_50():
    # /server-server-api#definitions
    room = Room("12")
    for levels in (None, power_levels_event(room, {})):
        assert get_named_level("invite", levels) == 0
        assert get_named_level("kick", levels) == 50
        assert get_named_level("ban", levels) == 50
        assert get_named_level("redact", levels) == 50
    levels = power_levels_event(room, {"invite": 3, "kick": 4, "ban": 5, "redact": 6})
    assert [get_named_level(n, levels) for n in ("invite", "kick", "ban", "redact")] == [3, 4, 5, 6]


def test_a_non_object_users_map_cannot_be_read():
    room = Room("9")
    with pytest.raises(InvalidPowerLevelError):
        get_user_power_level(ALICE, power_levels_event(room, {"users": [ALICE]}), room.create)


@pytest.mark.parametrize("user_id", [
    "@alice:example.org", "@a:1.2.3.4:8448", "@a:[::1]:8448", "@:example.org",  # empty localpart is historical
    "@ALICE#!:example.org", "@é:example.org", "@a:localhost",
])
def test_valid_user_ids(user_id):
    assert is_valid_user_id(user_id)


@pytest.mark.parametrize("user_id", [
    "alice:example.org", "@alice", "@alice:", "@a\x00b:example.org", "@a:exa mple.org",
    "@a:example.org:port", "@a:example.org:123456", "@\ud800:example.org",
    "@" + "a" * 250 + ":example.org", 42, None,
])
def test_invalid_user_ids(user_id):
    assert not is_valid_user_id(user_id)


@pytest.mark.parametrize("v", ALL_VERSIONS)
def test_diff_compares_values_as_integers_and_counts_notifications_from_v6(v):
    old = {"ban": 50, "users": {ALICE: 10}, "events": {"m.room.name": 50}, "notifications": {"room": 50}}
    new = {"ban": 50, "kick": 60, "users": {BOB: 5}, "events": {"m.room.name": 50}, "notifications": {"room": 20}}
    if int(v) < 10:
        new["ban"] = "50"  # the same level in the versions that read strings
    changes = diff_power_levels(old, new, version(v))
    expected = [
        LevelChange(None, "kick", None, 60),
        LevelChange("users", ALICE, 10, None),
        LevelChange("users", BOB, None, 5),
    ]
    if int(v) >= 6:
        expected.append(LevelChange("notifications", "room", 50, 20))
    assert changes == expected
