import copy

import pytest

from hs.events.redaction import prune_event_dict
from hs.events.room_versions import KNOWN_ROOM_VERSIONS

ALL_VERSIONS = [str(n) for n in range(1, 13)]

# The expectations below are the spec's lists, written out per fragment, not derived from
# the code's feature flags. "ALL" means the whole content survives.
ALL = "ALL"

# /rooms/v1 "Redactions" (fragment v1-redactions): room versions 1-5.
_TOP_LEVEL_V1 = {
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures",
    "depth", "prev_events", "prev_state", "auth_events", "origin", "origin_server_ts",
    "membership",
}
_POWER_LEVELS_V1 = {
    "ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default",
}
_CONTENT_V1 = {
    "m.room.member": {"membership"},
    "m.room.create": {"creator"},
    "m.room.join_rules": {"join_rule"},
    "m.room.power_levels": _POWER_LEVELS_V1,
    "m.room.aliases": {"aliases"},
    "m.room.history_visibility": {"history_visibility"},
}
# /rooms/v6 "Redactions" (fragment v6-redactions): v6, v7. m.room.aliases is no longer kept.
_CONTENT_V6 = {
    "m.room.member": {"membership"},
    "m.room.create": {"creator"},
    "m.room.join_rules": {"join_rule"},
    "m.room.power_levels": _POWER_LEVELS_V1,
    "m.room.history_visibility": {"history_visibility"},
}
# /rooms/v8 "Redactions": join_rules also keeps `allow`.
_CONTENT_V8 = {**_CONTENT_V6, "m.room.join_rules": {"join_rule", "allow"}}
# /rooms/v9 "Redactions" (fragment v9-redactions): v9, v10.
_CONTENT_V9 = {**_CONTENT_V8, "m.room.member": {"membership", "join_authorised_via_users_server"}}
# /rooms/v11 "Redactions" (fragment v11-redactions): v11, v12. (third_party_invite.signed is
# tested on its own below.)
_TOP_LEVEL_V11 = _TOP_LEVEL_V1 - {"origin", "membership", "prev_state"}
_CONTENT_V11 = {
    "m.room.member": {"membership", "join_authorised_via_users_server"},
    "m.room.create": ALL,
    "m.room.join_rules": {"join_rule", "allow"},
    "m.room.power_levels": _POWER_LEVELS_V1 | {"invite"},
    "m.room.history_visibility": {"history_visibility"},
    "m.room.redaction": {"redacts"},
}

TOP_LEVEL_KEYS = {v: _TOP_LEVEL_V1 for v in ALL_VERSIONS[:10]} | {"11": _TOP_LEVEL_V11, "12": _TOP_LEVEL_V11}
CONTENT_KEYS = {
    "1": _CONTENT_V1, "2": _CONTENT_V1, "3": _CONTENT_V1, "4": _CONTENT_V1, "5": _CONTENT_V1,
    "6": _CONTENT_V6, "7": _CONTENT_V6, "8": _CONTENT_V8, "9": _CONTENT_V9, "10": _CONTENT_V9,
    "11": _CONTENT_V11, "12": _CONTENT_V11,
}

# Each type's content holds every key any version keeps, plus keys no version keeps.
CONTENT_BY_TYPE = {
    "m.room.member": {
        "membership": "join", "join_authorised_via_users_server": "@admin:example.org",
        "displayname": "Alice", "avatar_url": "mxc://example.org/abc", "reason": "hi",
    },
    "m.room.create": {
        "creator": "@alice:example.org", "room_version": "9", "m.federate": False,
        "predecessor": {"room_id": "!old:example.org"}, "additional_creators": ["@bob:example.org"],
        "type": "m.space",
    },
    "m.room.join_rules": {
        "join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": "!s:x"}],
        "other": 1,
    },
    "m.room.power_levels": {
        "ban": 50, "events": {"m.room.name": 100}, "events_default": 0, "kick": 50, "redact": 50,
        "state_default": 50, "users": {"@alice:example.org": 100}, "users_default": 0,
        "invite": 0, "notifications": {"room": 50}, "historical": 100,
    },
    "m.room.aliases": {"aliases": ["#a:example.org"], "other": 1},
    "m.room.history_visibility": {"history_visibility": "shared", "other": 1},
    "m.room.redaction": {"redacts": "$target", "reason": "spam"},
    "m.room.message": {"msgtype": "m.text", "body": "hello"},
    "m.room.topic": {"topic": "a topic"},
    "m.room.third_party_invite": {"display_name": "x", "key_validity_url": "https://x", "public_key": "k"},
}


