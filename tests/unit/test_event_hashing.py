import base64
import copy
import hashlib
import re

import canonicaljson
import pytest

from hs.events.hashing import (
    add_content_hash,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    event_from_pdu,
    make_v1_event_id,
    room_id_from_create_event_id,
)
from hs.events.redaction import prune_event_dict
from hs.events.room_versions import KNOWN_ROOM_VERSIONS, EventFormat

ALL_VERSIONS = [str(n) for n in range(1, 13)]

# Spec appendix "Cryptographic test vectors" > "Event signing": the content hashes the
# signing algorithm must put into these two events.
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
SPEC_MINIMAL_EVENT_HASH = "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
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
SPEC_MESSAGE_EVENT_HASH = "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"

# A real room version 10 event with its event ID, from Synapse's test suite
# (rust/src/events/utils.rs, test_calculate_event_id): an interop vector for the content
# hash, the reference hash and both event ID alphabets. Its reference hash has a "/" in
# standard base64, so v3 and v4+ IDs differ.
SYNAPSE_EVENT = {
    "auth_events": [
        "$gbHO7IPUHybc7ULFnT7P0r3iWlZFHGmr6zBfEYCUyKw",
        "$hy1eZFYcgNxMFNNBgCD5fyOzyWRcBkxfNcrUI5ZpZlE",
        "$Nt_z68EwFfPqBeHjzEHGsp461Z4EfNEzR-KH5bOYdOY",
    ],
    "prev_events": ["$4FbpZrgPQTwoLD9H5y7jcikucCypUOn78mXhQX7WliY"],
    "type": "m.room.message",
    "room_id": "!DHmIIVvxFASSFgDGzr:localhost:8008",
    "sender": "@tester_b:localhost:8008",
    "content": {"msgtype": "m.text", "body": "invited people can see history", "m.mentions": {}},
    "depth": 24,
    "origin": "localhost:8008",
    "origin_server_ts": 1731769874137,
    "hashes": {"sha256": "FoYV1w3TW/B2mVT0gX2/BZKpCwrrvGXqXFdUhN9LZYU"},
    "signatures": {
        "localhost:8008": {
            "ed25519:a_phSE": "G8cfk/m97sndxMNrEZ2nMMSXkVeJE05G7if4JiVzAwGfD3TwnF/jfSHt2acWrpNqv/aEhZug3WLofc2id+rVBw"
        }
    },
    "unsigned": {"age_ts": 1731769874137},
}
SYNAPSE_EVENT_ID_V4_PLUS = "$zRz9jjiT9wZc3Hl9ij_74aCmTjqV3YMlj9sj3Uqxg6o"
SYNAPSE_EVENT_ID_V3 = "$zRz9jjiT9wZc3Hl9ij/74aCmTjqV3YMlj9sj3Uqxg6o"


def independent_reference_hash(redacted: dict) -> bytes:
    """/server-server-api "Calculating the reference hash", written again with canonicaljson."""
    stripped = {k: v for k, v in redacted.items() if k not in ("signatures", "unsigned")}
    return hashlib.sha256(canonicaljson.encode_canonical_json(stripped)).digest()


# --- content hash -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event, expected",
    [(SPEC_MINIMAL_EVENT, SPEC_MINIMAL_EVENT_HASH), (SPEC_MESSAGE_EVENT, SPEC_MESSAGE_EVENT_HASH)],
    ids=["minimal", "message"],
)
def test_content_hash_spec_vectors(event, expected):
    assert compute_content_hash(event) == expected


def test_content_hash_of_real_event_matches_its_hashes_field():
    assert compute_content_hash(SYNAPSE_EVENT) == SYNAPSE_EVENT["hashes"]["sha256"]
    assert check_content_hash(SYNAPSE_EVENT)


def test_content_hash_matches_an_independent_implementation():
    # /server-server-api "Calculating the content hash for an event".
    event = {
        "type": "m.room.message", "sender": "@ü:example.org", "depth": -3,
        "content": {"body": "日本語 \u2028 \"quoted\"", "nested": {"b": [1, None, True], "a": ""}},
        "hashes": {"sha256": "old"}, "signatures": {"x": {}}, "unsigned": {"age": 5},
    }
    stripped = {k: v for k, v in event.items() if k not in ("unsigned", "signatures", "hashes")}
    expected = base64.b64encode(
        hashlib.sha256(canonicaljson.encode_canonical_json(stripped)).digest()
    ).decode().rstrip("=")
    assert compute_content_hash(event) == expected


