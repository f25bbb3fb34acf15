"""The authorization rules of room versions 1-12 (spec: /rooms/v1 .. /rooms/v12,
"Authorisation rules") and the auth events selection (/server-server-api#auth-events-selection).

On receipt of a PDU (/server-server-api#checks-performed-on-receipt-of-a-pdu) check 4 is
`check_auth_rules(event, check_auth_events_list(event, its_auth_events), create_event=...)`;
checks 5 and 6 call `check_auth_rules` with the state before the event and the current state.
State resolution calls `check_auth_rules` alone. Signatures (including the one rule 5.2 asks
for) are verified before any of this, when the PDU is received.

Comments cite room version 12's rule numbers. Older versions number them differently:

    v12              v1-v5                  v6-v11
    1  create        1                      1
    2  room_id       -                      -
    3  auth_events   2                      2
    4  m.federate    3                      3
    -                4  m.room.aliases      -
    5  membership    5                      4
    6  joined        6                      5
    7  3pid invite   7                      6
    8  send level    8                      7
    9  '@' keys      9                      8
    10 power levels  10                     9
    -                11 redaction (v1, v2)  -

Within the membership rule, v1-v7 lack 5.2 (join_authorised_via_users_server), so their 5.2 is
v12's 5.3 and so on. Within the power levels rule, 10.1-10.2 arrived in v10 and 10.4 in v12.
"""

from collections.abc import Iterable

from hs.events.auth_membership import check_membership
from hs.events.auth_state import CREATE_KEY, AuthError, AuthState
from hs.events.event import Event
from hs.events.power_levels import (
    TOP_LEVEL_KEYS,
    InvalidPowerLevelError,
    diff_power_levels,
    get_required_level,
    get_room_creators,
    is_valid_user_id,
    parse_power_level,
    server_name_of,
)
from hs.events.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion

__all__ = ["AuthError", "auth_types_for_event", "check_auth_events_list", "check_auth_rules"]


def check_auth_rules(
    event: Event, auth_events: dict[tuple[str, str], Event], *, create_event: Event | None = None
) -> None:
    """Raise AuthError unless the rules allow `event` given `auth_events`, a state map keyed
    by (type, state_key): the event's own auth events, or the room state at some point.

    A v12 create event is never an auth event, so pass it as `create_event` (it is also read
    from `auth_events` when that is a full state map). Other versions take the create event
    from `auth_events`, or from `create_event` when it is missing there.
    """
    try:
        _check(event, auth_events, create_event)
    except InvalidPowerLevelError as e:
        raise AuthError(f"Invalid power levels: {e}") from None


def check_auth_events_list(event: Event, auth_events: Iterable[Event]) -> dict[tuple[str, str], Event]:
    """Rule 3 (v1-v11: 2) on the event's actual `auth_events`, which a state map cannot show
    (duplicates, rejected entries). Returns them keyed by (type, state_key) for
    `check_auth_rules`."""
    if event.type == "m.room.create":
        return {}  # rule 1 decides a create event without looking at auth events
    room_version = event.room_version
    expected = auth_types_for_event(room_version, event.type, event.state_key, event.sender, event.content)
    keyed: dict[tuple[str, str], Event] = {}
    for auth_event in auth_events:
        key = (auth_event.type, auth_event.state_key)
        if key in keyed:  # 3.1
            raise AuthError(f"Duplicate auth events for {key}: {keyed[key].event_id} and {auth_event.event_id}")
        if key not in expected:  # 3.2 (in v12 this includes the create event)
            raise AuthError(f"Auth event {auth_event.event_id} for {key} is not one the event may cite")
        if auth_event.rejected_reason is not None:  # 3.3
            raise AuthError(f"Auth event {auth_event.event_id} was rejected")
        if auth_event.room_id != event.room_id:  # 3.5
            raise AuthError(f"Auth event {auth_event.event_id} is in another room")
        keyed[key] = auth_event
    if not room_version.room_id_from_create_event and CREATE_KEY not in keyed:  # v1-v11 2.4
        raise AuthError("No m.room.create event among the auth events")
    return keyed


