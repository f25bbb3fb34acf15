"""Push actions: each new event's push rules evaluated once for every local member of its room,
and what is read back from them: /sync's unread counts and GET /notifications.

PushActionWriter (the event writer only) runs the rules before the persisting transaction starts
(evaluation is CPU work and holds no connection) and hands EventCreationHandler a writer for the
notifying actions, which runs inside that transaction: a /sync never sees an event without its
counts. Recipients are the room's joined local members and, for an invite, the local invitee;
never the sender. PushActionReader is the read side any process may build.
"""

import json

from hs.caches import LruCache
from hs.errors import Codes, MatrixError
from hs.events.power_levels import get_user_power_level, server_name_of
from hs.events.push_evaluator import PushContext, evaluate

MAIN_THREAD = "main"
NOTIFICATIONS_DEFAULT_LIMIT = 50  # Synapse's
NOTIFICATIONS_MAX_LIMIT = 1000


def is_highlight(actions: list) -> bool:
    """A set_tweak highlight action with value true or no value (spec "Actions": tweaks)."""
    return any(isinstance(a, dict) and a.get("set_tweak") == "highlight" and a.get("value", True) is True
               for a in actions)


def thread_of(event) -> str:
    """The thread an event counts in: a reply's root for an m.thread relation, else 'main'."""
    relates_to = event.content.get("m.relates_to")
    if isinstance(relates_to, dict) and relates_to.get("rel_type") == "m.thread":
        root = relates_to.get("event_id")
        if isinstance(root, str) and root:
            return root
    return MAIN_THREAD


class PushActionWriter:
    def __init__(self, server_name: str, rooms, rules_reader, store):
        self.server_name = server_name
        self.rooms = rooms
        self.rules_reader = rules_reader
        self.store = store
        # room_id -> (joined member count, {local joined member: display name}). Correct only in
        # the process that persists every event, under the per-room lock prepare() runs in.
        self._members = LruCache("push_room_members", 1_000,
                                 invalidated_by="member events (EventCreationHandler.persisted_listeners)")

    def on_persisted(self, stream_ordering: int, room_id: str, event) -> None:
        """For EventCreationHandler.persisted_listeners: a member event changes the recipients."""
        if event.type == "m.room.member":
            self._members.invalidate(room_id)

    def _local_members(self, room_id: str) -> tuple[int, dict]:
        entry = self._members.get(room_id)
        if entry is None:
            members = self.rooms.get_joined_members(room_id)
            entry = (len(members), {user_id: m["display_name"] for user_id, m in members.items()
                                    if server_name_of(user_id) == self.server_name})
            self._members.put(room_id, entry)
        return entry

    def prepare(self, room_id: str, event, state_events: dict):
        """For EventCreationHandler.persist_preparers: the recipients' actions for `event`, and a
        fn(cur, stream_ordering) writing the notifying ones (None when nobody is notified).
        `state_events`: the current state the event was authorized against, with power levels."""
        redacts = event.redacts if event.type == "m.room.redaction" else None
        recipients, groups = self._evaluate(room_id, event, state_events)
        if not groups and not redacts:
            return None
        thread_id = thread_of(event)

        def write(cur, stream_ordering: int) -> None:
            if redacts:
                # A redacted event no longer notifies anyone (as Synapse); its rows are looked
                # up by recipient, which the table is indexed by.
                self.store.delete_for_event_txn(cur, room_id, redacts, recipients + [event.sender])
            if groups:
                self.store.insert_txn(cur, room_id, event.event_id, stream_ordering, event.depth, thread_id, groups)
        return write

    def _evaluate(self, room_id: str, event, state_events: dict) -> tuple[list[str], list[tuple]]:
        """The recipients, and [(actions as JSON, highlight, user IDs)] of those it notifies."""
        member_count, local_names = self._local_members(room_id)
        names = dict(local_names)
        names.pop(event.sender, None)
        if (event.type == "m.room.member" and event.membership == "invite" and event.state_key != event.sender
                and server_name_of(event.state_key or "") == self.server_name):
            names[event.state_key] = event.content.get("displayname")
        if not names:
            return [], []
        power_levels = state_events.get(("m.room.power_levels", ""))
        create_event = state_events.get(("m.room.create", ""))
        sender_level = get_user_power_level(event.sender, power_levels, create_event) if create_event else 0
        # One context reused for every recipient: only the user and their name differ.
        ctx = PushContext(user_id="", member_count=member_count, sender_power_level=sender_level,
                          power_levels=power_levels.content if power_levels is not None else {})
        pdu = event.pdu
        # Recipients mostly share a rule's actions: one group per distinct list (by its JSON, in
        # which true is not 1), written with one statement each.
        groups: dict[str, tuple] = {}
        for user_id, rules in self.rules_reader.rules_for_users(list(names)).items():
            ctx.user_id, ctx.display_name = user_id, names[user_id]
            actions = evaluate(rules, pdu, ctx)
            if actions is not None:
                key = json.dumps(actions)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = (key, is_highlight(actions), [])
                group[2].append(user_id)
        return list(names), list(groups.values())


