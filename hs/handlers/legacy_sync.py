"""The deprecated sync API that older clients and bots still use (client-server API, old_sync.yaml
and room_initial_sync.yaml): GET /events, GET /initialSync, GET /rooms/{roomId}/initialSync and
GET /events/{eventId}. Synapse serves them; so do we, on top of what /sync is built from.

- /initialSync is an initial /sync (hs/handlers/sync_rooms.py builds its rooms) reshaped: each
  room's `messages` is the timeline with room IDs, and its `state` the state after the timeline
  (the room's current state; for a left room, the state when they left).
- /rooms/{roomId}/initialSync reads through RoomReadHandler (hs/handlers/room_reads.py), so its
  access rules are /messages' and /state's: members, former members (up to their leave) and
  anyone for a world_readable room; otherwise 403. A reader with no membership (a peek) gets no
  `membership`. Like Synapse it adds the room's m.receipt event as `receipts` (not in the spec).
- /events long-polls like /sync and returns, oldest first, the events in the user's rooms after
  `from` (joined rooms; a room they left up to their leave; their invites), then the rooms'
  typing and receipt changes and presence. At most `limit` room events a response; when capped,
  `end` stands at the last one, so the rest come next. Account data and to-device messages
  are not sent (as in Synapse).

Tokens are /sync's StreamToken, so a token from one works with the others.
"""

import time
from dataclasses import replace

from hs.errors import Codes, MatrixError
from hs.filtering import DEFAULT_FILTER, parse_filter
from hs.handlers.room_reads import RoomAccess
from hs.handlers.sync import MAX_TIMEOUT_MS
from hs.handlers.sync_rooms import TIMELINE_MAX_LIMIT
from hs.streams import StreamToken

DEFAULT_LIMIT = 10  # Synapse's, for all three
MAX_LIMIT = TIMELINE_MAX_LIMIT
_JOINED = RoomAccess("join", None, None, is_peeking=False)


