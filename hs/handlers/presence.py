"""Presence (client-server API "Presence"): PUT/GET /presence/{userId}/status, /sync's
`presence` section, and who is online because they sync.

Read side (`PresenceReader`, any process): a user's presence for GET, and the m.presence events
of a sync, both from PostgreSQL. A user sees their own presence and that of everyone they share
a joined room with (as Synapse: anyone else, existing or not, is 403, so the answer tells
nothing about who exists).

Write side (`PresenceWriter`, the master only): the current presence of every user who is not
offline is kept in memory, with who is syncing now and when each last stopped. The rules are
Synapse's (handlers/presence.py): a sync with set_presence=online marks the user online and
active; online with no activity for IDLE (5 min) becomes unavailable; a user with no sync in
progress and neither a sync nor activity for SYNC_ONLINE (30 s) becomes offline. Only a change
others should hear about (Synapse's `should_notify`) is written, at a new position of the
presence stream, and wakes the syncs of the user and of their rooms' members; a user who keeps
syncing bumps their activity in memory only, so syncing writes nothing while they stay active.

On a synchrotron (issue 5) `user_syncing` becomes a USER_SYNC command to the master, which keeps
the counts and runs the timeouts; the interface is already the one it will need.
"""

import logging
from contextlib import contextmanager
from dataclasses import replace

import gevent

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.handlers.sync import PRESENCE_STATES
from hs.identifiers import user_id_parts
from hs.storage.presence import UserPresence

logger = logging.getLogger(__name__)

ONLINE, UNAVAILABLE, OFFLINE = "online", "unavailable", "offline"
# Synapse's LAST_ACTIVE_GRANULARITY: activity within this is "currently active", and bumps of
# last_active_ts smaller than this are not news.
LAST_ACTIVE_GRANULARITY_MS = 60_000
# Synapse checks its timers every 5 s; shorter configured timeouts (tests) are checked in step.
MAX_CHECK_INTERVAL_S = 5.0


def format_presence(presence: UserPresence, now: int) -> dict:
    """The content of an m.presence event, and the body of GET /presence/{userId}/status."""
    content = {"presence": presence.state,
               "currently_active": presence.state == ONLINE and presence.currently_active}
    if presence.last_active_ts:
        content["last_active_ago"] = max(0, now - presence.last_active_ts)
    if presence.status_msg:
        content["status_msg"] = presence.status_msg
    return content


class PresenceReader:
    def __init__(self, store, enabled: bool):
        self.store = store
        self.enabled = enabled

    def get_presence(self, requester, user_id: str) -> dict:
        user_id_parts(user_id)
        if not self.enabled:
            # As Synapse: with presence off everyone reads as offline, and nothing is checked.
            return {"presence": OFFLINE}
        if requester.user_id != user_id and not self.store.share_a_room(requester.user_id, user_id):
            raise MatrixError(403, Codes.FORBIDDEN, "You are not allowed to see their presence")
        presence = self.store.get(user_id) or UserPresence(user_id, OFFLINE)
        return format_presence(presence, now_ms())

    def sync_events(self, user_id: str, since: int | None, upto: int, room_ids: list[str],
                    sync_filter) -> list[dict]:
        """m.presence events of the user and their joined rooms' members whose presence changed
        in (since, upto]; for an initial sync (since None) everyone's current presence except
        those offline, as Synapse (include_offline_users_on_sync off)."""
        presence_filter = sync_filter.presence
        if not self.enabled or presence_filter.blocks_all() or presence_filter.limit == 0:
            return []
        if since is not None and since >= upto:
            return []  # the stream has not moved: most long-poll wake-ups are about something else
        now = now_ms()
        events = []
        for presence in self.store.get_changes(room_ids, user_id, since, upto):
            if since is None and presence.state == OFFLINE:
                continue
            event = {"type": "m.presence", "sender": presence.user_id, "content": format_presence(presence, now)}
            if presence_filter.matches(event):
                events.append(event)
        # The newest changes matter most when the filter cuts the list.
        return events if presence_filter.limit is None else events[-presence_filter.limit:]


