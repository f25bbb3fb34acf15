"""Push rule evaluation: every condition kind of the spec ("Push Rules": "Conditions") and the
predefined rules applied to the events they are about."""

import pytest

from hs.events.push_evaluator import PushContext, compile_rules, evaluate, split_dotted_key
from hs.events.push_rules import evaluation_order, ruleset

USER = "@alice:example.org"


def ctx(**kw) -> PushContext:
    values = {"user_id": USER, "member_count": 5, "display_name": "Alice Liddell", "sender_power_level": 0,
              "power_levels": {}}
    values.update(kw)
    return PushContext(**values)


def matches(condition: dict, event: dict, context: PushContext | None = None) -> bool:
    rules = [{"rule_id": "r", "enabled": True, "conditions": [condition], "actions": ["notify"]}]
    return evaluate(rules, event, context or ctx()) is not None


def message(body: str, **content) -> dict:
    return {"type": "m.room.message", "sender": "@bob:example.org", "room_id": "!r:example.org",
            "content": {"msgtype": "m.text", "body": body, **content}}


# --- event_match ---------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,value,expected", [
    ("m.room.message", "m.room.message", True),
    ("M.ROOM.MESSAGE", "m.room.message", True),  # case-insensitive
    ("m.room.*", "m.room.message", True),
    ("m.room.messag?", "m.room.message", True),
    ("m.room", "m.room.message", False),  # the whole value must match
    ("room", "m.room.message", False),
    ("m.room.[mn]essage", "m.room.message", True),
    ("m.room.[!m]essage", "m.room.message", False),
    ("*", "", True),
])
def test_event_match_globs_the_whole_value_case_insensitively(pattern, value, expected):
    assert matches({"kind": "event_match", "key": "type", "pattern": pattern}, {"type": value}) is expected


@pytest.mark.parametrize("pattern,body,expected", [
    # Spec: for content.body the pattern matches any substring at word boundaries.
    ("cake*lie", "the cake is a lie", True),
    ("cake", "I like CAKE!", True),
    ("cake", "cakes are nice", False),
    ("cake", "pancake", False),
    ("alice", "hi alice_b", False),  # _ is a word character
    ("alice", "alice", True),
    ("@room", "hey @room look", True),
])
def test_event_match_on_body_matches_at_word_boundaries(pattern, body, expected):
    assert matches({"kind": "event_match", "key": "content.body", "pattern": pattern}, message(body)) is expected


def test_event_match_does_not_match_a_missing_or_non_string_value_even_with_star():
    condition = {"kind": "event_match", "key": "content.number", "pattern": "*"}
    assert not matches(condition, message("x"))
    assert not matches(condition, message("x", number=5))


def test_dotted_keys_follow_the_specs_escaping():
    # Spec "Conditions": `content.m\.relates_to` names the key "m.relates_to"; `\\` a backslash.
    assert split_dotted_key("content.m\\.relates_to.rel_type") == ("content", "m.relates_to", "rel_type")
    assert split_dotted_key("content.a\\\\b") == ("content", "a\\b")
    assert split_dotted_key("content.a\\b") == ("content", "a\\b")  # any other backslash is literal
    event = {"content": {"m.relates_to": {"rel_type": "m.thread"}, "m": {"relates_to": {"rel_type": "nope"}}}}
    assert matches({"kind": "event_match", "key": "content.m\\.relates_to.rel_type", "pattern": "m.thread"}, event)


# --- event_property_is / event_property_contains ----------------------------------------------------

def test_event_property_is_compares_exact_values_and_types():
    event = {"content": {"m.mentions": {"room": True}, "count": 1, "name": "Cake", "nothing": None}}

    def prop(key, value):
        return matches({"kind": "event_property_is", "key": key, "value": value}, event)

    assert prop("content.m\\.mentions.room", True)
    assert not prop("content.count", True)  # JSON true is not 1
    assert prop("content.count", 1)
    assert not prop("content.m\\.mentions.room", 1)
    assert prop("content.name", "Cake")
    assert not prop("content.name", "cake")  # no case folding, no globs
    assert prop("content.nothing", None)
    assert not prop("content.absent", None)


def test_event_property_contains_looks_in_an_array():
    event = {"content": {"m.mentions": {"user_ids": ["@bob:x", USER]}, "flags": [1, True]}}
    key = "content.m\\.mentions.user_ids"
    assert matches({"kind": "event_property_contains", "key": key, "value": USER}, event)
    assert not matches({"kind": "event_property_contains", "key": key, "value": "@carol:x"}, event)
    assert not matches({"kind": "event_property_contains", "key": "content.m\\.mentions", "value": USER}, event)
    assert matches({"kind": "event_property_contains", "key": "content.flags", "value": True}, event)
    assert not matches({"kind": "event_property_contains", "key": "content.flags", "value": "1"}, event)


# --- contains_display_name, room_member_count, sender_notification_permission ---------------------

@pytest.mark.parametrize("body,expected", [
    ("hello Alice Liddell!", True),
    ("ALICE LIDDELL", True),
    ("Alice Liddellish", False),
    ("Alice", False),
])
def test_contains_display_name_matches_the_name_at_word_boundaries(body, expected):
    assert matches({"kind": "contains_display_name"}, message(body)) is expected


