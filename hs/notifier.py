"""Parks long-poll requests (/sync, /events) and wakes exactly those a change concerns.

Per process: a request parked here can only be woken by changes this process learns of
(its own writes on the master, replicated rows on a worker). A parked request holds no
database connection: it holds a gevent Event and the keys it listens on.
"""

import gevent.event


class _Waiter:
    __slots__ = ("event", "user_id", "room_ids")

    def __init__(self, user_id: str, room_ids: frozenset):
        self.event = gevent.event.Event()
        self.user_id = user_id
        self.room_ids = room_ids


class Notifier:
    def __init__(self):
        self._by_user: dict[str, set[_Waiter]] = {}
        self._by_room: dict[str, set[_Waiter]] = {}

    def wait(self, user_id: str, room_ids, timeout_s: float, has_news) -> bool:
        """Parks until a change for the user or one of `room_ids` is notified, or the timeout.

        `has_news()` is asked after the waiter is registered and before it parks: a change
        that lands between the caller's last read and the park is then never missed.
        Returns True when woken by a change (or news was already there)."""
        waiter = _Waiter(user_id, frozenset(room_ids))
        self._by_user.setdefault(user_id, set()).add(waiter)
        for room_id in waiter.room_ids:
            self._by_room.setdefault(room_id, set()).add(waiter)
        try:
            if has_news():
                return True
            return waiter.event.wait(timeout_s)
        finally:
            self._remove(waiter)

    def _remove(self, waiter: _Waiter) -> None:
        for index, key in [(self._by_user, waiter.user_id)] + [(self._by_room, r) for r in waiter.room_ids]:
            waiters = index.get(key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del index[key]

    def notify(self, *, users=(), rooms=()) -> int:
        """Wakes every request parked for one of `users` or `rooms`; returns how many."""
        woken = 0
        for index, keys in ((self._by_user, users), (self._by_room, rooms)):
            for key in keys:
                for waiter in index.get(key, ()):
                    if not waiter.event.is_set():
                        waiter.event.set()
                        woken += 1
        return woken

    def parked_count(self) -> int:
        return sum(len(w) for w in self._by_user.values())


class StreamWriteNotifier:
    """Tells the notifier about a stream's writes (on the master, the writer) only once the
    stream's position has passed them: a woken request must find the write when it reads, and a
    write committed behind an unfinished lower id is not readable yet."""

    def __init__(self, notifier: Notifier, stream):
        self.notifier = notifier
        self._pending: list[tuple[int, tuple, tuple]] = []  # (stream id, users, rooms)
        stream.add_listener(self._on_advance)

    def written(self, stream_id: int, *, users=(), rooms=()) -> None:
        """Called inside the id's allocation block, before the stream can advance past it."""
        self._pending.append((stream_id, tuple(users), tuple(rooms)))

    def _on_advance(self, token: int) -> None:
        ready = [p for p in self._pending if p[0] <= token]
        if not ready:
            return
        self._pending = [p for p in self._pending if p[0] > token]
        self.notifier.notify(users={u for _, users, _ in ready for u in users},
                             rooms={r for _, _, rooms in ready for r in rooms})
