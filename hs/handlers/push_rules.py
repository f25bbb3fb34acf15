"""Push rules (/pushrules/...): each user's ruleset, the predefined rules merged with their own
(hs/events/push_rules.py), and its part of /sync: an `m.push_rules` event in the top-level
account_data on an initial sync and whenever the user's rules changed since `since`.

PushRulesReader is the read side (any process: the API's GETs, /sync, and `rules_for_users`
for whoever evaluates events); PushRulesHandler adds the writes, made only by the push_rules
stream's writer. Each write adds a row to the push_rules stream; the reader's per-user cache is
dropped when the user's rules change (`invalidate`, called by the writer here and, on a worker,
by whoever follows the stream's rows).
"""

from hs.caches import LruCache
from hs.errors import Codes, MatrixError
from hs.events import push_rules as rules_mod
from hs.events.canonical_json import json_has_nul
from hs.events.push_evaluator import CompiledRules, compile_rules
from hs.storage.push_rules import RuleNotFound

PUSH_RULES_TYPE = "m.push_rules"


class PushRulesReader:
    def __init__(self, store):
        self.store = store
        # user_id -> (global ruleset, CompiledRules)
        self._cache = LruCache("push_rules_by_user", 50_000, invalidated_by="push_rules stream (user_id)")
        # Bumped on every invalidation: a read that overlapped a write must not cache what it read.
        self._invalidations = 0

    def invalidate(self, user_id: str) -> None:
        self._invalidations += 1
        self._cache.invalidate(user_id)

    def _load(self, user_ids: list[str]) -> dict[str, tuple[dict, CompiledRules]]:
        found, missing = self._cache.get_many(user_ids)
        if missing:
            before = self._invalidations
            stored = self.store.get_rules(missing)
            for user_id in missing:
                own, changed = stored[user_id]
                ruleset = rules_mod.ruleset(user_id, own, changed)
                entry = (ruleset, compile_rules(rules_mod.evaluation_order(ruleset)))
                if self._invalidations == before:
                    self._cache.put(user_id, entry)
                found[user_id] = entry
        return found

    def rules_for_users(self, user_ids: list[str]) -> dict[str, CompiledRules]:
        """{user_id: the user's rules in evaluation order, compiled} for hs.events.push_evaluator.evaluate;
        one query for all the users not cached."""
        return {user_id: entry[1] for user_id, entry in self._load(user_ids).items()}

    def ruleset(self, user_id: str) -> dict:
        """The `global` ruleset (shared with the cache: callers must not modify it)."""
        return self._load([user_id])[user_id][0]

    # --- the GET endpoints -----------------------------------------------------------------------

    def get_all(self, requester) -> dict:
        return {"global": self.ruleset(requester.user_id)}

    def get_kind(self, requester, kind: str) -> list:
        return self.ruleset(requester.user_id)[check_kind(kind)]

    def get_rule(self, requester, kind: str, rule_id: str) -> dict:
        rule = rules_mod.find(self.ruleset(requester.user_id), check_kind(kind), rule_id)
        if rule is None:
            raise MatrixError(404, Codes.NOT_FOUND, "The push rule was not found.")
        return rule

    def get_attr(self, requester, kind: str, rule_id: str, attr: str) -> dict:
        return {attr: self.get_rule(requester, kind, rule_id)[attr]}

    # --- /sync -----------------------------------------------------------------------------------

    def sync_event(self, user_id: str, since: int | None, now: int, sync_filter) -> dict | None:
        """The m.push_rules event for the top-level account_data: always when `since` is None
        (initial or full_state sync), else only when the rules changed in (since, now]."""
        # Most syncs are woken by something else: the stream standing still needs no query.
        if since is not None and (since >= now or not self.store.changed_since(user_id, since, now)):
            return None
        event = {"type": PUSH_RULES_TYPE, "content": {"global": self.ruleset(user_id)}}
        return event if sync_filter.account_data.matches(event) else None


def check_kind(kind: str) -> str:
    if kind not in rules_mod.KINDS:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Unknown push rule kind {kind!r}")
    return kind


