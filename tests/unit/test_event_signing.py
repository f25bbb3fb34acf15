import copy

import nacl.signing
import pytest
import signedjson.key
import signedjson.sign

from hs.events.canonical_json import unpadded_b64decode
from hs.events.event_signing import (
    required_signature_servers,
    sign_event,
    verify_event_signature,
)
from hs.events.hashing import check_content_hash
from hs.events.redaction import prune_event_dict
from hs.events.room_versions import KNOWN_ROOM_VERSIONS
from hs.events.signing import SignatureVerifyError, SigningKey, generate_signing_key

ALL_VERSIONS = [str(n) for n in range(1, 13)]

# Spec appendix "Cryptographic test vectors": key, server name and key ID.
SPEC_SEED_B64 = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SPEC_SERVER = "domain"
SPEC_KEY_ID = "ed25519:1"

# Spec appendix "Cryptographic test vectors" > "Event signing": input events and the
# signed events the algorithm must emit.
SPEC_MINIMAL_EVENT = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {"age_ts": 1000000},
}
SPEC_MINIMAL_EVENT_SIGNED = {
    "auth_events": [],
    "content": {},
    "depth": 3,
    "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "prev_events": [],
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
        }
    },
    "type": "X",
    "unsigned": {"age_ts": 1000000},
}
SPEC_MESSAGE_EVENT = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {},
    "unsigned": {"age_ts": 1000000},
}
SPEC_MESSAGE_EVENT_SIGNED = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "hashes": {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
        }
    },
    "unsigned": {"age_ts": 1000000},
}

# Room versions whose redaction keeps `origin`, which the spec vectors' signatures cover.
VERSIONS_SIGNING_ORIGIN = [str(n) for n in range(1, 11)]


@pytest.fixture
def spec_key() -> SigningKey:
    return SigningKey("1", nacl.signing.SigningKey(unpadded_b64decode(SPEC_SEED_B64)))


@pytest.fixture
def signedjson_verify_key():
    key = signedjson.key.decode_signing_key_base64("ed25519", "1", SPEC_SEED_B64)
    return signedjson.key.get_verify_key(key)


def message_event(**extra) -> dict:
    return {
        "type": "m.room.message", "room_id": "!r:example.org", "sender": "@alice:example.org",
        "content": {"msgtype": "m.text", "body": "hello"}, "depth": 4, "origin_server_ts": 7,
        "prev_events": [], "auth_events": [], "signatures": {}, **extra,
    }


# --- spec vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_spec_vector_minimal_event(version, spec_key):
    signed = sign_event(KNOWN_ROOM_VERSIONS[version], SPEC_MINIMAL_EVENT, SPEC_SERVER, spec_key)
    if version in VERSIONS_SIGNING_ORIGIN:
        assert signed == SPEC_MINIMAL_EVENT_SIGNED
    else:
        # v11+ redaction drops `origin`, so the signature covers other bytes; the vector
        # predates v11. Same hash (it covers the unredacted event), other signature.
        assert signed["hashes"] == SPEC_MINIMAL_EVENT_SIGNED["hashes"]
        assert signed["signatures"] != SPEC_MINIMAL_EVENT_SIGNED["signatures"]
        verify_event_signature(KNOWN_ROOM_VERSIONS[version], signed, SPEC_SERVER, spec_key.verify_key, SPEC_KEY_ID)


@pytest.mark.parametrize("version", ["1", "2"])
def test_spec_vector_message_event(version, spec_key):
    # Has an `event_id`, so it is in the room version 1/2 format.
    signed = sign_event(KNOWN_ROOM_VERSIONS[version], SPEC_MESSAGE_EVENT, SPEC_SERVER, spec_key)
    assert signed == SPEC_MESSAGE_EVENT_SIGNED


@pytest.mark.parametrize("version", VERSIONS_SIGNING_ORIGIN)
@pytest.mark.parametrize("signed", [SPEC_MINIMAL_EVENT_SIGNED, SPEC_MESSAGE_EVENT_SIGNED], ids=["minimal", "message"])
def test_spec_vector_signatures_verify(version, signed, spec_key):
    verify_event_signature(KNOWN_ROOM_VERSIONS[version], signed, SPEC_SERVER, spec_key.verify_key, SPEC_KEY_ID)


