"""What serving other servers reads besides events and state: timeline positions for /backfill,
a server's users in a room for history visibility, events by timestamp. Outliers (migration
020) are never part of the timeline: we do not hold the state at them, so none of these
returns one."""

from hs.storage.database import Database


class FederationReadStore:
    def __init__(self, db: Database):
        self.db = db

    def get_timeline_positions(self, room_id: str, event_ids) -> dict[str, tuple[int, int]]:
        """event ID -> (depth, stream_ordering), for those of `event_ids` in the room's timeline."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        rows = self.db.execute(
            "timeline_positions",
            "SELECT event_id, topological_ordering, stream_ordering FROM events"
            " WHERE event_id = ANY(%s) AND room_id = %s AND NOT outlier", (ids, room_id))
        return {event_id: (depth, stream) for event_id, depth, stream in rows}

    def get_timeline_prev_events(self, room_id: str, event_id: str, limit: int) -> list[tuple[str, int, int]]:
        """(prev event ID, depth, stream_ordering) of the event's prev_events in the room's
        timeline, the newest first, at most `limit`."""
        rows = self.db.execute(
            "timeline_prev_events",
            "SELECT p.event_id, p.topological_ordering, p.stream_ordering FROM event_edges g"
            " JOIN events p ON p.event_id = g.prev_event_id"
            " WHERE g.event_id = %s AND p.room_id = %s AND NOT p.outlier"
            " ORDER BY p.topological_ordering DESC, p.stream_ordering DESC LIMIT %s", (event_id, room_id, limit))
        return [tuple(row) for row in rows]

    def get_user_ids_of_server(self, room_id: str, server_name: str) -> list[str]:
        """The users of `server_name` with a membership event in the room's current state (of
        any membership: a user who has left was still a member at older events)."""
        rows = self.db.execute(
            "room_users_of_server",
            "SELECT state_key FROM current_state_events WHERE room_id = %s AND type = 'm.room.member'"
            " AND substr(state_key, strpos(state_key, ':') + 1) = %s", (room_id, server_name))
        return [row[0] for row in rows]

    def get_event_id_near_timestamp(self, room_id: str, ts: int, forwards: bool) -> str | None:
        """The room's timeline event closest to `ts`: the first at or after it (forwards) or
        the last at or before it."""
        op, order = (">=", "ASC") if forwards else ("<=", "DESC")
        rows = self.db.execute(
            "event_near_timestamp",
            f"SELECT event_id FROM events WHERE room_id = %s AND origin_server_ts {op} %s AND NOT outlier"
            f" ORDER BY origin_server_ts {order}, stream_ordering {order} LIMIT 1", (room_id, ts))
        return rows[0][0] if rows else None
