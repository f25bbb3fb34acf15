"""The rooms part of /sync: which rooms a response holds, and for each its timeline, state and
summary (joined and left rooms) or its stripped state (invites and knocks).

Everything is read as of `now`, the events stream's persisted-upto position that becomes
`next_batch`: memberships, timelines and state all come from events at or before it (state
through the state group of an event, never from current_state_events, which may already hold
an event committed beyond it). Only the summary's member counts and heroes are read as they
are now; a change beyond `now` shows in them one sync early.

Cost: a fixed number of batched queries for all rooms together, plus one state-group read per
room whose state is sent (cached; groups are immutable). Never a query per event.
"""

from dataclasses import dataclass, field, replace

from hs.caches import LruCache, SingleFlight
from hs.events.client_format import stripped_state_event
from hs.handlers.room_reads import RoomAccess, pagination_token
from hs.storage.events import StoredEvent

TIMELINE_DEFAULT_LIMIT = 10
# Synapse's default `filter_timeline_limit`: a filter may not ask for more events per room.
TIMELINE_MAX_LIMIT = 100
HEROES = 5
MEMBER = "m.room.member"
# Stripped state for invitees and knockers (client-server API "Stripped state": the create
# event is required since v1.16, the others recommended), plus the inviter's member event and
# the user's own invite or knock, which clients read the inviter from.
STRIPPED_STATE_KEYS = [("m.room.create", ""), ("m.room.join_rules", ""), ("m.room.name", ""),
                       ("m.room.avatar", ""), ("m.room.canonical_alias", ""), ("m.room.encryption", ""),
                       ("m.room.topic", "")]


@dataclass
class _Room:
    """One joined or left room in this response, and what is computed for it."""
    room_id: str
    section: str  # "join" or "leave"
    full_state: bool  # initial sync, newly joined, or full_state=true
    after: int  # the timeline holds events in (after, upto]
    upto: int
    since: int | None  # where the state delta starts (when not full_state)
    # Events after this position were sent while the user was joined (after their latest
    # membership event, which is a join): they need no visibility check.
    checked_upto: int
    is_peeking: bool  # has not been joined since (see hs/events/visibility.py)
    never_joined: bool = False
    events: list = field(default_factory=list)
    limited: bool = False
    prev_batch: str | None = None
    state: dict = field(default_factory=dict)  # (type, state_key) -> event_id
    start_state: dict | None = None  # the full state at the start of the timeline, when read
    summary: dict | None = None


class MembershipChanges:
    """Where each user's membership, and each room's members, last changed, for the member events
    this process saw after `start` (its events position when it began following): lets an
    incremental sync reuse a user's membership rows, and skip the device-list membership query,
    while none changed. One int per user and per room with a member event."""

    def __init__(self, start: int):
        self.start = start
        self._last: dict[str, int] = {}
        self._room_last: dict[str, int] = {}  # and where each room's members last changed

    def on_persisted(self, stream_ordering: int, room_id: str, event) -> None:
        """An EventCreationHandler persisted listener: runs before the stream can pass the event,
        so a reader whose `now` includes the change finds it recorded."""
        if event.type == MEMBER and event.state_key:
            self.record(event.state_key, stream_ordering, room_id)

    def record(self, user_id: str, stream_ordering: int, room_id: str) -> None:
        """A member event about `user_id` in `room_id` at `stream_ordering` (on a worker: from
        the events stream)."""
        self._last[user_id] = max(stream_ordering, self._last.get(user_id, 0))
        self._room_last[room_id] = max(stream_ordering, self._room_last.get(room_id, 0))

    def rooms_unchanged_after(self, room_ids, position: int) -> bool:
        """Whether no member event in any of the rooms came after `position` (False when this
        process cannot know)."""
        return position >= self.start and all(self._room_last.get(r, self.start) <= position for r in room_ids)

    def unchanged_after(self, user_id: str, position: int) -> bool:
        """Whether none of the user's memberships changed after `position` (False when this
        process cannot know: before `start`)."""
        return position >= self.start and self._last.get(user_id, self.start) <= position


