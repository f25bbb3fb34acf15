"""Whether a PDU has the format its room version requires (/server-server-api#checks-performed-on-receipt-of-a-pdu, step 1).

An event that fails here is dropped, never stored, so nothing else has to cope with wrong
types. The checks are the PDU schemas (data/api/server-server/definitions/pdu_v*.yaml), the
size limits (/client-server-api#size-limits) and canonical JSON from room version 6.
Every server must agree on these, or a room splits: no stricter checks belong here.
"""

from hs.events.canonical_json import encode_canonical_json
from hs.events.room_versions import EventFormat, RoomVersion

__all__ = ["MAX_PDU_SIZE", "PduFormatError", "validate_pdu_format"]

MAX_PDU_SIZE = 65536  # bytes of canonical JSON, signatures included
_MAX_ID_BYTES = 255  # sender, room_id, event_id, type, state_key
# The schemas' limits; more would make state resolution or event fetching explode.
_MAX_AUTH_EVENTS = 10
_MAX_PREV_EVENTS = 20
# pdu_v1..v4: depth below 2**63 - 1, or at it once a room is there. v6+ (depth_v6.yaml):
# the canonical JSON limit 2**53 - 1.
_MAX_DEPTH = 2**63 - 1
_MAX_DEPTH_CANONICAL = 2**53 - 1
# origin_server_ts is an int64 (pdu_base.yaml).
_MIN_INT64, _MAX_INT64 = -(2**63), 2**63 - 1


class PduFormatError(ValueError):
    """The PDU does not have the format of its room version; the message says why."""


class PduTooLargeError(PduFormatError):
    """The event, or one of its IDs, is over the spec's size limits."""


def validate_pdu_format(room_version: RoomVersion, pdu: dict) -> None:
    """Raise PduFormatError unless ``pdu`` is a well-formed event of ``room_version``."""
    if not isinstance(pdu, dict):
        raise PduFormatError("event is not a JSON object")
    _check_common_fields(pdu)
    _check_depth(room_version, pdu)
    _check_room_id(room_version, pdu)
    _check_event_id(room_version, pdu)
    _check_edges(room_version, pdu, "auth_events", _MAX_AUTH_EVENTS)
    _check_edges(room_version, pdu, "prev_events", _MAX_PREV_EVENTS)
    if not room_version.redacts_in_content and "redacts" in pdu:
        _require_type(pdu, "redacts", str, "a string")
    _check_size(room_version, pdu)


def _check_common_fields(pdu: dict) -> None:
    # pdu_base.yaml
    _require_type(pdu, "type", str, "a string")
    _check_id_length(pdu, "type")
    _require_type(pdu, "sender", str, "a string")
    _check_id_length(pdu, "sender")
    if not _has_server_name(pdu["sender"], "@"):
        raise PduFormatError("'sender' is not a user ID")
    _require_int(pdu, "origin_server_ts", _MIN_INT64, _MAX_INT64)
    _require_type(pdu, "content", dict, "an object")
    if "state_key" in pdu:
        _require_type(pdu, "state_key", str, "a string")
        _check_id_length(pdu, "state_key")
    if "unsigned" in pdu:
        _require_type(pdu, "unsigned", dict, "an object")

    _require_type(pdu, "hashes", dict, "an object")
    if not isinstance(pdu["hashes"].get("sha256"), str):
        raise PduFormatError("'hashes' has no sha256 string")

    _require_type(pdu, "signatures", dict, "an object")
    for server_signatures in pdu["signatures"].values():
        if not isinstance(server_signatures, dict) or not all(
            isinstance(s, str) for s in server_signatures.values()
        ):
            raise PduFormatError("'signatures' must map server names to objects of strings")


def _check_depth(room_version: RoomVersion, pdu: dict) -> None:
    # A negative depth cannot be "the maximum depth of the prev_events, plus one".
    maximum = _MAX_DEPTH_CANONICAL if room_version.strict_canonical_json else _MAX_DEPTH
    _require_int(pdu, "depth", 0, maximum)