def test_contains_display_name_never_matches_without_a_display_name():
    assert not matches({"kind": "contains_display_name"}, message("anything"), ctx(display_name=None))
    assert not matches({"kind": "contains_display_name"}, message("anything"), ctx(display_name=""))


@pytest.mark.parametrize("is_,count,expected", [
    ("2", 2, True), ("2", 3, False), ("==2", 2, True), ("<3", 2, True), ("<3", 3, False),
    (">3", 4, True), (">=3", 3, True), ("<=3", 4, False), ("two", 2, False), ("", 0, False),
])
def test_room_member_count(is_, count, expected):
    assert matches({"kind": "room_member_count", "is": is_}, message("x"), ctx(member_count=count)) is expected


def test_sender_notification_permission_uses_the_notifications_power_level():
    condition = {"kind": "sender_notification_permission", "key": "room"}
    assert matches(condition, message("x"), ctx(sender_power_level=50))  # default room level: 50
    assert not matches(condition, message("x"), ctx(sender_power_level=49))
    levels = {"notifications": {"room": 10}}
    assert matches(condition, message("x"), ctx(sender_power_level=10, power_levels=levels))
    assert not matches(condition, message("x"), ctx(sender_power_level=9, power_levels=levels))


def test_unknown_condition_kinds_never_match():
    assert not matches({"kind": "org.example.always"}, message("x"))


def test_a_rule_with_no_conditions_always_matches_and_disabled_rules_never_do():
    rules = [{"rule_id": "off", "enabled": False, "conditions": [], "actions": ["notify", {"set_tweak": "x"}]},
             {"rule_id": "on", "enabled": True, "conditions": [], "actions": ["notify"]}]
    assert evaluate(rules, {}, ctx()) == ["notify"]
    assert evaluate(compile_rules(rules), {}, ctx()) == ["notify"]


def test_first_matching_rule_wins_and_non_notifying_actions_give_none():
    rules = [{"rule_id": "quiet", "enabled": True, "conditions": [], "actions": ["dont_notify"]},
             {"rule_id": "loud", "enabled": True, "conditions": [], "actions": ["notify"]}]
    assert evaluate(rules, {}, ctx()) is None


# --- the predefined rules -------------------------------------------------------------------------

def defaults(changes=None):
    return compile_rules(evaluation_order(ruleset(USER, {}, changes or {})))


def test_plain_message_in_a_group_notifies_without_sound():
    assert evaluate(defaults(), message("hello"), ctx()) == ["notify"]


def test_plain_message_in_a_one_to_one_room_notifies_with_sound():
    assert evaluate(defaults(), message("hello"), ctx(member_count=2)) == [
        "notify", {"set_tweak": "sound", "value": "default"}]


def test_notices_edits_reactions_and_member_events_do_not_notify():
    rules = defaults()
    assert evaluate(rules, message("bot says", msgtype="m.notice"), ctx()) is None
    edit = message("* fixed", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$e"}})
    assert evaluate(rules, edit, ctx()) is None
    assert evaluate(rules, {"type": "m.reaction", "content": {}}, ctx()) is None
    join = {"type": "m.room.member", "state_key": "@bob:x", "content": {"membership": "join"}}
    assert evaluate(rules, join, ctx()) is None


def test_an_invite_for_the_user_notifies():
    invite = {"type": "m.room.member", "state_key": USER, "content": {"membership": "invite"}}
    assert evaluate(defaults(), invite, ctx()) == ["notify", {"set_tweak": "sound", "value": "default"}]


def test_mentions_highlight():
    highlight = {"set_tweak": "highlight"}
    rules = defaults()
    assert highlight in evaluate(rules, message("hi", **{"m.mentions": {"user_ids": [USER]}}), ctx())
    assert highlight in evaluate(rules, message("ping alice, lunch?"), ctx())  # contains_user_name
    assert highlight in evaluate(rules, message("Alice Liddell: lunch?"), ctx())
    room_mention = message("everyone", **{"m.mentions": {"room": True}})
    assert evaluate(rules, room_mention, ctx()) == ["notify"]  # sender below the room level: plain message
    assert evaluate(rules, room_mention, ctx(sender_power_level=50)) == ["notify", highlight]


def test_enabling_master_silences_everything():
    rules = defaults({("override", ".m.rule.master"): {"enabled": True}})
    assert evaluate(rules, message("Alice Liddell", **{"m.mentions": {"user_ids": [USER]}}), ctx()) is None


def test_tombstone_and_encrypted_events():
    rules = defaults()
    tombstone = {"type": "m.room.tombstone", "state_key": "", "content": {"replacement_room": "!n:x"}}
    assert evaluate(rules, tombstone, ctx()) == ["notify", {"set_tweak": "highlight"}]
    encrypted = {"type": "m.room.encrypted", "content": {"ciphertext": "..."}}
    assert evaluate(rules, encrypted, ctx()) == ["notify"]
    assert evaluate(rules, encrypted, ctx(member_count=2)) == ["notify", {"set_tweak": "sound", "value": "default"}]
