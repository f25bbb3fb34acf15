"""Room state as groups: snapshots plus deltas, and the current state of each room."""

from psycopg2.extras import execute_values

from hs.caches import LruCache
from hs.storage.database import Database

# A delta chain longer than this is cut with a full snapshot, so reading a group never walks
# more than this many groups, while a state change writes one row instead of the whole state.
MAX_DELTA_DEPTH = 50

StateMap = dict[tuple[str, str], str]
_ABSENT = ""  # in the entry cache: the group holds no such entry (no event ID is empty)


class StateStore:
    def __init__(self, db: Database):
        self.db = db
        # State groups never change once written, so their contents need no invalidation.
        # Weighed by entries: 500 states of a 2,000-member room held 500 MB (bench/RESULTS.md).
        self._group_cache = LruCache("state_group", 100_000, weigh=len,
                                     invalidated_by="nothing: state groups are immutable")
        self._depth_cache = LruCache("state_group_depth", 10_000, invalidated_by="nothing: immutable")
        self._event_group_cache = LruCache("event_state_group", 50_000,
                                           invalidated_by="nothing: an event's state group never changes")
        # (group, key) -> event ID or _ABSENT: what a visibility check reads of each event's state.
        self._entry_cache = LruCache("state_group_entry", 50_000, invalidated_by="nothing: state groups are immutable")

    def get_state_ids(self, state_group: int) -> StateMap:
        """The full state of a group (the returned dict is shared: do not mutate it)."""
        cached = self._group_cache.get(state_group)
        if cached is not None:
            return cached
        rows = self.db.execute(
            "get_state_group",
            "WITH RECURSIVE chain(id, distance) AS ("
            " SELECT id, 0 FROM state_groups WHERE id = %s"
            " UNION ALL SELECT g.prev_group, c.distance + 1 FROM state_groups g JOIN chain c ON g.id = c.id"
            " WHERE g.prev_group IS NOT NULL)"
            " SELECT DISTINCT ON (e.type, e.state_key) e.type, e.state_key, e.event_id"
            " FROM state_group_entries e JOIN chain c ON e.state_group = c.id"
            " ORDER BY e.type, e.state_key, c.distance", (state_group,))
        state = {(t, sk): event_id for t, sk, event_id in rows}
        self._group_cache.put(state_group, state)
        return state

    def _delta_depth(self, state_group: int) -> int:
        depth = self._depth_cache.get(state_group)
        if depth is None:
            rows = self.db.execute("state_group_depth", "SELECT delta_depth FROM state_groups WHERE id = %s",
                                   (state_group,))
            depth = rows[0][0]
            self._depth_cache.put(state_group, depth)
        return depth

    def plan_state_group(self, prev_group: int | None, delta: StateMap) -> tuple[int | None, StateMap, int]:
        """(prev_group, entries, delta_depth) for a new group: a delta against prev_group, or a
        full snapshot when there is none or the chain has grown long. Reads only."""
        if prev_group is not None:
            depth = self._delta_depth(prev_group) + 1
            if depth <= MAX_DELTA_DEPTH:
                return prev_group, delta, depth
            return None, {**self.get_state_ids(prev_group), **delta}, 0
        return None, dict(delta), 0

    @staticmethod
    def insert_state_group_txn(cur, room_id: str, prev_group: int | None, entries: StateMap, delta_depth: int) -> int:
        cur.execute("SELECT nextval('state_group_ids')")
        group = cur.fetchone()[0]
        cur.execute("INSERT INTO state_groups (id, room_id, prev_group, delta_depth) VALUES (%s, %s, %s, %s)",
                    (group, room_id, prev_group, delta_depth))
        if entries:
            args = [(group, t, sk, event_id) for (t, sk), event_id in entries.items()]
            # One statement per thousand rows: a snapshot of a big room is thousands of rows,
            # written under the room's lock.
            execute_values(cur, "INSERT INTO state_group_entries (state_group, type, state_key, event_id)"
                                " VALUES %s", args, page_size=1000)
        return group

    def get_state_entries(self, state_groups, keys: list[tuple[str, str]]) -> dict[int, StateMap]:
        """Only the given (type, state_key) entries of each group, in one query: what a
        visibility check needs of each event's state, without loading a 10,000-member state
        per group."""
        groups = list(dict.fromkeys(state_groups))
        result: dict[int, StateMap] = {}
        missing = []
        for group in groups:
            cached = self._group_cache.get(group)
            if cached is not None:
                result[group] = {key: cached[key] for key in keys if key in cached}
                continue
            entries = [self._entry_cache.get((group, key)) for key in keys]
            if all(e is not None for e in entries):
                result[group] = {key: e for key, e in zip(keys, entries, strict=True) if e != _ABSENT}
            else:
                result[group] = {}
                missing.append(group)
        if missing and keys:
            rows = self.db.execute(
                "get_state_entries",
                "WITH RECURSIVE chain(origin, id, distance) AS ("
                " SELECT id, id, 0 FROM state_groups WHERE id = ANY(%s)"
                " UNION ALL SELECT c.origin, g.prev_group, c.distance + 1 FROM state_groups g"
                " JOIN chain c ON g.id = c.id WHERE g.prev_group IS NOT NULL)"
                " SELECT DISTINCT ON (c.origin, e.type, e.state_key) c.origin, e.type, e.state_key, e.event_id"
                " FROM chain c JOIN state_group_entries e ON e.state_group = c.id"
                " JOIN unnest(%s::text[], %s::text[]) AS k(type, state_key)"
                " ON e.type = k.type AND e.state_key = k.state_key"
                " ORDER BY c.origin, e.type, e.state_key, c.distance",
                (missing, [t for t, _ in keys], [sk for _, sk in keys]))
            for origin, event_type, state_key, event_id in rows:
                result[origin][(event_type, state_key)] = event_id
            for group in missing:
                for key in keys:
                    self._entry_cache.put((group, key), result[group].get(key, _ABSENT))
        return result

    def get_state_groups_for_events(self, event_ids: list[str]) -> dict[str, int]:
        result, missing = self._event_group_cache.get_many(event_ids)
        if missing:
            rows = self.db.execute("state_groups_for_events",
                                   "SELECT event_id, state_group FROM event_to_state_groups WHERE event_id = ANY(%s)",
                                   (missing,))
            for event_id, group in rows:
                self._event_group_cache.put(event_id, group)
                result[event_id] = group
        return result

    def remember_state_group_of_event(self, event_id: str, state_group: int) -> None:
        """After a committed write of the event: the next event in its room will ask."""
        if state_group is not None:
            self._event_group_cache.put(event_id, state_group)

    def get_state_group_for_event(self, event_id: str) -> int | None:
        return self.get_state_groups_for_events([event_id]).get(event_id)

    def get_state_ids_after_event(self, event_id: str) -> StateMap:
        group = self.get_state_group_for_event(event_id)
        return self.get_state_ids(group) if group is not None else {}

    # --- current state -----------------------------------------------------------------------

    def get_current_state_ids(self, room_id: str, keys: list[tuple[str, str]] | None = None) -> StateMap:
        """The room's current state, or only the given (type, state_key) entries of it: a
        10,000-member room should not load every member to check one event."""
        if keys is None:
            rows = self.db.execute("current_state",
                                   "SELECT type, state_key, event_id FROM current_state_events WHERE room_id = %s",
                                   (room_id,))
        else:
            if not keys:
                return {}
            rows = self.db.execute(
                "current_state_keys",
                "SELECT c.type, c.state_key, c.event_id FROM current_state_events c"
                " JOIN unnest(%s::text[], %s::text[]) AS k(type, state_key)"
                " ON c.type = k.type AND c.state_key = k.state_key WHERE c.room_id = %s",
                ([t for t, _ in keys], [sk for _, sk in keys], room_id))
        return {(t, sk): event_id for t, sk, event_id in rows}

    def get_current_state_of_type(self, room_id: str, event_type: str) -> StateMap:
        rows = self.db.execute("current_state_of_type",
                               "SELECT type, state_key, event_id FROM current_state_events"
                               " WHERE room_id = %s AND type = %s", (room_id, event_type))
        return {(t, sk): event_id for t, sk, event_id in rows}

    @staticmethod
    def delete_current_state_txn(cur, room_id, event_type, state_key) -> None:
        cur.execute("DELETE FROM current_state_events WHERE room_id = %s AND type = %s AND state_key = %s",
                    (room_id, event_type, state_key))

    @staticmethod
    def set_current_state_txn(cur, room_id, event_type, state_key, event_id, membership) -> None:
        cur.execute(
            "INSERT INTO current_state_events (room_id, type, state_key, event_id, membership)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (room_id, type, state_key)"
            " DO UPDATE SET event_id = EXCLUDED.event_id, membership = EXCLUDED.membership",
            (room_id, event_type, state_key, event_id, membership))
