"""Matrix identifier grammar (appendices: identifier grammar)."""

import re

from hs.errors import Codes, MatrixError

MAX_USER_ID_LENGTH = 255
# Used with fullmatch: `$` would also accept a trailing newline ("alice\n").
_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")
# Historical user IDs (from other servers) may use any printable ASCII but ':'.
_HISTORICAL_LOCALPART = re.compile(r"[\x21-\x39\x3b-\x7e]+")


def user_id_parts(user_id: str) -> tuple[str, str]:
    """(localpart, server_name) of a syntactically valid user ID, else M_INVALID_PARAM."""
    if not isinstance(user_id, str) or not user_id.startswith("@") or ":" not in user_id:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid user ID")
    localpart, server_name = user_id[1:].split(":", 1)
    if (not localpart or not server_name or not _HISTORICAL_LOCALPART.fullmatch(localpart)
            or len(user_id.encode("utf-8")) > MAX_USER_ID_LENGTH):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid user ID")
    return localpart, server_name


def check_new_localpart(localpart: str, server_name: str) -> None:
    """Rules for a localpart a user asks for: the spec's grammar, plus the ranges we reserve."""
    if not localpart:
        raise MatrixError(400, Codes.INVALID_USERNAME, "User ID cannot be empty")
    if not _LOCALPART.fullmatch(localpart):
        raise MatrixError(400, Codes.INVALID_USERNAME,
                          "User ID can only contain characters a-z, 0-9, or '=_-./+'")
    if localpart.startswith("_"):
        raise MatrixError(400, Codes.INVALID_USERNAME, "User ID may not begin with '_'")
    if localpart.isdigit():
        raise MatrixError(400, Codes.INVALID_USERNAME, "Numeric user IDs are reserved for guest users")
    if len(f"@{localpart}:{server_name}".encode("utf-8")) > MAX_USER_ID_LENGTH:
        raise MatrixError(400, Codes.INVALID_USERNAME, f"User ID may not be longer than {MAX_USER_ID_LENGTH} bytes")


def check_room_id(room_id: str) -> None:
    """A room ID is '!' opaque ':' server, or (room v12) '!' and a reference hash."""
    if not room_id.startswith("!") or len(room_id) < 2 or len(room_id.encode("utf-8")) > 255 or "\x00" in room_id:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid room ID {room_id!r}")


def check_event_id(event_id: str) -> None:
    if not event_id.startswith("$") or len(event_id) < 2 or len(event_id.encode("utf-8")) > 255 or "\x00" in event_id:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid event ID {event_id!r}")