def auth_types_for_event(
    room_version: RoomVersion, event_type: str, state_key: str | None, sender: str, content: dict
) -> set[tuple[str, str]]:
    """The (type, state_key) pairs an event's auth events are chosen from
    (/server-server-api#auth-events-selection)."""
    if event_type == "m.room.create":
        return set()
    types = {("m.room.power_levels", ""), ("m.room.member", sender)}
    if not room_version.room_id_from_create_event:
        types.add(CREATE_KEY)
    if event_type != "m.room.member":
        return types
    membership = content.get("membership")
    if isinstance(state_key, str):
        types.add(("m.room.member", state_key))
    if membership in ("join", "invite", "knock"):
        types.add(("m.room.join_rules", ""))
    if membership == "invite" and "third_party_invite" in content:
        token = _third_party_invite_token(content["third_party_invite"])
        if token is not None:
            types.add(("m.room.third_party_invite", token))
    if membership == "join" and room_version.restricted_join_rule:
        authoriser = content.get("join_authorised_via_users_server")
        if isinstance(authoriser, str):
            types.add(("m.room.member", authoriser))
    return types


def _third_party_invite_token(third_party_invite) -> str | None:
    signed = third_party_invite.get("signed") if isinstance(third_party_invite, dict) else None
    token = signed.get("token") if isinstance(signed, dict) else None
    return token if isinstance(token, str) else None


def _check(event: Event, auth_events: dict, create_event: Event | None) -> None:
    room_version = event.room_version
    if event.type == "m.room.create":
        _check_create(event)
        return

    create = _find_create(event, auth_events, create_event)
    _check_rooms(event, auth_events)
    state = AuthState(auth_events, create)

    # 4: a room marked m.federate: false stays on its creator's server.
    if create.content.get("m.federate") is False and server_name_of(event.sender) != server_name_of(create.sender):
        raise AuthError("This room does not accept events from other servers")

    # v1-v5 rule 4: aliases are the sending server's to manage, member or not.
    if room_version.special_case_aliases_auth and event.type == "m.room.aliases":
        if event.state_key is None:
            raise AuthError("m.room.aliases must be a state event")
        if event.state_key != server_name_of(event.sender):
            raise AuthError("m.room.aliases state_key must be the sender's server name")
        return

    if event.type == "m.room.member":
        check_membership(event, state)
        return

    # 6
    if state.membership(event.sender) != "join":
        raise AuthError(f"{event.sender} is not in the room")
    sender_level = state.power_level(event.sender)

    # 7
    if event.type == "m.room.third_party_invite":
        if sender_level < state.named_level("invite"):
            raise AuthError("You don't have permission to invite users")
        return

    # 8
    required = get_required_level(event.type, event.state_key, state.power_levels)
    if sender_level < required:
        raise AuthError(f"You need power level {required} to send {event.type} events (you have {sender_level})")

    # 9: state keyed by a user ID belongs to that user.
    state_key = event.state_key
    if state_key is not None and state_key.startswith("@") and state_key != event.sender:
        raise AuthError("You are not allowed to set another user's state")

    if event.type == "m.room.power_levels":
        _check_power_levels(event, state, sender_level)
    elif event.type == "m.room.redaction" and room_version.event_format == EventFormat.V1:
        # v1/v2 rule 11. From v3 event IDs carry no server name, and the redact level is
        # checked when the redaction is applied instead (/rooms/v3 "Handling redactions").
        if sender_level >= state.named_level("redact"):
            return
        redacts = event.redacts
        if isinstance(redacts, str) and server_name_of(redacts) == server_name_of(event.event_id):
            return
        raise AuthError("You don't have permission to redact this event")


