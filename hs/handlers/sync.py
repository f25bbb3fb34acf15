"""GET /sync: the response for a `since` token, and the long-poll that waits for one.

Tokens: `next_batch` is the position of every stream taken when computing a response starts
(for events, the persisted-upto position: nothing beyond it is read or announced). A response
is a pure function of (`since`, that position, the filter): nothing is consumed, so a client
that syncs again with an old `since` gets the same events again.

Long-poll: an incremental sync with nothing new parks on the notifier, holding no database
connection, for the user and their joined rooms. Each wake computes the response again; one
with nothing in it parks again for the rest of the timeout.

The rooms are built in hs/handlers/sync_rooms.py; account data (global and per joined room) comes
from hs/handlers/account_data.py, presence from hs/handlers/presence.py, to-device messages from
hs/handlers/to_device.py, device lists from hs/handlers/device_lists.py, one-time key counts and
fallback key types from hs/handlers/e2e_keys.py.
"""

import time
from dataclasses import dataclass, replace

import gevent.lock

from hs.errors import Codes, MatrixError
from hs.streams import StreamToken

# Synapse sets no upper bound on `timeout`; one is needed (a timer cannot wait forever), and
# half an hour is far past what any client asks for or any proxy in front keeps open.
MAX_TIMEOUT_MS = 30 * 60 * 1000
PRESENCE_STATES = ("online", "offline", "unavailable")
COMPUTE_CONCURRENCY = 16  # /sync responses being built at once in a process (see SyncHandler)


def check_set_presence(value: str | None) -> None:
    if value is not None and value not in PRESENCE_STATES:
        raise MatrixError(400, Codes.INVALID_PARAM, f"set_presence must be one of {', '.join(PRESENCE_STATES)}")


@dataclass
class _SyncResult:
    body: dict
    token: StreamToken
    joined_room_ids: list

    @property
    def is_empty(self) -> bool:
        return (not any(self.body["rooms"].values()) and not self.body["account_data"]["events"]
                and not self.body["presence"]["events"] and not self.body["to_device"]["events"]
                and not any(self.body["device_lists"].values()))


class SyncHandler:
    def __init__(self, streams, notifier, room_sync):
        self.streams = streams
        self.notifier = notifier
        self.room_sync = room_sync
        self.account_data = None  # hs/handlers/account_data.py, set by the composition root
        self.typing = None  # hs/handlers/typing.py, set by the composition root
        self.receipts = None  # hs/handlers/receipts.py, set by the composition root
        self.presence = None  # hs/handlers/presence.py (PresenceReader), set by the composition root
        self.to_device = None  # hs/handlers/to_device.py (DeviceInbox), set by the composition root
        self.push_rules = None  # hs/handlers/push_rules.py (PushRulesReader), set by the composition root
        self.push_actions = None  # hs/handlers/push_actions.py (PushActionReader), set by the composition root
        self.e2e_keys = None  # hs/handlers/e2e_keys.py (E2eKeysReader), set by the composition root
        self.device_lists = None  # hs/handlers/device_lists.py (DeviceListReader), set by the composition root
        # Responses built at once. One message wakes every parked client together; building all
        # of them side by side gains nothing on a few cores and holds every half-built response in
        # memory: 500 clients catching up on 1,500 joins peaked at 490 MB (bench/RESULTS.md).
        self._building = gevent.lock.BoundedSemaphore(COMPUTE_CONCURRENCY)

    def sync(self, requester, *, since: str | None, timeout_ms: int, full_state: bool, sync_filter) -> dict:
        """The /sync response. `since` is the raw token (400 M_INVALID_PARAM when malformed)."""
        since_token = StreamToken.parse(since) if since is not None else None
        self.streams.wait_until_reached(since_token or StreamToken())
        result = self._compute(requester, since_token, full_state, sync_filter)
        # An initial sync always has something to say, and full_state=true answers at once.
        if since_token is None or full_state or timeout_ms <= 0 or not result.is_empty:
            return result.body
        deadline = time.monotonic() + min(timeout_ms, MAX_TIMEOUT_MS) / 1000
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break

            def has_news() -> bool:
                # Asked after the waiter is registered: what landed since the last computation
                # is seen here rather than missed. Nothing can be new while the position stands.
                nonlocal result
                if self.streams.current_token() == result.token:
                    return False
                result = self._compute(requester, since_token, full_state, sync_filter)
                return not result.is_empty

            self.notifier.wait(requester.user_id, result.joined_room_ids, remaining, has_news)
            if not result.is_empty:
                return result.body
        if self.streams.current_token() != result.token:
            # Timed out, but the streams moved on (in rooms the user is not in): hand out the
            # newest position, so the next sync does not scan the same range again.
            result = self._compute(requester, since_token, full_state, sync_filter)
        else:
            # Key counts do not wake a sync, but its answer carries them as they are now.
            self._add_key_counts(result.body, requester)
        return result.body

    def _add_key_counts(self, body: dict, requester) -> None:
        if self.e2e_keys is not None:
            (body["device_one_time_keys_count"],
             body["device_unused_fallback_key_types"]) = self.e2e_keys.sync_counts(requester.user_id,
                                                                                  requester.device_id)

    def _compute(self, requester, since: StreamToken | None, full_state: bool, sync_filter) -> _SyncResult:
        with self._building:
            return self._compute_now(requester, since, full_state, sync_filter)

    def _compute_now(self, requester, since: StreamToken | None, full_state: bool, sync_filter) -> _SyncResult:
        now = self.streams.current_token()
        # A `since` beyond what this process has persisted (a token from elsewhere) reads as now.
        since_room = None if since is None else min(since.room, now.room)
        rooms, joined_room_ids, all_joined_ids = self.room_sync.build(requester, since_room, now.room, full_state,
                                                                      sync_filter)
        body = {
            "next_batch": str(now),
            "rooms": rooms,
            "presence": {"events": []},
            "account_data": {"events": []},
            "to_device": {"events": []},
            "device_lists": {"changed": [], "left": []},
            "device_one_time_keys_count": {},
            "device_unused_fallback_key_types": [],
        }
        if self.account_data is not None:
            _add_account_data(body, self.account_data, requester.user_id, since, now, full_state,
                              joined_room_ids, sync_filter)
        if self.push_rules is not None:
            # Top-level account data: on an initial (or full_state) sync, and when the rules changed.
            after = None if since is None or full_state else min(since.push_rules, now.push_rules)
            event = self.push_rules.sync_event(requester.user_id, after, now.push_rules, sync_filter)
            if event is not None:
                # Counted as the oldest: the filter's limit keeps the most recently written.
                events = [event] + body["account_data"]["events"]
                limit = sync_filter.account_data.limit
                body["account_data"]["events"] = events if limit is None else events[len(events) - limit:]
        if self.typing is not None or self.receipts is not None:
            _add_ephemeral(body, self.typing, self.receipts, requester.user_id, since, now, full_state,
                           joined_room_ids, sync_filter)
        if self.push_actions is not None:
            # After every section that adds joined rooms: each entry carries the counts.
            self.push_actions.add_unread_counts(body["rooms"]["join"], requester.user_id, now.room, sync_filter)
        if self.presence is not None:
            # As Synapse, full_state also resends everyone's current presence.
            after = None if since is None or full_state else min(since.presence, now.presence)
            body["presence"]["events"] = self.presence.sync_events(requester.user_id, after, now.presence,
                                                                   joined_room_ids, sync_filter)
        if self.to_device is not None:
            # Capped per response: next_batch then stands at the last message sent, not at now.
            events, position = self.to_device.sync_events(requester.user_id, requester.device_id,
                                                          since and since.to_device, now.to_device)
            body["to_device"]["events"] = events
            body["next_batch"] = str(replace(StreamToken.parse(body["next_batch"]), to_device=position))
        if self.device_lists is not None and since is not None:
            # As Synapse: an initial sync lists nothing (the client fetches every key it needs).
            body["device_lists"] = self.device_lists.changes(requester.user_id, since, now, all_joined_ids)
        # In every response, and not counted in is_empty: as in Synapse, a claim of this device's
        # keys does not by itself wake its parked sync.
        self._add_key_counts(body, requester)
        return _SyncResult(body, now, joined_room_ids)


