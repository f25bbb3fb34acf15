"""Event relationships: child events of a parent, the material of bundled aggregations, and
the thread list.

event_relations holds one row per child event (written with the event by EventStore); the
`threads` and `thread_participants` summaries are kept by triggers on event_relations and
redactions (002_rooms_events.sql, "Event relationships").

Every query here counts a child only if it is in the same room as asked, and not redacted:
"when a child event is redacted then the relationship is broken" (Aggregations of child events).
"""

from hs.caches import SingleFlight
from hs.storage.database import Database

# As EventStore.get_redactions: a redaction applies only within its own room.
_NOT_REDACTED = ("NOT EXISTS (SELECT 1 FROM redactions d JOIN events x ON x.event_id = d.event_id"
                 " WHERE d.redacts = e.event_id AND x.room_id = e.room_id)")
# The relationship types the server aggregates (m.annotation is not: Event annotations,
# "Server-side aggregation of m.annotation relationships").
AGGREGATED_TYPES = ("m.replace", "m.thread", "m.reference")

Position = tuple[int, int]


def _until(until: Position | None) -> tuple[str, list]:
    """The clause (and its arguments) keeping children up to the reader's leave."""
    if until is None:
        return "", []
    return " AND (e.topological_ordering, e.stream_ordering) <= (%s, %s)", [until[0], until[1]]


