"""HTTP pushers: notifications POSTed to the pusher's push gateway (push gateway API,
POST /_matrix/push/v1/notify), as Synapse's httppusher.

Each pusher is one greenlet that sends one request at a time, in stream order: the user's
notifying push actions after its stored position that no read receipt covers yet. A failure
(network error, timeout, refused address, any non-2xx answer: Synapse retries 4xx alike) is
retried with a backoff doubling from 1 s up to an hour; after 24 hours of failing the
notification is skipped, so a gateway that comes back is not flooded with old ones. The
position is written after each notification dealt with, so a restart neither re-sends nor
skips. A `rejected` list naming this pushkey removes the pusher. When the user reads (a
receipt) and the badge count changed, a counts-only notification updates the app's badge.
"""

import logging

import gevent
from gevent.event import Event

from hs.clock import now_ms
from hs.push.outbound import OutboundError

logger = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 1
MAX_BACKOFF_S = 60 * 60
GIVE_UP_AFTER_MS = 24 * 60 * 60 * 1000
BATCH = 100
_NAME_KEYS = [("m.room.name", ""), ("m.room.canonical_alias", "")]


def tweaks_for_actions(actions: list) -> dict:
    """The set_tweak actions as a dict; an absent value means true (the spec's `highlight`)."""
    return {a["set_tweak"]: a.get("value", True) for a in actions if isinstance(a, dict) and "set_tweak" in a}


class HttpPusherFactory:
    """PusherPool's factory for kind `http`. `remove_pusher(user_id, app_id, pushkey)` removes
    a rejected pusher (on the master PusherWriter.remove_pusher)."""

    def __init__(self, config, store, http, events, state, rooms, push_actions, event_stream, remove_pusher):
        self.config = config
        self.store = store
        self.http = http
        self.events = events
        self.state = state
        self.rooms = rooms
        self.push_actions = push_actions
        self.event_stream = event_stream
        self.remove_pusher = remove_pusher

    def __call__(self, row: dict) -> "HttpPusher":
        return HttpPusher(self, row)


