"""Event relationships (client-server API "Forming relationships between events", "Event
replacements", "Threading", "Reference relations", "Event annotations and reactions"):

- the child events of a parent (GET /relations), optionally through relations of relations;
- bundled aggregations under unsigned.m.relations (m.replace, m.thread, m.reference), set as
  RoomReadHandler.bundled_aggregations so every read path that serializes events has them;
- the room's threads by latest activity (GET /threads);
- the checks on a new event that relates to another (no thread off an event that is itself a
  child; no second identical annotation).

Children are shown only as far as the reader may see them: a reader who left sees no child
sent after they left, and the events an aggregation names pass RoomReadHandler.visible.
"""

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.events.client_format import client_event
from hs.handlers.room_reads import RoomAccess, pagination_token, parse_pagination_token
from hs.storage.events import StoredEvent

REPLACE, THREAD, REFERENCE, ANNOTATION = "m.replace", "m.thread", "m.reference", "m.annotation"
# "Homeservers SHOULD traverse at least 3 levels of relationships" (recurse, Relationships API).
RECURSION_DEPTH = 3
# Candidates fetched per parent for its latest edit and for its thread's latest reply: the
# first that is valid and visible is shown. Only the original's sender can make a replacement
# count, so only they can push a valid edit out of this window with newer invalid ones.
CANDIDATES = 5
DUPLICATE_ANNOTATION = "M_DUPLICATE_ANNOTATION"
# Content checks are registered per event type: the types clients relate with.
RELATING_EVENT_TYPES = ("m.room.message", "m.room.encrypted", "m.sticker", "m.reaction")


def rel_type_of(content: dict) -> str | None:
    relates = content.get("m.relates_to")
    if not isinstance(relates, dict):
        return None
    rel_type = relates.get("rel_type")
    return rel_type if isinstance(rel_type, str) and isinstance(relates.get("event_id"), str) else None


def _is_valid_edit(stored: StoredEvent) -> bool:
    """What SQL does not check of "Validity of replacement events": m.new_content, which an
    encrypted replacement carries inside its ciphertext."""
    event = stored.event
    return stored.redacted_by is None and (event.type == "m.room.encrypted"
                                           or isinstance(event.content.get("m.new_content"), dict))


