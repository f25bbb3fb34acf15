"""Reading a room: single events, state, members, /messages pages and event context.

Every read goes through `access` (may this user read this room, and up to where) and
`visible` (which of these events may they see), so no path serves what the history
visibility rules hide.
"""

import re
from dataclasses import dataclass

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.events.client_format import client_event
from hs.events.visibility import visible_to_user
from hs.storage.events import StoredEvent
from hs.streams import StreamToken

MAX_PAGE = 1000
_TOKEN = re.compile(r"^t(-?\d+)-(-?\d+)$")


def parse_pagination_token(token: str) -> tuple[int, int]:
    match = _TOKEN.match(token)
    if not match:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid pagination token {token!r}")
    return int(match.group(1)), int(match.group(2))


def pagination_token(position: tuple[int, int]) -> str:
    return f"t{position[0]}-{position[1]}"


@dataclass
class RoomAccess:
    """How far a user may read a room: everything if joined, up to their leave if they left."""
    membership: str | None
    # (topological, stream) of the user's leave or ban, the last point they may see.
    until: tuple[int, int] | None
    until_event_id: str | None
    # Not joined at any point after the events read (a preview of a world-readable room, or
    # one whose invite or knock ended without a join).
    is_peeking: bool


class RoomReadHandler:
    def __init__(self, rooms, events, state):
        self.rooms = rooms
        self.events = events
        self.state = state
        # Set by the relations handler: event IDs and the reader -> {event_id: m.relations}.
        self.bundled_aggregations = None
        # Set on the master: fn(room_id, limit) -> bool, fetching earlier history over federation.
        self.backfill = None

    # --- access --------------------------------------------------------------------------------

    def access(self, user_id: str, room_id: str) -> RoomAccess:
        if self.rooms.get_room_version(room_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        current = self.rooms.get_membership(room_id, user_id)
        if current is not None and current[0] == "join":
            return RoomAccess("join", None, None, is_peeking=False)
        if current is not None and current[0] in ("leave", "ban") and not self.rooms.is_forgotten(user_id, room_id):
            # (After /forget "a user will no longer be able to retrieve history for this room".)
            return RoomAccess(current[0], self.events.get_position(current[1]), current[1],
                              is_peeking=not self.rooms.has_ever_joined(room_id, user_id))
        if self._world_readable(room_id):
            return RoomAccess(current[0] if current else None, None, None, is_peeking=True)
        raise MatrixError(403, Codes.FORBIDDEN, "You are not a member of this room")

    def _world_readable(self, room_id: str) -> bool:
        return self._history_visibility(self.state.get_current_state_ids(
            room_id, [("m.room.history_visibility", "")])) == "world_readable"

    def _state_access(self, user_id: str, room_id: str) -> RoomAccess:
        """Access to the room state (/state, /members), which no history visibility filters:
        "403 You aren't a member of the room and weren't previously a member of the room". One
        whose only membership was an invite or knock that ended never joined, so reads no more
        than a stranger: nothing, or the current state of a world-readable room."""
        access = self.access(user_id, room_id)
        if access.membership in ("leave", "ban") and access.is_peeking:
            if not self._world_readable(room_id):
                raise MatrixError(403, Codes.FORBIDDEN, "You were never a member of this room")
            return RoomAccess(access.membership, None, None, is_peeking=True)
        return access

    def _history_visibility(self, state_ids: dict) -> str | None:
        event_id = state_ids.get(("m.room.history_visibility", ""))
        if event_id is None:
            return None
        stored = self.events.get_event(event_id)
        # Redaction keeps history_visibility in every room version, so the content is used as is.
        value = stored.event.content.get("history_visibility") if stored else None
        return value if isinstance(value, str) else None

    def visible(self, user_id: str, stored: list[StoredEvent], access: RoomAccess) -> list[StoredEvent]:
        """The events the user may see, by the history visibility and their membership in the
        state before each event. A fixed number of queries for the whole page: only the two
        state entries that matter are read for each event's state group."""
        if not stored:
            return []
        visibility_key, member_key = ("m.room.history_visibility", ""), ("m.room.member", user_id)
        groups = self.state.get_state_groups_for_events([s.event.event_id for s in stored])
        entries = self.state.get_state_entries(groups.values(), [visibility_key, member_key])
        befores = []
        for item in stored:
            event = item.event
            group = groups.get(event.event_id)
            before = dict(entries.get(group, {})) if group is not None else {}
            if event.is_state() and event.state_key_tuple in (visibility_key, member_key):
                # The state after an event holds the event itself; before it, what it replaced.
                if item.replaces_state:
                    before[event.state_key_tuple] = item.replaces_state
                else:
                    before.pop(event.state_key_tuple, None)
            befores.append(before)
        loaded = self.events.get_events({eid for before in befores for eid in before.values()})
        result = []
        for item, before in zip(stored, befores, strict=True):
            event = item.event
            visibility = loaded.get(before.get(visibility_key))
            member = loaded.get(before.get(member_key))
            # Redaction keeps history_visibility and membership in every room version.
            value = visibility.event.content.get("history_visibility") if visibility else None
            if visible_to_user(event.type, event.state_key, event_content=event.content, user_id=user_id,
                               history_visibility=value if isinstance(value, str) else None,
                               membership_at_event=member.event.membership if member else None,
                               is_peeking=access.is_peeking):
                result.append(item)
        return result

    # --- serializing -----------------------------------------------------------------------------

    def serialize(self, stored: list[StoredEvent], room_id: str, requester=None) -> list[dict]:
        """Client events, with prev_content, the redaction that hid them, and the transaction
        ID for the device that sent them."""
        wanted = {s.replaces_state for s in stored if s.replaces_state} | {s.redacted_by for s in stored
                                                                            if s.redacted_by}
        related = self.events.get_events(wanted) if wanted else {}
        txn_ids = {}
        if requester is not None:
            txn_ids = self.events.get_txn_ids(requester.user_id, requester.txn_device_id,
                                              [s.event.event_id for s in stored
                                               if s.event.sender == requester.user_id])
        aggregations = {}
        if self.bundled_aggregations is not None and stored:
            aggregations = self.bundled_aggregations([s.event.event_id for s in stored if not s.redacted_by],
                                                     requester)
        now = now_ms()
        out = []
        for s in stored:
            prev = related.get(s.replaces_state) if s.replaces_state else None
            redaction = related.get(s.redacted_by) if s.redacted_by else None
            out.append(client_event(s.event, room_id, now_ms=now, redaction=redaction.event if redaction else None,
                                    prev_state=prev.effective_event if prev else None,
                                    transaction_id=txn_ids.get(s.event.event_id),
                                    relations=aggregations.get(s.event.event_id)))
        return out

    # --- single events and state ---------------------------------------------------------------

    def get_event(self, requester, room_id: str, event_id: str) -> dict:
        access = self.access(requester.user_id, room_id)
        stored = self.events.get_event(event_id)
        if (stored is None or stored.event.room_id_in_any_version != room_id or not self._before_leave(stored, access)
                or not self.visible(requester.user_id, [stored], access)):
            raise MatrixError(404, Codes.NOT_FOUND, "Event not found")
        return self.serialize([stored], room_id, requester)[0]

    @staticmethod
    def _before_leave(stored: StoredEvent, access: RoomAccess) -> bool:
        return access.until is None or (stored.topological_ordering, stored.stream_ordering) <= access.until

    def state_ids_for_reader(self, requester, room_id: str) -> dict:
        """Current state for members, the state at their leave for those who left."""
        access = self._state_access(requester.user_id, room_id)
        if access.until_event_id is not None:
            return self.state.get_state_ids_after_event(access.until_event_id)
        return self.state.get_current_state_ids(room_id)

    def get_state(self, requester, room_id: str) -> list[dict]:
        state_ids = self.state_ids_for_reader(requester, room_id)
        found = self.events.get_events(state_ids.values())
        return self.serialize([found[e] for e in state_ids.values() if e in found], room_id)

    def get_state_event(self, requester, room_id: str, event_type: str, state_key: str) -> StoredEvent:
        state_ids = self.state_ids_for_reader(requester, room_id)
        event_id = state_ids.get((event_type, state_key))
        stored = self.events.get_event(event_id) if event_id else None
        if stored is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Event not found")
        return stored

    # --- members -------------------------------------------------------------------------------

    def get_members(self, requester, room_id: str, *, at: str | None, membership: str | None,
                    not_membership: str | None) -> list[dict]:
        access = self._state_access(requester.user_id, room_id)
        if at is not None or access.until_event_id is not None:
            # `at` is a point in the timeline, "obtained from a prev_batch token": the state
            # before the event the token stands for (a sync token: after its last event).
            position = self._position(room_id, at, after_event=True) if at is not None else None
            state_ids = self._state_at(room_id, position, access)
            member_ids = [eid for (t, _), eid in state_ids.items() if t == "m.room.member"]
        else:
            member_ids = self.rooms.get_member_event_ids(room_id)
        found = self.events.get_events(member_ids)
        members = [found[e] for e in member_ids if e in found]
        if membership is not None and not_membership is not None:
            # Both given: "either the membership *is* the same as membership or is not the
            # same as not_membership".
            members = [m for m in members
                       if m.event.membership == membership or m.event.membership != not_membership]
        elif membership is not None:
            members = [m for m in members if m.event.membership == membership]
        elif not_membership is not None:
            members = [m for m in members if m.event.membership != not_membership]
        return self.serialize(members, room_id)

    def _position(self, room_id: str, token: str, *, after_event: bool) -> tuple[int, int]:
        """A /messages token as a position: ours ("t<topological>-<stream>"), or a /sync token
        ("s<room stream>_...", which the spec lets clients pass as `from`, `to` and `at`). A sync
        token covers every event up to its room stream position; it becomes the position of the
        room's last such event, or just after it (`after_event`) where the bound is exclusive
        and that event must be included."""
        if not token.startswith("s"):
            return parse_pagination_token(token)
        stream = StreamToken.parse(token).room
        found = self.events.get_position_at_stream(room_id, stream)
        if found is None:
            return (0, 0)
        return (found[0], found[1] + 1) if after_event else found

    def _state_at(self, room_id: str, position: tuple[int, int] | None, access: RoomAccess) -> dict:
        """The state after the last event before `position` (exclusive), and no later than the
        reader's leave."""
        bound = position
        if access.until is not None:
            after_leave = (access.until[0], access.until[1] + 1)
            bound = after_leave if bound is None else min(bound, after_leave)
        if bound is None:
            return self.state.get_current_state_ids(room_id)
        before = self.events.get_room_events_page(room_id, from_pos=bound, to_pos=None, backwards=True, limit=1)
        return self.state.get_state_ids_after_event(before[0].event.event_id) if before else {}

    def get_joined_members(self, requester, room_id: str) -> dict:
        access = self.access(requester.user_id, room_id)
        if access.membership != "join":
            raise MatrixError(403, Codes.FORBIDDEN, "You are not a member of this room")
        return {user_id: {k: v for k, v in profile.items() if v is not None}
                for user_id, profile in self.rooms.get_joined_members(room_id).items()}

    # --- /messages and /context ------------------------------------------------------------------

    def get_messages(self, requester, room_id: str, *, from_token: str | None, to_token: str | None,
                     direction: str, limit: int, event_filter) -> dict:
        access = self.access(requester.user_id, room_id)
        backwards = direction == "b"
        if from_token is not None:
            from_pos = self._position(room_id, from_token, after_event=backwards)
        else:
            top = self.events.get_max_position(room_id)
            from_pos = (top[0], top[1] + 1) if backwards else (0, 0)
        if access.until is not None and backwards:
            # One who left reads up to their leave, and not after it.
            from_pos = min(from_pos, (access.until[0], access.until[1] + 1))
        to_pos = self._position(room_id, to_token, after_event=not backwards) if to_token is not None else None
        if limit == 0:
            # Nothing asked for, nothing read: the client may go on from where it is.
            start = from_token if from_token is not None else pagination_token(from_pos)
            return {"chunk": [], "start": start, "end": start}
        page = self.events.get_room_events_page(room_id, from_pos=from_pos, to_pos=to_pos, backwards=backwards,
                                                limit=limit, **_filter_args(event_filter))
        if backwards and len(page) < limit and self.backfill is not None and self.backfill(room_id, limit):
            # Paged back past the start of what we hold: earlier history came from other servers.
            page = self.events.get_room_events_page(room_id, from_pos=from_pos, to_pos=to_pos, backwards=True,
                                                    limit=limit, **_filter_args(event_filter))
        if access.until is not None and not backwards:
            page = [s for s in page if (s.topological_ordering, s.stream_ordering) <= access.until]
        visible = self.visible(requester.user_id, page, access)
        # "start: ... This will be the same as the value given in from."
        start = from_token if from_token is not None else pagination_token(from_pos)
        body = {"chunk": self.serialize(visible, room_id, requester), "start": start}
        if len(page) == limit:
            last = page[-1]
            body["end"] = pagination_token((last.topological_ordering, last.stream_ordering))
        if event_filter is not None and getattr(event_filter, "lazy_load_members", False) and visible:
            body["state"] = self._lazy_members(room_id, visible, requester)
        return body

    def _lazy_members(self, room_id: str, shown: list[StoredEvent], requester) -> list[dict]:
        state_ids = self.state.get_state_ids_after_event(shown[-1].event.event_id)
        senders = {s.event.sender for s in shown}
        member_ids = [state_ids[("m.room.member", u)] for u in senders if ("m.room.member", u) in state_ids]
        found = self.events.get_events(member_ids)
        return self.serialize([found[e] for e in member_ids if e in found], room_id)

    def get_context(self, requester, room_id: str, event_id: str, limit: int, event_filter) -> dict:
        access = self.access(requester.user_id, room_id)
        stored = self.events.get_event(event_id)
        if (stored is None or stored.event.room_id_in_any_version != room_id or not self._before_leave(stored, access)
                or not self.visible(requester.user_id, [stored], access)):
            raise MatrixError(404, Codes.NOT_FOUND, "Event not found")
        position = (stored.topological_ordering, stored.stream_ordering)
        half = limit // 2
        args = _filter_args(event_filter)
        before = self.events.get_room_events_page(room_id, from_pos=position, to_pos=None, backwards=True,
                                                  limit=half, **args)
        after = self.events.get_room_events_page(room_id, from_pos=position, to_pos=None, backwards=False,
                                                 limit=limit - half, **args)
        if access.until is not None:
            after = [s for s in after if (s.topological_ordering, s.stream_ordering) <= access.until]
        before = self.visible(requester.user_id, before, access)
        after = self.visible(requester.user_id, after, access)
        start = before[-1] if before else stored
        end = after[-1] if after else stored
        # "The state of the room at the last event returned."
        state_ids = self.state.get_state_ids_after_event(end.event.event_id)
        if event_filter is not None and getattr(event_filter, "lazy_load_members", False):
            # Only the senders' member events: filtered by key, so the other members of a big
            # room are never loaded.
            senders = {s.event.sender for s in [stored, *before, *after]}
            state_ids = {k: v for k, v in state_ids.items() if k[0] != "m.room.member" or k[1] in senders}
        found = self.events.get_events(state_ids.values())
        state = self.serialize([found[e] for e in state_ids.values() if e in found], room_id)
        if event_filter is not None:
            # The filter applies to events_before, events_after and state, not to the event.
            state = event_filter.filter(state)
        return {
            "event": self.serialize([stored], room_id, requester)[0],
            "events_before": self.serialize(before, room_id, requester),
            "events_after": self.serialize(after, room_id, requester),
            "start": pagination_token((start.topological_ordering, start.stream_ordering)),
            "end": pagination_token((end.topological_ordering, end.stream_ordering)),
            "state": state,
        }


def _filter_args(event_filter) -> dict:
    if event_filter is None:
        return {}
    return {"types": event_filter.types, "not_types": event_filter.not_types or None,
            "senders": event_filter.senders, "not_senders": event_filter.not_senders or None,
            "contains_url": event_filter.contains_url}