class RelationStore:
    def __init__(self, db: Database):
        self.db = db
        # One message wakes every member's parked /sync, and each bundles the same new events.
        self._relation_type_reads = SingleFlight()

    # --- /relations ----------------------------------------------------------------------------

    def get_children_page(self, room_id: str, parent_id: str, *, rel_type: str | None, event_type: str | None,
                          from_pos: Position | None, to_pos: Position | None, backwards: bool, limit: int,
                          until: Position | None, max_depth: int) -> list[tuple[str, int, int]]:
        """(event_id, topological, stream) of the children of `parent_id`, and with max_depth > 1
        their children in turn, in topological order strictly after (before, going backwards)
        `from_pos` and not reaching `to_pos` (both exclusive, as on /messages). The type filters
        hold at every level: a child reached only through a non-matching event is left out
        (Relationships API)."""
        args: dict = {"parent": parent_id, "room": room_id, "max_depth": max_depth, "limit": limit}
        match = ["e.room_id = %(room)s", _NOT_REDACTED]
        if rel_type is not None:
            match.append("r.relation_type = %(rel_type)s")
            args["rel_type"] = rel_type
        if event_type is not None:
            match.append("e.type = %(event_type)s")
            args["event_type"] = event_type
        where = " AND ".join(match)
        op, order = ("<", "DESC") if backwards else (">", "ASC")
        bounds = ""
        if from_pos is not None:
            bounds += f" AND (e.topological_ordering, e.stream_ordering) {op} (%(from_t)s, %(from_s)s)"
            args.update(from_t=from_pos[0], from_s=from_pos[1])
        if to_pos is not None:
            # Exclusive, as on /messages: the token stands for an event the client has.
            bounds += f" AND (e.topological_ordering, e.stream_ordering) {'>' if backwards else '<'} (%(to_t)s, %(to_s)s)"
            args.update(to_t=to_pos[0], to_s=to_pos[1])
        if until is not None:
            bounds += " AND (e.topological_ordering, e.stream_ordering) <= (%(until_t)s, %(until_s)s)"
            args.update(until_t=until[0], until_s=until[1])
        # A child has one parent (event_relations is keyed by the child), so the walk is a tree;
        # the depth bound also ends it should forged event IDs ever make a cycle.
        rows = self.db.execute(
            "relation_children_page",
            "WITH RECURSIVE related(event_id, depth) AS ("
            f" SELECT r.event_id, 1 FROM event_relations r JOIN events e ON e.event_id = r.event_id"
            f" WHERE r.relates_to_id = %(parent)s AND {where}"
            " UNION"
            " SELECT r.event_id, related.depth + 1 FROM related"
            " JOIN event_relations r ON r.relates_to_id = related.event_id"
            f" JOIN events e ON e.event_id = r.event_id WHERE related.depth < %(max_depth)s AND {where})"
            " SELECT DISTINCT e.event_id, e.topological_ordering, e.stream_ordering"
            f" FROM related JOIN events e ON e.event_id = related.event_id WHERE e.event_id <> %(parent)s{bounds}"
            f" ORDER BY e.topological_ordering {order}, e.stream_ordering {order} LIMIT %(limit)s", args)
        return [tuple(row) for row in rows]

    # --- bundled aggregations ------------------------------------------------------------------

    def get_relation_types(self, parent_ids: list[str]) -> dict[str, set[str]]:
        """parent ID -> the aggregated relationship types pointing at it: one index lookup per
        page, so a page of events nobody related to costs nothing more."""
        rows = self._relation_type_reads.run(tuple(parent_ids), lambda: self.db.execute(
            "relation_types",
            "SELECT DISTINCT relates_to_id, relation_type FROM event_relations"
            " WHERE relates_to_id = ANY(%s) AND relation_type = ANY(%s)", (parent_ids, list(AGGREGATED_TYPES))))
        found: dict[str, set[str]] = {}
        for parent_id, rel_type in rows:
            found.setdefault(parent_id, set()).add(rel_type)
        return found

    def get_edit_candidates(self, room_id: str, parent_ids: list[str], *, until: Position | None,
                            per_parent: int) -> dict[str, list[str]]:
        """parent ID -> up to `per_parent` replacements, most recent first, that pass the rules
        SQL can check (Validity of replacement events: same room, same sender, same type, no
        state_key on either). Most recent means the largest origin_server_ts, then the
        lexicographically largest event_id (compared as bytes, hence COLLATE "C")."""
        until_sql, until_args = _until(until)
        rows = self.db.execute(
            "edit_candidates",
            "SELECT r.relates_to_id, (array_agg(r.event_id ORDER BY e.origin_server_ts DESC,"
            " e.event_id COLLATE \"C\" DESC))[1:%s]"
            " FROM event_relations r JOIN events e ON e.event_id = r.event_id"
            " JOIN events p ON p.event_id = r.relates_to_id"
            " WHERE r.relates_to_id = ANY(%s) AND r.relation_type = 'm.replace' AND e.room_id = %s"
            " AND p.room_id = e.room_id AND e.sender = p.sender AND e.type = p.type"
            f" AND e.state_key IS NULL AND p.state_key IS NULL AND {_NOT_REDACTED}{until_sql}"
            " GROUP BY r.relates_to_id", [per_parent, parent_ids, room_id, *until_args])
        return {parent_id: list(ids) for parent_id, ids in rows}

    def get_thread_summaries(self, room_id: str, root_ids: list[str], user_id: str, *, until: Position | None,
                             latest: int) -> dict[str, tuple[int, bool, list[str]]]:
        """root ID -> (number of replies, whether `user_id` sent one, the `latest` most recent
        replies topologically, newest first)."""
        until_sql, until_args = _until(until)
        rows = self.db.execute(
            "thread_summaries",
            "SELECT r.relates_to_id, count(*), bool_or(e.sender = %s),"
            " (array_agg(r.event_id ORDER BY e.topological_ordering DESC, e.stream_ordering DESC))[1:%s]"
            " FROM event_relations r JOIN events e ON e.event_id = r.event_id"
            " WHERE r.relates_to_id = ANY(%s) AND r.relation_type = 'm.thread' AND e.room_id = %s"
            f" AND {_NOT_REDACTED}{until_sql} GROUP BY r.relates_to_id",
            [user_id, latest, root_ids, room_id, *until_args])
        return {root_id: (count, participated, list(ids)) for root_id, count, participated, ids in rows}

    def get_references(self, room_id: str, parent_ids: list[str], *, until: Position | None) -> dict[str, list[str]]:
        """parent ID -> the events referencing it (m.reference), in topological order."""
        until_sql, until_args = _until(until)
        rows = self.db.execute(
            "references",
            "SELECT r.relates_to_id, array_agg(r.event_id ORDER BY e.topological_ordering, e.stream_ordering)"
            " FROM event_relations r JOIN events e ON e.event_id = r.event_id"
            " WHERE r.relates_to_id = ANY(%s) AND r.relation_type = 'm.reference' AND e.room_id = %s"
            f" AND {_NOT_REDACTED}{until_sql} GROUP BY r.relates_to_id", [parent_ids, room_id, *until_args])
        return {parent_id: list(ids) for parent_id, ids in rows}

    # --- /threads ------------------------------------------------------------------------------

    def get_threads_page(self, room_id: str, *, from_pos: Position | None, limit: int, participant: str | None,
                         roots_until: Position | None) -> list[tuple[str, int, int]]:
        """(root event ID, position of the thread's latest reply) of the threads whose root is
        in the room, most recent activity first, strictly before `from_pos`. With `participant`,
        only threads that user started or replied in."""
        args: list = []
        join = ""
        if participant is not None:
            join = (" JOIN thread_participants p ON p.room_id = t.room_id AND p.thread_id = t.thread_id"
                    " AND p.user_id = %s")
            args.append(participant)
        clauses = ["t.room_id = %s"]
        args.append(room_id)
        if from_pos is not None:
            clauses.append("(t.topological_ordering, t.stream_ordering) < (%s, %s)")
            args += [from_pos[0], from_pos[1]]
        if roots_until is not None:
            clauses.append("(root.topological_ordering, root.stream_ordering) <= (%s, %s)")
            args += [roots_until[0], roots_until[1]]
        args.append(limit)
        rows = self.db.execute(
            "threads_page",
            "SELECT t.thread_id, t.topological_ordering, t.stream_ordering FROM threads t"
            " JOIN events root ON root.event_id = t.thread_id AND root.room_id = t.room_id"
            f"{join} WHERE {' AND '.join(clauses)}"
            " ORDER BY t.topological_ordering DESC, t.stream_ordering DESC LIMIT %s", args)
        return [tuple(row) for row in rows]

    # --- checks on new events ------------------------------------------------------------------

    def has_relation(self, room_id: str, event_id: str) -> bool:
        """Whether the event (in this room, not redacted) is itself the child of a relationship."""
        rows = self.db.execute(
            "event_has_relation",
            "SELECT 1 FROM event_relations r JOIN events e ON e.event_id = r.event_id"
            f" WHERE r.event_id = %s AND e.room_id = %s AND {_NOT_REDACTED}", (event_id, room_id))
        return bool(rows)

    def has_annotated(self, room_id: str, target_id: str, event_type: str, key: str, sender: str) -> bool:
        """Whether `sender` already annotated the target with this event type and key (and
        that annotation is not redacted)."""
        rows = self.db.execute(
            "has_annotated",
            "SELECT 1 FROM event_relations r JOIN events e ON e.event_id = r.event_id"
            " WHERE r.relates_to_id = %s AND r.relation_type = 'm.annotation' AND r.aggregation_key = %s"
            f" AND e.sender = %s AND e.type = %s AND e.room_id = %s AND {_NOT_REDACTED} LIMIT 1",
            (target_id, key, sender, event_type, room_id))
        return bool(rows)
