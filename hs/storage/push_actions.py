"""Push actions: what each local user's push rules said about each event that notifies them
(table event_push_actions), read back as /sync's unread counts and GET /notifications.

A row is unread while no m.read or m.read.private receipt of the user covers it: an unthreaded
receipt covers every row of the room up to its event, a threaded one only the rows of its
thread ('main' for the main timeline).
"""

from hs.caches import Batcher
from hs.storage.database import Database

RECEIPT_TYPES = ["m.read", "m.read.private"]

# Each room's latest receipt position per thread ('' for unthreaded) of one user.

class PushActionStore:
    def __init__(self, db: Database):
        self.db = db
        self._unread_batches = Batcher(self._get_unread_counts_batch)

    @staticmethod
    def insert_txn(cur, room_id: str, event_id: str, stream_ordering: int, topological_ordering: int,
                   thread_id: str, by_actions: list[tuple[str, bool, list[str]]]) -> None:
        """One event's rows: by_actions holds (actions as JSON, highlight, user IDs). Recipients mostly
        share their actions, so each distinct list is sent once with an array of its users (a
        row per user in VALUES is several times slower for a room of thousands)."""
        for actions_json, highlight, user_ids in by_actions:
            cur.execute("INSERT INTO event_push_actions (user_id, room_id, event_id, stream_ordering,"
                        " topological_ordering, thread_id, notif, highlight, actions)"
                        " SELECT u, %s, %s, %s, %s, %s, TRUE, %s, %s::jsonb FROM unnest(%s::text[]) AS u",
                        (room_id, event_id, stream_ordering, topological_ordering, thread_id, highlight,
                         actions_json, user_ids))

    @staticmethod
    def delete_for_event_txn(cur, room_id: str, event_id: str, user_ids: list[str]) -> None:
        """The event's rows of these users (by the (user_id, room_id, stream_ordering) index)."""
        cur.execute("DELETE FROM event_push_actions WHERE user_id = ANY(%s) AND room_id = %s"
                    " AND stream_ordering = (SELECT stream_ordering FROM events WHERE event_id = %s)"
                    " AND event_id = %s", (user_ids, room_id, event_id, event_id))

    def get_unread_counts(self, user_id: str, room_ids: list[str], upto: int) -> dict[str, dict[str, tuple]]:
        """{room_id: {thread_id: (notification_count, highlight_count)}} of the unread rows at or
        before stream position `upto` (rooms and threads with nothing unread are absent). The
        requests of users woken together (one message, a room's members) share one query."""
        if not room_ids:
            return {}
        return self._unread_batches.get((user_id, tuple(room_ids), upto))

    def _get_unread_counts_batch(self, keys: list[tuple]) -> dict[tuple, dict]:
        pairs = {(user_id, room_id, upto) for user_id, room_ids, upto in keys for room_id in room_ids}
        users, rooms, uptos = (list(column) for column in zip(*pairs, strict=True))
        rows = self.db.execute(
            "push_action_unread_counts",
            "WITH q AS (SELECT * FROM unnest(%(users)s::text[], %(rooms)s::text[], %(uptos)s::bigint[])"
            "           AS q(user_id, room_id, upto)),"
            " r AS (SELECT c.user_id, c.room_id, c.thread_id, MAX(c.event_stream_ordering) AS pos FROM receipts c"
            "       WHERE c.receipt_type = ANY(%(types)s)"
            "       AND (c.user_id, c.room_id) IN (SELECT user_id, room_id FROM q)"
            "       GROUP BY c.user_id, c.room_id, c.thread_id)"
            " SELECT q.user_id, q.room_id, q.upto, a.thread_id,"
            "        COUNT(*) FILTER (WHERE a.notif), COUNT(*) FILTER (WHERE a.highlight)"
            " FROM q JOIN event_push_actions a ON a.user_id = q.user_id AND a.room_id = q.room_id"
            "   AND a.stream_ordering <= q.upto"
            " LEFT JOIN r u ON u.user_id = a.user_id AND u.room_id = a.room_id AND u.thread_id = ''"
            " LEFT JOIN r t ON t.user_id = a.user_id AND t.room_id = a.room_id AND t.thread_id = a.thread_id"
            " WHERE a.stream_ordering > GREATEST(COALESCE(u.pos, 0), COALESCE(t.pos, 0))"
            " GROUP BY q.user_id, q.room_id, q.upto, a.thread_id",
            {"users": users, "rooms": rooms, "uptos": uptos, "types": RECEIPT_TYPES})
        found: dict[tuple, dict] = {}
        for user_id, room_id, upto, thread_id, notifs, highlights in rows:
            found.setdefault((user_id, room_id, upto), {})[thread_id] = (notifs, highlights)
        result = {}
        for key in keys:
            user_id, room_ids, upto = key
            result[key] = {room_id: found[(user_id, room_id, upto)] for room_id in room_ids
                           if (user_id, room_id, upto) in found}
        return result

    def get_notifications(self, user_id: str, before: int | None, limit: int,
                          only_highlight: bool) -> list[tuple]:
        """(event_id, room_id, stream_ordering, actions, ts, read) of the user's notifying rows
        before stream position `before` (all when None), newest first. `read`: a receipt covers it."""
        rows = self.db.execute(
            "get_notifications",
            "WITH a AS (SELECT event_id, room_id, stream_ordering, thread_id, actions FROM event_push_actions"
            "           WHERE user_id = %(user)s AND notif AND stream_ordering < %(before)s"
            "           AND (highlight OR NOT %(only_highlight)s)"
            "           ORDER BY stream_ordering DESC LIMIT %(limit)s),"
            " r AS (SELECT room_id, thread_id, MAX(event_stream_ordering) AS pos FROM receipts"
            "       WHERE user_id = %(user)s AND receipt_type = ANY(%(types)s)"
            "       AND room_id IN (SELECT room_id FROM a) GROUP BY room_id, thread_id)"
            " SELECT a.event_id, a.room_id, a.stream_ordering, a.actions, e.origin_server_ts,"
            "        a.stream_ordering <= GREATEST(COALESCE(u.pos, 0), COALESCE(t.pos, 0))"
            " FROM a JOIN events e ON e.event_id = a.event_id"
            " LEFT JOIN r u ON u.room_id = a.room_id AND u.thread_id = ''"
            " LEFT JOIN r t ON t.room_id = a.room_id AND t.thread_id = a.thread_id"
            " ORDER BY a.stream_ordering DESC",
            {"user": user_id, "before": before if before is not None else 2 ** 62, "limit": limit,
             "only_highlight": only_highlight, "types": RECEIPT_TYPES})
        return [tuple(r) for r in rows]
