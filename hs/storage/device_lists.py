"""Device list changes (the device_lists stream) and the membership reads that decide who must
refetch whose device keys. Every read is one query over all of a user's rooms."""

from hs.storage.database import Database

MEMBER = "m.room.member"


class DeviceListStore:
    def __init__(self, db: Database):
        self.db = db

    # --- writing (the master) ----------------------------------------------------------------------

    def add_change(self, stream_id: int, user_id: str) -> None:
        self.db.execute("add_device_list_change",
                        "INSERT INTO device_lists_stream (stream_id, user_id) VALUES (%s, %s)"
                        " ON CONFLICT DO NOTHING", (stream_id, user_id))

    # --- reading (any process) ---------------------------------------------------------------------

    def get_stream_rows(self, from_id: int, upto_id: int, limit: int | None) -> list[tuple[int, dict]]:
        """Replication: (stream_id, {"user_id"}) of the changes in (from_id, upto_id], in id order,
        at most `limit` ids (None: all): whose room-mates to wake."""
        rows = self.db.execute("device_lists_stream_rows",
                               "SELECT stream_id, user_id FROM device_lists_stream WHERE stream_id IN ("
                               " SELECT DISTINCT stream_id FROM device_lists_stream"
                               " WHERE stream_id > %s AND stream_id <= %s ORDER BY stream_id LIMIT %s)"
                               " ORDER BY stream_id, user_id",
                               (from_id, upto_id, limit))
        return [(stream_id, {"user_id": user_id}) for stream_id, user_id in rows]

    def get_changed_users_sharing_a_room(self, user_id: str, after: int, upto: int) -> set[str]:
        """The users whose device list changed in (after, upto] and who share a joined room with
        `user_id` now, and `user_id` itself if its list changed."""
        rows = self.db.execute(
            "device_lists_changed_sharing",
            "SELECT DISTINCT d.user_id FROM device_lists_stream d"
            " WHERE d.stream_id > %(after)s AND d.stream_id <= %(upto)s AND (d.user_id = %(user)s OR EXISTS ("
            "  SELECT 1 FROM current_state_events mine JOIN current_state_events theirs"
            "   ON theirs.room_id = mine.room_id AND theirs.type = %(member)s"
            "  WHERE mine.type = %(member)s AND mine.state_key = %(user)s AND mine.membership = 'join'"
            "   AND theirs.state_key = d.user_id AND theirs.membership = 'join'))",
            {"user": user_id, "after": after, "upto": upto, "member": MEMBER})
        return {row[0] for row in rows}

    def get_membership_changes(self, user_id: str, after: int, upto: int) -> list[tuple[str, str, str | None,
                                                                                    str | None]]:
        """(room_id, member, membership at `after`, membership at `upto`) for the rooms `user_id`
        was joined to at `after` or at `upto`: the user's own row for each such room, and a row
        for every other member whose membership event falls in (after, upto]. A membership
        before the member's first event is None."""
        rows = self.db.execute(
            "device_lists_membership_changes",
            "WITH mine AS ("
            " SELECT * FROM (SELECT r.room_id,"
            "  (SELECT m.membership FROM room_memberships m WHERE m.user_id = %(user)s AND m.room_id = r.room_id"
            "   AND m.stream_ordering <= %(after)s ORDER BY m.stream_ordering DESC LIMIT 1) AS at_after,"
            "  (SELECT m.membership FROM room_memberships m WHERE m.user_id = %(user)s AND m.room_id = r.room_id"
            "   AND m.stream_ordering <= %(upto)s ORDER BY m.stream_ordering DESC LIMIT 1) AS at_upto"
            "  FROM (SELECT DISTINCT room_id FROM room_memberships WHERE user_id = %(user)s"
            "        AND stream_ordering <= %(upto)s) r) s"
            " WHERE 'join' IN (at_after, at_upto))"
            " SELECT room_id, %(user)s, at_after, at_upto FROM mine"
            " UNION ALL"
            " SELECT c.room_id, c.member,"
            "  (SELECT m.membership FROM room_memberships m WHERE m.user_id = c.member AND m.room_id = c.room_id"
            "   AND m.stream_ordering <= %(after)s ORDER BY m.stream_ordering DESC LIMIT 1),"
            "  (SELECT m.membership FROM room_memberships m WHERE m.user_id = c.member AND m.room_id = c.room_id"
            "   AND m.stream_ordering <= %(upto)s ORDER BY m.stream_ordering DESC LIMIT 1)"
            " FROM (SELECT DISTINCT e.room_id, e.state_key AS member FROM events e"
            "       WHERE e.room_id IN (SELECT room_id FROM mine) AND e.type = %(member)s"
            "       AND e.stream_ordering > %(after)s AND e.stream_ordering <= %(upto)s"
            "       AND e.state_key <> %(user)s) c",
            {"user": user_id, "after": after, "upto": upto, "member": MEMBER})
        return [tuple(row) for row in rows]

    def get_joined_members(self, room_ids: list[str]) -> set[str]:
        """Everyone joined to one of the rooms now."""
        if not room_ids:
            return set()
        rows = self.db.execute("device_lists_joined_members",
                               "SELECT DISTINCT state_key FROM current_state_events WHERE room_id = ANY(%s)"
                               " AND type = %s AND membership = 'join'", (room_ids, MEMBER))
        return {row[0] for row in rows}

    def get_users_sharing_a_room(self, user_id: str, candidates: list[str]) -> set[str]:
        """Those of `candidates` who share a joined room with `user_id` now."""
        if not candidates:
            return set()
        rows = self.db.execute(
            "device_lists_sharing",
            "SELECT DISTINCT theirs.state_key FROM current_state_events mine JOIN current_state_events theirs"
            " ON theirs.room_id = mine.room_id AND theirs.type = %(member)s"
            " WHERE mine.type = %(member)s AND mine.state_key = %(user)s AND mine.membership = 'join'"
            " AND theirs.state_key = ANY(%(candidates)s) AND theirs.membership = 'join'",
            {"user": user_id, "candidates": candidates, "member": MEMBER})
        return {row[0] for row in rows}