class HttpPusher:
    def __init__(self, deps: HttpPusherFactory, row: dict):
        self.deps = deps
        self.user_id, self.app_id, self.pushkey = row["user_id"], row["app_id"], row["pushkey"]
        self.key = (self.user_id, self.app_id, self.pushkey)
        self.created_ts = row["created_ts"]
        self.data = row["data"]
        self.url = self.data["url"]
        self.data_minus_url = {k: v for k, v in self.data.items() if k != "url"}
        self.max_stream_ordering = 0
        self.start_stream_ordering = row.get("start_stream_ordering")
        self.position = 0
        self.failing_since = None
        self.backoff_s = INITIAL_BACKOFF_S
        self.last_badge = None
        self._badge_due = False
        self._wake = Event()
        self._runner = None

    # --- the Pusher protocol (hs/push/pool.py) ------------------------------------------------

    def start(self) -> None:
        self.max_stream_ordering = self.deps.event_stream.get_current_token()
        self._runner = gevent.spawn(self._run)

    def on_new_notifications(self, max_stream_ordering: int) -> None:
        self.max_stream_ordering = max(self.max_stream_ordering, max_stream_ordering)
        self._wake.set()

    def on_new_receipts(self) -> None:
        self._badge_due = True
        self._wake.set()

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.kill()
            self._runner = None

    # --- delivery -------------------------------------------------------------------------------

    def _run(self) -> None:
        loaded = False
        while True:
            self._wake.clear()
            try:
                if not loaded:
                    # A new pusher starts where the pool learned of it: nothing older is sent.
                    start_at = self.start_stream_ordering
                    self.position, self.failing_since = self.deps.store.get_or_create_state(
                        self.key, self.created_ts, self.max_stream_ordering if start_at is None else start_at)
                    loaded = True
                delivered = self._process()
                if delivered and self._badge_due:
                    self._badge_due = False
                    self._update_badge()
            except Exception:
                logger.exception("Pusher %s failed", self._name())
                delivered = False
            if not delivered:
                # Backing off: new notifications wait for the retry, in order behind the failed one.
                logger.info("Push to %s failed: retrying in %ds", self._name(), self.backoff_s)
                gevent.sleep(self.backoff_s)
                self.backoff_s = min(self.backoff_s * 2, MAX_BACKOFF_S)
                continue
            self._wake.wait()

    def _process(self) -> bool:
        """Sends what is unsent up to max_stream_ordering; False when a send failed."""
        store = self.deps.store
        while self.position < self.max_stream_ordering:
            upto = self.max_stream_ordering
            actions = store.get_push_actions(self.user_id, self.position, upto, BATCH)
            for stream_ordering, event_id, _room_id, push_actions, read in actions:
                if read or "notify" not in push_actions:
                    self.position = stream_ordering
                    continue
                if self._send_event(event_id, push_actions):
                    self.position = stream_ordering
                    self.failing_since = None
                    self.backoff_s = INITIAL_BACKOFF_S
                    store.set_position(self.key, stream_ordering, now_ms())
                    continue
                now = now_ms()
                if self.failing_since is None:
                    self.failing_since = now
                    store.set_failing_since(self.key, now)
                if now - self.failing_since < GIVE_UP_AFTER_MS:
                    return False
                # As Synapse: so that a fixed URL does not bring a load of old notifications.
                logger.warning("Giving up on a notification to %s after failing for a day", self._name())
                self.position, self.failing_since, self.backoff_s = stream_ordering, None, INITIAL_BACKOFF_S
                store.set_position(self.key, stream_ordering, None)
                store.set_failing_since(self.key, None)
            if len(actions) < BATCH:
                self.position = max(self.position, upto)
        return True

    def _send_event(self, event_id: str, actions: list) -> bool:
        deps = self.deps
        stored = deps.events.get_event(event_id)
        if stored is None:
            return True
        event = stored.effective_event
        tweaks = tweaks_for_actions(actions)
        badge = self._badge()
        # Synapse's: high when it makes a sound or highlights (an invite's rule has a sound), or
        # might (an encrypted event's rules ran on the ciphertext).
        prio = "high" if event.type == "m.room.encrypted" or tweaks.get("highlight") or tweaks.get("sound") else "low"
        notification = {"event_id": event.event_id, "room_id": event.room_id, "prio": prio,
                        "counts": {"unread": badge}}
        if self.data.get("format") == "event_id_only":
            tweaks = {}
        else:
            notification.update(type=event.type, sender=event.sender)
            if event.type == "m.room.member" and event.state_key is not None:
                notification["membership"] = event.content.get("membership")
                notification["user_is_target"] = event.state_key == self.user_id
            if deps.config.push_include_content and event.content:
                notification["content"] = event.content
            notification.update(self._context(event))
        rejected = self._dispatch(notification, tweaks)
        if rejected is None:
            return False
        self.last_badge = badge
        for pushkey in rejected:
            if pushkey != self.pushkey:
                logger.warning("Ignoring rejected pushkey %s of %s: not the one sent", pushkey, self._name())
                continue
            logger.info("Pushkey of %s was rejected: removing the pusher", self._name())
            try:
                deps.remove_pusher(self.user_id, self.app_id, self.pushkey)
            except Exception:
                # The notification was delivered: it must not be sent again for this. The
                # next answer rejecting the pushkey tries the removal again.
                logger.exception("Could not remove the rejected pusher %s", self._name())
        return True

    def _context(self, event) -> dict:
        """sender_display_name and room_name (its name, else its canonical alias), when set."""
        deps = self.deps
        keys = [*_NAME_KEYS, ("m.room.member", event.sender)]
        state = deps.state.get_current_state_ids(event.room_id, keys)
        found = deps.events.get_events(list(state.values()))
        values = []
        for key, field in (*zip(_NAME_KEYS, ("name", "alias"), strict=True), (keys[2], "displayname")):
            stored = found.get(state.get(key))
            value = stored.effective_event.content.get(field) if stored is not None else None
            values.append(value if isinstance(value, str) and value else None)
        name, alias, display_name = values
        context = {}
        if display_name:
            context["sender_display_name"] = display_name
        if name or alias:
            context["room_name"] = name or alias
        return context

    def _dispatch(self, notification: dict, tweaks: dict) -> list | None:
        """The rejected pushkeys, or None when the request failed."""
        device = {"app_id": self.app_id, "pushkey": self.pushkey, "pushkey_ts": self.created_ts // 1000,
                  "data": self.data_minus_url}
        if tweaks:
            device["tweaks"] = tweaks
        try:
            answer = self.deps.http.post_json(self.url, {"notification": {**notification, "devices": [device]}})
        except OutboundError as e:
            logger.warning("Failed to push to %s: %s", self._name(), e)
            return None
        rejected = answer.get("rejected", [])
        return [p for p in rejected if isinstance(p, str)] if isinstance(rejected, list) else []

    def _update_badge(self) -> None:
        """A counts-only notification when the badge changed since the last one sent (a
        receipt lowers it); a failure is only logged, the next one carries the count."""
        badge = self._badge()
        if badge == self.last_badge:
            return
        if self._dispatch({"counts": {"unread": badge}}, {}) is not None:
            self.last_badge = badge

    def _badge(self) -> int:
        """Synapse's badge: pending invites, plus rooms with unread notifications (or those
        notifications' number, without push.group_unread_count_by_room)."""
        deps = self.deps
        badge = len(deps.rooms.get_rooms_for_user(self.user_id, memberships=("invite",)))
        joined = deps.rooms.get_rooms_for_user(self.user_id)
        counts = deps.push_actions.get_unread_counts(self.user_id, joined, deps.event_stream.get_current_token())
        for threads in counts.values():
            notifs = sum(n for n, _ in threads.values())
            if notifs:
                badge += 1 if deps.config.push_group_unread_count_by_room else notifs
        return badge

    def _name(self) -> str:
        return f"{self.user_id}/{self.app_id}/{self.pushkey}"
