"""The predefined push rules and their merge with a user's own rules (client-server API,
"Push Notifications": "Push Rules", "Predefined Rules"), and validation of what clients send."""

from hs.events.push_rules import (
    KINDS,
    check_actions,
    check_conditions,
    default_rules,
    evaluation_order,
    find,
    ruleset,
)

USER = "@alice:example.org"

# Spec "Predefined Rules": ids in the spec's order, per kind.
SPEC_ORDER = {
    "override": [".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
                 ".m.rule.is_user_mention", ".m.rule.contains_display_name", ".m.rule.is_room_mention",
                 ".m.rule.roomnotif", ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl",
                 ".m.rule.suppress_edits"],
    "content": [".m.rule.contains_user_name"],
    "room": [],
    "sender": [],
    "underride": [".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
                  ".m.rule.message", ".m.rule.encrypted"],
}


def test_predefined_rules_are_the_specs_in_its_order():
    rules = default_rules(USER)
    assert {kind: [r["rule_id"] for r in rules[kind]] for kind in KINDS} == SPEC_ORDER


def test_only_the_master_rule_is_disabled_by_default():
    rules = default_rules(USER)
    disabled = [r["rule_id"] for kind in KINDS for r in rules[kind] if not r["enabled"]]
    assert disabled == [".m.rule.master"]
    assert all(r["default"] is True for kind in KINDS for r in rules[kind])


def test_rules_that_name_the_user_are_filled_in_with_their_id_and_localpart():
    rules = default_rules(USER)
    invite = find(rules, "override", ".m.rule.invite_for_me")
    assert invite["conditions"] == [
        {"kind": "event_match", "key": "type", "pattern": "m.room.member"},
        {"kind": "event_match", "key": "content.membership", "pattern": "invite"},
        {"kind": "event_match", "key": "state_key", "pattern": USER},
    ]
    mention = find(rules, "override", ".m.rule.is_user_mention")
    assert mention["conditions"] == [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids",
                                      "value": USER}]
    assert mention["actions"] == ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]
    assert find(rules, "content", ".m.rule.contains_user_name")["pattern"] == "alice"


def test_spec_definitions_of_room_mention_and_one_to_one_rules():
    rules = default_rules(USER)
    assert find(rules, "override", ".m.rule.is_room_mention") == {
        "rule_id": ".m.rule.is_room_mention", "default": True, "enabled": True,
        "conditions": [{"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
                       {"kind": "sender_notification_permission", "key": "room"}],
        "actions": ["notify", {"set_tweak": "highlight"}],
    }
    assert find(rules, "underride", ".m.rule.room_one_to_one")["conditions"] == [
        {"kind": "room_member_count", "is": "2"},
        {"kind": "event_match", "key": "type", "pattern": "m.room.message"},
    ]
    assert find(rules, "underride", ".m.rule.call")["actions"] == ["notify", {"set_tweak": "sound", "value": "ring"}]
    assert find(rules, "override", ".m.rule.suppress_notices")["actions"] == []


def test_user_rules_come_before_predefined_ones_except_master():
    own = {"override": [{"rule_id": "mine", "default": False, "enabled": True, "conditions": [], "actions": []}],
           "underride": [{"rule_id": "late", "default": False, "enabled": True, "conditions": [],
                          "actions": ["notify"]}]}
    merged = ruleset(USER, own, {})
    assert [r["rule_id"] for r in merged["override"]][:3] == [".m.rule.master", "mine", ".m.rule.suppress_notices"]
    assert merged["underride"][0]["rule_id"] == "late"


def test_changes_to_predefined_rules_replace_enabled_and_actions():
    merged = ruleset(USER, {}, {("override", ".m.rule.master"): {"enabled": True},
                                ("underride", ".m.rule.message"): {"actions": []}})
    assert find(merged, "override", ".m.rule.master")["enabled"] is True
    assert find(merged, "underride", ".m.rule.message")["actions"] == []
    # Nothing else changed, and no other user's rules are touched.
    assert find(ruleset(USER, {}, {}), "override", ".m.rule.master")["enabled"] is False


def test_evaluation_order_turns_content_room_and_sender_rules_into_conditions():
    own = {"content": [{"rule_id": "cake", "default": False, "enabled": True, "pattern": "cake*lie",
                        "actions": ["notify"]}],
           "room": [{"rule_id": "!r:x", "default": False, "enabled": True, "actions": []}],
           "sender": [{"rule_id": "@bob:x", "default": False, "enabled": False, "actions": ["notify"]}]}
    order = evaluation_order(ruleset(USER, own, {}))
    by_id = {r["rule_id"]: r for r in order}
    assert by_id["cake"]["conditions"] == [{"kind": "event_match", "key": "content.body", "pattern": "cake*lie"}]
    assert by_id["!r:x"]["conditions"] == [{"kind": "event_match", "key": "room_id", "pattern": "!r:x"}]
    assert by_id["@bob:x"]["conditions"] == [{"kind": "event_match", "key": "sender", "pattern": "@bob:x"}]
    assert by_id["@bob:x"]["enabled"] is False
    kinds = [r["kind"] for r in order]
    assert kinds == sorted(kinds, key=KINDS.index)


def test_actions_validation():
    assert check_actions(["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]) is None
    assert check_actions([]) is None
    assert check_actions(["dont_notify"]) is None  # legacy, accepted and ignored
    assert check_actions("notify") is not None
    assert check_actions(["explode"]) is not None
    assert check_actions([{"value": 1}]) is not None
    assert check_actions([{"set_tweak": "highlight", "value": "yes"}]) is not None
    assert check_actions([{"set_tweak": "sound"}]) is not None
    assert check_actions([3]) is not None


def test_conditions_validation():
    assert check_conditions([{"kind": "event_match", "key": "type", "pattern": "m.*"},
                             {"kind": "room_member_count", "is": ">=10"},
                             {"kind": "event_property_is", "key": "content.x", "value": None},
                             {"kind": "org.example.future"}]) is None
    assert check_conditions({"kind": "event_match"}) is not None
    assert check_conditions([{"key": "type"}]) is not None
    assert check_conditions([{"kind": "event_match", "key": "type"}]) is not None
    assert check_conditions([{"kind": "room_member_count", "is": "two"}]) is not None
    assert check_conditions([{"kind": "event_property_is", "key": "content.x", "value": 1.5}]) is not None
    assert check_conditions([{"kind": "event_property_contains", "key": "content.x"}]) is not None
    assert check_conditions([{"kind": "sender_notification_permission"}]) is not None
