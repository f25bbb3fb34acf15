"""Reading power levels the way the authorization rules do (spec: m.room.power_levels schema,
the room version pages' "power levels accept strings / floats" fragments, and /rooms/v12
"room creators").

Three version differences live here and nowhere else:
* v1-v9 accept numeric strings ("50", " +050 "), v1-v5 also floats (truncated); v10+ accept
  only JSON integers.
* v1-v11: with no m.room.power_levels event the creator has 100. The creator is
  `content.creator` up to v10 and the create event's sender from v11.
* v12: the creators (create sender + `content.additional_creators`) have unlimited power, with
  or without a power levels event.
"""

import math
import re
from dataclasses import dataclass

from hs.events.event import Event

__all__ = [
    "CREATOR_DEFAULT_LEVEL",
    "TOP_LEVEL_KEYS",
    "InvalidPowerLevelError",
    "LevelChange",
    "diff_power_levels",
    "get_named_level",
    "get_required_level",
    "get_room_creators",
    "get_user_power_level",
    "is_valid_user_id",
    "parse_power_level",
    "server_name_of",
]

# The creator's level when the room has no power levels event (v1-v11).
CREATOR_DEFAULT_LEVEL = 100

# The named levels (/server-server-api#definitions) and their defaults when unspecified, or
# when there is no power levels event at all.
_NAMED_LEVEL_DEFAULTS = {"invite": 0, "kick": 50, "ban": 50, "redact": 50}
_STATE_DEFAULT = 50
_EVENTS_DEFAULT = 0
_USERS_DEFAULT = 0

# v1-v9 string levels: base 10, optional sign, any leading zeroes, surrounding whitespace.
# Not int(): that also takes "1_000" and non-ASCII digits, which the spec does not.
_STRING_LEVEL = re.compile(r"[ \t\n\r\f\v]*[+-]?[0-9]+[ \t\n\r\f\v]*")

# Historical localparts: any code point but ':', NUL and surrogates (appendices "Historical
# User IDs"). Server names: appendices "Server Name" (an IPv4 address is also a dns-name).
_USER_ID = re.compile(
    r"@[^:\x00\ud800-\udfff]*:"
    r"(?:\[[0-9A-Fa-f:.]{2,45}\]|[0-9A-Za-z.\-]{1,255})(?::[0-9]{1,5})?"
)
_MAX_USER_ID_BYTES = 255


class InvalidPowerLevelError(ValueError):
    """A power level value that the room version cannot read as an integer."""


def is_valid_user_id(value) -> bool:
    """A user ID as events may carry it: historical localparts allowed, server name checked."""
    return (
        isinstance(value, str)
        and _USER_ID.fullmatch(value) is not None
        and len(value.encode("utf-8")) <= _MAX_USER_ID_BYTES
    )


def server_name_of(identifier: str) -> str:
    """The part after the first ':' of a user ID, v1-v11 room ID or v1/v2 event ID."""
    return identifier.split(":", 1)[1] if ":" in identifier else ""


def parse_power_level(value, room_version) -> int:
    """Read one power level value as an integer, or raise InvalidPowerLevelError."""
    if type(value) is int:
        return value
    if room_version.integer_power_levels:
        # v10+: bool is an int subclass in Python but not an integer in JSON.
        raise InvalidPowerLevelError(f"power level {value!r} is not an integer")
    if isinstance(value, str) and _STRING_LEVEL.fullmatch(value):
        return int(value)
    # Floats only exist in versions that do not enforce canonical JSON (v1-v5).
    if type(value) is float and not room_version.strict_canonical_json and math.isfinite(value):
        return int(value)
    raise InvalidPowerLevelError(f"power level {value!r} is not an integer")


def get_room_creators(create_event: Event) -> frozenset[str]:
    """The users the room version treats as the room's creators."""
    room_version = create_event.room_version
    if not room_version.implicit_room_creator:
        creator = create_event.content.get("creator")
        return frozenset([creator]) if isinstance(creator, str) else frozenset()
    creators = {create_event.sender}
    if room_version.privileged_creators:
        additional = create_event.content.get("additional_creators")
        if isinstance(additional, list):
            creators.update(u for u in additional if isinstance(u, str))
    return frozenset(creators)


def get_user_power_level(user_id: str, power_levels_event: Event | None, create_event: Event) -> int | float:
    """The user's power level; float('inf') for a v12 room creator."""
    room_version = create_event.room_version
    if user_id in get_room_creators(create_event):
        if room_version.privileged_creators:
            return math.inf
        if power_levels_event is None:
            return CREATOR_DEFAULT_LEVEL
    if power_levels_event is None:
        return _USERS_DEFAULT
    content = power_levels_event.content
    level = _level_map(content, "users").get(user_id)
    if level is None:
        level = content.get("users_default")
    return _USERS_DEFAULT if level is None else parse_power_level(level, room_version)


def get_required_level(event_type: str, state_key: str | None, power_levels_event: Event | None) -> int:
    """The spec's "required power level" to send an event of this type (state if state_key
    is not None)."""
    is_state = state_key is not None
    default = _STATE_DEFAULT if is_state else _EVENTS_DEFAULT
    if power_levels_event is None:
        return default
    content = power_levels_event.content
    level = _level_map(content, "events").get(event_type)
    if level is None:
        level = content.get("state_default" if is_state else "events_default")
    return default if level is None else parse_power_level(level, power_levels_event.room_version)


def get_named_level(name: str, power_levels_event: Event | None) -> int:
    """The invite, kick, ban or redact level."""
    level = None if power_levels_event is None else power_levels_event.content.get(name)
    if level is None:
        return _NAMED_LEVEL_DEFAULTS[name]
    return parse_power_level(level, power_levels_event.room_version)


def _level_map(content: dict, key: str) -> dict:
    value = content.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidPowerLevelError(f"power levels {key!r} is not an object")
    return value


@dataclass(frozen=True)
class LevelChange:
    """One power level that a new m.room.power_levels event adds, changes or removes."""

    section: str | None  # None for the top-level levels, else "users", "events" or "notifications"
    key: str
    old: int | None  # None: not set before
    new: int | None  # None: not set any more


# The top-level levels the power levels auth rule compares.
TOP_LEVEL_KEYS = ("users_default", "events_default", "state_default", "ban", "redact", "kick", "invite")


def diff_power_levels(old_content: dict, new_content: dict, room_version) -> list[LevelChange]:
    """Every level that differs between two power levels contents, compared as integers (so
    "50" -> 50 is no change in v1-v9). `notifications` counts only where the room version
    limits it (v6+). A null value counts as absent."""
    sections: list[tuple[str | None, dict, dict]] = [
        (None, {k: old_content.get(k) for k in TOP_LEVEL_KEYS}, {k: new_content.get(k) for k in TOP_LEVEL_KEYS})
    ]
    names = ["users", "events"] + (["notifications"] if room_version.limit_notifications_power_levels else [])
    for name in names:
        sections.append((name, _level_map(old_content, name), _level_map(new_content, name)))
    changes = []
    for section, old_map, new_map in sections:
        for key in sorted(old_map.keys() | new_map.keys()):
            old = _optional_level(old_map.get(key), room_version)
            new = _optional_level(new_map.get(key), room_version)
            if old != new:
                changes.append(LevelChange(section, key, old, new))
    return changes


def _optional_level(value, room_version) -> int | None:
    return None if value is None else parse_power_level(value, room_version)
