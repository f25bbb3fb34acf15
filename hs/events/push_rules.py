"""Push rules: the spec's predefined rules and their merge with a user's own rules
(client-server API, "Push Notifications" module, "Push Rules" and "Predefined Rules").

A rule here is the client format the spec shows (`rule_id`, `default`, `enabled`, `actions`,
and `conditions` for override/underride or `pattern` for content), one list per kind. The
predefined rules that name the user ("[the user's Matrix ID]", "[the local part of the
user's Matrix ID]") are built per user, so what GET /pushrules/ shows is what is evaluated.

Evaluation order (spec "Push Rules"): override, content, room, sender, underride; within a
kind, the user's rules in their stored order before the server-default ones, except
`.m.rule.master`, which comes before every user override rule (as in Synapse: a muted account
stays muted whatever override rules the user adds).
"""

import re

KINDS = ("override", "content", "room", "sender", "underride")

_SOUND = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT = {"set_tweak": "highlight"}


def _match(key: str, pattern: str) -> dict:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _rule(rule_id: str, conditions: list, actions: list, enabled: bool = True) -> dict:
    return {"rule_id": rule_id, "default": True, "enabled": enabled, "conditions": conditions, "actions": actions}


def default_rules(user_id: str) -> dict[str, list[dict]]:
    """The predefined rules for `user_id`, per kind, in the spec's order (fresh objects)."""
    localpart = user_id[1:].split(":", 1)[0]
    override = [
        _rule(".m.rule.master", [], [], enabled=False),
        _rule(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
        _rule(".m.rule.invite_for_me",
              [_match("type", "m.room.member"), _match("content.membership", "invite"), _match("state_key", user_id)],
              ["notify", dict(_SOUND)]),
        _rule(".m.rule.member_event", [_match("type", "m.room.member")], []),
        _rule(".m.rule.is_user_mention",
              [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": user_id}],
              ["notify", dict(_SOUND), dict(_HIGHLIGHT)]),
        _rule(".m.rule.contains_display_name", [{"kind": "contains_display_name"}],
              ["notify", dict(_SOUND), dict(_HIGHLIGHT)]),
        _rule(".m.rule.is_room_mention",
              [{"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
               {"kind": "sender_notification_permission", "key": "room"}],
              ["notify", dict(_HIGHLIGHT)]),
        _rule(".m.rule.roomnotif",
              [_match("content.body", "@room"), {"kind": "sender_notification_permission", "key": "room"}],
              ["notify", dict(_HIGHLIGHT)]),
        _rule(".m.rule.tombstone", [_match("type", "m.room.tombstone"), _match("state_key", "")],
              ["notify", dict(_HIGHLIGHT)]),
        _rule(".m.rule.reaction", [_match("type", "m.reaction")], []),
        _rule(".m.rule.room.server_acl", [_match("type", "m.room.server_acl"), _match("state_key", "")], []),
        _rule(".m.rule.suppress_edits",
              [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}], []),
    ]
    content = [{"rule_id": ".m.rule.contains_user_name", "default": True, "enabled": True, "pattern": localpart,
                "actions": ["notify", dict(_SOUND), dict(_HIGHLIGHT)]}]
    underride = [
        _rule(".m.rule.call", [_match("type", "m.call.invite")], ["notify", {"set_tweak": "sound", "value": "ring"}]),
        _rule(".m.rule.encrypted_room_one_to_one",
              [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.encrypted")],
              ["notify", dict(_SOUND)]),
        _rule(".m.rule.room_one_to_one",
              [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.message")],
              ["notify", dict(_SOUND)]),
        _rule(".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
        _rule(".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
    ]
    return {"override": override, "content": content, "room": [], "sender": [], "underride": underride}


def ruleset(user_id: str, user_rules: dict[str, list[dict]], defaults_changed: dict[tuple[str, str], dict]) -> dict:
    """The `global` ruleset GET /pushrules/ shows: per kind, the user's rules (client format,
    in their stored order) merged with the predefined ones, whose `enabled` and `actions` the
    user may have changed (`defaults_changed[(kind, rule_id)]` holds those keys)."""
    defaults = default_rules(user_id)
    result = {}
    for kind in KINDS:
        server = []
        for rule in defaults[kind]:
            rule.update(defaults_changed.get((kind, rule["rule_id"]), {}))
            server.append(rule)
        mine = list(user_rules.get(kind, []))
        if kind == "override":
            result[kind] = server[:1] + mine + server[1:]
        else:
            result[kind] = mine + server
    return result


def evaluation_order(global_ruleset: dict) -> list[dict]:
    """Every rule of a ruleset in the order they are tried, each with the conditions it
    stands for: content rules match `content.body`, room rules the room, sender rules the
    sender (the spec's definitions of those kinds)."""
    rules = []
    for kind in KINDS:
        for rule in global_ruleset.get(kind, []):
            if kind == "content":
                conditions = [_match("content.body", rule["pattern"])]
            elif kind == "room":
                conditions = [_match("room_id", rule["rule_id"])]
            elif kind == "sender":
                conditions = [_match("sender", rule["rule_id"])]
            else:
                conditions = rule.get("conditions", [])
            rules.append({"rule_id": rule["rule_id"], "kind": kind, "enabled": rule["enabled"],
                          "conditions": conditions, "actions": rule["actions"]})
    return rules


def find(global_ruleset: dict, kind: str, rule_id: str) -> dict | None:
    for rule in global_ruleset.get(kind, []):
        if rule["rule_id"] == rule_id:
            return rule
    return None


def is_default_rule_id(rule_id: str) -> bool:
    """Server-default rule ids start with a dot (spec "Push Rules")."""
    return rule_id.startswith(".")


# --- validation of what a client sends (PUT /pushrules/...) ---------------------------------------

_LEGACY_ACTIONS = frozenset({"dont_notify", "coalesce"})  # no-ops since v1.7, still accepted
MEMBER_COUNT = re.compile(r"^(==|<=|>=|<|>)?([0-9]+)$")


def check_actions(actions) -> str | None:
    """Why `actions` is not a valid list of push rule actions, or None when it is."""
    if not isinstance(actions, list):
        return "actions must be a list"
    for action in actions:
        if isinstance(action, str):
            if action != "notify" and action not in _LEGACY_ACTIONS:
                return f"unknown action {action!r}"
        elif isinstance(action, dict):
            tweak = action.get("set_tweak")
            if not isinstance(tweak, str) or not tweak:
                return "set_tweak must be a non-empty string"
            if tweak == "highlight" and not isinstance(action.get("value", True), bool):
                return "the highlight tweak's value must be a boolean"
            if tweak == "sound" and not isinstance(action.get("value"), str):
                return "the sound tweak's value must be a string"
        else:
            return "each action must be a string or an object"
    return None


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (str, bool, int)) and not isinstance(value, float)


def check_conditions(conditions) -> str | None:
    """Why `conditions` is not a valid list of push conditions, or None. Kinds this server does
    not know are accepted (and never match), as the spec wants for forward compatibility."""
    if not isinstance(conditions, list):
        return "conditions must be a list"
    for condition in conditions:
        if not isinstance(condition, dict) or not isinstance(condition.get("kind"), str):
            return "each condition must be an object with a string kind"
        kind = condition["kind"]
        if kind in ("event_match", "event_property_is", "event_property_contains",
                    "sender_notification_permission") and not isinstance(condition.get("key"), str):
            return f"{kind} needs a string key"
        if kind == "event_match" and not isinstance(condition.get("pattern"), str):
            return "event_match needs a string pattern"
        if kind in ("event_property_is", "event_property_contains") and (
                "value" not in condition or not _is_scalar(condition["value"])):
            return f"{kind} needs a value that is a string, integer, boolean or null"
        if kind == "room_member_count" and not (isinstance(condition.get("is"), str)
                                                and MEMBER_COUNT.match(condition["is"])):
            return "room_member_count needs `is` like '2', '>=10' or '<5'"
    return None