def _add_account_data(body, handler, user_id, since, now, full_state, joined_room_ids, sync_filter) -> None:
    """The account data written in (since, now] (all of it for an initial or full_state sync):
    global at the top level, per room in rooms.join, where a room with nothing else new gets an
    entry of its own."""
    after = None if since is None or full_state else min(since.account_data, now.account_data)
    if after is not None and after >= now.account_data:
        return  # the stream has not moved: nothing to read (a long-poll's wake-ups skip two queries)
    events, by_room = handler.sync_sections(user_id, after, now.account_data, joined_room_ids, sync_filter)
    body["account_data"]["events"] = events
    join = body["rooms"]["join"]
    for room_id, room_events in by_room.items():
        entry = join.setdefault(room_id, {"timeline": {"events": [], "limited": False}, "state": {"events": []},
                                          "account_data": {"events": []}, "ephemeral": {"events": []},
                                          "summary": {}})
        entry["account_data"]["events"] = room_events


def _add_ephemeral(body, typing, receipts, user_id, since, now, full_state, joined_room_ids, sync_filter) -> None:
    """Each joined room's m.typing (when its typers changed after `since`; the current typers
    for an initial or full_state sync) and m.receipt (the receipts written in (since, now]; all
    current ones for an initial or full_state sync), in rooms.join[room].ephemeral, where a room
    with nothing else new gets an entry of its own. A room joined since `since` gets only what
    changed since then, not its older receipts."""
    initial = since is None or full_state
    by_room: dict[str, list] = {}
    if typing is not None:
        for room_id, event in typing.sync_events(None if initial else since.typing, joined_room_ids,
                                                 sync_filter).items():
            by_room.setdefault(room_id, []).append(event)
    # Read only when the receipts stream moved: a wake-up for a message skips the query.
    if receipts is not None and (initial or since.receipt < now.receipt):
        after = None if initial else min(since.receipt, now.receipt)
        for room_id, event in receipts.sync_events(user_id, after, now.receipt, joined_room_ids,
                                                   sync_filter).items():
            by_room.setdefault(room_id, []).append(event)
    limit = sync_filter.room.ephemeral.limit
    join = body["rooms"]["join"]
    for room_id, events in by_room.items():
        entry = join.setdefault(room_id, {"timeline": {"events": [], "limited": False}, "state": {"events": []},
                                          "account_data": {"events": []}, "ephemeral": {"events": []},
                                          "summary": {}})
        entry["ephemeral"]["events"] = events if limit is None else events[:limit]


def event_persisted_listener(room_event_notifier):
    """For EventCreationHandler.persisted_listeners: wakes the room's waiters, and for a member
    event the user it is about, who is not yet (or no longer) among them (an invite, a join
    from another device, a kick)."""
    def on_persisted(stream_ordering: int, room_id: str, event) -> None:
        users = [event.state_key] if event.type == "m.room.member" and event.state_key else []
        room_event_notifier.written(stream_ordering, users=users, rooms=[room_id])
    return on_persisted