class LegacySyncHandler:
    def __init__(self, streams, notifier, room_sync, sync_store, rooms, events, reads, account_data,
                 typing=None, receipts=None, presence=None):
        self.streams = streams
        self.notifier = notifier
        self.room_sync = room_sync
        self.sync_store = sync_store
        self.rooms = rooms
        self.events = events
        self.reads = reads
        self.account_data = account_data
        self.typing = typing
        self.receipts = receipts
        self.presence = presence

    # --- GET /initialSync ------------------------------------------------------------------------

    def initial_sync(self, requester, *, limit: int, archived: bool) -> dict:
        self.streams.wait_until_reached(StreamToken())
        user_id = requester.user_id
        now = self.streams.current_token()
        sync_filter = parse_filter({"room": {"include_leave": archived, "timeline": {"limit": limit}}})
        built, joined_ids, _ = self.room_sync.build(requester, None, now.room, True, sync_filter)
        rows = self.sync_store.get_memberships(user_id, now.room, None)
        account_data, room_account_data = self.account_data.sync_sections(
            user_id, None, now.account_data, [r.room_id for r in rows], sync_filter)
        invites = self.events.get_events([r.event_id for r in rows if r.membership == "invite"])
        rooms = []
        for row in rows:
            info = {"room_id": row.room_id, "membership": row.membership}
            if row.membership == "invite" and row.event_id in invites:
                info["invite"] = self.reads.serialize([invites[row.event_id]], row.room_id)[0]
            elif row.membership in ("join", "leave", "ban"):
                built_room = built["join" if row.membership == "join" else "leave"].get(row.room_id)
                if built_room is None:
                    continue  # a left room without `archived`, or forgotten
                info.update(_reshape(row.room_id, built_room, now))
                info["account_data"] = room_account_data.get(row.room_id, [])
                info["visibility"] = self._visibility(row.room_id)
            else:
                continue  # knocks have no place in this API
            rooms.append(info)
        return {"rooms": rooms, "account_data": account_data, "end": str(now),
                "presence": self._presence(user_id, None, now, joined_ids)}

    # --- GET /rooms/{roomId}/initialSync ---------------------------------------------------------

    def room_initial_sync(self, requester, room_id: str, *, limit: int) -> dict:
        if self.rooms.get_room(room_id) is None:
            # The spec's answer to anyone not in the room; it tells no one whether the room exists.
            raise MatrixError(403, Codes.FORBIDDEN, "You are not a member of this room")
        now = self.streams.current_token()
        access = self.reads.access(requester.user_id, room_id)
        state = self.reads.get_state(requester, room_id)
        page = self.reads.get_messages(requester, room_id, from_token=str(now) if access.until is None else None,
                                       to_token=None, direction="b", limit=limit, event_filter=None)
        messages = {"chunk": page["chunk"][::-1], "end": str(now)}
        if "end" in page:
            # Where /messages goes on backwards; with no earlier events the spec lets it be omitted.
            messages["start"] = page["end"]
        result = {"room_id": room_id, "messages": messages, "state": state,
                  "visibility": self._visibility(room_id),
                  "account_data": [{"type": t, "content": c} for _, t, c, _ in
                                   self.account_data.store.get_changes(requester.user_id, None, now.account_data,
                                                                       [room_id])],
                  "presence": self._presence(requester.user_id, None, now, [room_id]),
                  "receipts": self._receipts(requester.user_id, None, now, [room_id])}
        if access.membership is not None:
            result["membership"] = access.membership
        return result

    # --- GET /events/{eventId} -------------------------------------------------------------------

    def get_event(self, requester, event_id: str) -> dict:
        stored = self.events.get_event(event_id)
        if stored is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Event not found")
        try:
            return self.reads.get_event(requester, stored.event.room_id_in_any_version, event_id)
        except MatrixError as e:
            if e.status != 403:
                raise
            # "The event was not found or you do not have permission to read this event."
            raise MatrixError(404, Codes.NOT_FOUND, "Event not found") from None

    # --- GET /events -----------------------------------------------------------------------------

    def events_stream(self, requester, *, from_token: str | None, timeout_ms: int, limit: int) -> dict:
        self.streams.wait_until_reached(StreamToken.parse(from_token) if from_token is not None else StreamToken())
        since = StreamToken.parse(from_token) if from_token is not None else self.streams.current_token()
        start = from_token if from_token is not None else str(since)
        chunk, end, joined_ids, seen = self._new_events(requester, since, limit)
        deadline = time.monotonic() + min(timeout_ms, MAX_TIMEOUT_MS) / 1000
        while not chunk:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break

            def has_news() -> bool:
                # Asked once the waiter is registered, so nothing landing meanwhile is missed.
                nonlocal chunk, end, joined_ids, seen
                if self.streams.current_token() == seen:
                    return False
                chunk, end, joined_ids, seen = self._new_events(requester, since, limit)
                return bool(chunk)

            self.notifier.wait(requester.user_id, joined_ids, remaining, has_news)
        return {"chunk": chunk, "start": start, "end": str(end)}

    def _new_events(self, requester, since: StreamToken, limit: int):
        """(chunk, end token, joined room IDs, the position read up to)."""
        user_id = requester.user_id
        now = self.streams.current_token()
        after = min(since.room, now.room)
        rows = self.sync_store.get_memberships(user_id, now.room, after)
        joined_ids = [r.room_id for r in rows if r.membership == "join"]
        # (room, upto) of each room whose events are the user's to see: joined rooms with news, and
        # rooms left since `since`, up to the leave. An invite is the one event of its room.
        ranges = {room_id: now.room for room_id in self.sync_store.get_rooms_with_events(joined_ids, after, now.room)}
        invites = []
        for r in rows:
            if r.stream_ordering <= after:
                continue
            if r.membership in ("leave", "ban") and r.membership_at_since == "join":
                ranges[r.room_id] = r.stream_ordering
            elif r.membership == "invite":
                invites.append(r.event_id)
        stored, cut = [], None
        for room_id, upto in ranges.items():
            start = self.events.get_position_at_stream(room_id, after) or (0, 0)
            page = self.events.get_room_events_page(room_id, from_pos=start, to_pos=None, backwards=False,
                                                    limit=limit)
            if len(page) == limit and page[-1].stream_ordering < upto:
                # Later events of this room were not read: nothing past this point is complete.
                cut = page[-1].stream_ordering if cut is None else min(cut, page[-1].stream_ordering)
            stored += [(room_id, s) for s in page if s.stream_ordering <= upto]
        stored += [(s.event.room_id_in_any_version, s) for s in self.events.get_events(invites).values()]
        stored.sort(key=lambda item: item[1].stream_ordering)
        if cut is not None:
            stored = [item for item in stored if item[1].stream_ordering <= cut]
        end = now
        if len(stored) > limit or (cut is not None and cut < now.room):
            stored = stored[:limit]
            end = replace(now, room=stored[-1][1].stream_ordering)
        chunk = []
        for room_id in dict.fromkeys(room_id for room_id, _ in stored):
            in_room = [s for r, s in stored if r == room_id]
            shown = self.reads.visible(user_id, in_room, _JOINED)
            for s, body in zip(shown, self.reads.serialize(shown, room_id, requester), strict=True):
                chunk.append((s.stream_ordering, body))
        chunk = [body for _, body in sorted(chunk, key=lambda item: item[0])]
        if end == now:
            chunk += self._ephemeral(user_id, since, now, joined_ids)
        return chunk, end, joined_ids, now

    def _ephemeral(self, user_id: str, since: StreamToken, now: StreamToken, room_ids: list[str]) -> list[dict]:
        events = []
        if self.typing is not None:
            events += [dict(e, room_id=r) for r, e in
                       self.typing.sync_events(since.typing, room_ids, DEFAULT_FILTER).items()]
        return events + self._receipts(user_id, since, now, room_ids) + self._presence(user_id, since, now, room_ids)

    # --- helpers ---------------------------------------------------------------------------------

    def _receipts(self, user_id: str, since: StreamToken | None, now: StreamToken, room_ids: list[str]) -> list:
        if self.receipts is None:
            return []
        after = None if since is None else min(since.receipt, now.receipt)
        return [dict(e, room_id=r) for r, e in
                self.receipts.sync_events(user_id, after, now.receipt, room_ids, DEFAULT_FILTER).items()]

    def _presence(self, user_id: str, since: StreamToken | None, now: StreamToken, room_ids: list[str]) -> list:
        if self.presence is None:
            return []
        after = None if since is None else min(since.presence, now.presence)
        return self.presence.sync_events(user_id, after, now.presence, room_ids, DEFAULT_FILTER)

    def _visibility(self, room_id: str) -> str:
        room = self.rooms.get_room(room_id)
        return "public" if room is not None and room.is_public else "private"


def _reshape(room_id: str, built: dict, now: StreamToken) -> dict:
    """A /sync room entry as the legacy API's RoomInfo: messages and the state after them."""
    timeline = [dict(e, room_id=room_id) for e in built["timeline"]["events"]]
    state = {(e["type"], e["state_key"]): dict(e, room_id=room_id) for e in built["state"]["events"]}
    for event in timeline:
        if "state_key" in event:
            state[(event["type"], event["state_key"])] = event
    messages = {"chunk": timeline, "end": str(now)}
    if "prev_batch" in built["timeline"]:
        messages["start"] = built["timeline"]["prev_batch"]
    return {"messages": messages, "state": list(state.values())}
