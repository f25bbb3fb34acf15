"""Push actions: what each local user's push rules said about each event that notifies them
(table event_push_actions), read back as /sync's unread counts and GET /notifications.

A row is unread while no m.read or m.read.private receipt of the user covers it: an unthreaded
receipt covers every row of the room up to its event, a threaded one only the rows of its
thread ('main' for the main timeline).
"""

from hs.storage.database import Database

RECEIPT_TYPES = ["m.read", "m.read.private"]

# Each room's latest receipt position per thread ('' for unthreaded) of one user.
_READ_UPTO = ("SELECT room_id, thread_id, MAX(event_stream_ordering) AS pos FROM receipts"
              " WHERE user_id = %(user)s AND receipt_type = ANY(%(types)s) AND room_id = ANY(%(rooms)s)"
              " GROUP BY room_id, thread_id")


class PushActionStore:
    def __init__(self, db: Database):
        self.db = db

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
        before stream position `upto`, for all the rooms in one query (rooms and threads with
        nothing unread are absent)."""
        if not room_ids:
            return {}
        rows = self.db.execute(
            "push_action_unread_counts",
            f"WITH r AS ({_READ_UPTO})"
            " SELECT a.room_id, a.thread_id, COUNT(*) FILTER (WHERE a.notif), COUNT(*) FILTER (WHERE a.highlight)"
            " FROM event_push_actions a"
            " LEFT JOIN r u ON u.room_id = a.room_id AND u.thread_id = ''"
            " LEFT JOIN r t ON t.room_id = a.room_id AND t.thread_id = a.thread_id"
            " WHERE a.user_id = %(user)s AND a.room_id = ANY(%(rooms)s) AND a.stream_ordering <= %(upto)s"
            " AND a.stream_ordering > GREATEST(COALESCE(u.pos, 0), COALESCE(t.pos, 0))"
            " GROUP BY a.room_id, a.thread_id",
            {"user": user_id, "rooms": room_ids, "types": RECEIPT_TYPES, "upto": upto})
        counts: dict[str, dict[str, tuple]] = {}
        for room_id, thread_id, notifs, highlights in rows:
            counts.setdefault(room_id, {})[thread_id] = (notifs, highlights)
        return counts

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
