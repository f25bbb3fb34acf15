"""Presence: each user's latest presence (table `presence`, one row per user), at the position
of the presence stream where it last changed in a way others are told about."""

from dataclasses import dataclass

from hs.storage.database import Database

_COLUMNS = "user_id, state, status_msg, last_active_ts, currently_active"


@dataclass(frozen=True)
class UserPresence:
    user_id: str
    state: str  # online, unavailable or offline
    status_msg: str | None = None
    last_active_ts: int = 0  # ms since the epoch; 0: never active
    currently_active: bool = False


def _row(row) -> UserPresence:
    return UserPresence(row[0], row[1], row[2], row[3], row[4])


class PresenceStore:
    def __init__(self, db: Database):
        self.db = db

    # --- read part (any process) -----------------------------------------------------------------

    def get(self, user_id: str) -> UserPresence | None:
        rows = self.db.execute("get_presence", f"SELECT {_COLUMNS} FROM presence WHERE user_id = %s", (user_id,))
        return _row(rows[0]) if rows else None

    def get_not_offline(self) -> list[UserPresence]:
        """Everyone not offline: the master's timeouts must take these over after a restart."""
        rows = self.db.execute("get_presence_not_offline",
                               f"SELECT {_COLUMNS} FROM presence WHERE state <> 'offline'")
        return [_row(r) for r in rows]

    def get_changes(self, room_ids: list[str], user_id: str, since: int | None,
                    upto: int) -> list[UserPresence]:
        """The presence of `user_id` and of the members joined to `room_ids`, for those whose
        presence is at a position in (since, upto] (any position up to `upto` when since is
        None), oldest change first."""
        rows = self.db.execute(
            "get_presence_changes",
            f"SELECT {_COLUMNS} FROM presence WHERE stream_id > %(since)s AND stream_id <= %(upto)s"
            " AND (user_id = %(user)s OR user_id IN (SELECT state_key FROM current_state_events"
            "      WHERE room_id = ANY(%(rooms)s) AND type = 'm.room.member' AND membership = 'join'))"
            " ORDER BY stream_id",
            {"since": since or 0, "upto": upto, "user": user_id, "rooms": room_ids})
        return [_row(r) for r in rows]

    def share_a_room(self, user_a: str, user_b: str) -> bool:
        """Whether both users are joined to some room: who may see whose presence."""
        rows = self.db.execute(
            "presence_share_a_room",
            "SELECT 1 FROM current_state_events a JOIN current_state_events b ON a.room_id = b.room_id"
            " WHERE a.type = 'm.room.member' AND a.state_key = %s AND a.membership = 'join'"
            " AND b.type = 'm.room.member' AND b.state_key = %s AND b.membership = 'join' LIMIT 1",
            (user_a, user_b))
        return bool(rows)

    def get_stream_rows(self, from_id: int, upto_id: int, limit: int | None) -> list[tuple[int, dict]]:
        """(stream_id, {"user_id": ...}) for from_id < stream_id <= upto_id, in order, at most
        `limit` (None: all): whose presence to re-read, and whose room-mates to wake. A user
        appears once, at their latest position; an older position of theirs is gone, not skipped."""
        rows = self.db.execute("get_presence_stream_rows",
                               "SELECT stream_id, user_id FROM presence WHERE stream_id > %s AND stream_id <= %s"
                               " ORDER BY stream_id LIMIT %s", (from_id, upto_id, limit))
        return [(r[0], {"user_id": r[1]}) for r in rows]

    # --- write part (the master) -----------------------------------------------------------------

    def put(self, presence: UserPresence, stream_id: int) -> None:
        """Stores `presence` at `stream_id`, unless a later write (a higher id, committed first)
        is already there: writes of one user may commit out of order."""
        self.db.execute(
            "put_presence",
            f"INSERT INTO presence ({_COLUMNS}, stream_id) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (user_id) DO UPDATE SET state = EXCLUDED.state, status_msg = EXCLUDED.status_msg,"
            "   last_active_ts = EXCLUDED.last_active_ts, currently_active = EXCLUDED.currently_active,"
            "   stream_id = EXCLUDED.stream_id"
            " WHERE presence.stream_id < EXCLUDED.stream_id",
            (presence.user_id, presence.state, presence.status_msg, presence.last_active_ts,
             presence.currently_active, stream_id))
