"""Events: persisting them with their edges, and reading them back."""

import json
from dataclasses import dataclass

from hs.caches import LruCache
from hs.events.event import Event
from hs.events.redaction import prune_event_dict
from hs.events.room_versions import get_room_version
from hs.filtering import content_has_url, wildcard_to_like
from hs.storage.database import Database


@dataclass
class StoredEvent:
    event: Event
    stream_ordering: int
    topological_ordering: int
    replaces_state: str | None
    # The redaction event that applies to this event, if any.
    redacted_by: str | None = None

    @property
    def effective_event(self) -> Event:
        """The event as the auth rules see it now: once redacted, its redacted form (a redacted
        power levels event in v1-v10 loses `invite`, and every version drops `notifications`)."""
        if self.redacted_by is None:
            return self.event
        event = self.event
        return Event(prune_event_dict(event.room_version, event.pdu), event.room_version, event.event_id)


@dataclass
class PersistPlan:
    """What a new event writes besides itself; the handler decides, the store writes."""
    event: Event
    stream_ordering: int
    state_group: int
    replaces_state: str | None
    new_state_group: tuple | None = None  # (prev_group, entries, delta_depth) to insert first
    txn_key: tuple | None = None  # (user_id, device_id, scope, txn_id)
    relation: tuple | None = None  # (relates_to_id, rel_type, aggregation_key)
    search_key: str | None = None
    now_ms: int = 0
    # An event received over federation that is not (or not yet) in the timeline: written with
    # its edges and, if known, its state group, and nothing else (see migration 020).
    outlier: bool = False
    # Received history (backfill): in the timeline, but neither a forward extremity nor current state.
    backfilled: bool = False
    # The change to the room's current state, when it is not just "this event now holds its
    # key": a resolution over forked extremities. (type, state_key) -> (event_id, membership),
    # or None to remove the key.
    current_state_delta: dict | None = None
    # False for an invite or knock to a room this server is not in: the event is the user's
    # membership, but not a place in the room's graph to build on.
    forward_extremity: bool = True
    # A received redaction takes effect only if its sender may redact the target (checked by
    # the caller); local ones are checked before they are made.
    redaction_applies: bool = True


_EVENT_COLUMNS = "e.event_id, e.stream_ordering, e.topological_ordering, e.replaces_state, e.json, r.room_version"


