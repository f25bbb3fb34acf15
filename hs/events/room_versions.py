"""The room versions and what each one switches on (spec: /rooms, "Feature matrix").

Code asks a RoomVersion what it does (`version.knocking`), never which number it is, so a
rule added for one version is written once and switched on for the versions that have it.
"""

from dataclasses import dataclass


class EventFormat:
    V1 = 1  # v1, v2: `event_id` in the event, edges as [event_id, hashes] pairs
    V2 = 2  # v3: event ID = '$' + standard unpadded base64 of the reference hash
    V3 = 3  # v4+: event ID = '$' + URL-safe unpadded base64 of the reference hash


class StateRes:
    V1 = "v1"
    V2 = "v2"
    V2_1 = "v2.1"  # v12: first auth checks start from empty state; conflicted subgraph included


class Redaction:
    V1 = "v1"  # v1-v5
    V6 = "v6"  # v6-v8 (v8 keeps join_rules.allow)
    V9 = "v9"  # v9, v10: keeps join_authorised_via_users_server
    V11 = "v11"  # v11, v12


@dataclass(frozen=True)
class RoomVersion:
    identifier: str
    event_format: int
    state_res: str
    redaction: str
    # Signing keys must be valid at the event's origin_server_ts (v5+).
    enforce_key_validity: bool
    # m.room.aliases has its own auth rule (v1-v5).
    special_case_aliases_auth: bool
    # Integers outside +-(2**53-1) and floats refused in events (v6+).
    strict_canonical_json: bool
    # `notifications` power levels are checked like any other (v6+).
    limit_notifications_power_levels: bool
    knocking: bool  # v7+
    restricted_join_rule: bool  # v8+
    knock_restricted_join_rule: bool  # v10+
    # Power levels must be integers, not numeric strings (v10+).
    integer_power_levels: bool
    # v11: the create event's sender is the creator (no content.creator), `redacts` in content,
    # new redaction rules.
    implicit_room_creator: bool
    redacts_in_content: bool
    # v12: the room ID is derived from the create event, which is then never an auth event,
    # and creators (sender + additional_creators) have unlimited power.
    room_id_from_create_event: bool
    privileged_creators: bool


def _version(identifier: str, n: int) -> RoomVersion:
    return RoomVersion(
        identifier=identifier,
        event_format=EventFormat.V1 if n <= 2 else EventFormat.V2 if n == 3 else EventFormat.V3,
        state_res=StateRes.V1 if n == 1 else StateRes.V2_1 if n >= 12 else StateRes.V2,
        redaction=Redaction.V1 if n <= 5 else Redaction.V6 if n <= 8 else Redaction.V9 if n <= 10 else Redaction.V11,
        enforce_key_validity=n >= 5,
        special_case_aliases_auth=n <= 5,
        strict_canonical_json=n >= 6,
        limit_notifications_power_levels=n >= 6,
        knocking=n >= 7,
        restricted_join_rule=n >= 8,
        knock_restricted_join_rule=n >= 10,
        integer_power_levels=n >= 10,
        implicit_room_creator=n >= 11,
        redacts_in_content=n >= 11,
        room_id_from_create_event=n >= 12,
        privileged_creators=n >= 12,
    )


KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {str(n): _version(str(n), n) for n in range(1, 13)}


def get_room_version(identifier: str) -> RoomVersion | None:
    return KNOWN_ROOM_VERSIONS.get(identifier)