# --- signing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_signature_is_over_the_redacted_event_as_signedjson_checks_it(version, spec_key, signedjson_verify_key):
    # An independent check: the signature must verify, with the signedjson package, on the
    # redacted event, and carry the content hash of the full event.
    room_version = KNOWN_ROOM_VERSIONS[version]
    signed = sign_event(room_version, message_event(unsigned={"age": 3}), SPEC_SERVER, spec_key)
    assert check_content_hash(signed)
    signedjson.sign.verify_signed_json(prune_event_dict(room_version, signed), SPEC_SERVER, signedjson_verify_key)
    # Over the full event it does not verify: the signature does not cover redactable content.
    with pytest.raises(signedjson.sign.SignatureVerifyException):
        signedjson.sign.verify_signed_json(signed, SPEC_SERVER, signedjson_verify_key)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_sign_event_leaves_the_input_untouched_and_keeps_unsigned(version, spec_key):
    pdu = message_event(unsigned={"age": 3}, signatures={"other.org": {"ed25519:x": "sig"}})
    before = copy.deepcopy(pdu)
    signed = sign_event(KNOWN_ROOM_VERSIONS[version], pdu, SPEC_SERVER, spec_key)
    assert pdu == before
    assert signed["unsigned"] == {"age": 3}
    signed["signatures"]["other.org"]["ed25519:y"] = "more"
    signed["content"]["body"] = "changed"
    assert pdu == before


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_signing_again_adds_to_the_existing_signatures(version, spec_key):
    room_version = KNOWN_ROOM_VERSIONS[version]
    other_key = generate_signing_key("other")
    pdu = message_event(signatures={"other.org": {"ed25519:x": "sig"}})
    signed = sign_event(room_version, sign_event(room_version, pdu, SPEC_SERVER, other_key), SPEC_SERVER, spec_key)
    assert set(signed["signatures"]) == {"other.org", SPEC_SERVER}
    assert set(signed["signatures"][SPEC_SERVER]) == {"ed25519:other", SPEC_KEY_ID}
    verify_event_signature(room_version, signed, SPEC_SERVER, other_key.verify_key, other_key.key_id)
    verify_event_signature(room_version, signed, SPEC_SERVER, spec_key.verify_key, SPEC_KEY_ID)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_numbers_canonical_json_forbids_are_signed_only_before_v6(version, spec_key, signedjson_verify_key):
    # /rooms/v6 "Canonical JSON": v6+ servers drop such events, so we must never make one;
    # v1-5 servers must not enforce it, and we may have to co-sign such an event.
    room_version = KNOWN_ROOM_VERSIONS[version]
    pdu = message_event(content={"body": "x", "n": 2**60}, depth=2**60)
    if version in ("1", "2", "3", "4", "5"):
        signed = sign_event(room_version, pdu, SPEC_SERVER, spec_key)
        signedjson.sign.verify_signed_json(prune_event_dict(room_version, signed), SPEC_SERVER, signedjson_verify_key)
    else:
        with pytest.raises(ValueError):
            sign_event(room_version, pdu, SPEC_SERVER, spec_key)


# --- verifying --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_signature_holds_for_the_redacted_copy_but_its_hash_does_not(version, spec_key):
    # /server-server-api "Validating hashes and signatures on received events": the
    # signature check "should succeed whether we have been sent the full event or a
    # redacted copy"; the content hash then tells them apart.
    room_version = KNOWN_ROOM_VERSIONS[version]
    signed = sign_event(room_version, message_event(), SPEC_SERVER, spec_key)
    redacted = prune_event_dict(room_version, signed)
    verify_event_signature(room_version, redacted, SPEC_SERVER, spec_key.verify_key, SPEC_KEY_ID)
    assert not check_content_hash(redacted)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_changed_redactable_content_keeps_the_signature_but_fails_the_hash(version, spec_key):
    room_version = KNOWN_ROOM_VERSIONS[version]
    signed = sign_event(room_version, message_event(), SPEC_SERVER, spec_key)
    signed["content"]["body"] = "tampered"
    verify_event_signature(room_version, signed, SPEC_SERVER, spec_key.verify_key, SPEC_KEY_ID)
    assert not check_content_hash(signed)


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(
    "tamper",
    [
        lambda e: e.update(sender="@mallory:example.org"),
        lambda e: e.update(depth=99),
        lambda e: e["hashes"].update(sha256="AAAA"),
        lambda e: e["content"].update(membership="ban"),
    ],
    ids=["sender", "depth", "hash", "membership"],
)
def test_changed_protected_keys_break_the_signature(version, tamper, spec_key):
    room_version = KNOWN_ROOM_VERSIONS[version]
    pdu = message_event(type="m.room.member", state_key="@alice:example.org", content={"membership": "join"})
    signed = sign_event(room_version, pdu, SPEC_SERVER, spec_key)
    tamper(signed)
    with pytest.raises(SignatureVerifyError):
        verify_event_signature(room_version, signed, SPEC_SERVER, spec_key.verify_key, SPEC_KEY_ID)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_origin_is_protected_only_before_v11(version, spec_key):
    room_version = KNOWN_ROOM_VERSIONS[version]
    signed = sign_event(room_version, message_event(origin="example.org"), SPEC_SERVER, spec_key)
    signed["origin"] = "elsewhere.org"
    if version in ("11", "12"):
        verify_event_signature(room_version, signed, SPEC_SERVER, spec_key.verify_key, SPEC_KEY_ID)
    else:
        with pytest.raises(SignatureVerifyError):
            verify_event_signature(room_version, signed, SPEC_SERVER, spec_key.verify_key, SPEC_KEY_ID)