class EventStore:
    def __init__(self, db: Database, state_store):
        self.db = db
        self.state = state_store
        self._cache = LruCache("event", 20_000, invalidated_by="nothing: an event's JSON never changes "
                               "(redactions are looked up separately and applied on read)")

    # --- writing -----------------------------------------------------------------------------

    def persist_event_txn(self, cur, plan: PersistPlan, room_id: str) -> int:
        """Writes the event and everything derived from it; returns the state group after it.
        `room_id` is given because a room version 12 create event does not carry it."""
        event = plan.event
        state_group = plan.state_group
        if plan.new_state_group is not None:
            prev_group, entries, depth = plan.new_state_group
            state_group = self.state.insert_state_group_txn(cur, room_id, prev_group, entries, depth)
        contains_url = content_has_url(event.content)
        cur.execute(
            "INSERT INTO events (stream_ordering, topological_ordering, event_id, room_id, type, state_key,"
            " sender, origin_server_ts, contains_url, replaces_state, json, outlier)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (plan.stream_ordering, event.depth, event.event_id, room_id, event.type, event.state_key,
             event.sender, event.origin_server_ts, contains_url, plan.replaces_state,
             json.dumps(event.pdu, ensure_ascii=False, separators=(",", ":")), plan.outlier))
        if plan.outlier:
            self._insert_edges_txn(cur, event)
            if event.type == "m.room.member" and isinstance(event.membership, str):
                # Member lists join current state with these rows, and after a join over
                # federation the members' events are outliers.
                self._insert_membership_txn(cur, event, room_id, plan.stream_ordering)
            if state_group is not None:
                cur.execute("INSERT INTO event_to_state_groups (event_id, state_group) VALUES (%s, %s)"
                            " ON CONFLICT DO NOTHING", (event.event_id, state_group))
            return state_group
        self._insert_edges_txn(cur, event)
        if not plan.backfilled and plan.forward_extremity:
            if event.prev_event_ids:
                cur.execute("DELETE FROM event_forward_extremities WHERE room_id = %s AND event_id = ANY(%s)",
                            (room_id, event.prev_event_ids))
            # Unless a known event already points at it (an event fetched to fill a gap).
            cur.execute("INSERT INTO event_forward_extremities (room_id, event_id)"
                        " SELECT %s, %s WHERE NOT EXISTS (SELECT 1 FROM event_edges WHERE prev_event_id = %s)",
                        (room_id, event.event_id, event.event_id))
        cur.execute("INSERT INTO event_to_state_groups (event_id, state_group) VALUES (%s, %s)",
                    (event.event_id, state_group))
        membership = event.membership
        if plan.current_state_delta is not None:
            for (event_type, state_key), value in plan.current_state_delta.items():
                if value is None:
                    self.state.delete_current_state_txn(cur, room_id, event_type, state_key)
                else:
                    self.state.set_current_state_txn(cur, room_id, event_type, state_key, *value)
        elif event.is_state() and not plan.backfilled:
            self.state.set_current_state_txn(cur, room_id, event.type, event.state_key, event.event_id,
                                             membership if isinstance(membership, str) else None)
        if event.is_state() and event.type == "m.room.member" and isinstance(membership, str):
            self._insert_membership_txn(cur, event, room_id, plan.stream_ordering)
        if event.type == "m.room.redaction" and event.redacts and plan.redaction_applies:
            cur.execute("INSERT INTO redactions (event_id, redacts) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        (event.event_id, event.redacts))
        if plan.relation:
            cur.execute("INSERT INTO event_relations (event_id, relates_to_id, relation_type, aggregation_key)"
                        " VALUES (%s, %s, %s, %s)", (event.event_id, *plan.relation))
        if plan.search_key:
            cur.execute(
                "INSERT INTO event_search (event_id, room_id, sender, key, stream_ordering, origin_server_ts, vector)"
                " VALUES (%s, %s, %s, %s, %s, %s, to_tsvector('simple', %s))",
                (event.event_id, room_id, event.sender, plan.search_key, plan.stream_ordering,
                 event.origin_server_ts, _search_text(event, plan.search_key)))
        if plan.txn_key:
            cur.execute("INSERT INTO event_txn_ids (user_id, device_id, scope, txn_id, event_id, created_ts)"
                        " VALUES (%s, %s, %s, %s, %s, %s)", (*plan.txn_key, event.event_id, plan.now_ms))
        return state_group

    @staticmethod
    def _insert_edges_txn(cur, event: Event) -> None:
        if event.prev_event_ids:
            cur.executemany("INSERT INTO event_edges (event_id, prev_event_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                            [(event.event_id, p) for p in event.prev_event_ids])
        if event.auth_event_ids:
            cur.executemany("INSERT INTO event_auth (event_id, auth_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                            [(event.event_id, a) for a in event.auth_event_ids])

    @staticmethod
    def _insert_membership_txn(cur, event: Event, room_id: str, stream_ordering: int) -> None:
        content = event.content
        displayname = content.get("displayname")
        avatar_url = content.get("avatar_url")
        cur.execute(
            "INSERT INTO room_memberships (event_id, stream_ordering, room_id, user_id, sender, membership,"
            " display_name, avatar_url) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (event.event_id, stream_ordering, room_id, event.state_key, event.sender, event.membership,
             _no_nul(displayname), _no_nul(avatar_url)))
        # Joining again brings a forgotten room back.
        if event.membership in ("join", "invite", "knock"):
            cur.execute("DELETE FROM room_forgotten WHERE user_id = %s AND room_id = %s",
                        (event.state_key, room_id))

    # --- reading -----------------------------------------------------------------------------

    def get_events(self, event_ids) -> dict[str, StoredEvent]:
        """The events found, by ID, with the redaction that applies to each."""
        found: dict[str, StoredEvent] = {}
        missing = []
        for event_id in dict.fromkeys(event_ids):
            cached = self._cache.get(event_id)
            if cached is not None:
                found[event_id] = cached
            else:
                missing.append(event_id)
        if missing:
            rows = self.db.execute(
                "get_events",
                f"SELECT {_EVENT_COLUMNS} FROM events e JOIN rooms r USING (room_id) WHERE e.event_id = ANY(%s)",
                (missing,))
            for row in rows:
                stored = _stored_event(row)
                self._cache.put(stored.event.event_id, stored)
                found[stored.event.event_id] = stored
        if found:
            for event_id, redaction_id in self.get_redactions(list(found)).items():
                stored = found[event_id]
                found[event_id] = StoredEvent(stored.event, stored.stream_ordering, stored.topological_ordering,
                                              stored.replaces_state, redaction_id)
        return found

    def forget_cached(self, event_id: str) -> None:
        """For an outlier about to be written again into the timeline (its row changes)."""
        self._cache.invalidate(event_id)

    def get_event(self, event_id: str) -> StoredEvent | None:
        return self.get_events([event_id]).get(event_id)

    def get_redactions(self, event_ids: list[str]) -> dict[str, str]:
        """target event ID -> the earliest redaction of it."""
        rows = self.db.execute(
            "get_redactions",
            "SELECT DISTINCT ON (d.redacts) d.redacts, d.event_id FROM redactions d"
            " JOIN events e ON e.event_id = d.event_id"
            # A redaction only applies within its own room.
            " JOIN events t ON t.event_id = d.redacts AND t.room_id = e.room_id"
            " WHERE d.redacts = ANY(%s)"
            " ORDER BY d.redacts, e.stream_ordering", (event_ids,))
        return dict(rows)

    def get_forward_extremities(self, room_id: str) -> list[tuple[str, int]]:
        """(event_id, depth) of each event the room's next event should point at."""
        return [tuple(row) for row in self.db.execute(
            "forward_extremities",
            "SELECT f.event_id, e.topological_ordering FROM event_forward_extremities f"
            " JOIN events e USING (event_id) WHERE f.room_id = %s", (room_id,))]

    def get_txn_event_id(self, user_id: str, device_id: str, scope: str, txn_id: str) -> str | None:
        rows = self.db.execute("txn_event",
                               "SELECT event_id FROM event_txn_ids WHERE user_id = %s AND device_id = %s"
                               " AND scope = %s AND txn_id = %s", (user_id, device_id, scope, txn_id))
        return rows[0][0] if rows else None

    def get_txn_ids(self, user_id: str, device_id: str, event_ids: list[str]) -> dict[str, str]:
        """event ID -> the transaction ID the device sent it with."""
        if not event_ids:
            return {}
        rows = self.db.execute("txn_ids_for_events",
                               "SELECT event_id, txn_id FROM event_txn_ids WHERE user_id = %s"
                               " AND device_id = %s AND event_id = ANY(%s)", (user_id, device_id, event_ids))
        return dict(rows)

    def get_room_events_page(self, room_id: str, *, from_pos: tuple[int, int], to_pos: tuple[int, int] | None,
                             backwards: bool, limit: int, types=None, not_types=None, senders=None,
                             not_senders=None, contains_url=None) -> list[StoredEvent]:
        """Events of a room in (topological, stream) order strictly after (or before, going
        backwards) `from_pos`, not reaching `to_pos`. Filters are applied in SQL so a page
        is `limit` matching events, not `limit` events minus those filtered out."""
        op, order = ("<", "DESC") if backwards else (">", "ASC")
        clauses = [f"(e.topological_ordering, e.stream_ordering) {op} (%s, %s)"]
        args: list = [from_pos[0], from_pos[1]]
        if to_pos is not None:
            # A token stands for an event the client has (or a point between events): `to`
            # is exclusive in both directions, as `from` is.
            to_op = ">" if backwards else "<"
            clauses.append(f"(e.topological_ordering, e.stream_ordering) {to_op} (%s, %s)")
            args += [to_pos[0], to_pos[1]]
        # Types may hold '*' wildcards; senders are matched exactly, as the in-memory filter does.
        # No stored type or sender holds NUL (nor can PostgreSQL text), so such entries match
        # nothing and are left out.
        for values, negate in ((types, False), (not_types, True)):
            if values is not None:
                clauses.append(f"{'NOT ' if negate else ''}(e.type LIKE ANY(%s))")
                args.append([wildcard_to_like(v) for v in values if "\x00" not in v])
        for values, negate in ((senders, False), (not_senders, True)):
            if values is not None:
                clauses.append(f"{'NOT ' if negate else ''}(e.sender = ANY(%s))")
                args.append([v for v in values if "\x00" not in v])
        if contains_url is not None:
            clauses.append("e.contains_url = %s")
            args.append(contains_url)
        rows = self.db.execute(
            "room_events_page",
            f"SELECT e.event_id FROM events e WHERE e.room_id = %s AND NOT e.outlier AND {' AND '.join(clauses)}"
            f" ORDER BY e.topological_ordering {order}, e.stream_ordering {order} LIMIT %s",
            (room_id, *args, limit))
        found = self.get_events([row[0] for row in rows])
        return [found[row[0]] for row in rows if row[0] in found]

    def get_stream_rows(self, from_id: int, upto_id: int, limit: int | None) -> list[tuple[int, dict]]:
        """The events stream for replication: (stream_ordering, {"event_id", "room_id", "type",
        "state_key"}) in (from_id, upto_id], in order, at most `limit`."""
        rows = self.db.execute("get_event_stream_rows",
                               "SELECT stream_ordering, event_id, room_id, type, state_key FROM events"
                               " WHERE stream_ordering > %s AND stream_ordering <= %s ORDER BY stream_ordering LIMIT %s",
                               (from_id, upto_id, limit))
        return [(r[0], {"event_id": r[1], "room_id": r[2], "type": r[3], "state_key": r[4]}) for r in rows]

    def get_position(self, event_id: str) -> tuple[int, int] | None:
        rows = self.db.execute("event_position",
                               "SELECT topological_ordering, stream_ordering FROM events WHERE event_id = %s",
                               (event_id,))
        return tuple(rows[0]) if rows else None

    def get_position_at_stream(self, room_id: str, stream_ordering: int) -> tuple[int, int] | None:
        """(topological, stream) of the room's last event at or before a stream position."""
        rows = self.db.execute("room_position_at_stream",
                               "SELECT topological_ordering, stream_ordering FROM events WHERE room_id = %s"
                               " AND stream_ordering <= %s AND NOT outlier ORDER BY stream_ordering DESC LIMIT 1",
                               (room_id, stream_ordering))
        return tuple(rows[0]) if rows else None

    def get_max_position(self, room_id: str) -> tuple[int, int]:
        rows = self.db.execute("room_max_position",
                               "SELECT topological_ordering, stream_ordering FROM events WHERE room_id = %s"
                               " AND NOT outlier ORDER BY topological_ordering DESC, stream_ordering DESC LIMIT 1", (room_id,))
        return tuple(rows[0]) if rows else (0, 0)


def _stored_event(row) -> StoredEvent:
    event_id, stream_ordering, topological_ordering, replaces_state, pdu_json, room_version = row
    event = Event(json.loads(pdu_json), get_room_version(room_version), event_id)
    return StoredEvent(event, stream_ordering, topological_ordering, replaces_state)


def _search_text(event: Event, key: str) -> str:
    field = key.rsplit(".", 1)[-1]
    value = event.content.get(field)
    # PostgreSQL text cannot hold NUL, which JSON strings may.
    return value.replace("\x00", " ") if isinstance(value, str) else ""


def _no_nul(value) -> str | None:
    return value.replace("\x00", "") if isinstance(value, str) else None
