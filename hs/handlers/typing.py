"""Typing notifications (PUT /rooms/{roomId}/typing/{userId}) and their part of /sync: an
m.typing event in each joined room's `ephemeral`.

Kept in memory on the master, as Synapse does: typing is short-lived, and typing state resets
when the master restarts. Positions start from the clock at start-up (milliseconds), so they
keep growing across restarts: a token handed out before a restart is below every later change,
and a client holding one still sees the typing that starts after it.

Workers keep a copy, replaced room by room from the replicated `typing` stream (`apply_rows`);
the master sends its whole state to a worker on every connect (see docs/replication.md).
"""

import time

import gevent

from hs.errors import Codes, MatrixError

# Synapse's default when `typing` is true without a `timeout`, and its cap on what a client asks.
DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 120_000
# As Synapse: a typer of another server stops after this unless its server says so again.
FEDERATION_TIMEOUT_MS = 60_000


class TypingPosition:
    """The master's typing stream position: a counter, started from the clock."""

    def __init__(self):
        self._token = int(time.time() * 1000)
        self._listeners = []

    def get_current_token(self) -> int:
        return self._token

    def add_listener(self, callback) -> None:
        self._listeners.append(callback)

    def next(self) -> int:
        self._token += 1
        for listener in self._listeners:
            listener(self._token)
        return self._token


class TypingHandler:
    """`position`: a TypingPosition on the master, a ReplicatedPosition on a worker."""

    def __init__(self, rooms, notifier, position=None):
        self.rooms = rooms
        self.notifier = notifier
        self.position = position if position is not None else TypingPosition()
        self._typing: dict[str, set[str]] = {}  # room_id -> the users typing there
        self._changed_at: dict[str, int] = {}  # room_id -> typing position of its latest change
        self._timers: dict[tuple[str, str], gevent.Greenlet] = {}
        # Called with (room_id, user_id, typing) for every local typing request and timeout
        # (the federation sender tells the room's other servers).
        self.typing_listeners = []

    def get_current_token(self) -> int:
        return self.position.get_current_token()

    def set_typing(self, requester, room_id: str, user_id: str, typing: bool, timeout_ms) -> None:
        if requester.user_id != user_id:
            raise MatrixError(403, Codes.FORBIDDEN, "Cannot set another user's typing state")
        if not isinstance(typing, bool):
            raise MatrixError(400, Codes.BAD_JSON, "typing must be a boolean")
        if typing and timeout_ms is not None and (isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int)
                                                   or timeout_ms < 0):
            raise MatrixError(400, Codes.BAD_JSON, "timeout must be a non-negative integer")
        membership = self.rooms.get_membership(room_id, user_id)
        if membership is None or membership[0] != "join":
            raise MatrixError(403, Codes.FORBIDDEN, "You are not joined to this room")
        self._apply(room_id, user_id, typing, timeout_ms)
        for listener in self.typing_listeners:
            listener(room_id, user_id, typing)

    def set_remote_typing(self, room_id: str, user_id: str, typing: bool) -> None:
        """An m.typing EDU; its origin was checked to be the user's server, joined to the room."""
        self._apply(room_id, user_id, typing, FEDERATION_TIMEOUT_MS)

    def _apply(self, room_id: str, user_id: str, typing: bool, timeout_ms) -> None:
        key = (room_id, user_id)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.kill(block=False)
        if typing:
            timeout_s = min(DEFAULT_TIMEOUT_MS if timeout_ms is None else timeout_ms, MAX_TIMEOUT_MS) / 1000
            was_typing = user_id in self._typing.get(room_id, ())
            self._typing.setdefault(room_id, set()).add(user_id)
            self._timers[key] = gevent.spawn_later(timeout_s, self._expire, room_id, user_id)
            if not was_typing:
                self._changed(room_id)
        else:
            self._stop(room_id, user_id)

    def _expire(self, room_id: str, user_id: str) -> None:
        self._timers.pop((room_id, user_id), None)
        self._stop(room_id, user_id)
        for listener in self.typing_listeners:
            listener(room_id, user_id, False)

    def _stop(self, room_id: str, user_id: str) -> None:
        users = self._typing.get(room_id)
        if users is None or user_id not in users:
            return
        users.discard(user_id)
        if not users:
            del self._typing[room_id]
        self._changed(room_id)

    def _changed(self, room_id: str) -> None:
        self._changed_at[room_id] = self.position.next()
        self.notifier.notify(rooms=[room_id])

    # --- replication -----------------------------------------------------------------------------

    def get_rows(self, from_id: int, upto_id: int, limit: int | None) -> list[tuple[int, dict]]:
        """The rooms whose typers changed in (from_id, upto_id], each with all its current typers."""
        rows = sorted((at, room_id) for room_id, at in self._changed_at.items() if from_id < at <= upto_id)
        if limit is not None:
            rows = rows[:limit]
        return [(at, {"room_id": room_id, "user_ids": sorted(self._typing.get(room_id, ()))}) for at, room_id in rows]

    def apply_rows(self, token: int, rows: list[dict]) -> None:
        """On a worker: the master's typers for these rooms as of `token` replace ours."""
        for row in rows:
            room_id = row["room_id"]
            if row["user_ids"]:
                self._typing[room_id] = set(row["user_ids"])
            else:
                self._typing.pop(room_id, None)
            self._changed_at[room_id] = token
        self.notifier.notify(rooms=[row["room_id"] for row in rows])

    def forget_all(self) -> None:
        """On a worker, when the master restarted: its typers are gone. Rooms that had typers
        show as changed (to nobody) just past our position: the new master's positions start
        from its clock, above it."""
        rooms = list(self._typing)
        self._typing.clear()
        for room_id in rooms:
            self._changed_at[room_id] = self.get_current_token() + 1
        self.notifier.notify(rooms=rooms)

    # --- /sync -----------------------------------------------------------------------------------

    def sync_events(self, since: int | None, room_ids: list[str], sync_filter) -> dict[str, dict]:
        """{room_id: m.typing event} for the rooms of `room_ids` whose typers changed after
        `since` (for an initial sync, the rooms where someone types now)."""
        ephemeral = sync_filter.room.ephemeral
        if ephemeral.blocks_all():
            return {}
        if since is not None:
            since = min(since, self.get_current_token())
        result = {}
        for room_id in room_ids:
            if since is None:
                if room_id not in self._typing:
                    continue
            elif self._changed_at.get(room_id, 0) <= since:
                continue
            event = {"type": "m.typing", "content": {"user_ids": sorted(self._typing.get(room_id, ()))}}
            if ephemeral.includes_room(room_id) and ephemeral.matches(event, room_id):
                result[room_id] = event
        return result
