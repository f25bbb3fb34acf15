"""Signing events and checking their signatures (/server-server-api#signing-events).

An event is signed in its *redacted* form, with the content hash inside it: a server that
only holds the redacted copy can still check the signature, and the hash still binds the
signature to the full content.
"""

import nacl.signing

from hs.events.canonical_json import encode_canonical_json, unpadded_b64encode
from hs.events.hashing import add_content_hash
from hs.events.redaction import prune_event_dict
from hs.events.room_versions import EventFormat, RoomVersion
from hs.events.signing import SigningKey, verify_signed_json

__all__ = [
    "required_signature_servers",
    "sign_event",
    "verify_event_signature",
]


def sign_event(room_version: RoomVersion, pdu: dict, server_name: str, signing_key: SigningKey) -> dict:
    """Return a deep copy of ``pdu`` with its content hash and ``server_name``'s signature added.

    Signatures already on the event (other servers', or ours with other keys) are kept.
    Raises ValueError if a room version 6+ event is not canonical JSON (floats, integers out
    of range): we must not produce an event that other servers are bound to drop.
    """
    hashed = add_content_hash(pdu)
    redacted = prune_event_dict(room_version, hashed)
    redacted.pop("signatures", None)
    # Room versions 1-5 may hold numbers canonical JSON forbids; other servers signed (and
    # so verify) exactly this lenient encoding, and we may have to co-sign such an event.
    message = encode_canonical_json(redacted, strict=room_version.strict_canonical_json)
    signature = unpadded_b64encode(signing_key.sign(message))

    if not isinstance(hashed.get("signatures"), dict):
        hashed["signatures"] = {}
    hashed["signatures"].setdefault(server_name, {})[signing_key.key_id] = signature
    return hashed


def verify_event_signature(
    room_version: RoomVersion, pdu: dict, server_name: str, verify_key: nacl.signing.VerifyKey, key_id: str
) -> None:
    """Raise signing.SignatureVerifyError unless ``server_name`` signed ``pdu`` with ``key_id``.

    The signature is checked over the redacted event, so it holds whether we were sent the
    full event or a redacted copy. It says nothing about the content hash: check that
    separately with hashing.check_content_hash.
    """
    verify_signed_json(prune_event_dict(room_version, pdu), server_name, verify_key, key_id)


def required_signature_servers(room_version: RoomVersion, pdu: dict) -> set[str]:
    """The servers whose valid signatures a received event must carry, else it is dropped.

    From /server-server-api "Validating hashes and signatures on received events":

    * The sender's server, unless the event is an invite made from a third-party invite:
      its sender is the user who made the 3pid invite, but the invited user's server (which
      turned the 3pid invite into a real one) may be the one that built and signed it. The
      auth rules instead check the identity server's signature in ``third_party_invite``.
    * Room versions 1 and 2: also the server named in the event ID, which created the event.

    And from the auth rules of room versions 8+ (rule "If content has a
    join_authorised_via_users_server property: if the event is not validly signed by the
    homeserver of the user ID denoted by the key, reject"):

    * The server of ``join_authorised_via_users_server``, on any m.room.member event that has
      it. The auth rules are pure and cannot fetch keys, so the signature is verified here,
      with the others; the auth rules only check that it is there. Synapse does the same (for
      joins), so such an event is dropped rather than rejected.

    Raises ValueError if one of these IDs has no server name: the event is malformed, and is
    dropped like one that is not signed (validate_pdu_format already refuses a bad sender or
    event ID).
    """
    servers = set()
    if not _is_invite_via_third_party_invite(pdu):
        servers.add(_server_name_of(pdu.get("sender"), "@"))
    if room_version.event_format == EventFormat.V1:
        servers.add(_server_name_of(pdu.get("event_id"), "$"))
    content = pdu.get("content")
    if (room_version.restricted_join_rule and pdu.get("type") == "m.room.member"
            and isinstance(content, dict) and "join_authorised_via_users_server" in content):
        servers.add(_server_name_of(content["join_authorised_via_users_server"], "@"))
    return servers


def _is_invite_via_third_party_invite(pdu: dict) -> bool:
    content = pdu.get("content")
    return (
        pdu.get("type") == "m.room.member"
        and isinstance(content, dict)
        and content.get("membership") == "invite"
        and "third_party_invite" in content
    )


def _server_name_of(identifier, sigil: str) -> str:
    if isinstance(identifier, str) and identifier.startswith(sigil):
        _, sep, server_name = identifier.partition(":")
        if sep and server_name:
            return server_name
    raise ValueError(f"identifier has no server name: {identifier!r}")
