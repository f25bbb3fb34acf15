"""Email pushers (`kind: email`): one email about the user's unread notifications, some time
after the first of them, if the user has still not read them.

As Synapse's emailpusher: a notification is due `notif_delay_before_mail` after its event, and
no sooner than the throttle of its room allows; when any is due, one email goes out naming
every unread notification since the last email, grouped per room, and each of those rooms'
throttle grows. Unlike Synapse the throttle starts at the delay and doubles (up to a day) for
as long as the user leaves the room unread, and a room the user has read starts over.

State lives in email_pusher_state / email_pusher_throttle (017), written by the process
running the pusher: a restart resumes from the last push action dealt with, so nothing is
mailed twice or skipped. A failed send is logged and retried with a doubling backoff.
"""

import logging
import secrets
from urllib.parse import quote, urlencode

import gevent

from hs.clock import now_ms
from hs.push.mailer import MailError, notification_email, one_line

logger = logging.getLogger(__name__)

UNSUBSCRIBE_PATH = "/_synapse/client/email/unsubscribe"
THROTTLE_MAX_MS = 24 * 3600 * 1000
RETRY_MAX_MS = 3600 * 1000
BATCH = 200
_NAME_KEYS = [("m.room.name", ""), ("m.room.canonical_alias", "")]


class EmailPusherFactory:
    """PusherPool's factory for kind `email`: one EmailPusher per pusher row."""

    def __init__(self, config, store, mailer, events, state, event_stream):
        self.config = config
        self.store = store
        self.mailer = mailer
        self.events = events
        self.state = state
        self.event_stream = event_stream

    def __call__(self, row: dict) -> "EmailPusher":
        return EmailPusher(self, row)


