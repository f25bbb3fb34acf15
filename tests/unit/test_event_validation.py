import json

import pytest

from hs.events.canonical_json import encode_canonical_json
from hs.events.room_versions import KNOWN_ROOM_VERSIONS
from hs.events.validation import MAX_PDU_SIZE, PduFormatError, validate_pdu_format

ALL_VERSIONS = [str(n) for n in range(1, 13)]
V1_FORMAT = ("1", "2")  # pdu_v1.yaml: event_id in the event, [event_id, hashes] edges
NON_STRICT_JSON = ("1", "2", "3", "4", "5")  # /rooms/v6 "Canonical JSON" starts enforcement


def valid_pdu(version: str, **changes) -> dict:
    """A well-formed m.room.message PDU in the format of ``version``."""
    if version in V1_FORMAT:
        edges = {"prev_events": [["$p:example.org", {"sha256": "abc"}]],
                 "auth_events": [["$a:example.org", {"sha256": "abc"}]],
                 "event_id": "$e:example.org"}
    else:
        edges = {"prev_events": ["$prev"], "auth_events": ["$auth"]}
    pdu = {
        "type": "m.room.message",
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "origin_server_ts": 1_700_000_000_000,
        "content": {"msgtype": "m.text", "body": "hello"},
        "depth": 12,
        "hashes": {"sha256": "ThisHashCoversAllFieldsInCaseThisIsRedacted"},
        "signatures": {"example.org": {"ed25519:a_1": "sig"}},
        "unsigned": {"age": 4612},
        **edges,
    }
    pdu.update(changes)
    return pdu


def create_pdu(version: str) -> dict:
    pdu = valid_pdu(version, type="m.room.create", state_key="", content={"room_version": version},
                    prev_events=[], auth_events=[], depth=1)
    if version == "12":
        # /rooms/v12 "Event format" (pdu_v12.yaml): room_id is "Omitted from m.room.create events".
        del pdu["room_id"]
    return pdu


def assert_invalid(version: str, pdu: dict, match: str) -> None:
    with pytest.raises(PduFormatError, match=match):
        validate_pdu_format(KNOWN_ROOM_VERSIONS[version], pdu)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_well_formed_events_pass(version):
    room_version = KNOWN_ROOM_VERSIONS[version]
    validate_pdu_format(room_version, valid_pdu(version))
    validate_pdu_format(room_version, valid_pdu(version, state_key="", type="m.room.topic",
                                                 content={"topic": "t"}))
    validate_pdu_format(room_version, create_pdu(version))


def test_format_error_is_a_value_error():
    assert issubclass(PduFormatError, ValueError)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_non_object_event_is_refused(version):
    assert_invalid(version, [valid_pdu(version)], "not a JSON object")


# pdu_base.yaml and pdu_v*.yaml "required".
@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(
    "key",
    ["type", "sender", "origin_server_ts", "content", "depth", "hashes", "signatures",
     "auth_events", "prev_events", "room_id"],
)
def test_missing_required_key_is_refused(version, key):
    pdu = valid_pdu(version)
    del pdu[key]
    assert_invalid(version, pdu, f"'{key}' is missing")


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(
    "key, value",
    [
        ("type", 5), ("sender", ["@a:b"]), ("origin_server_ts", "123"), ("origin_server_ts", True),
        ("origin_server_ts", 2**63), ("content", "text"), ("content", None), ("state_key", 0),
        ("state_key", None), ("unsigned", []), ("hashes", "abc"), ("signatures", []),
        ("room_id", 5), ("auth_events", {}), ("prev_events", "$a"), ("depth", "12"),
        ("depth", True), ("depth", 12.0), ("depth", -1),
    ],
)
def test_wrongly_typed_key_is_refused(version, key, value):
    assert_invalid(version, valid_pdu(version, **{key: value}), f"'{key}'")


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(
    "key, value",
    [("sender", "alice"), ("sender", "@alice"), ("sender", "@alice:"), ("room_id", "room:example.org")],
)
def test_malformed_identifier_is_refused(version, key, value):
    assert_invalid(version, valid_pdu(version, **{key: value}), f"'{key}' is not")


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(
    "hashes", [{}, {"sha512": "x"}, {"sha256": 5}], ids=["empty", "other-algorithm", "not-string"]
)
def test_hashes_without_a_sha256_string_are_refused(version, hashes):
    # event_hash.yaml: required: ['sha256'].
    assert_invalid(version, valid_pdu(version, hashes=hashes), "sha256")


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(
    "signatures", [{"example.org": "sig"}, {"example.org": {"ed25519:1": 5}}, {"example.org": ["sig"]}],
    ids=["server-not-object", "signature-not-string", "server-array"],
)
def test_malformed_signatures_are_refused(version, signatures):
    assert_invalid(version, valid_pdu(version, signatures=signatures), "'signatures'")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_empty_signatures_and_extra_hashes_are_well_formed(version):
    # Whether the right servers signed is the signature check's business, not the format's.
    validate_pdu_format(KNOWN_ROOM_VERSIONS[version],
                        valid_pdu(version, signatures={}, hashes={"sha256": "x", "sha512": "y"}))