class RelationHandler:
    def __init__(self, relations, events, reads):
        self.relations = relations
        self.events = events
        self.reads = reads

    def register_content_checks(self, event_creation) -> None:
        for event_type in RELATING_EVENT_TYPES:
            event_creation.add_content_check(
                event_type, lambda room_id, sender, content, t=event_type: self.check_new_event(
                    room_id, sender, t, content))

    # --- checks on new events ------------------------------------------------------------------

    def check_new_event(self, room_id: str, sender: str, event_type: str, content: dict) -> None:
        rel_type = rel_type_of(content)
        if rel_type is None:
            return
        relates = content["m.relates_to"]
        target = relates["event_id"]
        if rel_type == THREAD and self.relations.has_relation(room_id, target):
            # Threading, "Validation of m.thread relationships": 400 with M_UNKNOWN, as no
            # specific code exists.
            raise MatrixError(400, Codes.UNKNOWN, "Cannot start a thread from an event with a relation")
        key = relates.get("key")
        if rel_type == ANNOTATION and isinstance(key, str) and self.relations.has_annotated(
                room_id, target, event_type, key, sender):
            raise MatrixError(400, DUPLICATE_ANNOTATION, "You have already sent this annotation")

    # --- GET /relations ------------------------------------------------------------------------

    def get_relations(self, requester, room_id: str, event_id: str, *, rel_type: str | None,
                      event_type: str | None, from_token: str | None, to_token: str | None, direction: str,
                      limit: int, recurse: bool | None) -> dict:
        from_pos = parse_pagination_token(from_token) if from_token is not None else None
        to_pos = parse_pagination_token(to_token) if to_token is not None else None
        access = self._parent_access(requester, room_id, event_id)
        depth = RECURSION_DEPTH if recurse else 1
        rows = self.relations.get_children_page(
            room_id, event_id, rel_type=rel_type, event_type=event_type, from_pos=from_pos, to_pos=to_pos,
            backwards=direction == "b", limit=limit + 1, until=access.until, max_depth=depth)
        more = len(rows) > limit
        rows = rows[:limit]
        found = self.events.get_events([row[0] for row in rows])
        page = self.reads.visible(requester.user_id, [found[row[0]] for row in rows if row[0] in found], access)
        body: dict = {"chunk": self.reads.serialize(page, room_id, requester)}
        if more:
            # The last event looked at, shown or not, so hidden events leave no gap.
            body["next_batch"] = pagination_token((rows[-1][1], rows[-1][2]))
        if from_token is not None:
            body["prev_batch"] = from_token
        if recurse is not None:
            body["recursion_depth"] = depth
        return body

    def _parent_access(self, requester, room_id: str, event_id: str) -> RoomAccess:
        """The reader's access, if they may see the parent; else 404, which the spec gives for
        "not found or the user does not have permission to read this event"."""
        not_found = MatrixError(404, Codes.NOT_FOUND, "Event not found")
        try:
            access = self.reads.access(requester.user_id, room_id)
        except MatrixError as e:
            if e.status in (403, 404):
                raise not_found from None
            raise
        parent = self.events.get_event(event_id)
        if (parent is None or parent.event.room_id_in_any_version != room_id
                or (access.until is not None
                    and (parent.topological_ordering, parent.stream_ordering) > access.until)
                or not self.reads.visible(requester.user_id, [parent], access)):
            raise not_found
        return access

    # --- GET /threads --------------------------------------------------------------------------

    def get_threads(self, requester, room_id: str, *, include: str, from_token: str | None, limit: int) -> dict:
        from_pos = parse_pagination_token(from_token) if from_token is not None else None
        try:
            access = self.reads.access(requester.user_id, room_id)
        except MatrixError as e:
            if e.status == 404:  # threads_list.yaml gives 403 for a room that does not exist
                raise MatrixError(403, Codes.FORBIDDEN, "You are not allowed to view this room") from None
            raise
        rows = self.relations.get_threads_page(
            room_id, from_pos=from_pos, limit=limit + 1,
            participant=requester.user_id if include == "participated" else None, roots_until=access.until)
        more = len(rows) > limit
        rows = rows[:limit]
        found = self.events.get_events([row[0] for row in rows])
        roots = self.reads.visible(requester.user_id, [found[row[0]] for row in rows if row[0] in found], access)
        chunk = self.reads.serialize(roots, room_id, requester)
        # serialize leaves redacted events without aggregations (it must: their edits are not
        # shown), but a redacted root is still the root of its thread.
        redacted = [s.event.event_id for s in roots if s.redacted_by]
        if redacted:
            summaries = self._aggregate_room(room_id, {eid: found[eid] for eid in redacted},
                                             {eid: {THREAD} for eid in redacted}, requester, {room_id: access},
                                             threads=True)
            for event in chunk:
                if event["event_id"] in summaries and "m.relations" not in event["unsigned"]:
                    event["unsigned"]["m.relations"] = summaries[event["event_id"]]
        body: dict = {"chunk": chunk}
        if more:
            body["next_batch"] = pagination_token((rows[-1][1], rows[-1][2]))
        return body

    # --- bundled aggregations ------------------------------------------------------------------

    def bundled_aggregations(self, event_ids: list[str], requester) -> dict[str, dict]:
        """event ID -> its m.relations, for the events of one page: a fixed number of queries
        for the page, whatever its size. Without a reader (state listings) there is nothing to
        bundle: "State events do not currently receive bundled aggregations"."""
        if requester is None or not event_ids:
            return {}
        return self._aggregate(event_ids, requester, threads=True)

    def _aggregate(self, event_ids: list[str], requester, *, threads: bool,
                   accesses: dict[str, RoomAccess] | None = None) -> dict[str, dict]:
        kinds = self.relations.get_relation_types(list(dict.fromkeys(event_ids)))
        if not kinds:
            return {}
        parents = self.events.get_events(kinds)
        by_room: dict[str, dict[str, StoredEvent]] = {}
        for event_id, stored in parents.items():
            # An edit or an annotation has no children that count (an edit of an edit is not
            # valid, and annotations of either are ignored), as Synapse also has it.
            if stored.event.is_state() or rel_type_of(stored.event.content) in (REPLACE, ANNOTATION):
                continue
            by_room.setdefault(stored.event.room_id_in_any_version, {})[event_id] = stored
        accesses = {} if accesses is None else accesses
        result: dict[str, dict] = {}
        for room_id, room_parents in by_room.items():
            if room_id not in accesses:
                try:
                    accesses[room_id] = self.reads.access(requester.user_id, room_id)
                except MatrixError:
                    continue
            result.update(self._aggregate_room(room_id, room_parents, kinds, requester, accesses, threads=threads))
        return result

    def _aggregate_room(self, room_id: str, parents: dict[str, StoredEvent], kinds: dict[str, set[str]],
                        requester, accesses: dict[str, RoomAccess], *, threads: bool) -> dict[str, dict]:
        access = accesses[room_id]

        def having(rel_type):
            return [eid for eid in parents if rel_type in kinds.get(eid, ())]

        # "If the original event is redacted, any m.replace relationship should not be bundled
        # with it."
        edits = self._latest_edits(room_id, [eid for eid in having(REPLACE) if parents[eid].redacted_by is None],
                                   requester, access)
        thread_roots = [eid for eid in having(THREAD) if rel_type_of(parents[eid].event.content) is None] \
            if threads else []
        summaries, latest = self._threads(room_id, thread_roots, requester, access)
        references = self.relations.get_references(room_id, having(REFERENCE), until=access.until) \
            if having(REFERENCE) else {}
        # The latest reply's own children: its edits and references. Not threads: a reply cannot
        # be a thread root, and stopping here keeps a forged loop from recursing.
        nested = self._aggregate([s.event.event_id for s in latest.values()], requester, threads=False,
                                 accesses=accesses) if latest else {}
        shown = [*edits.values(), *latest.values()]
        txn_ids = self.events.get_txn_ids(requester.user_id, requester.txn_device_id,
                                          [s.event.event_id for s in shown if s.event.sender == requester.user_id])
        now = now_ms()

        def serialize(stored: StoredEvent, relations=None) -> dict:
            # Built here rather than by RoomReadHandler.serialize, which would call back into
            # this hook.
            return client_event(stored.event, room_id, now_ms=now, relations=relations,
                                transaction_id=txn_ids.get(stored.event.event_id))

        result: dict[str, dict] = {}
        for parent_id, edit in edits.items():
            result.setdefault(parent_id, {})[REPLACE] = serialize(edit)
        for root_id, (count, participated) in summaries.items():
            reply = latest[root_id]
            result.setdefault(root_id, {})[THREAD] = {
                "latest_event": serialize(reply, nested.get(reply.event.event_id)),
                "count": count,
                "current_user_participated": participated or parents[root_id].event.sender == requester.user_id,
            }
        for parent_id, ids in references.items():
            result.setdefault(parent_id, {})[REFERENCE] = {"chunk": [{"event_id": eid} for eid in ids]}
        return result

    def _latest_edits(self, room_id: str, parent_ids: list[str], requester, access: RoomAccess) -> dict:
        """parent ID -> the most recent valid replacement the reader may see (Server-side
        aggregation of m.replace relationships)."""
        if not parent_ids:
            return {}
        candidates = self.relations.get_edit_candidates(room_id, parent_ids, until=access.until,
                                                        per_parent=CANDIDATES)
        loaded = self.events.get_events([eid for ids in candidates.values() for eid in ids])
        valid = {parent_id: [loaded[eid] for eid in ids if eid in loaded and _is_valid_edit(loaded[eid])]
                 for parent_id, ids in candidates.items()}
        return self._first_visible(valid, requester, access)

    def _threads(self, room_id: str, root_ids: list[str], requester, access: RoomAccess) -> tuple[dict, dict]:
        """({root ID: (count, whether the reader replied)}, {root ID: latest reply}) for the
        roots with a reply the reader may see (Server-side aggregation of m.thread
        relationships: the latest reply is the most recent topologically)."""
        if not root_ids:
            return {}, {}
        rows = self.relations.get_thread_summaries(room_id, root_ids, requester.user_id, until=access.until,
                                                   latest=CANDIDATES)
        loaded = self.events.get_events([eid for _, _, ids in rows.values() for eid in ids])
        latest = self._first_visible({root_id: [loaded[eid] for eid in ids if eid in loaded]
                                      for root_id, (_, _, ids) in rows.items()}, requester, access)
        return {root_id: (count, participated) for root_id, (count, participated, _) in rows.items()
                if root_id in latest}, latest

    def _first_visible(self, candidates: dict[str, list[StoredEvent]], requester, access: RoomAccess) -> dict:
        """key -> the first of its candidates the reader may see: one visibility check for the
        first candidates of every key, and another only for keys whose first is hidden (history
        the reader cannot see between the parent and now: rare)."""
        chosen = {}
        pending = {key: list(events) for key, events in candidates.items() if events}
        while pending:
            firsts = [events[0] for events in pending.values()]
            shown = {s.event.event_id for s in self.reads.visible(requester.user_id, firsts, access)}
            for key in list(pending):
                head = pending[key].pop(0)
                if head.event.event_id in shown:
                    chosen[key] = head
                if key in chosen or not pending[key]:
                    del pending[key]
        return chosen