class EmailPusher:
    def __init__(self, deps: EmailPusherFactory, row: dict):
        self.deps = deps
        self.delay_ms = deps.config.email.notif_delay_before_mail_ms
        self.key = (row["user_id"], row["app_id"], row["pushkey"])
        self.user_id, self.address = row["user_id"], row["pushkey"]
        self.max_stream_ordering = 0
        self.position = None  # loaded on the first run
        self.unsubscribe_token = None
        self.throttles: dict[str, tuple[int, int]] = {}  # room_id -> (last_sent_ts, throttle_ms)
        self.retry_ms = 0
        self.retry_at = 0  # after a failed send, no new attempt before this (ms), whatever arrives
        self._stopped = False
        self._again = False
        self._runner = None
        self._timer = None

    # --- the Pusher protocol (hs/push/pool.py) ------------------------------------------------

    def start(self) -> None:
        self.max_stream_ordering = self.deps.event_stream.get_current_token()
        self._kick()

    def on_new_notifications(self, max_stream_ordering: int) -> None:
        self.max_stream_ordering = max(self.max_stream_ordering, max_stream_ordering)
        self._kick()

    def on_new_receipts(self) -> None:
        # What was due may have been read; a read room's throttle starts over.
        self._kick()

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.kill(block=False)

    # --- processing -----------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._stopped:
            return
        if self._runner is not None and not self._runner.dead:
            self._again = True
            return
        self._runner = gevent.spawn(self._run)

    def _run(self) -> None:
        self._again = True
        while self._again and not self._stopped:
            self._again = False
            try:
                self._process()
            except MailError as e:
                self._failed(f"{e}")
            except Exception:
                logger.exception("Email pusher for %s failed", self.user_id)
                self._failed("unexpected error")

    def _failed(self, why: str) -> None:
        self.retry_ms = min(max(self.retry_ms * 2, 1000, min(self.delay_ms, 60_000)), RETRY_MAX_MS)
        logger.warning("Email notification for %s not sent (%s); retrying in %.1fs", self.user_id, why,
                       self.retry_ms / 1000)
        try:
            self.deps.store.set_failing(self.key, now_ms())
        except Exception:
            logger.warning("Could not record the failure of the email pusher of %s", self.user_id, exc_info=True)
        self.retry_at = now_ms() + self.retry_ms
        self._schedule(self.retry_at)

    def _schedule(self, at_ms: int) -> None:
        if self._timer is not None:
            self._timer.kill(block=False)
        self._timer = gevent.spawn_later(max(0, at_ms - now_ms()) / 1000, self._kick)

    def _process(self) -> None:
        store = self.deps.store
        if self.position is None:
            self.position, self.unsubscribe_token = store.get_or_create_state(
                self.key, self.max_stream_ordering, secrets.token_urlsafe(32))
            self.throttles = store.get_throttles(self.key)
        if self.throttles:
            read = set(self.throttles) - store.get_rooms_with_unread(self.user_id, list(self.throttles))
            if read:
                store.delete_throttles(self.key, list(read))
                for room_id in read:
                    del self.throttles[room_id]
        upto = self.max_stream_ordering
        unread = store.get_unread_push_actions(self.user_id, self.position, upto, BATCH)
        if not unread:
            if upto > self.position:
                store.set_position(self.key, upto, None)
                self.position = upto
            return
        now = now_ms()
        due = max(min(self._due_at(room_id, ts) for _, room_id, _, ts in unread), self.retry_at)
        if due > now:
            self._schedule(due)
            return
        if self._stopped:
            return
        self._send(unread)
        last = unread[-1][0]
        store.set_position(self.key, last, now_ms())
        self.position = last
        self.retry_ms = 0
        self._update_throttles({room_id for _, room_id, _, _ in unread})
        if len(unread) == BATCH:
            self._again = True

    def _due_at(self, room_id: str, ts: int) -> int:
        last_sent, throttle = self.throttles.get(room_id, (0, 0))
        return max(ts + self.delay_ms, last_sent + throttle)

    def _update_throttles(self, room_ids: set[str]) -> None:
        now = now_ms()
        for room_id in room_ids:
            _, throttle = self.throttles.get(room_id, (0, 0))
            self.throttles[room_id] = (now, min(max(throttle * 2, self.delay_ms), THROTTLE_MAX_MS))
        self.deps.store.set_throttles(self.key, {r: self.throttles[r] for r in room_ids})

    # --- the email --------------------------------------------------------------------------------

    def _send(self, unread: list[tuple]) -> None:
        deps = self.deps
        app_name = deps.config.email.app_name
        stored = deps.events.get_events([event_id for _, _, event_id, _ in unread])
        rooms: dict[str, list] = {}
        for _, room_id, event_id, _ in unread:
            if event_id in stored:
                rooms.setdefault(room_id, []).append(stored[event_id].effective_event)
        sections = []
        for room_id, events in rooms.items():
            senders = self._display_names(room_id, {e.sender for e in events})
            notifs = [{"sender": senders[e.sender], "body": _describe(e)} for e in events]
            sections.append({"name": self._room_name(room_id, [n["sender"] for n in notifs]),
                             "link": self._room_link(room_id), "notifs": notifs})
        if not sections:
            return
        unsubscribe = (deps.config.client_base_url() + UNSUBSCRIBE_PATH.lstrip("/") + "?"
                       + urlencode({"token": self.unsubscribe_token}))
        user_name = self.user_id[1:].split(":", 1)[0]
        subject, text, html = notification_email(app_name, user_name, sections, unsubscribe,
                                                 deps.config.email.client_base_url)
        deps.mailer.send(self.address, subject, text, html,
                         {"List-Unsubscribe": f"<{unsubscribe}>",
                          "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
        logger.info("Sent a notification email to %s for %d events in %d rooms", self.user_id,
                    sum(len(s["notifs"]) for s in sections), len(sections))

    def _display_names(self, room_id: str, user_ids: set[str]) -> dict[str, str]:
        state = self.deps.state.get_current_state_ids(room_id, [("m.room.member", u) for u in user_ids])
        members = self.deps.events.get_events(list(state.values()))
        names = {}
        for user_id in user_ids:
            member = members.get(state.get(("m.room.member", user_id)))
            name = member.event.content.get("displayname") if member is not None else None
            names[user_id] = one_line(name, 100) if isinstance(name, str) and name.strip() else user_id
        return names

    def _room_name(self, room_id: str, sender_names: list[str]) -> str:
        state = self.deps.state.get_current_state_ids(room_id, _NAME_KEYS)
        found = self.deps.events.get_events(list(state.values()))
        for key, field in zip(_NAME_KEYS, ("name", "alias"), strict=True):
            stored = found.get(state.get(key))
            value = stored.effective_event.content.get(field) if stored is not None else None
            if isinstance(value, str) and value.strip():
                return one_line(value, 100)
        return "a conversation with " + ", ".join(dict.fromkeys(sender_names))

    def _room_link(self, room_id: str) -> str:
        base = self.deps.config.email.client_base_url.rstrip("/")
        if "matrix.to" in base:
            return f"{base}/#/{quote(room_id, safe='')}"
        return f"{base}/#/room/{quote(room_id, safe='')}"


def _describe(event) -> str:
    """What the email says an event is. Never the content of an encrypted event: only its type
    is known here, and the email travels in the clear."""
    content = event.content
    if event.type == "m.room.encrypted":
        return "an encrypted message"
    if event.type == "m.room.member" and content.get("membership") == "invite":
        return "invited you to the room"
    body = content.get("body")
    if isinstance(body, str) and body.strip():
        return one_line(body, 300)
    if event.type in ("m.room.message", "m.sticker"):
        return "a message" if not content else "a message with no text"
    return f"an event of type {one_line(event.type, 100)}"


class EmailUnsubscriber:
    """The unsubscribe link: its token names one pusher, which goes as if the user removed it."""

    def __init__(self, store, pushers):
        self.store = store
        self.pushers = pushers

    def is_known(self, token: str) -> bool:
        return bool(token) and self.store.get_pusher_by_unsubscribe_token(token) is not None

    def unsubscribe(self, token: str) -> bool:
        key = self.store.get_pusher_by_unsubscribe_token(token) if token else None
        if key is None:
            return False
        self.pushers.remove_pusher(*key)
        return True