class PushRulesHandler:
    """The writes. `notifier` is an hs.notifier.StreamWriteNotifier
    on the push_rules stream: a user's parked syncs wake once the stream has passed their write."""

    def __init__(self, reader: PushRulesReader, store, stream, notifier):
        self.reader = reader
        self.store = store
        self.stream = stream
        self.notifier = notifier

    def put_rule(self, requester, kind: str, rule_id: str, body: dict, before: str | None,
                 after: str | None) -> None:
        check_kind(kind)
        _check_rule_id(rule_id)
        if rules_mod.is_default_rule_id(rule_id):
            raise MatrixError(400, Codes.INVALID_PARAM, "Rule IDs starting with '.' are reserved for server-default rules")
        actions = _checked_actions(body)
        conditions = pattern = None
        if kind in ("override", "underride"):
            # A rule with no conditions always matches (setPushRule's request body).
            conditions = body.get("conditions", [])
            problem = rules_mod.check_conditions(conditions)
            if problem:
                raise MatrixError(400, Codes.BAD_JSON, f"Invalid conditions: {problem}")
        elif kind == "content":
            if "pattern" not in body:
                raise MatrixError(400, Codes.MISSING_PARAM, "A content rule needs a pattern")
            pattern = body["pattern"]
            if not isinstance(pattern, str):
                raise MatrixError(400, Codes.BAD_JSON, "pattern must be a string")
        if json_has_nul(body):
            raise MatrixError(400, Codes.BAD_JSON, "Strings must not contain NUL")
        user_id = requester.user_id
        with self.stream.get_next() as stream_id:
            try:
                self.store.add_rule(user_id, kind, rule_id, conditions=conditions, pattern=pattern,
                                    actions=actions, before=before, after=after, stream_id=stream_id)
            except RuleNotFound as e:
                # The spec's example error for an unknown before/after rule.
                raise MatrixError(400, Codes.UNKNOWN, f"before/after rule not found: {e.rule_id}") from None
            self._written(stream_id, user_id)

    def delete_rule(self, requester, kind: str, rule_id: str) -> None:
        check_kind(kind)
        with self.stream.get_next() as stream_id:
            if not self.store.delete_rule(requester.user_id, kind, rule_id, stream_id):
                raise MatrixError(404, Codes.NOT_FOUND, "The push rule was not found.")
            self._written(stream_id, requester.user_id)

    def set_enabled(self, requester, kind: str, rule_id: str, body: dict) -> None:
        if "enabled" not in body:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing enabled")
        if not isinstance(body["enabled"], bool):
            raise MatrixError(400, Codes.BAD_JSON, "enabled must be a boolean")
        self._set_attr(requester, kind, rule_id, "enabled", body["enabled"])

    def set_actions(self, requester, kind: str, rule_id: str, body: dict) -> None:
        self._set_attr(requester, kind, rule_id, "actions", _checked_actions(body))

    def _set_attr(self, requester, kind: str, rule_id: str, column: str, value) -> None:
        user_id = requester.user_id
        # 404 for a rule that does not exist, predefined or not, before anything is written.
        self.reader.get_rule(requester, kind, rule_id)
        with self.stream.get_next() as stream_id:
            if rules_mod.is_default_rule_id(rule_id):
                self.store.set_default_rule_attr(user_id, kind, rule_id, column, value, stream_id)
            elif not self.store.set_own_rule_attr(user_id, kind, rule_id, column, value, stream_id):
                # Deleted since the check above.
                raise MatrixError(404, Codes.NOT_FOUND, "The push rule was not found.")
            self._written(stream_id, user_id)

    def _written(self, stream_id: int, user_id: str) -> None:
        self.reader.invalidate(user_id)
        self.notifier.written(stream_id, users=[user_id])


def _check_rule_id(rule_id: str) -> None:
    if not rule_id or "/" in rule_id or "\\" in rule_id or "\x00" in rule_id:
        raise MatrixError(400, Codes.INVALID_PARAM, "Rule IDs must be non-empty, without slashes or backslashes")


def _checked_actions(body: dict) -> list:
    if "actions" not in body:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing actions")
    problem = rules_mod.check_actions(body["actions"])
    if problem:
        raise MatrixError(400, Codes.BAD_JSON, f"Invalid actions: {problem}")
    return body["actions"]
