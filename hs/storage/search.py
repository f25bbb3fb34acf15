"""Finding things: full-text search over room events, events by timestamp, the user
directory; and the content reports users file.

Every query here starts from an index: event_search's GIN index on the tsvector,
events_room_ts for timestamps, current_state_user_rooms for "rooms of a user".
"""

from dataclasses import dataclass

from hs.filtering import wildcard_to_like
from hs.storage.database import Database


@dataclass(frozen=True)
class SearchableRoom:
    room_id: str
    # The last stream position the user may read (their leave or ban), None while joined.
    upto_stream: int | None


@dataclass(frozen=True)
class SearchHit:
    event_id: str
    room_id: str
    sender: str
    key: str
    stream_ordering: int
    rank: float


@dataclass(frozen=True)
class DirectoryUser:
    user_id: str
    displayname: str | None
    avatar_url: str | None


class SearchStore:
    def __init__(self, db: Database):
        self.db = db

    # --- full-text search ------------------------------------------------------------------------

    def searchable_rooms(self, user_id: str) -> list[SearchableRoom]:
        """Rooms the user is joined to, and rooms they joined and then left (up to their leave)
        that they have not forgotten."""
        rows = self.db.execute(
            "searchable_rooms",
            "SELECT c.room_id, CASE WHEN c.membership = 'join' THEN NULL ELSE e.stream_ordering END"
            " FROM current_state_events c JOIN events e ON e.event_id = c.event_id"
            " WHERE c.type = 'm.room.member' AND c.state_key = %(user)s"
            " AND c.membership IN ('join', 'leave', 'ban')"
            " AND NOT EXISTS (SELECT 1 FROM room_forgotten f WHERE f.user_id = %(user)s AND f.room_id = c.room_id)"
            " AND (c.membership = 'join' OR EXISTS (SELECT 1 FROM room_memberships m"
            "      WHERE m.user_id = %(user)s AND m.room_id = c.room_id AND m.membership = 'join'))",
            {"user": user_id})
        return [SearchableRoom(room_id, upto) for room_id, upto in rows]

    def query_lexemes(self, search_term: str) -> list[str]:
        """The words of a search term as to_tsvector('simple') indexes them, so a query built
        from them matches exactly what was indexed (hyphenated words, host names and all)."""
        rows = self.db.execute("search_lexemes",
                               "SELECT lexeme FROM unnest(to_tsvector('simple', %s)) ORDER BY lexeme",
                               (search_term,))
        return [row[0] for row in rows]

    def search_events(self, rooms: list[SearchableRoom], tsquery: str, *, keys: list[str], order_by: str,
                      after: tuple | None, limit: int, types=None, not_types=(), senders=None, not_senders=(),
                      contains_url=None) -> list[SearchHit]:
        """Matching events in the given rooms, best first (order_by "rank") or newest first
        ("recent"), strictly after the cursor `after` ((rank, stream) or (stream,)).
        Redacted events are not found: their text is gone."""
        if not rooms:
            return []
        where, args = self._search_where(rooms, tsquery, keys, types, not_types, senders, not_senders,
                                         contains_url)
        if order_by == "rank":
            if after is not None:
                where.append("(ts_rank(s.vector, %(tsquery)s::tsquery) < %(c_rank)s::real"
                             " OR (ts_rank(s.vector, %(tsquery)s::tsquery) = %(c_rank)s::real"
                             " AND s.stream_ordering < %(c_stream)s))")
                args.update(c_rank=after[0], c_stream=after[1])
            order = "rank DESC, s.stream_ordering DESC"
        else:
            if after is not None:
                where.append("s.stream_ordering < %(c_stream)s")
                args["c_stream"] = after[0]
            order = "s.stream_ordering DESC"
        args["limit"] = limit
        rows = self.db.execute(
            "search_events",
            "SELECT s.event_id, s.room_id, s.sender, s.key, s.stream_ordering,"
            " ts_rank(s.vector, %(tsquery)s::tsquery) AS rank"
            f" {self._search_from()} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT %(limit)s", args)
        return [SearchHit(*row) for row in rows]

    def count_events(self, rooms: list[SearchableRoom], tsquery: str, *, keys: list[str], types=None,
                     not_types=(), senders=None, not_senders=(), contains_url=None) -> int:
        if not rooms:
            return 0
        where, args = self._search_where(rooms, tsquery, keys, types, not_types, senders, not_senders,
                                         contains_url)
        rows = self.db.execute("search_count", f"SELECT count(*) {self._search_from()} WHERE {' AND '.join(where)}",
                               args)
        return rows[0][0]

    @staticmethod
    def _search_from() -> str:
        # The user's rooms come in as two arrays (room, last readable stream position or NULL).
        return ("FROM event_search s"
                " JOIN unnest(%(rooms)s::text[], %(upto)s::bigint[]) AS r(room_id, upto) ON r.room_id = s.room_id"
                " JOIN events e ON e.event_id = s.event_id")

    @staticmethod
    def _search_where(rooms, tsquery, keys, types, not_types, senders, not_senders, contains_url):
        where = ["s.vector @@ %(tsquery)s::tsquery", "s.key = ANY(%(keys)s)",
                 "(r.upto IS NULL OR s.stream_ordering <= r.upto)",
                 "NOT EXISTS (SELECT 1 FROM redactions d WHERE d.redacts = s.event_id)"]
        args = {"rooms": [r.room_id for r in rooms], "upto": [r.upto_stream for r in rooms],
                "tsquery": tsquery, "keys": list(keys)}
        if types is not None:
            where.append("e.type LIKE ANY(%(types)s)")
            args["types"] = [wildcard_to_like(t) for t in types]
        if not_types:
            where.append("NOT (e.type LIKE ANY(%(not_types)s))")
            args["not_types"] = [wildcard_to_like(t) for t in not_types]
        if senders is not None:
            where.append("s.sender = ANY(%(senders)s)")
            args["senders"] = list(senders)
        if not_senders:
            where.append("NOT (s.sender = ANY(%(not_senders)s))")
            args["not_senders"] = list(not_senders)
        if contains_url is not None:
            where.append("e.contains_url = %(contains_url)s")
            args["contains_url"] = contains_url
        return where, args

    # --- events by timestamp ---------------------------------------------------------------------

    def event_ids_near_timestamp(self, room_id: str, ts: int, forwards: bool, *, after: tuple | None,
                                 upto_stream: int | None, limit: int) -> list[tuple[str, int, int]]:
        """(event_id, origin_server_ts, stream_ordering) of the room's events at or after `ts`
        (forwards) or at or before it, closest first, continuing strictly past the cursor
        `after` = (origin_server_ts, stream_ordering); none past `upto_stream`."""
        op, order = (">=", "ASC") if forwards else ("<=", "DESC")
        where = [f"origin_server_ts {op} %(ts)s"]
        args = {"room": room_id, "ts": ts, "limit": limit}
        if after is not None:
            cmp = ">" if forwards else "<"
            where.append(f"(origin_server_ts, stream_ordering) {cmp} (%(a_ts)s, %(a_stream)s)")
            args.update(a_ts=after[0], a_stream=after[1])
        if upto_stream is not None:
            where.append("stream_ordering <= %(upto)s")
            args["upto"] = upto_stream
        rows = self.db.execute(
            "events_near_timestamp",
            f"SELECT event_id, origin_server_ts, stream_ordering FROM events WHERE room_id = %(room)s"
            f" AND {' AND '.join(where)} ORDER BY origin_server_ts {order}, stream_ordering {order}"
            " LIMIT %(limit)s", args)
        return [tuple(row) for row in rows]

    # --- user directory ----------------------------------------------------------------------------

    def search_user_directory(self, user_id: str, words: list[str], limit: int) -> list[DirectoryUser]:
        """Active users whose localpart or display name contains every word (case-insensitive),
        and who share a joined room with `user_id` or are joined to a room that is public
        (join rule) or world-readable. Best matches first: exact, then prefix, then the rest;
        those with a display name before those without.

        The profiles are scanned with ILIKE (no trigram index is assumed to be available); the
        room check is then per candidate, by index (a candidate's rooms, each room's join rules
        and history visibility by primary key)."""
        if not words:
            return []
        args: dict = {"me": user_id, "limit": limit, "term": " ".join(words)}
        conditions = []
        for i, word in enumerate(words):
            args[f"w{i}"] = f"%{_like_escape(word)}%"
            args[f"p{i}"] = f"{_like_escape(word)}%"
            conditions.append(f"(lower(u.localpart) LIKE %(w{i})s OR lower(p.displayname) LIKE %(w{i})s"
                              f" OR lower(p.user_id) LIKE %(p{i})s)")
        rows = self.db.execute(
            "user_directory_search",
            "WITH mine AS (SELECT room_id FROM current_state_events WHERE type = 'm.room.member'"
            "   AND state_key = %(me)s AND membership = 'join'),"
            " candidates AS (SELECT p.user_id, p.displayname, p.avatar_url, u.localpart"
            "   FROM profiles p CROSS JOIN LATERAL (SELECT split_part(substr(p.user_id, 2), ':', 1) AS localpart) u"
            f"   WHERE {' AND '.join(conditions)})"
            " SELECT c.user_id, c.displayname, c.avatar_url FROM candidates c"
            " WHERE NOT EXISTS (SELECT 1 FROM users d WHERE d.user_id = c.user_id AND d.deactivated)"
            " AND EXISTS (SELECT 1 FROM current_state_events m WHERE m.type = 'm.room.member'"
            "   AND m.state_key = c.user_id AND m.membership = 'join'"
            "   AND (m.room_id IN (SELECT room_id FROM mine)"
            "     OR EXISTS (SELECT 1 FROM current_state_events jr JOIN events je ON je.event_id = jr.event_id"
            "       WHERE jr.room_id = m.room_id AND jr.type = 'm.room.join_rules' AND jr.state_key = ''"
            "       AND je.json::jsonb -> 'content' ->> 'join_rule' = 'public')"
            "     OR EXISTS (SELECT 1 FROM current_state_events hv JOIN events he ON he.event_id = hv.event_id"
            "       WHERE hv.room_id = m.room_id AND hv.type = 'm.room.history_visibility' AND hv.state_key = ''"
            "       AND he.json::jsonb -> 'content' ->> 'history_visibility' = 'world_readable')))"
            " ORDER BY CASE WHEN lower(c.displayname) = lower(%(term)s) OR lower(c.localpart) = lower(%(term)s)"
            "   OR lower(c.user_id) = lower(%(term)s) THEN 0"
            "   WHEN lower(c.displayname) LIKE %(p0)s OR lower(c.localpart) LIKE %(p0)s THEN 1 ELSE 2 END,"
            " c.displayname IS NULL, c.user_id LIMIT %(limit)s", args)
        return [DirectoryUser(*row) for row in rows]

    # --- reports -----------------------------------------------------------------------------------

    def add_report(self, *, room_id: str, event_id: str | None, user_id: str, reason: str | None,
                   score: int | None, now_ms: int) -> int:
        rows = self.db.execute(
            "add_event_report",
            "INSERT INTO event_reports (received_ts, room_id, event_id, user_id, reason, score)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id", (now_ms, room_id, event_id, user_id, reason, score))
        return rows[0][0]


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
