"""PusherPool: runs one Pusher per row of the pushers table in the process that delivers
notifications (the master with start_pushers, else the pusher worker).

It follows three streams through their positions only (add_listener works on the master's id
generators and on a worker's ReplicatedPositions alike) and reads what changed from
PostgreSQL, so it needs nothing that only the master has:
- events: which users with pushers got push actions in the new range (one keyed query over
  the users it runs pushers for), and tells those users' pushers;
- receipts: whose receipts moved (the badge may have dropped);
- pushers: adds, updates (restart from the stored position) and removals.

Listeners run inside the writer's commit and must not yield, so they only wake the pool's
greenlet, which does the reads. Each kind's factory (`factories`, filled by the composition
root) builds a Pusher from a pusher row (the pushers table's columns, `data` decoded) and
`start_stream_ordering`: the events position when this process learned of the pusher, where a
new pusher starts (what it was set after is sent, even if the pool got to it later). A Pusher
keeps its own delivery position.
"""

import logging
from collections.abc import Callable
from typing import Protocol

import gevent
from gevent.event import Event

from hs.clock import now_ms

logger = logging.getLogger(__name__)


class Pusher(Protocol):
    def start(self) -> None:
        """Begin from the stored position (a new pusher: from now)."""

    def on_new_notifications(self, max_stream_ordering: int) -> None:
        """New push actions may exist up to this stream ordering. Must not block."""

    def on_new_receipts(self) -> None:
        """The user read something: badge counts may have dropped. Must not block."""

    def stop(self) -> None:
        """The pusher was removed or changed, or the process is stopping."""


class PusherPool:
    def __init__(self, delivery_store, pusher_store, receipt_store, event_stream, receipt_stream, pusher_stream):
        self.delivery_store = delivery_store
        self.pusher_store = pusher_store
        self.receipt_store = receipt_store
        self.event_stream = event_stream
        self.receipt_stream = receipt_stream
        self.pusher_stream = pusher_stream
        self.factories: dict[str, Callable[[dict], Pusher]] = {}
        self._pushers: dict[str, dict[tuple[str, str], Pusher]] = {}  # user_id -> (app_id, pushkey) -> Pusher
        self._positions: dict[str, int] = {}
        self._events_at_pusher_change = None  # events position at the first pusher change not yet applied
        self._wake = Event()
        self._runner = None

    def start(self) -> None:
        # Positions first: a change after them is applied again, which replaces the same pusher.
        self._positions = {"events": self.event_stream.get_current_token(),
                           "receipts": self.receipt_stream.get_current_token(),
                           "pushers": self.pusher_stream.get_current_token()}
        self.delivery_store.delete_orphaned_state()
        rows = self.delivery_store.get_all_pushers()
        for row in rows:
            row["start_stream_ordering"] = self._positions["events"]
            self._start_pusher(row)
        logger.info("Started %d pushers", len(rows))
        self.event_stream.add_listener(self._on_advance)
        self.receipt_stream.add_listener(self._on_advance)
        self.pusher_stream.add_listener(self._on_pusher_change)
        self._wake.set()  # whatever moved before the listeners were added
        self._runner = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.kill()
            self._runner = None
        for pushers in self._pushers.values():
            for pusher in pushers.values():
                pusher.stop()
        self._pushers.clear()

    def count(self) -> int:
        return sum(len(p) for p in self._pushers.values())

    def status(self) -> dict:
        """For `synctl status`: pushers running here, how many fail, and for how long the oldest has."""
        failing, since = self.delivery_store.failing()
        return {"running": self.count(), "failing": failing,
                "failing_for_s": None if since is None else max(0, (now_ms() - since) // 1000)}

    def _on_advance(self, _token: int) -> None:
        self._wake.set()

    def _on_pusher_change(self, _token: int) -> None:
        if self._events_at_pusher_change is None:
            self._events_at_pusher_change = self.event_stream.get_current_token()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                # Pusher changes first, so a pusher added before an event hears of it.
                self._follow_pushers()
                self._follow_events()
                self._follow_receipts()
            except Exception:
                logger.exception("PusherPool failed to follow the streams; retrying")
                gevent.sleep(1)
                self._wake.set()

    def _follow_pushers(self) -> None:
        upto = self.pusher_stream.get_current_token()
        since = self._positions["pushers"]
        start_at, self._events_at_pusher_change = self._events_at_pusher_change, None
        if upto <= since:
            return
        if start_at is None:
            start_at = self.event_stream.get_current_token()
        for _stream_id, change in self.pusher_store.get_stream_rows(since, upto, None):
            key = (change["user_id"], change["app_id"], change["pushkey"])
            self._stop_pusher(key)
            if change["deleted"]:
                self.delivery_store.delete_state([key])
                continue
            row = self.delivery_store.get_pusher(*key)
            if row is not None:  # None: deleted again since, its tombstone follows
                row["start_stream_ordering"] = start_at
                self._start_pusher(row)
        self._positions["pushers"] = upto

    def _follow_events(self) -> None:
        upto = self.event_stream.get_current_token()
        since = self._positions["events"]
        if upto <= since:
            return
        users = self.delivery_store.get_users_with_push_actions(list(self._pushers), since, upto) \
            if self._pushers else []
        self._positions["events"] = upto
        for user_id in users:
            for pusher in list(self._pushers.get(user_id, {}).values()):
                pusher.on_new_notifications(upto)

    def _follow_receipts(self) -> None:
        upto = self.receipt_stream.get_current_token()
        since = self._positions["receipts"]
        if upto <= since:
            return
        rows = self.receipt_store.get_stream_rows(since, upto, None) if self._pushers else []
        self._positions["receipts"] = upto
        for user_id in {row["user_id"] for _id, row in rows}:
            for pusher in list(self._pushers.get(user_id, {}).values()):
                pusher.on_new_receipts()

    def _start_pusher(self, row: dict) -> None:
        factory = self.factories.get(row["kind"])
        if factory is None:
            logger.warning("No pusher for kind %r (user %s, app_id %s)", row["kind"], row["user_id"], row["app_id"])
            return
        try:
            pusher = factory(row)
            pusher.start()
        except Exception:
            logger.exception("Could not start the pusher of %s, app_id %s", row["user_id"], row["app_id"])
            return
        self._pushers.setdefault(row["user_id"], {})[(row["app_id"], row["pushkey"])] = pusher

    def _stop_pusher(self, key: tuple[str, str, str]) -> None:
        user_id, app_id, pushkey = key
        pushers = self._pushers.get(user_id, {})
        pusher = pushers.pop((app_id, pushkey), None)
        if not pushers:
            self._pushers.pop(user_id, None)
        if pusher is not None:
            pusher.stop()
