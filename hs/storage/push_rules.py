"""Push rules: each user's own rules, their changes to the predefined rules, and the push_rules
stream (one row per change of a user's rules).

PushRuleStore is the read side any process may use; PushRuleWriteStore adds the writes, which
only the stream's writer (the master) makes, each with a push_rules stream id."""

import json

from hs.storage.database import Database


class RuleNotFound(Exception):
    """The rule a write names (or its `before`/`after` anchor) does not exist."""

    def __init__(self, rule_id: str):
        super().__init__(rule_id)
        self.rule_id = rule_id


def _dump(value) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


class PushRuleStore:
    def __init__(self, db: Database):
        self.db = db

    def get_rules(self, user_ids: list[str]) -> dict[str, tuple[dict, dict]]:
        """{user_id: (own rules {kind: [client-format rule, ...]} in order,
        {(kind, rule_id): {"enabled"?, "actions"?}} changes to predefined rules)} for every
        user asked about (empty for a user who changed nothing)."""
        def txn(cur):
            cur.execute("SELECT user_id, kind, rule_id, conditions, pattern, actions, enabled FROM push_rules"
                        " WHERE user_id = ANY(%s) ORDER BY user_id, kind, position", (list(user_ids),))
            own = cur.fetchall()
            cur.execute("SELECT user_id, kind, rule_id, enabled, actions FROM push_rule_default_overrides"
                        " WHERE user_id = ANY(%s)", (list(user_ids),))
            return own, cur.fetchall()
        own, changed = self.db.run_txn("get_push_rules", txn)
        result = {user_id: ({}, {}) for user_id in user_ids}
        for user_id, kind, rule_id, conditions, pattern, actions, enabled in own:
            rule = {"rule_id": rule_id, "default": False, "enabled": enabled, "actions": actions}
            if conditions is not None:
                rule["conditions"] = conditions
            if pattern is not None:
                rule["pattern"] = pattern
            result[user_id][0].setdefault(kind, []).append(rule)
        for user_id, kind, rule_id, enabled, actions in changed:
            change = {}
            if enabled is not None:
                change["enabled"] = enabled
            if actions is not None:
                change["actions"] = actions
            result[user_id][1][(kind, rule_id)] = change
        return result

    def changed_since(self, user_id: str, since: int, upto: int) -> bool:
        """Whether the user's rules changed in (since, upto]."""
        rows = self.db.execute("push_rules_changed_since",
                               "SELECT 1 FROM push_rules_stream WHERE user_id = %s"
                               " AND stream_id > %s AND stream_id <= %s LIMIT 1", (user_id, since, upto))
        return bool(rows)

    def get_stream_rows(self, from_id: int, upto_id: int, limit: int) -> list[tuple[int, dict]]:
        """The stream's rows in (from_id, upto_id], oldest first, at most `limit`: whose rules changed."""
        rows = self.db.execute("get_push_rules_stream_rows",
                               "SELECT stream_id, user_id FROM push_rules_stream"
                               " WHERE stream_id > %s AND stream_id <= %s ORDER BY stream_id LIMIT %s",
                               (from_id, upto_id, limit))
        return [(stream_id, {"user_id": user_id}) for stream_id, user_id in rows]


class PushRuleWriteStore(PushRuleStore):
    def add_rule(self, user_id: str, kind: str, rule_id: str, *, conditions: list | None, pattern: str | None,
                 actions: list, before: str | None, after: str | None, stream_id: int) -> None:
        """Creates the rule, or replaces the one with that id (keeping its `enabled`). Placement:
        just before `before` when given (it wins over `after`, as the spec says), else just
        after `after`; a new rule without either goes first, an existing one stays where it is.
        Raises RuleNotFound when the anchor is not one of the user's rules of that kind."""
        def txn(cur):
            order = self._lock_and_order(cur, user_id, kind)
            exists = rule_id in order
            anchor = before or after
            if anchor is not None and (anchor == rule_id or anchor not in order):
                raise RuleNotFound(anchor)
            if anchor is not None or not exists:
                if exists:
                    order.remove(rule_id)
                index = 0 if anchor is None else order.index(anchor) + (0 if before else 1)
                order.insert(index, rule_id)
            cur.execute("INSERT INTO push_rules (user_id, kind, rule_id, position, conditions, pattern, actions)"
                        " VALUES (%s, %s, %s, 0, %s::jsonb, %s, %s::jsonb)"
                        " ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET conditions = EXCLUDED.conditions,"
                        " pattern = EXCLUDED.pattern, actions = EXCLUDED.actions",
                        (user_id, kind, rule_id, None if conditions is None else _dump(conditions), pattern,
                         _dump(actions)))
            cur.execute("UPDATE push_rules AS r SET position = o.position - 1"
                        " FROM unnest(%s::text[]) WITH ORDINALITY AS o(rule_id, position)"
                        " WHERE r.user_id = %s AND r.kind = %s AND r.rule_id = o.rule_id",
                        (order, user_id, kind))
            self._stream_row(cur, user_id, stream_id)
        self.db.run_txn("add_push_rule", txn)

    def delete_rule(self, user_id: str, kind: str, rule_id: str, stream_id: int) -> bool:
        def txn(cur):
            cur.execute("DELETE FROM push_rules WHERE user_id = %s AND kind = %s AND rule_id = %s",
                        (user_id, kind, rule_id))
            if cur.rowcount == 0:
                return False
            self._stream_row(cur, user_id, stream_id)
            return True
        return self.db.run_txn("delete_push_rule", txn)

    def set_own_rule_attr(self, user_id: str, kind: str, rule_id: str, column: str, value,
                          stream_id: int) -> bool:
        """Sets `enabled` or `actions` of one of the user's own rules; False when there is none."""
        assert column in ("enabled", "actions")
        value = _dump(value) if column == "actions" else value
        cast = "::jsonb" if column == "actions" else ""

        def txn(cur):
            cur.execute(f"UPDATE push_rules SET {column} = %s{cast} WHERE user_id = %s AND kind = %s AND rule_id = %s",
                        (value, user_id, kind, rule_id))
            if cur.rowcount == 0:
                return False
            self._stream_row(cur, user_id, stream_id)
            return True
        return self.db.run_txn("set_push_rule_attr", txn)

    def set_default_rule_attr(self, user_id: str, kind: str, rule_id: str, column: str, value,
                              stream_id: int) -> None:
        assert column in ("enabled", "actions")
        value = _dump(value) if column == "actions" else value
        cast = "::jsonb" if column == "actions" else ""

        def txn(cur):
            cur.execute(f"INSERT INTO push_rule_default_overrides (user_id, kind, rule_id, {column})"
                        f" VALUES (%s, %s, %s, %s{cast}) ON CONFLICT (user_id, kind, rule_id)"
                        f" DO UPDATE SET {column} = EXCLUDED.{column}", (user_id, kind, rule_id, value))
            self._stream_row(cur, user_id, stream_id)
        self.db.run_txn("set_default_push_rule_attr", txn)

    @staticmethod
    def _lock_and_order(cur, user_id: str, kind: str) -> list[str]:
        # Serializes one user's rule writes: the reordering reads then rewrites every position.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('push_rules:' || %s))", (user_id,))
        cur.execute("SELECT rule_id FROM push_rules WHERE user_id = %s AND kind = %s ORDER BY position",
                    (user_id, kind))
        return [r[0] for r in cur.fetchall()]

    @staticmethod
    def _stream_row(cur, user_id: str, stream_id: int) -> None:
        cur.execute("INSERT INTO push_rules_stream (stream_id, user_id) VALUES (%s, %s)", (stream_id, user_id))
