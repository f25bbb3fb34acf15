"""Typing notifications (PUT /rooms/{roomId}/typing/{userId}) and their part of /sync: an
m.typing event in each joined room's `ephemeral`.

Kept in memory on the master, as Synapse does: typing is short-lived, and typing state (and the
typing stream's positions) reset when the master restarts. A position handed out before a
restart may then be ahead of the counter; it reads as now.
"""

import gevent

from hs.errors import Codes, MatrixError

# Synapse's default when `typing` is true without a `timeout`, and its cap on what a client asks.
DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 120_000


class TypingHandler:
    def __init__(self, rooms, notifier):
        self.rooms = rooms
        self.notifier = notifier
        self._position = 0
        self._typing: dict[str, set[str]] = {}  # room_id -> the users typing there
        self._changed_at: dict[str, int] = {}  # room_id -> typing position of its latest change
        self._timers: dict[tuple[str, str], gevent.Greenlet] = {}

    def get_current_token(self) -> int:
        return self._position

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

    def _stop(self, room_id: str, user_id: str) -> None:
        users = self._typing.get(room_id)
        if users is None or user_id not in users:
            return
        users.discard(user_id)
        if not users:
            del self._typing[room_id]
        self._changed(room_id)

    def _changed(self, room_id: str) -> None:
        self._position += 1
        self._changed_at[room_id] = self._position
        self.notifier.notify(rooms=[room_id])

    # --- /sync -----------------------------------------------------------------------------------

    def sync_events(self, since: int | None, room_ids: list[str], sync_filter) -> dict[str, dict]:
        """{room_id: m.typing event} for the rooms of `room_ids` whose typers changed after
        `since` (for an initial sync, the rooms where someone types now)."""
        ephemeral = sync_filter.room.ephemeral
        if ephemeral.blocks_all():
            return {}
        if since is not None:
            since = min(since, self._position)
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