# --- event_id ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_event_id_is_required_in_v1_v2_and_forbidden_after(version):
    # pdu_v1.yaml requires event_id; from /rooms/v3 "the event_id field is no longer included".
    if version in V1_FORMAT:
        pdu = valid_pdu(version)
        del pdu["event_id"]
        assert_invalid(version, pdu, "'event_id' is missing")
    else:
        assert_invalid(version, valid_pdu(version, event_id="$x"), "must not have an event_id")


@pytest.mark.parametrize("version", V1_FORMAT)
@pytest.mark.parametrize("event_id", ["e:example.org", "$e", "$e:", 5])
def test_v1_event_id_must_name_its_server(version, event_id):
    # /rooms/v1 "Event IDs": $opaque_id:domain; the domain's signature is required.
    assert_invalid(version, valid_pdu(version, event_id=event_id), "'event_id'")


# --- room_id and the v12 create event ---------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_create_event_has_a_room_id_exactly_before_v12(version):
    room_version = KNOWN_ROOM_VERSIONS[version]
    create = create_pdu(version)
    if version == "12":
        assert_invalid(version, dict(create, room_id="!room:example.org"), "must not have a room_id")
    else:
        del create["room_id"]
        assert_invalid(version, create, "'room_id' is missing")
    # Any other event always names its room, in v12 too.
    pdu = valid_pdu(version)
    del pdu["room_id"]
    assert_invalid(version, pdu, "'room_id' is missing")
    validate_pdu_format(room_version, valid_pdu(version, room_id="!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ"))


@pytest.mark.parametrize("state_key", [None, "x"], ids=["no-state-key", "other-state-key"])
def test_v12_create_type_that_is_not_the_create_state_event_needs_a_room_id(state_key):
    pdu = create_pdu("12")
    if state_key is None:
        del pdu["state_key"]
    else:
        pdu["state_key"] = state_key
    assert_invalid("12", pdu, "'room_id' is missing")


# --- auth_events and prev_events --------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("key", ["auth_events", "prev_events"])
def test_edges_have_the_shape_of_the_format(version, key):
    # pdu_v1.yaml: [event_id, hashes] pairs; pdu_v3/v4: plain event IDs.
    pair = ["$x:example.org", {"sha256": "abc"}]
    if version in V1_FORMAT:
        assert_invalid(version, valid_pdu(version, **{key: ["$x:example.org"]}), key)
        for bad in (["$x:example.org"], ["$x:example.org", {"sha256": "a"}, 3], ["$x:example.org", "abc"],
                    [5, {"sha256": "abc"}], ["x", {"sha256": "abc"}], ["$x", {"sha256": 5}]):
            assert_invalid(version, valid_pdu(version, **{key: [bad]}), key)
        # The hash in a pair is used by no algorithm and Synapse sends any object of strings.
        validate_pdu_format(KNOWN_ROOM_VERSIONS[version], valid_pdu(version, **{key: [["$x:y", {}]]}))
    else:
        assert_invalid(version, valid_pdu(version, **{key: [pair]}), key)
        for bad in (5, None, "x", {"$x": 1}):
            assert_invalid(version, valid_pdu(version, **{key: ["$ok", bad]}), key)


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("key, limit", [("auth_events", 10), ("prev_events", 20)])
def test_edge_count_limits(version, key, limit):
    # pdu_v*.yaml: "Must contain less than or equal to 10 [auth] / 20 [prev] events".
    def edges(n):
        if version in V1_FORMAT:
            return [[f"$e{i}:example.org", {"sha256": "abc"}] for i in range(n)]
        return [f"$e{i}" for i in range(n)]
    validate_pdu_format(KNOWN_ROOM_VERSIONS[version], valid_pdu(version, **{key: edges(limit)}))
    assert_invalid(version, valid_pdu(version, **{key: edges(limit + 1)}), f"more than {limit}")