def _check_room_id(room_version: RoomVersion, pdu: dict) -> None:
    # v12: the create event's ID makes the room ID, so the create event cannot contain it;
    # every other event must name its room. The create event is the state event
    # (m.room.create, ""): anything else of that type is an ordinary event, which the auth
    # rules then reject.
    if room_version.room_id_from_create_event and pdu["type"] == "m.room.create" and pdu.get("state_key") == "":
        if "room_id" in pdu:
            raise PduFormatError("a room version 12 create event must not have a room_id")
        return
    _require_type(pdu, "room_id", str, "a string")
    _check_id_length(pdu, "room_id")
    if not pdu["room_id"].startswith("!"):
        raise PduFormatError("'room_id' is not a room ID")


def _check_event_id(room_version: RoomVersion, pdu: dict) -> None:
    if room_version.event_format != EventFormat.V1:
        # From v3 the ID is the event's hash; a stated one would be a second, conflicting ID.
        if "event_id" in pdu:
            raise PduFormatError(f"room version {room_version.identifier} events must not have an event_id")
        return
    _require_type(pdu, "event_id", str, "a string")
    _check_id_length(pdu, "event_id")
    # The domain names a server whose signature the event needs.
    if not _has_server_name(pdu["event_id"], "$"):
        raise PduFormatError("'event_id' is not of the form $opaque_id:domain")


def _check_edges(room_version: RoomVersion, pdu: dict, key: str, max_items: int) -> None:
    _require_type(pdu, key, list, "an array")
    edges = pdu[key]
    if len(edges) > max_items:
        raise PduFormatError(f"'{key}' has more than {max_items} entries")
    for edge in edges:
        if room_version.event_format == EventFormat.V1:
            # [event_id, {"sha256": ...}] pairs. The hash is never checked by any algorithm,
            # and Synapse accepts any object of strings there, so we do not require sha256.
            if not (isinstance(edge, list) and len(edge) == 2 and isinstance(edge[1], dict)
                    and all(isinstance(v, str) for v in edge[1].values())):
                raise PduFormatError(f"'{key}' entries must be [event_id, hashes] pairs")
            edge = edge[0]
        if not isinstance(edge, str) or not edge.startswith("$"):
            raise PduFormatError(f"'{key}' holds something that is not an event ID")


def _check_size(room_version: RoomVersion, pdu: dict) -> None:
    try:
        # Strict from v6 also refuses floats and integers out of range anywhere in the event.
        encoded = encode_canonical_json(pdu, strict=room_version.strict_canonical_json)
    except (ValueError, TypeError, RecursionError) as e:
        raise PduFormatError(f"event is not canonical JSON: {e}") from None
    if len(encoded) > MAX_PDU_SIZE:
        raise PduTooLargeError(f"event is larger than {MAX_PDU_SIZE} bytes")


def _require_type(pdu: dict, key: str, expected: type, description: str) -> None:
    if key not in pdu:
        raise PduFormatError(f"'{key}' is missing")
    if not isinstance(pdu[key], expected):
        raise PduFormatError(f"'{key}' must be {description}")


def _require_int(pdu: dict, key: str, minimum: int, maximum: int) -> None:
    if key not in pdu:
        raise PduFormatError(f"'{key}' is missing")
    value = pdu[key]
    # bool is an int subclass, but true is not a number in JSON.
    if type(value) is not int:
        raise PduFormatError(f"'{key}' must be an integer")
    if not minimum <= value <= maximum:
        raise PduFormatError(f"'{key}' is out of range")


def _check_id_length(pdu: dict, key: str) -> None:
    if len(pdu[key].encode("utf-8", "surrogatepass")) > _MAX_ID_BYTES:
        raise PduTooLargeError(f"'{key}' is longer than {_MAX_ID_BYTES} bytes")


def _has_server_name(identifier: str, sigil: str) -> bool:
    _, sep, server_name = identifier.partition(":")
    return identifier.startswith(sigil) and bool(sep) and bool(server_name)
