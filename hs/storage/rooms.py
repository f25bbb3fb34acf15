"""Rooms, their members, aliases and directory listing."""

from dataclasses import dataclass

from hs.caches import LruCache
from hs.storage.database import Database


@dataclass
class Room:
    room_id: str
    room_version: str
    creator: str
    is_public: bool


class RoomStore:
    def __init__(self, db: Database):
        self.db = db
        self._version_cache = LruCache("room_version", 10_000, invalidated_by="nothing: a room's version is fixed")

    @staticmethod
    def insert_room_txn(cur, room_id, room_version, creator, is_public, now_ms) -> None:
        cur.execute("INSERT INTO rooms (room_id, room_version, creator, is_public, created_ts)"
                    " VALUES (%s, %s, %s, %s, %s)", (room_id, room_version, creator, is_public, now_ms))

    def get_room(self, room_id: str) -> Room | None:
        rows = self.db.execute("get_room",
                               "SELECT room_id, room_version, creator, is_public FROM rooms WHERE room_id = %s",
                               (room_id,))
        return Room(*rows[0]) if rows else None

    def get_room_version(self, room_id: str) -> str | None:
        """The room's version (None for a room not here): every event sent needs it, and it never
        changes."""
        version = self._version_cache.get(room_id)
        if version is None:
            room = self.get_room(room_id)
            if room is None:
                return None
            version = room.room_version
            self._version_cache.put(room_id, version)
        return version

    def set_public(self, room_id: str, is_public: bool) -> None:
        self.db.execute("set_room_public", "UPDATE rooms SET is_public = %s WHERE room_id = %s", (is_public, room_id))

    # --- membership --------------------------------------------------------------------------

    def get_membership(self, room_id: str, user_id: str) -> tuple[str, str] | None:
        """(membership, event_id) of the user's current membership, if any."""
        rows = self.db.execute("get_membership",
                               "SELECT membership, event_id FROM current_state_events"
                               " WHERE room_id = %s AND type = 'm.room.member' AND state_key = %s",
                               (room_id, user_id))
        return tuple(rows[0]) if rows and rows[0][0] else None

    def get_rooms_for_user(self, user_id: str, memberships=("join",)) -> list[str]:
        rows = self.db.execute("rooms_for_user",
                               "SELECT room_id FROM current_state_events WHERE type = 'm.room.member'"
                               " AND state_key = %s AND membership = ANY(%s) ORDER BY room_id",
                               (user_id, list(memberships)))
        return [row[0] for row in rows]

    def get_member_event_ids(self, room_id: str, memberships=None, not_memberships=None) -> list[str]:
        clauses, args = [], [room_id]
        if memberships is not None:
            clauses.append("membership = ANY(%s)")
            args.append(list(memberships))
        if not_memberships is not None:
            clauses.append("NOT (membership = ANY(%s))")
            args.append(list(not_memberships))
        where = "".join(f" AND {c}" for c in clauses)
        rows = self.db.execute("member_event_ids",
                               "SELECT event_id FROM current_state_events WHERE room_id = %s"
                               f" AND type = 'm.room.member'{where} ORDER BY state_key", args)
        return [row[0] for row in rows]

    def get_joined_members(self, room_id: str) -> dict[str, dict]:
        """user ID -> {display_name, avatar_url} of every joined member, from one indexed query."""
        rows = self.db.execute(
            "joined_members",
            "SELECT c.state_key, m.display_name, m.avatar_url FROM current_state_events c"
            " JOIN room_memberships m ON m.event_id = c.event_id"
            " WHERE c.room_id = %s AND c.type = 'm.room.member' AND c.membership = 'join'", (room_id,))
        return {user_id: {"display_name": name, "avatar_url": avatar} for user_id, name, avatar in rows}

    def has_local_joined_member(self, room_id: str, server_name: str) -> bool:
        """Whether a user of `server_name` is joined to the room (user IDs split at their first ':')."""
        return bool(self.db.execute(
            "has_joined_member_of_server",
            "SELECT 1 FROM current_state_events WHERE room_id = %s AND type = 'm.room.member'"
            " AND membership = 'join' AND substr(state_key, strpos(state_key, ':') + 1) = %s LIMIT 1",
            (room_id, server_name)))

    def get_servers_with_members(self, room_id: str, memberships) -> list[str]:
        """The servers with a user whose current membership is one of `memberships`."""
        return [row[0] for row in self.db.execute(
            "servers_with_members_of_room",
            "SELECT DISTINCT substr(state_key, strpos(state_key, ':') + 1) FROM current_state_events"
            " WHERE room_id = %s AND type = 'm.room.member' AND membership = ANY(%s)", (room_id, list(memberships)))]

    def get_joined_servers(self, room_id: str) -> list[str]:
        """The servers with a user joined to the room."""
        return [row[0] for row in self.db.execute(
            "joined_servers_of_room",
            "SELECT DISTINCT substr(state_key, strpos(state_key, ':') + 1) FROM current_state_events"
            " WHERE room_id = %s AND type = 'm.room.member' AND membership = 'join'", (room_id,))]

    def get_joined_guests(self, room_id: str) -> list[str]:
        rows = self.db.execute(
            "joined_guests",
            "SELECT c.state_key FROM current_state_events c JOIN users u ON u.user_id = c.state_key"
            " WHERE c.room_id = %s AND c.type = 'm.room.member' AND c.membership = 'join' AND u.is_guest"
            " ORDER BY c.state_key", (room_id,))
        return [row[0] for row in rows]

    def count_members(self, room_id: str) -> dict[str, int]:
        rows = self.db.execute("count_members",
                               "SELECT membership, count(*) FROM current_state_events"
                               " WHERE room_id = %s AND type = 'm.room.member' GROUP BY membership", (room_id,))
        return dict(rows)

    def get_membership_at(self, room_id: str, user_id: str, stream_ordering: int) -> str | None:
        """The user's membership as of the given stream position (inclusive)."""
        rows = self.db.execute("membership_at",
                               "SELECT membership FROM room_memberships WHERE room_id = %s AND user_id = %s"
                               " AND stream_ordering <= %s ORDER BY stream_ordering DESC LIMIT 1",
                               (room_id, user_id, stream_ordering))
        return rows[0][0] if rows else None

    def has_ever_joined(self, room_id: str, user_id: str) -> bool:
        return bool(self.db.execute("has_ever_joined",
                                    "SELECT 1 FROM room_memberships WHERE room_id = %s AND user_id = %s"
                                    " AND membership = 'join' LIMIT 1", (room_id, user_id)))

    def is_forgotten(self, user_id: str, room_id: str) -> bool:
        return bool(self.db.execute("is_forgotten", "SELECT 1 FROM room_forgotten WHERE user_id = %s AND room_id = %s",
                                    (user_id, room_id)))

    def forget(self, user_id: str, room_id: str) -> None:
        self.db.execute("forget_room", "INSERT INTO room_forgotten (user_id, room_id) VALUES (%s, %s)"
                        " ON CONFLICT DO NOTHING", (user_id, room_id))

    # --- aliases -----------------------------------------------------------------------------

    def create_alias(self, alias: str, room_id: str, creator: str) -> bool:
        rows = self.db.execute("create_alias", "INSERT INTO room_aliases (room_alias, room_id, creator)"
                               " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1", (alias, room_id, creator))
        return bool(rows)

    @staticmethod
    def create_alias_txn(cur, alias: str, room_id: str, creator: str) -> bool:
        cur.execute("INSERT INTO room_aliases (room_alias, room_id, creator) VALUES (%s, %s, %s)"
                    " ON CONFLICT DO NOTHING", (alias, room_id, creator))
        return cur.rowcount == 1

    def get_alias(self, alias: str) -> tuple[str, str] | None:
        """(room_id, creator) of a local alias."""
        rows = self.db.execute("get_alias", "SELECT room_id, creator FROM room_aliases WHERE room_alias = %s",
                               (alias,))
        return tuple(rows[0]) if rows else None

    def delete_alias(self, alias: str) -> bool:
        return bool(self.db.execute("delete_alias", "DELETE FROM room_aliases WHERE room_alias = %s RETURNING 1",
                                    (alias,)))

    def get_aliases_for_room(self, room_id: str) -> list[str]:
        rows = self.db.execute("room_aliases", "SELECT room_alias FROM room_aliases WHERE room_id = %s"
                               " ORDER BY room_alias", (room_id,))
        return [row[0] for row in rows]
