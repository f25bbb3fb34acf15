"""The room directory, room summaries and space hierarchy: batched reads of many rooms' current
state, the published room list, and hierarchy pagination sessions.

Aliases themselves and a room's `is_public` flag are kept by RoomStore; this store reads across
rooms, a page at a time, so that a page of rooms costs a few queries and not a few per room.
"""

import json

from hs.storage.database import Database

# Current state of each published room that decides whether it is listed at all: a room is
# listed when someone could join or peek (Synapse's rule), and someone is still in it.
_LISTED = """
    SELECT r.room_id, coalesce(m.joined_members, 0) AS joined_members,
        (SELECT CASE WHEN jsonb_typeof(e.json::jsonb #> '{content,type}') = 'string'
                     THEN e.json::jsonb #>> '{content,type}' END
           FROM current_state_events c JOIN events e ON e.event_id = c.event_id
          WHERE c.room_id = r.room_id AND c.type = 'm.room.create' AND c.state_key = '') AS room_type
    FROM rooms r LEFT JOIN room_member_counts m ON m.room_id = r.room_id
    WHERE {published} AND coalesce(m.joined_members, 0) > 0
      AND ((SELECT e.json::jsonb #>> '{content,join_rule}'
              FROM current_state_events c JOIN events e ON e.event_id = c.event_id
             WHERE c.room_id = r.room_id AND c.type = 'm.room.join_rules' AND c.state_key = '')
             IN ('public', 'knock', 'knock_restricted')
        OR (SELECT e.json::jsonb #>> '{content,history_visibility}'
              FROM current_state_events c JOIN events e ON e.event_id = c.event_id
             WHERE c.room_id = r.room_id AND c.type = 'm.room.history_visibility' AND c.state_key = '')
             = 'world_readable')
"""

# A room matches a search term by its name, topic or canonical alias; a redacted event no
# longer names the room, so it does not match. {fold} is lower() under a collation that folds
# more than ASCII, when the server has one.
_SEARCH = """
    EXISTS (SELECT 1 FROM current_state_events c JOIN events e ON e.event_id = c.event_id
             WHERE c.room_id = listed.room_id AND c.state_key = ''
               AND c.type IN ('m.room.name', 'm.room.topic', 'm.room.canonical_alias')
               AND NOT EXISTS (SELECT 1 FROM redactions d WHERE d.redacts = c.event_id)
               AND strpos(lower((e.json::jsonb -> 'content' ->> CASE c.type WHEN 'm.room.name' THEN 'name'
                                                                       WHEN 'm.room.topic' THEN 'topic'
                                                                       ELSE 'alias' END){fold}),
                          lower(%(term)s{fold})) > 0)
"""

# The database's C collation (kept, as Synapse keeps it, for stable byte order) makes lower()
# fold ASCII only, so "ÉTÉ" would not find "été". These collations fold all of Unicode:
# PostgreSQL 17's builtin one first (no ICU needed), then ICU's.
# Which list a room is published in: the server's own (rooms.is_public), or an application
# service's list for one of its networks (appservice_room_list), as Synapse keeps them.
_IN_SERVICE_LIST = "EXISTS (SELECT 1 FROM appservice_room_list a WHERE a.room_id = r.room_id{network})"
_PUBLISHED = {
    None: "r.is_public",
    "all": f"(r.is_public OR {_IN_SERVICE_LIST.format(network='')})",
    "network": _IN_SERVICE_LIST.format(network=" AND a.appservice_id = %(as_id)s AND a.network_id = %(network_id)s"),
}

_FOLDING_COLLATIONS = ("pg_c_utf8", "unicode", "und-x-icu")
_UNKNOWN = object()