def test_content_hash_ignores_unsigned_signatures_and_hashes():
    base = compute_content_hash(SPEC_MESSAGE_EVENT)
    changed = dict(
        SPEC_MESSAGE_EVENT, unsigned={"age": 1}, signatures={"a": {"b": "c"}}, hashes={"sha256": "x"}
    )
    assert compute_content_hash(changed) == base


def test_content_hash_covers_redactable_content():
    changed = copy.deepcopy(SPEC_MESSAGE_EVENT)
    changed["content"]["body"] = "Here is other content"
    assert compute_content_hash(changed) != SPEC_MESSAGE_EVENT_HASH


def test_content_hash_tolerates_numbers_canonical_json_forbids():
    # Room versions 1-5 events may hold these, and other servers hashed them as encoded here.
    event = {"type": "m.room.message", "content": {"big": 2**60, "float": 1.5}, "depth": 2**62}
    expected = base64.b64encode(
        hashlib.sha256(canonicaljson.encode_canonical_json(event)).digest()
    ).decode().rstrip("=")
    assert compute_content_hash(event) == expected


def test_add_content_hash_returns_a_copy_and_keeps_other_algorithms():
    event = dict(SPEC_MESSAGE_EVENT, hashes={"sha512": "other"})
    before = copy.deepcopy(event)
    hashed = add_content_hash(event)
    assert event == before
    assert hashed["hashes"] == {"sha512": "other", "sha256": SPEC_MESSAGE_EVENT_HASH}
    assert check_content_hash(hashed)
    hashed["content"]["body"] = "changed"
    hashed["hashes"]["sha1"] = "x"
    assert event == before


def test_tampered_content_fails_the_hash_check():
    hashed = add_content_hash(SPEC_MESSAGE_EVENT)
    hashed["content"]["body"] = "tampered"
    assert not check_content_hash(hashed)


def test_padded_base64_hash_is_accepted():
    hashed = add_content_hash(SPEC_MESSAGE_EVENT)
    hashed["hashes"]["sha256"] += "="
    assert check_content_hash(hashed)


@pytest.mark.parametrize(
    "hashes",
    [None, "abc", [], {}, {"sha512": SPEC_MESSAGE_EVENT_HASH}, {"sha256": 5}, {"sha256": "!!not base64"}],
    ids=["missing", "string", "array", "empty", "other-algorithm", "not-string", "undecodable"],
)
def test_missing_or_malformed_hash_fails_the_check(hashes):
    event = copy.deepcopy(SPEC_MESSAGE_EVENT)
    if hashes is not None:
        event["hashes"] = hashes
    assert not check_content_hash(event)


# --- reference hash and event IDs ------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_event_id_of_real_event_per_room_version(version):
    # /rooms/v1 and v2: IDs are chosen by the sender. /rooms/v3: "$" + unpadded base64 of the
    # reference hash. /rooms/v4 on: URL-safe unpadded base64. v11 stopped protecting
    # `origin`, so the same JSON has another ID there; that one is checked against an
    # independent computation over the v11 redacted form written out by hand.
    room_version = KNOWN_ROOM_VERSIONS[version]
    if version in ("1", "2"):
        with pytest.raises(ValueError):
            compute_event_id(room_version, SYNAPSE_EVENT)
        return
    event_id = compute_event_id(room_version, SYNAPSE_EVENT)
    if version == "3":
        assert event_id == SYNAPSE_EVENT_ID_V3
    elif version in ("11", "12"):
        redacted_v11 = {k: v for k, v in SYNAPSE_EVENT.items() if k not in ("origin", "unsigned")}
        redacted_v11["content"] = {}
        expected = base64.urlsafe_b64encode(independent_reference_hash(redacted_v11)).decode().rstrip("=")
        assert event_id == "$" + expected
        assert event_id != SYNAPSE_EVENT_ID_V4_PLUS
    else:
        assert event_id == SYNAPSE_EVENT_ID_V4_PLUS


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_reference_hash_keeps_hashes_and_drops_signatures_and_unsigned(version):
    room_version = KNOWN_ROOM_VERSIONS[version]
    event = add_content_hash(SPEC_MESSAGE_EVENT)
    redacted = prune_event_dict(room_version, event)
    assert "hashes" in redacted
    assert compute_reference_hash(room_version, event) == independent_reference_hash(redacted)

    resigned = dict(event, signatures={"other": {"ed25519:x": "y"}}, unsigned={"age": 99})
    assert compute_reference_hash(room_version, resigned) == compute_reference_hash(room_version, event)
    rehashed = dict(event, hashes={"sha256": "different"})
    assert compute_reference_hash(room_version, rehashed) != compute_reference_hash(room_version, event)


