"""Push rule evaluation (client-server API, "Push Rules": "Conditions" and "Actions").

`evaluate(rules, event, ctx)` runs once per event for every local member of the room, so a
user's rules are compiled once (`compile_rules`, cached by the push rules handler until the
user changes them) into closures, and glob and display-name regexes are cached process-wide.
"""

import re
from dataclasses import dataclass, field
from functools import lru_cache

from hs.events.dotted_keys import split_dotted_key
from hs.events.push_rules import MEMBER_COUNT

# The spec's word boundary: the start or end of the value, or a character not in [A-Za-z0-9_].
_WORD_BEFORE = r"(?<![A-Za-z0-9_])"
_WORD_AFTER = r"(?![A-Za-z0-9_])"


@dataclass
class PushContext:
    """What a condition needs beyond the event, for one recipient."""
    user_id: str
    member_count: int
    display_name: str | None = None
    sender_power_level: int = 0
    power_levels: dict = field(default_factory=dict)  # content of m.room.power_levels


@dataclass(frozen=True)
class _Compiled:
    rule_id: str
    actions: list
    conditions: tuple


class CompiledRules(tuple):
    """A user's rules in evaluation order, ready to evaluate (see compile_rules)."""


_MISSING = object()


def _lookup(event: dict, path: tuple[str, ...]):
    value = event
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _glob_to_regex(glob: str) -> str:
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            end = glob.find("]", i + 2)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = glob[i + 1:end]
                negate = body.startswith("!")
                body = body[1:] if negate else body
                body = body.replace("\\", "\\\\").replace("^", "\\^")
                out.append("[" + ("^" if negate else "") + body + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@lru_cache(maxsize=4096)
def glob_regex(glob: str, word_boundary: bool) -> re.Pattern:
    """Case-insensitive: matching the whole value, or (for content.body) any substring that
    starts and ends at word boundaries."""
    body = _glob_to_regex(glob)
    if word_boundary:
        return re.compile(_WORD_BEFORE + body + _WORD_AFTER, re.IGNORECASE | re.DOTALL)
    return re.compile(body, re.IGNORECASE | re.DOTALL)


@lru_cache(maxsize=4096)
def _display_name_regex(name: str) -> re.Pattern:
    return re.compile(_WORD_BEFORE + re.escape(name) + _WORD_AFTER, re.IGNORECASE)


def _same(a, b) -> bool:
    # JSON true is not 1: compare types as well as values.
    return type(a) is type(b) and a == b


def _never(event, ctx) -> bool:
    return False


def _compile_condition(condition: dict):
    kind = condition.get("kind")
    if kind == "event_match":
        key, pattern = condition.get("key"), condition.get("pattern")
        if not isinstance(key, str) or not isinstance(pattern, str):
            return _never
        path = split_dotted_key(key)
        regex = glob_regex(pattern, key == "content.body")
        search = regex.search if key == "content.body" else regex.fullmatch

        def event_match(event, ctx):
            value = _lookup(event, path)
            return isinstance(value, str) and search(value) is not None
        return event_match

    if kind in ("event_property_is", "event_property_contains"):
        key, expected = condition.get("key"), condition.get("value", _MISSING)
        if not isinstance(key, str) or expected is _MISSING:
            return _never
        path = split_dotted_key(key)
        if kind == "event_property_is":
            return lambda event, ctx: _same(_lookup(event, path), expected)

        def contains(event, ctx):
            value = _lookup(event, path)
            return isinstance(value, list) and any(_same(item, expected) for item in value)
        return contains

    if kind == "contains_display_name":
        def contains_display_name(event, ctx):
            body = _lookup(event, ("content", "body"))
            name = ctx.display_name
            return (isinstance(body, str) and isinstance(name, str) and bool(name)
                    and _display_name_regex(name).search(body) is not None)
        return contains_display_name

    if kind == "room_member_count":
        match = MEMBER_COUNT.match(condition.get("is") or "") if isinstance(condition.get("is"), str) else None
        if match is None:
            return _never
        op, number = match.group(1) or "==", int(match.group(2))
        compare = {"==": int.__eq__, "<": int.__lt__, ">": int.__gt__, "<=": int.__le__, ">=": int.__ge__}[op]
        return lambda event, ctx: compare(ctx.member_count, number)

    if kind == "sender_notification_permission":
        key = condition.get("key")
        if not isinstance(key, str):
            return _never

        def permitted(event, ctx):
            levels = ctx.power_levels.get("notifications") if isinstance(ctx.power_levels, dict) else None
            # The spec's default for `room` is 50; no other key has a default, so 50 too (as Synapse).
            required = levels.get(key, 50) if isinstance(levels, dict) else 50
            try:
                return ctx.sender_power_level >= int(required)
            except (TypeError, ValueError):
                return False
        return permitted

    return _never  # kinds this server does not know never match (spec "Conditions")


def compile_rules(rules: list[dict]) -> CompiledRules:
    """`rules` in evaluation order (hs.events.push_rules.evaluation_order); disabled rules are
    dropped, as they never match."""
    return CompiledRules(
        _Compiled(rule["rule_id"], rule["actions"], tuple(_compile_condition(c) for c in rule["conditions"]))
        for rule in rules if rule.get("enabled", True))


def evaluate(rules, event: dict, ctx: PushContext) -> list | None:
    """The actions of the first enabled rule whose conditions all hold, or None when no rule
    matched or that rule's actions do not notify. `rules` is a CompiledRules or a list of
    rules in evaluation order."""
    if not isinstance(rules, CompiledRules):
        rules = compile_rules(rules)
    # A plain loop, not all() over a generator: this runs for every rule of every member of a
    # room for each event, and the generator's overhead was half the cost.
    for rule in rules:
        for condition in rule.conditions:
            if not condition(event, ctx):
                break
        else:
            return rule.actions if "notify" in rule.actions else None
    return None