class PushActionReader:
    def __init__(self, store, events, room_reads):
        self.store = store
        self.events = events
        self.room_reads = room_reads

    def add_unread_counts(self, joined: dict, user_id: str, upto: int, sync_filter) -> None:
        """Puts `unread_notifications` on every rooms.join entry of a /sync response (as Synapse,
        on each entry sent), counting events up to stream position `upto`; with the timeline
        filter's unread_thread_notifications, the main timeline's counts there and each
        thread's in `unread_thread_notifications`."""
        if not joined:
            return
        counts = self.store.get_unread_counts(user_id, list(joined), upto)
        by_thread = sync_filter.room.timeline.unread_thread_notifications
        for room_id, entry in joined.items():
            threads = counts.get(room_id, {})
            if by_thread:
                entry["unread_notifications"] = _counts(*threads.get(MAIN_THREAD, (0, 0)))
                entry["unread_thread_notifications"] = {thread_id: _counts(*c) for thread_id, c in threads.items()
                                                        if thread_id != MAIN_THREAD}
            else:
                entry["unread_notifications"] = _counts(sum(c[0] for c in threads.values()),
                                                        sum(c[1] for c in threads.values()))

    def notifications(self, requester, from_token: str | None, limit: int | None, only: str | None) -> dict:
        """GET /notifications: newest first, in every room (as Synapse: left rooms too)."""
        before = None
        if from_token is not None:
            try:
                before = int(from_token)
            except ValueError:
                raise MatrixError(400, Codes.INVALID_PARAM, "from is not a token from this endpoint") from None
        limit = NOTIFICATIONS_DEFAULT_LIMIT if limit is None else min(limit, NOTIFICATIONS_MAX_LIMIT)
        rows = self.store.get_notifications(requester.user_id, before, limit, only == "highlight")
        loaded = self.events.get_events([r[0] for r in rows])
        found = [r for r in rows if r[0] in loaded]
        bodies = self.room_reads.serialize([loaded[r[0]] for r in found], "", requester) if found else []
        notifications = []
        for (_, room_id, _, actions, ts, read), event in zip(found, bodies, strict=True):
            event["room_id"] = room_id
            redacted_because = event.get("unsigned", {}).get("redacted_because")
            if redacted_because is not None:
                redacted_because["room_id"] = room_id
            # No profile_tag: it names the pusher profile, and pushers set none here (nor does
            # Synapse, which sends null).
            notifications.append({"actions": actions, "event": event, "read": read, "room_id": room_id,
                                  "ts": ts})
        body = {"notifications": notifications}
        if len(rows) == limit:
            body["next_token"] = str(rows[-1][2])
        return body


def _counts(notifications: int, highlights: int) -> dict:
    return {"notification_count": notifications, "highlight_count": highlights}
