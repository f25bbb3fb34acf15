"""Content hashes, reference hashes, event IDs and v12 room IDs (/server-server-api#signing-events).

The *content hash* covers the whole unredacted event, so a receiver can tell whether it got
the full event or a redacted copy. The *reference hash* covers only the redacted event (which
still includes the content hash), so an event keeps its ID when it is redacted; from room
version 3 on, the event ID is the reference hash.

Every hash here encodes canonical JSON leniently (no number checks): events of room versions
1-5 may carry integers outside the canonical range or floats, and other servers hashed exactly
that encoding. Refusing such events in v6+ rooms is validate_pdu_format's job, not ours.
"""

import copy
import hashlib
import secrets
import string

from hs.events.canonical_json import (
    encode_canonical_json,
    unpadded_b64decode,
    unpadded_b64encode,
    urlsafe_unpadded_b64encode,
)
from hs.events.event import Event, room_id_from_create_event_id
from hs.events.redaction import prune_event_dict
from hs.events.room_versions import EventFormat, RoomVersion

__all__ = [
    "add_content_hash",
    "check_content_hash",
    "compute_content_hash",
    "compute_event_id",
    "compute_reference_hash",
    "event_from_pdu",
    "make_v1_event_id",
    "room_id_from_create_event_id",
]

_V1_EVENT_ID_ALPHABET = string.ascii_letters + string.digits


def compute_content_hash(pdu: dict) -> str:
    """The unpadded base64 SHA-256 of the event without ``unsigned``, ``signatures`` and ``hashes``."""
    # `hashes` is left out so that a hash never covers a hash, and `signatures` because
    # they are added after hashing; `unsigned` changes in transit (e.g. `age`).
    hashed = {k: v for k, v in pdu.items() if k not in ("unsigned", "signatures", "hashes")}
    return unpadded_b64encode(hashlib.sha256(encode_canonical_json(hashed, strict=False)).digest())


def add_content_hash(pdu: dict) -> dict:
    """Return a deep copy of ``pdu`` with ``hashes.sha256`` set; other hash algorithms are kept."""
    hashed = copy.deepcopy(pdu)
    if not isinstance(hashed.get("hashes"), dict):
        hashed["hashes"] = {}
    hashed["hashes"]["sha256"] = compute_content_hash(pdu)
    return hashed


def check_content_hash(pdu: dict) -> bool:
    """Whether ``hashes.sha256`` matches the event. A missing or malformed hash does not match."""
    hashes = pdu.get("hashes")
    if not isinstance(hashes, dict) or not isinstance(hashes.get("sha256"), str):
        return False
    try:
        claimed = unpadded_b64decode(hashes["sha256"])
    except ValueError:
        return False
    # Compare the bytes, not the text: padded base64 is valid and decodes the same.
    return claimed == unpadded_b64decode(compute_content_hash(pdu))


def compute_reference_hash(room_version: RoomVersion, pdu: dict) -> bytes:
    """The raw SHA-256 reference hash: the redacted event without ``signatures`` and ``unsigned``.

    ``hashes`` stays in, so the content hash (and through it the full content) is bound to
    the event ID.
    """
    redacted = prune_event_dict(room_version, pdu)
    redacted.pop("signatures", None)
    redacted.pop("unsigned", None)
    return hashlib.sha256(encode_canonical_json(redacted, strict=False)).digest()


def compute_event_id(room_version: RoomVersion, pdu: dict) -> str:
    """The event ID of a room version 3+ event: ``$`` + base64 of its reference hash.

    Room version 3 uses standard base64; 4+ the URL-safe alphabet, as "/" in IDs broke URLs.
    Raises ValueError for versions 1 and 2, whose event IDs are chosen by the sending server.
    """
    if room_version.event_format == EventFormat.V1:
        raise ValueError(f"room version {room_version.identifier} event IDs are not hashes")
    reference_hash = compute_reference_hash(room_version, pdu)
    if room_version.event_format == EventFormat.V2:
        return "$" + unpadded_b64encode(reference_hash)
    return "$" + urlsafe_unpadded_b64encode(reference_hash)


def make_v1_event_id(server_name: str) -> str:
    """A new event ID for a room version 1 or 2 event: ``$<random>:<server_name>``."""
    # 24 alphanumerics (~143 bits) keep IDs unique without a counter to persist.
    opaque = "".join(secrets.choice(_V1_EVENT_ID_ALPHABET) for _ in range(24))
    return f"${opaque}:{server_name}"


def event_from_pdu(room_version: RoomVersion, pdu: dict) -> Event:
    """Wrap ``pdu`` in an Event with its event ID.

    Versions 1 and 2 carry the ID in the event; later ones derive it from the event's hash.
    The pdu should already have passed validate_pdu_format. For a v12 create event the room
    ID is the event ID with ``!`` (``room_id_from_create_event_id``); it is not added to the
    pdu, as that would change the event and so its ID.
    """
    if room_version.event_format == EventFormat.V1:
        event_id = pdu.get("event_id")
        if not isinstance(event_id, str):
            raise ValueError("room version 1/2 event has no event_id")
    else:
        event_id = compute_event_id(room_version, pdu)
    return Event(pdu, room_version, event_id)
