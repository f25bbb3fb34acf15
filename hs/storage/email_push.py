"""What an email pusher keeps (email_pusher_state, email_pusher_throttle) and what it reads:
the user's notifying push actions that no read receipt covers yet."""

from hs.storage.database import Database
from hs.storage.push_actions import RECEIPT_TYPES

PusherKey = tuple[str, str, str]  # (user_id, app_id, pushkey)


class EmailPushStore:
    def __init__(self, db: Database):
        self.db = db

    def get_or_create_state(self, key: PusherKey, start_at: int, unsubscribe_token: str) -> tuple[int, str]:
        """(position, unsubscribe token) of the pusher; a new one starts at `start_at` (nothing
        before it is mailed) with the given token."""
        def txn(cur):
            cur.execute("INSERT INTO email_pusher_state (user_id, app_id, pushkey, last_stream_ordering,"
                        " unsubscribe_token) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (*key, start_at, unsubscribe_token))
            cur.execute("SELECT last_stream_ordering, unsubscribe_token FROM email_pusher_state"
                        " WHERE user_id = %s AND app_id = %s AND pushkey = %s", key)
            return tuple(cur.fetchone())
        return self.db.run_txn("get_or_create_email_pusher_state", txn)

    def get_pusher_by_unsubscribe_token(self, token: str) -> PusherKey | None:
        rows = self.db.execute("get_pusher_by_unsubscribe_token",
                               "SELECT user_id, app_id, pushkey FROM email_pusher_state"
                               " WHERE unsubscribe_token = %s", (token,))
        return tuple(rows[0]) if rows else None

    def set_position(self, key: PusherKey, stream_ordering: int, success_ts: int | None) -> None:
        self.db.execute("set_email_pusher_position",
                        "UPDATE email_pusher_state SET last_stream_ordering = GREATEST(last_stream_ordering, %s),"
                        " last_success_ts = COALESCE(%s, last_success_ts),"
                        " failing_since_ts = CASE WHEN %s IS NULL THEN failing_since_ts END"
                        " WHERE user_id = %s AND app_id = %s AND pushkey = %s",
                        (stream_ordering, success_ts, success_ts, *key))

    def set_failing(self, key: PusherKey, now_ms: int) -> None:
        self.db.execute("set_email_pusher_failing",
                        "UPDATE email_pusher_state SET failing_since_ts = COALESCE(failing_since_ts, %s)"
                        " WHERE user_id = %s AND app_id = %s AND pushkey = %s", (now_ms, *key))

    def get_throttles(self, key: PusherKey) -> dict[str, tuple[int, int]]:
        """room_id -> (last_sent_ts, throttle_ms)."""
        rows = self.db.execute("get_email_throttles",
                               "SELECT room_id, last_sent_ts, throttle_ms FROM email_pusher_throttle"
                               " WHERE user_id = %s AND app_id = %s AND pushkey = %s", key)
        return {room_id: (sent, throttle) for room_id, sent, throttle in rows}

    def set_throttles(self, key: PusherKey, throttles: dict[str, tuple[int, int]]) -> None:
        def txn(cur):
            for room_id, (sent, throttle) in throttles.items():
                cur.execute("INSERT INTO email_pusher_throttle (user_id, app_id, pushkey, room_id, last_sent_ts,"
                            " throttle_ms) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (user_id, app_id, pushkey,"
                            " room_id) DO UPDATE SET last_sent_ts = EXCLUDED.last_sent_ts,"
                            " throttle_ms = EXCLUDED.throttle_ms", (*key, room_id, sent, throttle))
        self.db.run_txn("set_email_throttles", txn)

    def delete_throttles(self, key: PusherKey, room_ids: list[str]) -> None:
        self.db.execute("delete_email_throttles",
                        "DELETE FROM email_pusher_throttle WHERE user_id = %s AND app_id = %s AND pushkey = %s"
                        " AND room_id = ANY(%s)", (*key, room_ids))

    def get_unread_push_actions(self, user_id: str, after: int, upto: int, limit: int = 200) -> list[tuple]:
        """(stream_ordering, room_id, event_id, origin_server_ts) of the user's notifying rows in
        (after, upto] that no m.read/m.read.private receipt covers, oldest first."""
        rows = self.db.execute(
            "get_unread_push_actions_for_email",
            "WITH a AS (SELECT stream_ordering, room_id, event_id, thread_id FROM event_push_actions"
            "           WHERE user_id = %(user)s AND notif AND stream_ordering > %(after)s"
            "           AND stream_ordering <= %(upto)s),"
            " r AS (SELECT room_id, thread_id, MAX(event_stream_ordering) AS pos FROM receipts"
            "       WHERE user_id = %(user)s AND receipt_type = ANY(%(types)s)"
            "       AND room_id IN (SELECT room_id FROM a) GROUP BY room_id, thread_id)"
            " SELECT a.stream_ordering, a.room_id, a.event_id, e.origin_server_ts"
            " FROM a JOIN events e ON e.stream_ordering = a.stream_ordering"
            " LEFT JOIN r u ON u.room_id = a.room_id AND u.thread_id = ''"
            " LEFT JOIN r t ON t.room_id = a.room_id AND t.thread_id = a.thread_id"
            " WHERE a.stream_ordering > GREATEST(COALESCE(u.pos, 0), COALESCE(t.pos, 0))"
            " ORDER BY a.stream_ordering LIMIT %(limit)s",
            {"user": user_id, "after": after, "upto": upto, "types": RECEIPT_TYPES, "limit": limit})
        return [tuple(r) for r in rows]

    def get_rooms_with_unread(self, user_id: str, room_ids: list[str]) -> set[str]:
        """Which of these rooms still hold a notifying row no receipt covers."""
        if not room_ids:
            return set()
        rows = self.db.execute(
            "get_rooms_with_unread_for_email",
            "SELECT DISTINCT a.room_id FROM event_push_actions a"
            " WHERE a.user_id = %(user)s AND a.room_id = ANY(%(rooms)s) AND a.notif"
            " AND a.stream_ordering > (SELECT COALESCE(MAX(c.event_stream_ordering), 0) FROM receipts c"
            "   WHERE c.user_id = a.user_id AND c.room_id = a.room_id AND c.receipt_type = ANY(%(types)s)"
            "   AND c.thread_id IN ('', a.thread_id))",
            {"user": user_id, "rooms": room_ids, "types": RECEIPT_TYPES})
        return {r[0] for r in rows}
