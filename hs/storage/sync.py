"""What /sync reads, batched over every room of a user: one query for all rooms, never one per
room or per event. Every read is bounded by a stream position the caller took from the events
stream's persisted-upto token, so a row committed after that position is left for the next sync.
"""

from dataclasses import dataclass

from hs.caches import LruCache, SingleFlight
from hs.filtering import wildcard_to_like
from hs.storage.database import Database

# What a range of a room's events holds never changes once the range ends at or below the
# persisted-upto position (every read here is bounded so): nothing commits below it later, and
# events are not deleted (no purge yet). So these caches need no invalidation. They are what
# makes a message's fan-out cheap: every member parked on /sync wakes with the same `since` and
# `now`, and the first of them to run reads the room for all.
_IMMUTABLE = "nothing: events at or below the events stream's persisted-upto position never change"


@dataclass(frozen=True)
class MembershipRow:
    """A user's latest membership in one room as of a stream position."""
    room_id: str
    membership: str
    event_id: str
    stream_ordering: int
    sender: str
    # The membership as of `since` (None: none then, or no `since` asked for).
    membership_at_since: str | None
    # Joined at some point up to this membership (for a join: True).
    ever_joined: bool
    forgotten: bool


class SyncStore:
    def __init__(self, db: Database):
        self.db = db
        self._timeline_cache = LruCache("sync_timeline", 20_000, invalidated_by=_IMMUTABLE)
        self._has_events_cache = LruCache("sync_rooms_with_events", 50_000, invalidated_by=_IMMUTABLE)
        self._has_events_reads = SingleFlight()

    def get_memberships(self, user_id: str, upto: int, since: int | None) -> list[MembershipRow]:
        """The user's latest membership in every room they have one in, as of `upto`; with
        `since`, also their membership as of `since` for the rooms where it changed after it."""
        rows = self.db.execute(
            "sync_memberships",
            "SELECT l.room_id, l.membership, l.event_id, l.stream_ordering, l.sender,"
            " CASE WHEN %(since)s::bigint IS NULL THEN NULL"
            "  WHEN l.stream_ordering <= %(since)s THEN l.membership"
            "  ELSE (SELECT m.membership FROM room_memberships m WHERE m.user_id = %(user)s"
            "        AND m.room_id = l.room_id AND m.stream_ordering <= %(since)s"
            "        ORDER BY m.stream_ordering DESC LIMIT 1) END,"
            " l.membership = 'join' OR (l.membership IN ('leave', 'ban') AND EXISTS ("
            "  SELECT 1 FROM room_memberships j WHERE j.user_id = %(user)s AND j.room_id = l.room_id"
            "  AND j.membership = 'join' AND j.stream_ordering <= l.stream_ordering)),"
            " EXISTS (SELECT 1 FROM room_forgotten f WHERE f.user_id = %(user)s AND f.room_id = l.room_id)"
            " FROM (SELECT DISTINCT ON (room_id) room_id, membership, event_id, stream_ordering, sender"
            "       FROM room_memberships WHERE user_id = %(user)s AND stream_ordering <= %(upto)s"
            "       ORDER BY room_id, stream_ordering DESC) l",
            {"user": user_id, "upto": upto, "since": since})
        return [MembershipRow(*row) for row in rows]

    def get_timeline_event_ids(self, ranges: list[tuple[str, int, int]], limit: int,
                               event_filter=None) -> dict[str, list[str]]:
        """room ID -> the IDs of its newest `limit` events (newest first) with a stream ordering
        in (after, upto], for each (room_id, after, upto). A LATERAL subquery per room walks the
        (room_id, stream_ordering) index backwards and stops at `limit`, so a room with a long
        history costs the same as a new one (a window function over the range would number
        every event of the room first). The event filter applies in SQL, so `limit` counts
        matching events."""
        if not ranges:
            return {}
        clauses, args = _filter_clauses(event_filter)
        # Only unfiltered reads are cached: a filter is a user's own, and rarely shared.
        cached = {} if clauses else {r: self._timeline_cache.get((*r, limit)) for r in ranges}
        result = {r[0]: ids for r, ids in cached.items() if ids}
        ranges = [r for r in ranges if cached.get(r) is None]
        if not ranges:
            return result
        rows = self.db.execute(
            "sync_timeline",
            "SELECT r.room_id, e.event_id"
            " FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS r(room_id, after, upto)"
            " CROSS JOIN LATERAL (SELECT e.event_id, e.stream_ordering FROM events e"
            "  WHERE e.room_id = r.room_id AND e.stream_ordering > r.after AND e.stream_ordering <= r.upto"
            "  AND NOT e.outlier"
            f"  {''.join(' AND ' + c for c in clauses)}"
            "  ORDER BY e.stream_ordering DESC LIMIT %s) e"
            " ORDER BY r.room_id, e.stream_ordering DESC",
            ([r[0] for r in ranges], [r[1] for r in ranges], [r[2] for r in ranges], *args, limit))
        read: dict[str, list[str]] = {}
        for room_id, event_id in rows:
            read.setdefault(room_id, []).append(event_id)
        if not clauses:
            for room_id, after, upto in ranges:
                self._timeline_cache.put((room_id, after, upto, limit), read.get(room_id, []))
        result.update(read)
        return result

    def get_last_events(self, positions: list[tuple[str, int]]) -> dict[tuple[str, int], tuple[str, int, int]]:
        """(room_id, upto) -> (event_id, topological_ordering, stream_ordering) of the room's last
        event at or before `upto`, for each (room_id, upto) given."""
        positions = list(dict.fromkeys(positions))
        if not positions:
            return {}
        rows = self.db.execute(
            "sync_last_events",
            "SELECT r.room_id, r.upto, e.event_id, e.topological_ordering, e.stream_ordering"
            " FROM unnest(%s::text[], %s::bigint[]) AS r(room_id, upto)"
            " CROSS JOIN LATERAL (SELECT e.event_id, e.topological_ordering, e.stream_ordering FROM events e"
            "  WHERE e.room_id = r.room_id AND e.stream_ordering <= r.upto AND NOT e.outlier"
            "  ORDER BY e.stream_ordering DESC LIMIT 1) e",
            ([p[0] for p in positions], [p[1] for p in positions]))
        return {(room_id, upto): (event_id, topo, stream) for room_id, upto, event_id, topo, stream in rows}

    def get_rooms_with_events(self, room_ids: list[str], after: int, upto: int, *,
                              event_type: str | None = None, state_only: bool = False) -> set[str]:
        """The rooms among `room_ids` with an event in (after, upto]: of `event_type` if given,
        and only state events with `state_only`. One index range scan per room."""
        if not room_ids:
            return set()
        key = (after, upto, event_type, state_only)
        cached = {room_id: self._has_events_cache.get((room_id, *key)) for room_id in room_ids}
        found = {room_id for room_id, has in cached.items() if has}
        room_ids = [room_id for room_id, has in cached.items() if has is None]
        if not room_ids:
            return found
        clauses, args = "", []
        if event_type is not None:
            clauses += " AND type = %s"
            args.append(event_type)
        if state_only:
            clauses += " AND state_key IS NOT NULL"

        def read() -> set[str]:
            rows = self.db.execute(
                "sync_rooms_with_events",
                "SELECT DISTINCT room_id FROM events WHERE room_id = ANY(%s) AND stream_ordering > %s"
                f" AND stream_ordering <= %s AND NOT outlier{clauses}", (room_ids, after, upto, *args))
            with_events = {row[0] for row in rows}
            for room_id in room_ids:
                self._has_events_cache.put((room_id, *key), room_id in with_events)
            return with_events
        return found | self._has_events_reads.run((tuple(room_ids), *key), read)

    def get_member_counts(self, room_ids: list[str]) -> dict[str, tuple[int, int]]:
        """room ID -> (joined, invited) member counts, as of now (kept by a trigger)."""
        if not room_ids:
            return {}
        rows = self.db.execute("sync_member_counts",
                               "SELECT room_id, joined_members, invited_members FROM room_member_counts"
                               " WHERE room_id = ANY(%s)", (list(room_ids),))
        return {room_id: (joined, invited) for room_id, joined, invited in rows}

    def get_current_state_ids(self, room_ids: list[str], keys: list[tuple[str, str]]) -> dict[str, dict]:
        """room ID -> {(type, state_key): event_id} of the given entries of each room's current state."""
        if not room_ids or not keys:
            return {}
        rows = self.db.execute(
            "sync_current_state_keys",
            "SELECT c.room_id, c.type, c.state_key, c.event_id FROM current_state_events c"
            " JOIN unnest(%s::text[], %s::text[]) AS k(type, state_key)"
            " ON c.type = k.type AND c.state_key = k.state_key WHERE c.room_id = ANY(%s)",
            ([t for t, _ in keys], [sk for _, sk in keys], list(room_ids)))
        result: dict[str, dict] = {}
        for room_id, event_type, state_key, event_id in rows:
            result.setdefault(room_id, {})[(event_type, state_key)] = event_id
        return result

    def get_heroes(self, room_ids: list[str], user_id: str, limit: int = 5) -> dict[str, list[str]]:
        """room ID -> up to `limit` members other than `user_id` for a room summary: those joined
        or invited in the order they became members, or, with none, those who left or were
        banned (client-server API, `m.heroes`). Reads every member row of the room: O(room size),
        but only for rooms whose summary a sync sends (new to the client, or whose membership
        changed)."""
        if not room_ids:
            return {}
        rows = self.db.execute(
            "sync_heroes",
            "SELECT room_id, user_id, membership FROM ("
            " SELECT c.room_id, c.state_key AS user_id, c.membership, row_number() OVER ("
            "  PARTITION BY c.room_id ORDER BY c.membership IN ('join', 'invite') DESC, m.stream_ordering) AS rank"
            " FROM current_state_events c JOIN room_memberships m ON m.event_id = c.event_id"
            " WHERE c.room_id = ANY(%s) AND c.type = 'm.room.member' AND c.state_key <> %s"
            " AND c.membership IN ('join', 'invite', 'leave', 'ban')) h"
            " WHERE rank <= %s ORDER BY room_id, rank", (list(room_ids), user_id, limit))
        found: dict[str, list[tuple[str, str]]] = {}
        for room_id, member, membership in rows:
            found.setdefault(room_id, []).append((member, membership))
        heroes = {}
        for room_id, members in found.items():
            active = [m for m, membership in members if membership in ("join", "invite")]
            heroes[room_id] = active or [m for m, _ in members]
        return heroes


def _filter_clauses(event_filter) -> tuple[list[str], list]:
    """SQL for a RoomEventFilter's types, senders and contains_url (as /messages applies them)."""
    if event_filter is None:
        return [], []
    clauses, args = [], []
    # Types may hold '*' wildcards; senders are matched exactly, as the in-memory filter does.
    # No stored type or sender holds NUL, so such entries match nothing and are left out.
    for values, negate in ((event_filter.types, False), (event_filter.not_types or None, True)):
        if values is not None:
            clauses.append(f"{'NOT ' if negate else ''}(e.type LIKE ANY(%s))")
            args.append([wildcard_to_like(v) for v in values if "\x00" not in v])
    for values, negate in ((event_filter.senders, False), (event_filter.not_senders or None, True)):
        if values is not None:
            clauses.append(f"{'NOT ' if negate else ''}(e.sender = ANY(%s))")
            args.append([v for v in values if "\x00" not in v])
    if event_filter.contains_url is not None:
        clauses.append("e.contains_url = %s")
        args.append(event_filter.contains_url)
    return clauses, args