class RoomSync:
    def __init__(self, store, events, state, reads):
        self.store = store
        self.events = events
        self.state = state
        self.reads = reads
        # Set by the composition root of a process that sees every member event (the master as it
        # persists them, a worker from the events stream); without it every sync reads them.
        self.membership_changes: MembershipChanges | None = None
        self._memberships = LruCache("sync_memberships", 20_000,
                                     invalidated_by="a member event about the user: rows are reused only while "
                                                    "membership_changes shows none after they were read")
        self._timeline_reads = SingleFlight()

    def build(self, requester, since: int | None, now: int, full_state: bool,
              sync_filter) -> tuple[dict, list, list]:
        """({"join": ..., "invite": ..., "leave": ..., "knock": ...}, IDs of the joined rooms the
        filter lets through (a parked request listens on those), IDs of every joined room (what
        is about users, not rooms, such as device lists, ignores the room filter))."""
        user_id = requester.user_id
        room_filter = sync_filter.room
        memberships = self._get_memberships(user_id, now, since)
        all_joined_ids = [r.room_id for r in memberships if r.membership == "join"]
        rows = [r for r in memberships if room_filter.includes_room(r.room_id)]
        joined_ids, rooms, invites, knocks = [], [], [], []
        for row in rows:
            changed = since is None or row.stream_ordering > since
            if row.membership == "join":
                joined_ids.append(row.room_id)
                newly_joined = since is None or row.membership_at_since != "join"
                if newly_joined or full_state or since < now:
                    # A newly joined room is an initial sync for that room: recent events, full state.
                    rooms.append(_Room(row.room_id, "join", full_state or newly_joined,
                                       after=0 if newly_joined else since, upto=now,
                                       since=None if newly_joined else since,
                                       checked_upto=row.stream_ordering, is_peeking=False))
            elif row.membership in ("invite", "knock") and changed:
                (invites if row.membership == "invite" else knocks).append(row)
            # A left room shows once, in the sync after the leave; in an initial sync only when
            # the filter asks for left rooms; never once forgotten.
            elif row.membership in ("leave", "ban") and not row.forgotten and (
                    room_filter.include_leave if since is None else changed):
                joined_at_since = since is not None and row.membership_at_since == "join"
                rooms.append(_Room(row.room_id, "leave", full_state or not joined_at_since,
                                   after=since if joined_at_since else 0, upto=row.stream_ordering,
                                   since=since if joined_at_since else None,
                                   checked_upto=row.stream_ordering, is_peeking=not row.ever_joined,
                                   never_joined=not row.ever_joined))
        self._load_timelines(rooms, user_id, sync_filter)
        rooms = self._load_state(rooms, user_id, sync_filter)
        self._load_summaries(rooms, user_id, since, now)
        if room_filter.state.lazy_load_members:
            self._lazy_load_members(rooms, user_id)
        body = {"join": {}, "invite": {}, "leave": {}, "knock": {}}
        body.update(self._serialize_rooms(rooms, requester, sync_filter))
        body["invite"] = self._stripped_rooms(invites, user_id, "invite_state")
        body["knock"] = self._stripped_rooms(knocks, user_id, "knock_state")
        return body, joined_ids, all_joined_ids

    def _get_memberships(self, user_id: str, now: int, since: int | None) -> list:
        """The store's get_memberships, without a query when the user's memberships did not change
        after the rows last read for them nor after `since` (a long-poll woken by a message: the
        rows are those of `since`, and of `now`)."""
        changes = self.membership_changes
        if changes is None:
            return self.store.get_memberships(user_id, now, since)
        cached = self._memberships.get(user_id) if since is not None else None
        if cached is not None and changes.unchanged_after(user_id, min(cached[0], since)):
            return [replace(row, membership_at_since=row.membership) for row in cached[1]]
        rows = self.store.get_memberships(user_id, now, since)
        self._memberships.put(user_id, (now, rows))
        return rows

    # --- timelines -------------------------------------------------------------------------------

    def _load_timelines(self, rooms: list[_Room], user_id: str, sync_filter) -> None:
        timeline_filter = sync_filter.room.timeline
        limit = timeline_filter.limit_or(default=TIMELINE_DEFAULT_LIMIT, maximum=TIMELINE_MAX_LIMIT)
        ranges = [(r.room_id, r.after, r.upto) for r in rooms
                  if r.after < r.upto and timeline_filter.includes_room(r.room_id)]

        def read():
            # One more than the limit: whether there was more tells `limited`.
            ids = self.store.get_timeline_event_ids(ranges, limit + 1, timeline_filter)
            return ids, self.events.get_events([e for room_ids in ids.values() for e in room_ids])

        # The members a message wakes ask for the same range together: one of them reads it.
        # (Not with a filter of types or senders: that is one user's, and rarely shared.)
        if _restricts(timeline_filter):
            ids, loaded = read()
        else:
            ids, loaded = self._timeline_reads.run((tuple(ranges), limit), read)
        newest = {r.room_id: [loaded[e] for e in ids.get(r.room_id, ()) if e in loaded] for r in rooms}
        # The visibility rules, in one batch per kind of reader, for the events not known to be
        # visible: those up to the user's latest membership event (history before they joined,
        # and everything in a room they left). After a join every event is visible to them (their
        # membership at each is join) in a room whose events form one line, as a room of local
        # users does; events sent concurrently by other servers could have a state where they
        # are not joined, which this shortcut does not see.
        to_check: dict[bool, list[StoredEvent]] = {}
        for r in rooms:
            to_check.setdefault(r.is_peeking, []).extend(
                s for s in newest[r.room_id][:limit] if s.stream_ordering <= r.checked_upto)
        shown_ids = set()
        for is_peeking, stored in to_check.items():
            access = RoomAccess(None, None, None, is_peeking=is_peeking)
            shown_ids.update(s.event.event_id for s in self.reads.visible(user_id, stored, access))
        for r in rooms:
            window = newest[r.room_id][:limit][::-1]
            r.events = [s for s in window if s.stream_ordering > r.checked_upto or s.event.event_id in shown_ids]
            # Events hidden by history visibility are older than those shown (they precede the
            # join), so the timeline may come out shorter than the limit; it is then limited,
            # and paging back through /messages applies the same rules.
            r.limited = len(newest[r.room_id]) > limit or len(r.events) < len(window)
            if r.events:
                first = r.events[0]
                r.prev_batch = pagination_token((first.topological_ordering, first.stream_ordering))

    # --- state -----------------------------------------------------------------------------------

    def _load_state(self, rooms: list[_Room], user_id: str, sync_filter) -> list[_Room]:
        """Each room's `state`: the full state at the start of its timeline, or what changed
        between `since` and the start of the timeline; returns the rooms the response holds."""
        lazy = sync_filter.room.state.lazy_load_members
        # A filtered timeline can leave out state events: a room with no event shown may still
        # have state changes, which its state delta must carry.
        unseen = [r for r in rooms if not r.full_state and not r.limited and not r.events]
        state_changed = set()
        if unseen and _restricts(sync_filter.room.timeline):
            state_changed = self.store.get_rooms_with_events(
                [r.room_id for r in unseen], min(r.after for r in unseen), max(r.upto for r in unseen),
                state_only=True)
        # An incremental sync leaves out joined rooms where nothing happened.
        rooms = [r for r in rooms if r.section == "leave" or r.full_state or r.events or r.limited
                 or r.room_id in state_changed]
        needs_start, needs_since = [], []
        for r in rooms:
            if r.never_joined:
                continue  # the state of a room they never joined is not theirs to see
            delta = not r.full_state and (r.limited or r.room_id in state_changed)
            if r.full_state or delta or (lazy and r.events):
                needs_start.append(r)
            if delta:
                needs_since.append(r)
        # Rooms with no timeline event: their state is the state after the last event up to
        # `upto` (and their prev_batch points just past it).
        positions = [(r.room_id, r.upto) for r in rooms if not r.events]
        positions += [(r.room_id, r.since) for r in needs_since]
        last = self.store.get_last_events(positions)
        for r in rooms:
            if not r.events and (r.room_id, r.upto) in last:
                _, topo, stream = last[(r.room_id, r.upto)]
                r.prev_batch = pagination_token((topo, stream + 1))
        anchors = {r.room_id: r.events[0].event.event_id if r.events else last.get((r.room_id, r.upto), (None,))[0]
                   for r in needs_start}
        since_anchors = {r.room_id: last.get((r.room_id, r.since), (None,))[0] for r in needs_since}
        groups = self.state.get_state_groups_for_events(
            [e for e in [*anchors.values(), *since_anchors.values()] if e is not None])

        def state_after(event_id):
            group = groups.get(event_id)
            return self.state.get_state_ids(group) if group is not None else {}

        for r in needs_start:
            start = dict(state_after(anchors[r.room_id]))
            if r.events and r.events[0].event.is_state():
                # The state before the first timeline event: without it, with what it replaced.
                first = r.events[0]
                if first.replaces_state:
                    start[first.event.state_key_tuple] = first.replaces_state
                else:
                    start.pop(first.event.state_key_tuple, None)
            r.start_state = start
            if r.full_state:
                r.state = start
            elif r.room_id in since_anchors:
                at_since = state_after(since_anchors[r.room_id])
                r.state = {key: event_id for key, event_id in start.items() if at_since.get(key) != event_id}
        return [r for r in rooms if r.section == "leave" or r.full_state or r.events or r.state]

    def _load_summaries(self, rooms: list[_Room], user_id: str, since: int | None, now: int) -> None:
        """A summary for joined rooms new to the client, and for those whose membership changed;
        otherwise none: the client's counts and heroes still hold."""
        joined = [r for r in rooms if r.section == "join"]
        incremental = [r.room_id for r in joined if not r.full_state]
        changed = self.store.get_rooms_with_events(incremental, since, now, event_type=MEMBER) \
            if incremental and since is not None else set()
        wanted = [r for r in joined if r.full_state or r.room_id in changed]
        if not wanted:
            return
        room_ids = [r.room_id for r in wanted]
        counts = self.store.get_member_counts(room_ids)
        # Heroes only where the room has no name to show, as Synapse does: they are for naming
        # the room, and finding them reads every member of the room.
        named = self._named_rooms(room_ids)
        heroes = self.store.get_heroes([r for r in room_ids if r not in named], user_id, HEROES)
        for r in wanted:
            joined_count, invited_count = counts.get(r.room_id, (0, 0))
            r.summary = {"m.joined_member_count": joined_count, "m.invited_member_count": invited_count}
            if r.room_id not in named:
                r.summary["m.heroes"] = heroes.get(r.room_id, [])

    def _named_rooms(self, room_ids: list[str]) -> set[str]:
        """The rooms whose current m.room.name or m.room.canonical_alias gives a name."""
        keys = {("m.room.name", ""): "name", ("m.room.canonical_alias", ""): "alias"}
        current = self.store.get_current_state_ids(room_ids, list(keys))
        loaded = self.events.get_events([e for ids in current.values() for e in ids.values()])
        named = set()
        for room_id, ids in current.items():
            for key, event_id in ids.items():
                stored = loaded.get(event_id)
                # A redacted name event has no name left.
                value = stored.effective_event.content.get(keys[key]) if stored else None
                if isinstance(value, str) and value:
                    named.add(room_id)
        return named

    @staticmethod
    def _lazy_load_members(rooms: list[_Room], user_id: str) -> None:
        """lazy_load_members: of the members, only those who sent a timeline event, the heroes,
        and the user (when the state is full). Member changes inside a limited gap stay in the
        delta, as the spec requires. We keep no record of the member events a client already
        has, so senders' member events come every time: include_redundant_members is in effect
        always on, which the spec allows (it only lets a server leave them out)."""
        for r in rooms:
            start = r.start_state
            if start is None:
                continue
            wanted = {s.event.sender for s in r.events} | set((r.summary or {}).get("m.heroes", ()))
            if r.full_state:
                wanted.add(user_id)
                r.state = {k: v for k, v in r.state.items() if k[0] != MEMBER or k[1] in wanted}
            for member in wanted:
                key = (MEMBER, member)
                if key in start:
                    r.state[key] = start[key]

    # --- serializing -------------------------------------------------------------------------------

    def _serialize_rooms(self, rooms: list[_Room], requester, sync_filter) -> dict:
        state_filter = sync_filter.room.state
        loaded = self.events.get_events([e for r in rooms for e in r.state.values()])
        state = {}
        for r in rooms:
            stored = [loaded[e] for _, e in sorted(r.state.items()) if e in loaded]
            state[r.room_id] = [s for s in stored if state_filter.includes_room(r.room_id)
                                and state_filter.matches_values(s.event.type, s.event.sender, r.room_id,
                                                                s.event.content)]
        timeline_bodies = self._serialize({r.room_id: r.events for r in rooms}, requester)
        state_bodies = self._serialize(state, None)
        # event_format "federation" is served as "client": the PDU format is for servers, and no
        # client we know of asks for it (Synapse would send the raw PDU).
        fields = sync_filter.apply_event_fields
        body = {"join": {}, "leave": {}}
        for r in rooms:
            timeline = {"events": [fields(e) for e in timeline_bodies[r.room_id]], "limited": r.limited}
            if r.prev_batch is not None:
                timeline["prev_batch"] = r.prev_batch
            entry = {"timeline": timeline, "state": {"events": [fields(e) for e in state_bodies[r.room_id]]},
                     "account_data": {"events": []}}
            if r.section == "join":
                # Typing and receipts (ephemeral), room account data and notification counts
                # come with the streams that carry them.
                entry["ephemeral"] = {"events": []}
                entry["summary"] = r.summary or {}
            body[r.section][r.room_id] = entry
        return body

    def _serialize(self, stored_by_room: dict[str, list], requester) -> dict[str, list[dict]]:
        """Client events without room_id (the spec's ClientEventWithoutRoomID), serialized in one
        batch for all rooms: the serializer's own lookups (prev_content, redactions, transaction
        IDs, bundled aggregations) then cost a fixed number of queries per response."""
        flat = [(room_id, s) for room_id, items in stored_by_room.items() for s in items]
        bodies = self.reads.serialize([s for _, s in flat], "", requester) if flat else []
        result: dict[str, list[dict]] = {room_id: [] for room_id in stored_by_room}
        for (room_id, _), body in zip(flat, bodies, strict=True):
            body.pop("room_id", None)
            redacted_because = body.get("unsigned", {}).get("redacted_because")
            if redacted_because is not None:
                redacted_because["room_id"] = room_id
            result[room_id].append(body)
        return result

    # --- invites and knocks ------------------------------------------------------------------------

    def _stripped_rooms(self, rows: list, user_id: str, key: str) -> dict:
        """Stripped state as of the invite or knock (the state after that event)."""
        if not rows:
            return {}
        groups = self.state.get_state_groups_for_events([r.event_id for r in rows])
        member_keys = {(MEMBER, r.sender) for r in rows if r.sender != user_id}
        entries = self.state.get_state_entries(set(groups.values()), STRIPPED_STATE_KEYS + sorted(member_keys))
        per_room = {}
        for r in rows:
            found = entries.get(groups.get(r.event_id), {})
            wanted = STRIPPED_STATE_KEYS + ([(MEMBER, r.sender)] if r.sender != user_id else [])
            per_room[r.room_id] = [found[k] for k in wanted if k in found] + [r.event_id]
        loaded = self.events.get_events([e for ids in per_room.values() for e in ids])
        result = {}
        for room_id, ids in per_room.items():
            # A room this server is not in is known only by what the inviting (or knocked)
            # server sent with the event (hs/handlers/federation_membership.py).
            own = loaded.get(ids[-1])
            sent = (own.event.pdu.get("unsigned") or {}).get(f"{key.split('_')[0]}_room_state") if own else None
            if isinstance(sent, list):
                events = [e for e in sent if isinstance(e, dict)] + [stripped_state_event(own.effective_event)]
            else:
                # A redacted state event shows as redacted (a redacted name is no name).
                events = [stripped_state_event(loaded[e].effective_event) for e in ids if e in loaded]
            result[room_id] = {key: {"events": events}}
        return result


def _restricts(event_filter) -> bool:
    """Whether a timeline filter can leave events out (rooms aside)."""
    return (event_filter.types is not None or bool(event_filter.not_types) or event_filter.senders is not None
            or bool(event_filter.not_senders) or event_filter.contains_url is not None)