# --- depth and canonical JSON -----------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_depth_limit_per_version(version):
    # pdu_v1/v3/v4: less than 2**63 - 1, or that limit once reached; depth_v6.yaml (v6+):
    # the canonical JSON limit 2**53 - 1.
    room_version = KNOWN_ROOM_VERSIONS[version]
    validate_pdu_format(room_version, valid_pdu(version, depth=0))
    validate_pdu_format(room_version, valid_pdu(version, depth=2**53 - 1))
    if version in NON_STRICT_JSON:
        validate_pdu_format(room_version, valid_pdu(version, depth=2**63 - 1))
        assert_invalid(version, valid_pdu(version, depth=2**63), "'depth' is out of range")
    else:
        assert_invalid(version, valid_pdu(version, depth=2**53), "'depth' is out of range")


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(
    "content",
    [{"n": 1.5}, {"n": 1.0}, {"n": 2**53}, {"n": -(2**53)}, {"deep": [{"x": [2.5]}]}],
    ids=["float", "integral-float", "too-big", "too-small", "nested-float"],
)
def test_non_canonical_numbers_are_refused_from_v6(version, content):
    # /rooms/v6 "Canonical JSON": enforced strictly, events are discarded over federation.
    # /rooms/v1 "Canonical JSON": servers MUST NOT enforce it.
    pdu = valid_pdu(version, content=content)
    if version in NON_STRICT_JSON:
        validate_pdu_format(KNOWN_ROOM_VERSIONS[version], pdu)
    else:
        assert_invalid(version, pdu, "not canonical JSON")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_non_canonical_number_in_unsigned_is_refused_from_v6_too(version):
    # The size limit and canonical JSON apply to the event as sent, unsigned included.
    pdu = valid_pdu(version, unsigned={"age": 1.5})
    if version in NON_STRICT_JSON:
        validate_pdu_format(KNOWN_ROOM_VERSIONS[version], pdu)
    else:
        assert_invalid(version, pdu, "not canonical JSON")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_lone_surrogate_is_refused(version):
    # Not representable in UTF-8, so the event has no canonical form at all.
    assert_invalid(version, valid_pdu(version, content={"body": "\ud800"}), "not canonical JSON")


# --- sizes (/client-server-api#size-limits) ---------------------------------------------------


def pdu_of_size(version: str, size: int) -> dict:
    pdu = valid_pdu(version, content={"body": ""})
    padding = size - len(encode_canonical_json(pdu))
    pdu["content"]["body"] = "x" * padding
    assert len(encode_canonical_json(pdu)) == size
    return pdu


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_whole_event_limit_is_65536_bytes_of_canonical_json(version):
    validate_pdu_format(KNOWN_ROOM_VERSIONS[version], pdu_of_size(version, MAX_PDU_SIZE))
    assert_invalid(version, pdu_of_size(version, MAX_PDU_SIZE + 1), "larger than 65536")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_whole_event_limit_counts_signatures(version):
    pdu = pdu_of_size(version, MAX_PDU_SIZE)
    pdu["signatures"]["other.org"] = {}
    assert_invalid(version, pdu, "larger than 65536")


def test_size_is_measured_in_canonical_not_pretty_json():
    pdu = pdu_of_size("12", MAX_PDU_SIZE)
    assert len(json.dumps(pdu, indent=2)) > MAX_PDU_SIZE
    validate_pdu_format(KNOWN_ROOM_VERSIONS["12"], pdu)


def _identifier_of_bytes(key: str, n_bytes: int) -> str:
    # Two-byte characters, so a character-counting check would let these through.
    if key == "sender":
        prefix, suffix = "@", ":example.org"
    elif key == "room_id":
        prefix, suffix = "!", ":example.org"
    elif key == "event_id":
        prefix, suffix = "$", ":example.org"
    else:
        prefix, suffix = "", ""
    fill = n_bytes - len(prefix) - len(suffix)
    value = prefix + "é" * (fill // 2) + "x" * (fill % 2) + suffix
    assert len(value.encode()) == n_bytes
    return value


@pytest.mark.parametrize(
    "version, key",
    [(version, key) for version in ALL_VERSIONS
     for key in ("type", "state_key", "sender", "room_id", "event_id")
     # v3+ events carry no event_id; theirs is a fixed-length hash.
     if key != "event_id" or version in V1_FORMAT],
)
def test_identifier_limit_is_255_bytes(version, key):
    room_version = KNOWN_ROOM_VERSIONS[version]
    validate_pdu_format(room_version, valid_pdu(version, **{key: _identifier_of_bytes(key, 255)}))
    assert_invalid(version, valid_pdu(version, **{key: _identifier_of_bytes(key, 256)}), "longer than 255 bytes")


# --- redacts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_top_level_redacts_must_be_a_string_until_v11(version):
    # pdu_v1..v6 define a top-level `redacts` string; pdu_v11 dropped it (moved to content).
    pdu = valid_pdu(version, type="m.room.redaction", content={}, redacts=["$x"])
    if version in ("11", "12"):
        validate_pdu_format(KNOWN_ROOM_VERSIONS[version], pdu)
    else:
        assert_invalid(version, pdu, "'redacts' must be a string")