class DirectoryStore:
    def __init__(self, db: Database):
        self.db = db
        self._folding_collation = _UNKNOWN

    def _search_fold(self) -> str:
        """' COLLATE "name"' for the first folding collation the server has ('' if none):
        looked up once, as the server's collations do not change while it runs."""
        if self._folding_collation is _UNKNOWN:
            rows = self.db.execute(
                "folding_collations",
                "SELECT collname FROM pg_collation WHERE collname = ANY(%s)"
                " AND collencoding IN (-1, pg_char_to_encoding(getdatabaseencoding()))"
                " AND getdatabaseencoding() = 'UTF8'", (list(_FOLDING_COLLATIONS),))
            found = {row[0] for row in rows}
            self._folding_collation = next((c for c in _FOLDING_COLLATIONS if c in found), None)
        return f' COLLATE "{self._folding_collation}"' if self._folding_collation else ""

    # --- many rooms at once ------------------------------------------------------------------

    def get_current_state_ids_for_rooms(self, room_ids: list[str], types: list[str], *,
                                        member: str | None = None,
                                        child_type: str | None = None) -> dict[str, dict[tuple[str, str], str]]:
        """room ID -> {(type, state_key): event_id} for the rooms' current state: the events of
        `types` with an empty state key, `member`'s membership, and every event of `child_type`
        (m.space.child, whatever its state key). One indexed query for all the rooms."""
        result: dict[str, dict[tuple[str, str], str]] = {room_id: {} for room_id in room_ids}
        if not room_ids:
            return result
        rows = self.db.execute(
            "current_state_for_rooms",
            "SELECT room_id, type, state_key, event_id FROM current_state_events"
            " WHERE room_id = ANY(%(rooms)s)"
            " AND ((state_key = '' AND type = ANY(%(types)s))"
            " OR (type = 'm.room.member' AND state_key = %(member)s)"
            " OR type = %(child_type)s)",
            {"rooms": list(room_ids), "types": list(types), "member": member, "child_type": child_type})
        for room_id, event_type, state_key, event_id in rows:
            result[room_id][(event_type, state_key)] = event_id
        return result

    def get_rooms_info(self, room_ids: list[str]) -> dict[str, tuple[str, int]]:
        """room ID -> (room_version, joined member count) of the rooms this server has."""
        if not room_ids:
            return {}
        rows = self.db.execute(
            "rooms_info",
            "SELECT r.room_id, r.room_version, coalesce(m.joined_members, 0) FROM rooms r"
            " LEFT JOIN room_member_counts m ON m.room_id = r.room_id WHERE r.room_id = ANY(%s)",
            (list(room_ids),))
        return {room_id: (version, joined) for room_id, version, joined in rows}

    def get_joined_servers(self, room_id: str) -> list[str]:
        """The servers of the room's joined members. O(joined members): used by alias lookups."""
        rows = self.db.execute(
            "joined_servers",
            "SELECT DISTINCT substring(state_key FROM position(':' IN state_key) + 1)"
            " FROM current_state_events WHERE room_id = %s AND type = 'm.room.member' AND membership = 'join'",
            (room_id,))
        return sorted(row[0] for row in rows)

    # --- the published room list -------------------------------------------------------------

    def get_public_rooms_page(self, *, limit: int, bound: tuple[int, str] | None, forwards: bool,
                              search_term: str | None, room_types: list | None,
                              network=None) -> tuple[list[tuple[str, int]], int]:
        """([(room_id, joined_members)], number of listed rooms): the listed rooms matching the
        filter, largest first (then room ID, descending), strictly after `bound` going forwards
        or strictly before it going backwards (returned in list order either way).

        `network`: None for the server's list, "all" for it and every application service's,
        (appservice_id, network_id) for one service's list of one network.

        Costs O(published rooms): whether a room is listed, and what it is called, are read
        from its current state on every request."""
        clauses, args = [], {"limit": limit}
        if isinstance(network, tuple):
            args["as_id"], args["network_id"] = network
        # replace, not format: the JSON paths in _LISTED hold braces.
        listed = _LISTED.replace("{published}", _PUBLISHED["network" if isinstance(network, tuple) else network])
        if search_term:
            clauses.append(_SEARCH.format(fold=self._search_fold()))
            args["term"] = search_term
        if room_types:
            types = [t for t in room_types if t is not None]
            clauses.append("(room_type = ANY(%(types)s) OR (%(untyped)s AND room_type IS NULL))")
            args["types"] = types
            args["untyped"] = None in room_types
        if bound is not None:
            clauses.append(f"(joined_members, room_id) {'<' if forwards else '>'} (%(b_joined)s, %(b_room)s)")
            args["b_joined"], args["b_room"] = bound
        where = " AND ".join(clauses) or "TRUE"
        order = "DESC" if forwards else "ASC"
        rows = self.db.execute(
            "public_rooms_page",
            f"WITH listed AS MATERIALIZED ({listed})"
            " SELECT (SELECT count(*) FROM listed), page.room_id, page.joined_members"
            " FROM (SELECT 1) one LEFT JOIN LATERAL ("
            f"  SELECT room_id, joined_members FROM listed WHERE {where}"
            f"  ORDER BY joined_members {order}, room_id {order} LIMIT %(limit)s) page ON TRUE"
            f" ORDER BY page.joined_members {order}, page.room_id {order}", args)
        total = rows[0][0] if rows else 0
        page = [(room_id, joined) for _, room_id, joined in rows if room_id is not None]
        if not forwards:
            page.reverse()
        return page, total

    def set_appservice_room_published(self, appservice_id: str, network_id: str, room_id: str,
                                      published: bool) -> None:
        if published:
            self.db.execute("appservice_room_publish",
                            "INSERT INTO appservice_room_list (appservice_id, network_id, room_id) VALUES (%s, %s, %s)"
                            " ON CONFLICT DO NOTHING", (appservice_id, network_id, room_id))
        else:
            self.db.execute("appservice_room_unpublish",
                            "DELETE FROM appservice_room_list WHERE appservice_id = %s AND network_id = %s"
                            " AND room_id = %s", (appservice_id, network_id, room_id))

    # --- space hierarchy pagination ----------------------------------------------------------

    def save_hierarchy_session(self, token: str, user_id: str, room_id: str, suggested_only: bool,
                               max_depth: int | None, room_queue: list, processed_rooms: list,
                               now_ms: int, expired_before_ms: int) -> None:
        def txn(cur):
            cur.execute("DELETE FROM room_hierarchy_pagination WHERE created_ts < %s", (expired_before_ms,))
            cur.execute("INSERT INTO room_hierarchy_pagination (token, user_id, room_id, suggested_only, max_depth,"
                        " room_queue, processed_rooms, created_ts) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        (token, user_id, room_id, suggested_only, max_depth, json.dumps(room_queue),
                         json.dumps(processed_rooms), now_ms))
        self.db.run_txn("save_hierarchy_session", txn)

    def get_hierarchy_session(self, token: str, created_after_ms: int) -> dict | None:
        rows = self.db.execute(
            "get_hierarchy_session",
            "SELECT user_id, room_id, suggested_only, max_depth, room_queue, processed_rooms"
            " FROM room_hierarchy_pagination WHERE token = %s AND created_ts >= %s", (token, created_after_ms))
        if not rows:
            return None
        user_id, room_id, suggested_only, max_depth, room_queue, processed = rows[0]
        return {"user_id": user_id, "room_id": room_id, "suggested_only": suggested_only, "max_depth": max_depth,
                "room_queue": json.loads(room_queue), "processed_rooms": json.loads(processed)}