class PresenceWriter:
    def __init__(self, store, stream, rooms, notifier, *, enabled: bool, idle_timeout_ms: int,
                 sync_online_timeout_ms: int, server_name: str = "", federation_timeout_ms: int = 30 * 60_000):
        self.store = store
        self.stream = stream
        self.rooms = rooms
        self.notifier = notifier
        self.enabled = enabled
        self.idle_timeout_ms = idle_timeout_ms
        self.sync_online_timeout_ms = sync_online_timeout_ms
        self._states: dict[str, UserPresence] = {}  # every user not offline
        self._syncing: dict[str, int] = {}  # user -> syncs in progress that affect presence
        self._last_sync_ended: dict[str, int] = {}  # user -> ms; only for users in _states
        self._pending: list[tuple[int, str, list[str]]] = []  # (stream_id, user, their rooms)
        self._timeouts = None
        self.server_name = server_name
        self.federation_timeout_ms = federation_timeout_ms
        # Remote users not offline -> when their server last told us of them (ms).
        self._remote_heard: dict[str, int] = {}
        # Called with each UserPresence others are told about (the federation sender tells the
        # servers sharing a room with the user of a local one).
        self.presence_listeners = []
        stream.add_listener(self._on_advance)

    def start(self) -> None:
        """Takes over everyone left not offline (say by a restart) and runs the timeouts."""
        if not self.enabled:
            return
        now = now_ms()
        for presence in self.store.get_not_offline():
            if self._is_local(presence.user_id):
                self._states.setdefault(presence.user_id, presence)
            else:
                # Their own server runs their timeouts; ours only ends a silence.
                self._remote_heard.setdefault(presence.user_id, now)
        interval = min(MAX_CHECK_INTERVAL_S, self.idle_timeout_ms / 5000, self.sync_online_timeout_ms / 5000,
                       self.federation_timeout_ms / 5000)
        self._timeouts = gevent.spawn(self._run_timeouts, max(interval, 0.05))

    # --- PUT /presence/{userId}/status -----------------------------------------------------------

    def set_presence(self, requester, user_id: str, body: dict) -> None:
        if requester.user_id != user_id:
            raise MatrixError(403, Codes.FORBIDDEN, "You cannot set the presence of another user")
        if "presence" not in body:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: presence")
        presence = body["presence"]
        if not isinstance(presence, str):
            raise MatrixError(400, Codes.BAD_JSON, "presence must be a string")
        if presence not in PRESENCE_STATES:
            raise MatrixError(400, Codes.INVALID_PARAM, f"presence must be one of {', '.join(PRESENCE_STATES)}")
        status_msg = body.get("status_msg")
        if "status_msg" in body and not isinstance(status_msg, str):
            raise MatrixError(400, Codes.BAD_JSON, "status_msg must be a string")
        if self.enabled:
            # As Synapse: setting the state without a message clears the message.
            self._set(user_id, presence, status_msg=status_msg, is_sync=False)

    # --- /sync -----------------------------------------------------------------------------------

    @contextmanager
    def user_syncing(self, user_id: str, device_id: str | None, affect_presence: bool,
                     presence_state: str = ONLINE):
        """Around one /sync: marks the user `presence_state` (and active, when online) as it
        starts, and keeps them from going offline while it runs. Presence is per user, as in
        Synapse before per-device presence: `device_id` is for the worker protocol."""
        if not self.enabled or not affect_presence:
            yield
            return
        self._syncing[user_id] = self._syncing.get(user_id, 0) + 1
        try:
            self._set(user_id, presence_state, status_msg=None, is_sync=True)
            yield
        finally:
            left = self._syncing[user_id] - 1
            if left:
                self._syncing[user_id] = left
            else:
                del self._syncing[user_id]
            if user_id in self._states:
                self._last_sync_ended[user_id] = now_ms()

    def remote_user_sync(self, user_id: str, device_id: str | None, syncing: bool, ms: int) -> None:
        """USER_SYNC from a synchrotron: one of the user's syncs there started (marking them
        online) or ended."""
        if not self.enabled:
            return
        if syncing:
            self._syncing[user_id] = self._syncing.get(user_id, 0) + 1
            self._set(user_id, ONLINE, status_msg=None, is_sync=True)
            return
        left = self._syncing.get(user_id, 0) - 1
        if left > 0:
            self._syncing[user_id] = left
        else:
            self._syncing.pop(user_id, None)
        if user_id in self._states:
            self._last_sync_ended[user_id] = now_ms()

    def state_from_sync(self, user_id: str, state: str) -> None:
        """A synchrotron's sync with set_presence other than online (which USER_SYNC carries)."""
        if self.enabled and state in PRESENCE_STATES:
            self._set(user_id, state, status_msg=None, is_sync=True)

    # --- state changes ---------------------------------------------------------------------------

    def _current(self, user_id: str) -> UserPresence:
        presence = self._states.get(user_id)
        if presence is None:
            stored = self.store.get(user_id) or UserPresence(user_id, OFFLINE)
            # Another greenlet may have changed it while the row was read.
            presence = self._states.get(user_id, stored)
        return presence

    def _set(self, user_id: str, state: str, *, status_msg: str | None, is_sync: bool) -> None:
        now = now_ms()
        old = self._current(user_id)
        new = replace(old, state=state)
        if state == ONLINE:
            # A sync counts as activity, as in Synapse (the spec would rather it did not).
            new = replace(new, last_active_ts=now)
        if not is_sync:
            # A sync keeps the status message.
            new = replace(new, status_msg=status_msg)
        self._update(old, new, now)

    def _update(self, old: UserPresence, new: UserPresence, now: int) -> None:
        new = replace(new, currently_active=new.state == ONLINE
                      and now - new.last_active_ts < LAST_ACTIVE_GRANULARITY_MS)
        if new.state == OFFLINE:
            self._states.pop(new.user_id, None)
            self._last_sync_ended.pop(new.user_id, None)
        else:
            self._states[new.user_id] = new
        if _should_notify(old, new):
            self._write(new)

    def _write(self, new: UserPresence) -> None:
        with self.stream.get_next() as stream_id:
            rooms = self.rooms.get_rooms_for_user(new.user_id)
            self.store.put(new, stream_id)
            self._pending.append((stream_id, new.user_id, rooms))
        for listener in self.presence_listeners:
            listener(new)

    def set_remote_presence(self, presence: UserPresence) -> None:
        """A user of another server, from an m.presence EDU: stored for the local users who share
        a room with them; their server runs their timeouts, so none run here."""
        if not self.enabled:
            return
        if presence.state == OFFLINE:
            self._remote_heard.pop(presence.user_id, None)
        else:
            self._remote_heard[presence.user_id] = now_ms()
        if presence != self.store.get(presence.user_id):
            self._write(presence)

    def _is_local(self, user_id: str) -> bool:
        return not self.server_name or user_id.partition(":")[2] == self.server_name

    def _on_advance(self, token: int) -> None:
        """Wakes the changed users and their rooms (every member joined there is someone who
        shares a room with them) once the stream's position covers the change."""
        ready = [p for p in self._pending if p[0] <= token]
        if not ready:
            return
        self._pending = [p for p in self._pending if p[0] > token]
        self.notifier.notify(users={user for _, user, _ in ready}, rooms={r for _, _, rooms in ready for r in rooms})

    # --- timeouts --------------------------------------------------------------------------------

    def _run_timeouts(self, interval_s: float) -> None:
        while True:
            gevent.sleep(interval_s)
            try:
                self.check_timeouts()
            except Exception:
                logger.exception("presence timeouts failed")

    def check_timeouts(self) -> None:
        now = now_ms()
        for user_id, heard in list(self._remote_heard.items()):
            if now - heard > self.federation_timeout_ms:
                # A remote user whose server went quiet (Synapse's federation timeout).
                del self._remote_heard[user_id]
                stored = self.store.get(user_id)
                if stored is not None and stored.state != OFFLINE:
                    self._write(replace(stored, state=OFFLINE, currently_active=False))
        for user_id in list(self._states):
            old = self._states.get(user_id)
            if old is None:
                continue
            new = old
            if old.state == ONLINE and now - old.last_active_ts > self.idle_timeout_ms:
                new = replace(new, state=UNAVAILABLE)
            seen = max(self._last_sync_ended.get(user_id, 0), old.last_active_ts)
            if user_id not in self._syncing and now - seen > self.sync_online_timeout_ms:
                new = replace(new, state=OFFLINE)
            stale_active = old.currently_active and now - old.last_active_ts >= LAST_ACTIVE_GRANULARITY_MS
            if new is not old or stale_active:
                self._update(old, new, now)


