"""What the pushing process reads and keeps: every pusher row (to start them), which users got
push actions in a range, an HTTP pusher's unread push actions, and its delivery state
(pusher_delivery, 016)."""

from hs.storage.database import Database
from hs.storage.push_actions import RECEIPT_TYPES

PusherKey = tuple[str, str, str]  # (user_id, app_id, pushkey)

_PUSHER_COLUMNS = ("user_id", "device_id", "kind", "app_id", "pushkey", "app_display_name", "device_display_name",
                   "profile_tag", "lang", "data", "created_ts")
_SELECT_PUSHERS = f"SELECT {', '.join(_PUSHER_COLUMNS)} FROM pushers"


class PushDeliveryStore:
    def __init__(self, db: Database):
        self.db = db

    # --- pushers (the master writes them; any process reads) ------------------------------------

    def get_all_pushers(self, user_id: str | None = None) -> list[dict]:
        """Every pusher, or the user's."""
        if user_id is None:
            rows = self.db.execute("get_all_pushers", _SELECT_PUSHERS)
        else:
            rows = self.db.execute("get_user_pushers", _SELECT_PUSHERS + " WHERE user_id = %s ORDER BY app_id, pushkey",
                                   (user_id,))
        return [dict(zip(_PUSHER_COLUMNS, row, strict=True)) for row in rows]

    def get_pusher(self, user_id: str, app_id: str, pushkey: str) -> dict | None:
        rows = self.db.execute("get_pusher", _SELECT_PUSHERS + " WHERE user_id = %s AND app_id = %s AND pushkey = %s",
                               (user_id, app_id, pushkey))
        return dict(zip(_PUSHER_COLUMNS, rows[0], strict=True)) if rows else None

    def get_users_with_push_actions(self, user_ids: list[str], since: int, upto: int) -> list[str]:
        """Which of these users have push actions in (since, upto]: a probe of the
        (user_id, stream_ordering) key per user, so event_push_actions needs no index by
        stream_ordering alone (a third index on the table a busy room inserts thousands of
        rows into per message)."""
        rows = self.db.execute(
            "get_users_with_push_actions",
            "SELECT u FROM unnest(%s::text[]) AS u WHERE EXISTS (SELECT 1 FROM event_push_actions"
            " WHERE user_id = u AND stream_ordering > %s AND stream_ordering <= %s)",
            (user_ids, since, upto))
        return [r[0] for r in rows]

    def get_push_actions(self, user_id: str, since: int, upto: int, limit: int) -> list[tuple]:
        """(stream_ordering, event_id, room_id, actions, read) of the user's notifying push
        actions in (since, upto], oldest first; `read`: a receipt already covers it."""
        rows = self.db.execute(
            "get_push_actions_for_http",
            "WITH a AS (SELECT event_id, room_id, stream_ordering, thread_id, actions FROM event_push_actions"
            "           WHERE user_id = %(user)s AND notif AND stream_ordering > %(since)s"
            "           AND stream_ordering <= %(upto)s ORDER BY stream_ordering LIMIT %(limit)s),"
            " r AS (SELECT room_id, thread_id, MAX(event_stream_ordering) AS pos FROM receipts"
            "       WHERE user_id = %(user)s AND receipt_type = ANY(%(types)s)"
            "       AND room_id IN (SELECT room_id FROM a) GROUP BY room_id, thread_id)"
            " SELECT a.stream_ordering, a.event_id, a.room_id, a.actions,"
            "        a.stream_ordering <= GREATEST(COALESCE(u.pos, 0), COALESCE(t.pos, 0))"
            " FROM a LEFT JOIN r u ON u.room_id = a.room_id AND u.thread_id = ''"
            " LEFT JOIN r t ON t.room_id = a.room_id AND t.thread_id = a.thread_id"
            " ORDER BY a.stream_ordering",
            {"user": user_id, "since": since, "upto": upto, "limit": limit, "types": RECEIPT_TYPES})
        return [tuple(r) for r in rows]

    # --- delivery state: the pushing process only -------------------------------------------------

    def get_or_create_state(self, key: PusherKey, created_ts: int, start_at: int) -> tuple[int, int | None]:
        """(last_stream_ordering, failing_since_ts) of this pusher; a new pusher (or one set
        again since the state was written) starts at `start_at`."""
        def txn(cur):
            cur.execute("INSERT INTO pusher_delivery AS d (user_id, app_id, pushkey, pusher_created_ts,"
                        " last_stream_ordering) VALUES (%s, %s, %s, %s, %s)"
                        " ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET"
                        " pusher_created_ts = EXCLUDED.pusher_created_ts,"
                        " last_stream_ordering = EXCLUDED.last_stream_ordering,"
                        " last_success_ts = NULL, failing_since_ts = NULL"
                        " WHERE d.pusher_created_ts <> EXCLUDED.pusher_created_ts",
                        (*key, created_ts, start_at))
            cur.execute("SELECT last_stream_ordering, failing_since_ts FROM pusher_delivery"
                        " WHERE user_id = %s AND app_id = %s AND pushkey = %s", key)
            return tuple(cur.fetchone())
        return self.db.run_txn("get_or_create_pusher_delivery", txn)

    def set_position(self, key: PusherKey, stream_ordering: int, success_ts: int | None) -> None:
        """Dealt with up to here; a success also ends a failing spell."""
        self.db.execute("set_pusher_delivery_position",
                        "UPDATE pusher_delivery SET last_stream_ordering = GREATEST(last_stream_ordering, %s),"
                        " last_success_ts = COALESCE(%s, last_success_ts),"
                        " failing_since_ts = CASE WHEN %s::bigint IS NULL THEN failing_since_ts END"
                        " WHERE user_id = %s AND app_id = %s AND pushkey = %s",
                        (stream_ordering, success_ts, success_ts, *key))

    def set_failing_since(self, key: PusherKey, failing_since_ts: int | None) -> None:
        self.db.execute("set_pusher_failing_since",
                        "UPDATE pusher_delivery SET failing_since_ts = %s"
                        " WHERE user_id = %s AND app_id = %s AND pushkey = %s", (failing_since_ts, *key))

    def failing(self) -> tuple[int, int | None]:
        """How many pushers of any kind are failing, and since when the oldest has been."""
        count, oldest = self.db.execute(
            "failing_pushers",
            "SELECT count(*), min(failing_since_ts) FROM (SELECT failing_since_ts FROM pusher_delivery"
            " UNION ALL SELECT failing_since_ts FROM email_pusher_state) s WHERE failing_since_ts IS NOT NULL")[0]
        return count, oldest

    # Every pusher kind's delivery state, keyed by the pusher: it goes when the pusher goes, so a
    # pusher set again with the same key starts afresh (new position, new unsubscribe token).
    _STATE_TABLES = ("pusher_delivery", "email_pusher_state", "email_pusher_throttle")

    def delete_state(self, keys: list[PusherKey]) -> None:
        def txn(cur):
            for table in self._STATE_TABLES:
                cur.execute(f"DELETE FROM {table} WHERE (user_id, app_id, pushkey) IN"
                            " (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))",
                            tuple(list(column) for column in zip(*keys, strict=True)))
        self.db.run_txn("delete_pusher_delivery", txn)

    def delete_orphaned_state(self) -> None:
        """State of pushers deleted while no process was pushing."""
        def txn(cur):
            for table in self._STATE_TABLES:
                cur.execute(f"DELETE FROM {table} d WHERE NOT EXISTS (SELECT 1 FROM pushers p"
                            " WHERE p.user_id = d.user_id AND p.app_id = d.app_id AND p.pushkey = d.pushkey)")
        self.db.run_txn("delete_orphaned_pusher_delivery", txn)

    def get_states(self, user_id: str) -> dict[tuple[str, str], tuple[int, int | None, int | None]]:
        """{(app_id, pushkey): (last_stream_ordering, last_success_ts, failing_since_ts)} of the
        user's pushers of every kind (email pushers keep theirs in email_pusher_state, 017)."""
        rows = self.db.execute("get_pusher_delivery_states",
                               "SELECT app_id, pushkey, last_stream_ordering, last_success_ts, failing_since_ts"
                               " FROM pusher_delivery WHERE user_id = %(user)s UNION ALL"
                               " SELECT app_id, pushkey, last_stream_ordering, last_success_ts, failing_since_ts"
                               " FROM email_pusher_state WHERE user_id = %(user)s", {"user": user_id})
        return {(app_id, pushkey): tuple(state) for app_id, pushkey, *state in rows}