def _check_create(event: Event) -> None:
    room_version = event.room_version
    content = event.content
    if event.pdu.get("prev_events"):  # 1.1
        raise AuthError("m.room.create must not have prev_events")
    if room_version.room_id_from_create_event:  # 1.2: the room ID is derived from the event ID
        if "room_id" in event.pdu:
            raise AuthError("m.room.create must not have a room_id in this room version")
    elif server_name_of(event.room_id or "") != server_name_of(event.sender):
        raise AuthError("m.room.create room_id must be on the sender's server")
    if "room_version" in content:  # 1.3
        claimed = content["room_version"]
        if not isinstance(claimed, str) or claimed not in KNOWN_ROOM_VERSIONS:
            raise AuthError(f"Unknown room version {claimed!r}")
    if not room_version.implicit_room_creator and "creator" not in content:  # v1-v10 1.4
        raise AuthError("m.room.create must have a creator")
    if room_version.privileged_creators and "additional_creators" in content:  # 1.4
        additional = content["additional_creators"]
        if not isinstance(additional, list) or not all(is_valid_user_id(u) for u in additional):
            raise AuthError("additional_creators must be a list of user IDs")


def _find_create(event: Event, auth_events: dict, create_event: Event | None) -> Event:
    if event.room_version.room_id_from_create_event:
        create = create_event or auth_events.get(CREATE_KEY)
        # 2: the room ID names the create event, which must have been accepted.
        if create is None or event.room_id != "!" + create.event_id[1:]:
            raise AuthError("The room ID is not that of a known m.room.create event")
        if create.rejected_reason is not None:
            raise AuthError("The room's m.room.create event was rejected")
        return create
    create = auth_events.get(CREATE_KEY, create_event)
    if create is None:  # v1-v11 2.4
        raise AuthError("No m.room.create event among the auth events")
    if create.room_id != event.room_id:  # v1-v11 2.5
        raise AuthError("The m.room.create event is for another room")
    return create


def _check_rooms(event: Event, auth_events: dict) -> None:
    # 3.5, on the entries the rules read (all of a state map would cost O(state) per event).
    keys = auth_types_for_event(event.room_version, event.type, event.state_key, event.sender, event.content)
    for key in keys - {CREATE_KEY}:
        auth_event = auth_events.get(key)
        if auth_event is not None and auth_event.room_id != event.room_id:
            raise AuthError(f"Auth event {auth_event.event_id} is in another room")


def _check_power_levels(event: Event, state: AuthState, sender_level: float) -> None:
    room_version = event.room_version
    content = event.content
    if room_version.integer_power_levels:
        for key in TOP_LEVEL_KEYS:  # 10.1
            if key in content and type(content[key]) is not int:
                raise AuthError(f"Power level {key!r} must be an integer")
        for key in ("events", "notifications"):  # 10.2
            if key in content and not _is_integer_map(content[key]):
                raise AuthError(f"Power levels {key!r} must be an object of integers")
    # 10.3 (v1-v9 also take numeric strings, which parse_power_level reads)
    users = content.get("users", {})
    if not isinstance(users, dict):
        raise AuthError("Power levels 'users' must be an object")
    for user_id, level in users.items():
        if not is_valid_user_id(user_id):
            raise AuthError(f"Power levels 'users' has an invalid user ID {user_id!r}")
        parse_power_level(level, room_version)
    # 10.4: creators' power is not the power levels event's to give or take.
    if room_version.privileged_creators and get_room_creators(state.create) & users.keys():
        raise AuthError("Room creators cannot be listed in power levels 'users'")

    current = state.power_levels
    if current is None:  # 10.5
        return
    for change in diff_power_levels(current.content, content, room_version):
        where = change.key if change.section is None else f"{change.section}[{change.key!r}]"
        # 10.9: nobody may alter the level of a peer or superior, except their own.
        if change.section == "users" and change.key != event.sender:
            if change.old is not None and change.old >= sender_level:
                raise AuthError(f"You cannot change the power level of {change.key}, who is not below you")
        # 10.6-10.7: a level above the sender's stays (for others' users entries 10.9 decides).
        elif change.old is not None and change.old > sender_level:
            raise AuthError(f"You cannot change {where}, which is above your power level")
        # 10.6, 10.8, 10.10: nobody may grant more than they have.
        if change.new is not None and change.new > sender_level:
            raise AuthError(f"You cannot set {where} above your own power level")


def _is_integer_map(value) -> bool:
    return isinstance(value, dict) and all(type(v) is int for v in value.values())