# Events that lose something to redaction in every version.
REDACTABLE_EVENTS = [
    {"type": "m.room.message", "content": {"body": "secret", "msgtype": "m.text"}},
    {"type": "m.room.member", "state_key": "@bob:example.org",
     "content": {"membership": "join", "displayname": "Bob",
                 "third_party_invite": {"display_name": "b", "signed": {"token": "t"}}}},
    {"type": "m.room.create", "state_key": "", "content": {"creator": "@alice:example.org", "room_version": "10"}},
    {"type": "m.room.power_levels", "state_key": "", "content": {"users": {"@a:b": 100}, "invite": 50, "x": 1}},
]


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("event", REDACTABLE_EVENTS, ids=lambda e: e["type"])
def test_redacted_copy_has_the_same_reference_hash_and_event_id(version, event):
    # This is why the reference hash redacts: an event keeps its ID once redacted.
    room_version = KNOWN_ROOM_VERSIONS[version]
    full = add_content_hash({
        **event, "room_id": "!r:example.org", "sender": "@alice:example.org", "depth": 3,
        "origin": "example.org", "origin_server_ts": 5, "prev_events": [], "auth_events": [],
        "signatures": {}, "unsigned": {"age": 1},
    })
    redacted = prune_event_dict(room_version, full)
    assert compute_reference_hash(room_version, redacted) == compute_reference_hash(room_version, full)
    if room_version.event_format != EventFormat.V1:
        assert compute_event_id(room_version, redacted) == compute_event_id(room_version, full)
    # ...while the content hash tells the copy apart from the full event.
    assert check_content_hash(full)
    assert not check_content_hash(redacted)


@pytest.mark.parametrize("version", ALL_VERSIONS[2:])
def test_event_id_of_event_with_numbers_canonical_json_forbids_is_computed(version):
    # Stored events of old rooms may hold such numbers; their IDs must still be computable.
    event = dict(SYNAPSE_EVENT, depth=2**64)
    assert compute_event_id(KNOWN_ROOM_VERSIONS[version], event).startswith("$")


# --- v1/v2 event IDs, v12 room IDs, Event construction ---------------------------------------


def test_v1_event_ids_are_random_and_name_the_server():
    ids = {make_v1_event_id("example.org:8448") for _ in range(100)}
    assert len(ids) == 100
    for event_id in ids:
        assert re.fullmatch(r"\$[A-Za-z0-9]{24}:example\.org:8448", event_id)


def test_v12_room_id_is_the_create_event_id_with_room_sigil():
    # /appendices#room-ids: "room IDs are simply the event ID of the m.room.create event
    # using ! as the sigil instead of $".
    assert room_id_from_create_event_id("$Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ") == (
        "!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ"
    )


@pytest.mark.parametrize("event_id", ["!abc", "abc", "$", "", None])
def test_room_id_from_something_not_an_event_id_is_refused(event_id):
    with pytest.raises(ValueError):
        room_id_from_create_event_id(event_id)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_event_from_pdu_takes_or_computes_the_event_id(version):
    room_version = KNOWN_ROOM_VERSIONS[version]
    pdu = dict(SYNAPSE_EVENT)
    if version in ("1", "2"):
        pdu["event_id"] = "$abc:localhost:8008"
        event = event_from_pdu(room_version, pdu)
        assert event.event_id == "$abc:localhost:8008"
    else:
        event = event_from_pdu(room_version, pdu)
        assert event.event_id == compute_event_id(room_version, pdu)
    assert event.pdu is pdu
    assert event.room_version is room_version


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("event_id", [None, 5], ids=["missing", "not-string"])
def test_event_from_pdu_refuses_v1_event_without_event_id(version, event_id):
    pdu = dict(SYNAPSE_EVENT)
    if event_id is not None:
        pdu["event_id"] = event_id
    with pytest.raises(ValueError):
        event_from_pdu(KNOWN_ROOM_VERSIONS[version], pdu)


def test_v12_create_event_derives_the_room_id_its_room_uses():
    room_version = KNOWN_ROOM_VERSIONS["12"]
    create = add_content_hash({
        "type": "m.room.create", "state_key": "", "sender": "@alice:example.org",
        "content": {"room_version": "12"}, "depth": 1, "origin_server_ts": 1,
        "prev_events": [], "auth_events": [], "signatures": {},
    })
    event = event_from_pdu(room_version, create)
    assert event.room_id is None
    assert "room_id" not in create
    room_id = room_id_from_create_event_id(event.event_id)
    assert room_id == "!" + event.event_id[1:]
    # URL-safe alphabet, like every v4+ event ID.
    assert re.fullmatch(r"![A-Za-z0-9_-]{43}", room_id)