def test_signature_by_another_server_or_key_does_not_verify(spec_key):
    room_version = KNOWN_ROOM_VERSIONS["12"]
    signed = sign_event(room_version, message_event(), SPEC_SERVER, spec_key)
    with pytest.raises(SignatureVerifyError, match="missing"):
        verify_event_signature(room_version, signed, "example.org", spec_key.verify_key, SPEC_KEY_ID)
    with pytest.raises(SignatureVerifyError, match="missing"):
        verify_event_signature(room_version, signed, SPEC_SERVER, spec_key.verify_key, "ed25519:2")
    with pytest.raises(SignatureVerifyError, match="invalid"):
        verify_event_signature(room_version, signed, SPEC_SERVER, generate_signing_key().verify_key, SPEC_KEY_ID)


# --- which servers must have signed --------------------------------------------------------


def received_event(version: str, **extra) -> dict:
    pdu = {**message_event(sender="@alice:sender.org"), **extra}
    if version in ("1", "2"):
        pdu.setdefault("event_id", "$abc:creator.org")
    return pdu


def third_party_invite_content() -> dict:
    return {
        "membership": "invite",
        "third_party_invite": {"display_name": "b...", "signed": {"mxid": "@bob:x", "token": "t", "signatures": {}}},
    }


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_sender_server_must_sign_and_in_v1_v2_the_event_id_server_too(version):
    # /server-server-api "Validating hashes and signatures on received events".
    expected = {"sender.org", "creator.org"} if version in ("1", "2") else {"sender.org"}
    assert required_signature_servers(KNOWN_ROOM_VERSIONS[version], received_event(version)) == expected


@pytest.mark.parametrize("version", ["1", "2"])
def test_v1_event_id_server_same_as_sender_is_required_once(version):
    pdu = received_event(version, event_id="$abc:sender.org")
    assert required_signature_servers(KNOWN_ROOM_VERSIONS[version], pdu) == {"sender.org"}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_invite_from_third_party_invite_needs_no_sender_signature(version):
    # "If the event is a 3rd party invite, the sender must already match the 3rd party
    # invite, and the server which actually sends the event may be a different server."
    pdu = received_event(version, type="m.room.member", state_key="@bob:x", content=third_party_invite_content())
    expected = {"creator.org"} if version in ("1", "2") else set()
    assert required_signature_servers(KNOWN_ROOM_VERSIONS[version], pdu) == expected


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(
    "event_type, content",
    [
        ("m.room.member", {**third_party_invite_content(), "membership": "join"}),
        ("m.room.member", {"membership": "invite"}),
        ("m.room.message", third_party_invite_content()),
    ],
    ids=["join-with-3pid-block", "plain-invite", "not-a-member-event"],
)
def test_other_events_still_need_the_sender_signature(version, event_type, content):
    pdu = received_event(version, type=event_type, state_key="@bob:x", content=content)
    assert "sender.org" in required_signature_servers(KNOWN_ROOM_VERSIONS[version], pdu)


@pytest.mark.parametrize("sender", ["alice", "@alice", "@alice:", 5, None])
def test_sender_without_server_name_is_refused(sender):
    pdu = received_event("10", sender=sender)
    with pytest.raises(ValueError):
        required_signature_servers(KNOWN_ROOM_VERSIONS["10"], pdu)


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("membership", ["join", "leave"])
def test_authorising_server_must_sign_member_events_naming_it_from_v8(version, membership):
    # /rooms/v8 authorization rules: "If content has a join_authorised_via_users_server
    # property: if the event is not validly signed by the homeserver of the user ID denoted
    # by the key, reject." It applies to any membership; before v8 the key means nothing.
    pdu = received_event(
        version, type="m.room.member", state_key="@alice:sender.org",
        content={"membership": membership, "join_authorised_via_users_server": "@admin:resident.org"},
    )
    servers = required_signature_servers(KNOWN_ROOM_VERSIONS[version], pdu)
    assert ("resident.org" in servers) == (int(version) >= 8)
    assert "sender.org" in servers


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_authorising_server_is_not_required_on_other_event_types(version):
    pdu = received_event(version, content={"body": "x", "join_authorised_via_users_server": "@admin:resident.org"})
    assert "resident.org" not in required_signature_servers(KNOWN_ROOM_VERSIONS[version], pdu)


@pytest.mark.parametrize("version", ["8", "9", "12"])
def test_malformed_authorising_user_is_refused(version):
    pdu = received_event(version, type="m.room.member", state_key="@alice:sender.org",
                         content={"membership": "join", "join_authorised_via_users_server": "admin"})
    with pytest.raises(ValueError):
        required_signature_servers(KNOWN_ROOM_VERSIONS[version], pdu)