def _should_notify(old: UserPresence, new: UserPresence) -> bool:
    """Synapse's rule: a new state or message, a change of currently_active while online, or
    (when not currently active) a bump of last_active_ts by more than the granularity."""
    if old.status_msg != new.status_msg or old.state != new.state:
        return True
    bumped = new.last_active_ts - old.last_active_ts > LAST_ACTIVE_GRANULARITY_MS
    if old.state == ONLINE:
        return new.currently_active != old.currently_active or (bumped and not new.currently_active)
    return bumped


class WorkerPresence:
    """A synchrotron's stand-in for PresenceWriter.user_syncing: tells the master over
    replication that a user is syncing here (USER_SYNC start on their first sync, end once
    their last one here has been over for END_DEBOUNCE_S, so a client's back-to-back
    long-polls send nothing). Announced again on every reconnect; the master ends them all
    when the connection drops."""

    END_DEBOUNCE_S = 10.0

    def __init__(self, replication, master, enabled: bool):
        self.replication = replication
        self.master = master  # replication.http.MasterClient
        self.enabled = enabled
        self._syncs: dict[str, int] = {}  # user -> syncs in progress here
        self._announced: set[str] = set()
        self._ending: dict[str, gevent.Greenlet] = {}
        replication.add_on_connect(lambda: [f"USER_SYNC {u} - start {now_ms()}" for u in sorted(self._announced)])

    @contextmanager
    def user_syncing(self, user_id: str, device_id: str | None, affect_presence: bool,
                     presence_state: str = ONLINE):
        if not self.enabled or not affect_presence:
            yield
            return
        if presence_state != ONLINE:
            # USER_SYNC only says "online": another state is set through the master's API,
            # and does not keep the user from going offline.
            gevent.spawn(self.master.call, "presence_from_sync", {"user_id": user_id, "state": presence_state})
            yield
            return
        self._syncs[user_id] = self._syncs.get(user_id, 0) + 1
        pending_end = self._ending.pop(user_id, None)
        if pending_end is not None:
            pending_end.kill(block=False)
        if user_id not in self._announced:
            self._announced.add(user_id)
            self.replication.send(f"USER_SYNC {user_id} - start {now_ms()}")
        try:
            yield
        finally:
            left = self._syncs[user_id] - 1
            if left:
                self._syncs[user_id] = left
            else:
                del self._syncs[user_id]
                self._ending[user_id] = gevent.spawn_later(self.END_DEBOUNCE_S, self._end, user_id)

    def _end(self, user_id: str) -> None:
        self._ending.pop(user_id, None)
        if user_id not in self._syncs and user_id in self._announced:
            self._announced.discard(user_id)
            self.replication.send(f"USER_SYNC {user_id} - end {now_ms()}")