def make_event(event_type: str, content: dict) -> dict:
    return {
        "type": event_type,
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "state_key": "",
        "content": content,
        "depth": 5,
        "origin_server_ts": 1_000_000,
        "prev_events": ["$prev"],
        "auth_events": ["$auth"],
        "hashes": {"sha256": "abc"},
        "signatures": {"example.org": {"ed25519:1": "sig"}},
    }


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("event_type", sorted(CONTENT_BY_TYPE))
def test_redaction_keeps_exactly_the_spec_content_keys(version, event_type):
    content = CONTENT_BY_TYPE[event_type]
    pruned = prune_event_dict(KNOWN_ROOM_VERSIONS[version], make_event(event_type, content))
    expected_keys = CONTENT_KEYS[version].get(event_type, set())
    if expected_keys == ALL:
        assert pruned["content"] == content
    else:
        assert pruned["content"] == {k: v for k, v in content.items() if k in expected_keys}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_redaction_keeps_exactly_the_spec_top_level_keys(version):
    pdu = make_event("m.room.message", {"body": "x"})
    pdu.update({
        "event_id": "$e:example.org", "origin": "example.org", "membership": "join",
        "prev_state": [], "redacts": "$x", "unsigned": {"age": 5}, "age_ts": 7, "extra": True,
    })
    pruned = prune_event_dict(KNOWN_ROOM_VERSIONS[version], pdu)
    assert set(pruned) == TOP_LEVEL_KEYS[version]
    assert all(pruned[k] == pdu[k] for k in pruned if k != "content")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_redaction_event_keeps_its_target_only_from_v11(version):
    # v1-v10 keep neither the top-level `redacts` (the format of those versions) nor any
    # content; v11 moved `redacts` into content and protects it there.
    pdu = make_event("m.room.redaction", {"redacts": "$target", "reason": "spam"})
    del pdu["state_key"]
    pdu["redacts"] = "$target"
    pruned = prune_event_dict(KNOWN_ROOM_VERSIONS[version], pdu)
    assert "redacts" not in pruned
    expected = {"redacts": "$target"} if version in ("11", "12") else {}
    assert pruned["content"] == expected


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(
    "third_party_invite, v11_expected",
    [
        ({"display_name": "bob", "signed": {"mxid": "@bob:x", "token": "t"}},
         {"signed": {"mxid": "@bob:x", "token": "t"}}),
        # Unspecified cases, done as Synapse does so event IDs agree.
        ({"display_name": "bob"}, {}),
        ("not an object", None),
    ],
    ids=["with-signed", "without-signed", "not-object"],
)
def test_member_third_party_invite_keeps_only_signed_from_v11(version, third_party_invite, v11_expected):
    # /rooms/v11 "Redactions": m.room.member "allows the `signed` key of the
    # `third_party_invite` key".
    content = {"membership": "invite", "third_party_invite": third_party_invite}
    pruned = prune_event_dict(KNOWN_ROOM_VERSIONS[version], make_event("m.room.member", content))
    expected = {"membership": "invite"}
    if version in ("11", "12") and v11_expected is not None:
        expected["third_party_invite"] = v11_expected
    assert pruned["content"] == expected


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("content", [None, "text", ["list"]], ids=["missing", "string", "array"])
def test_missing_or_non_object_content_redacts_to_empty_object(version, content):
    pdu = make_event("m.room.member", {})
    if content is None:
        del pdu["content"]
    else:
        pdu["content"] = content
    assert prune_event_dict(KNOWN_ROOM_VERSIONS[version], pdu)["content"] == {}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_event_without_a_string_type_keeps_no_content(version):
    pdu = make_event("m.room.member", {"membership": "join"})
    pdu["type"] = ["m.room.member"]
    assert prune_event_dict(KNOWN_ROOM_VERSIONS[version], pdu)["content"] == {}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_redaction_never_mutates_or_shares_with_the_input(version):
    pdu = make_event("m.room.power_levels", copy.deepcopy(CONTENT_BY_TYPE["m.room.power_levels"]))
    pdu["unsigned"] = {"age": 1}
    before = copy.deepcopy(pdu)
    pruned = prune_event_dict(KNOWN_ROOM_VERSIONS[version], pdu)
    assert pdu == before
    pruned["content"]["users"]["@mallory:example.org"] = 100
    pruned["signatures"]["example.org"]["ed25519:2"] = "more"
    pruned["prev_events"].append("$other")
    assert pdu == before


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("event_type", sorted(CONTENT_BY_TYPE))
def test_redacting_a_redacted_event_changes_nothing(version, event_type):
    # A server holding only the redacted copy must compute the same redacted form (and so
    # the same event ID and signature input) as one holding the full event.
    room_version = KNOWN_ROOM_VERSIONS[version]
    once = prune_event_dict(room_version, make_event(event_type, CONTENT_BY_TYPE[event_type]))
    assert prune_event_dict(room_version, once) == once
