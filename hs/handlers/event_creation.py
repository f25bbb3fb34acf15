"""Building, authorizing and persisting the events local users send.

The master is the only writer of events, and events of one room are built one at a time
(a per-room lock), so each new event's prev_events and auth state are the room's latest.
"""

import secrets
import string
from contextlib import contextmanager
from dataclasses import dataclass

import gevent.lock

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.events.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from hs.events.canonical_json import unpadded_b64encode
from hs.events.event import relation_of
from hs.events.event_signing import sign_event
from hs.events.hashing import (
    add_content_hash,
    compute_reference_hash,
    event_from_pdu,
    make_v1_event_id,
    room_id_from_create_event_id,
)
from hs.events.power_levels import get_named_level, get_user_power_level
from hs.events.room_versions import (
    EventFormat,
    Redaction,
    RoomVersion,
    get_room_version,
)
from hs.events.validation import (
    MAX_PDU_SIZE,
    PduFormatError,
    PduTooLargeError,
    validate_pdu_format,
)
from hs.storage.events import PersistPlan
from hs.storage.rooms import RoomStore

# Synapse points a new event at no more than this many forward extremities.
MAX_PREV_EVENTS = 10
OUTLIERS_PER_TRANSACTION = 500
_ROOM_ID_ALPHABET = string.ascii_letters


class KeyedLock:
    """One gevent lock per key, dropped when nobody holds or waits for it."""

    def __init__(self):
        self._locks: dict = {}

    @contextmanager
    def __call__(self, key):
        entry = self._locks.setdefault(key, [gevent.lock.Semaphore(), 0])
        entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[key]


class EventCreationHandler:
    def __init__(self, config, db, rooms, events, state, stream_ids, signing_key):
        self.server_name = config.server_name
        self.db = db
        self.rooms = rooms
        self.events = events
        self.state = state
        self.stream_ids = stream_ids
        self.signing_key = signing_key
        self.room_lock = KeyedLock()
        # event type -> checks of a new event's content beyond the auth rules (a canonical
        # alias must point at the room), each raising MatrixError: fn(room_id, sender, content).
        self.content_checks: dict[str, list] = {}
        # fn(stream_ordering, room_id, event) for every event persisted.
        self.persisted_listeners: list = []
        # fn(room_id, event, state_events) -> fn(cur, stream_ordering) | None, called before the
        # persisting transaction (for work that needs no connection, such as push rules); what
        # it returns writes inside that transaction, so it commits with the event or not at all.
        self.persist_preparers: list = []
        # fn(room_id, event, state_events) -> event, run on a local event after every check and
        # before it is persisted; it may return the event with more signatures, or raise.
        self.before_persist: list = []
        self._last_create_ts = 0

    def add_content_check(self, event_type: str, check) -> None:
        self.content_checks.setdefault(event_type, []).append(check)

    def new_room_id(self) -> str:
        return "!" + "".join(secrets.choice(_ROOM_ID_ALPHABET) for _ in range(18)) + ":" + self.server_name

    def create_room_event(self, room_version: RoomVersion, room_id: str | None, sender: str, content: dict,
                          *, is_public: bool) -> str:
        """Persists a new room's m.room.create event and the room itself; returns the room ID."""
        # From room version 12 the room ID is the create event's hash: two rooms created by one
        # user with the same content in the same millisecond would get one ID. This process
        # (the master) creates every local room, so strictly increasing timestamps keep them apart.
        self._last_create_ts = max(now_ms(), self._last_create_ts + 1)
        pdu = {"type": "m.room.create", "state_key": "", "sender": sender, "content": content,
               "origin_server_ts": self._last_create_ts, "depth": 1, "prev_events": [], "auth_events": []}
        if not room_version.room_id_from_create_event:
            pdu["room_id"] = room_id
        event = self._sign(room_version, pdu)
        if room_version.room_id_from_create_event:
            room_id = room_id_from_create_event_id(event.event_id)
        self._authorize(event, {}, None)

        def txn(cur, stream_ordering):
            RoomStore.insert_room_txn(cur, room_id, room_version.identifier, sender, is_public, now_ms())
            plan = PersistPlan(event, stream_ordering, state_group=0, replaces_state=None,
                               new_state_group=(None, {("m.room.create", ""): event.event_id}, 0))
            self.events.persist_event_txn(cur, plan, room_id)
        with self.room_lock(room_id), self.stream_ids.get_next() as stream_ordering:
            self.db.run_txn("create_room", txn, stream_ordering)
            self._persisted(stream_ordering, room_id, event)
        return room_id

    def _persisted(self, stream_ordering: int, room_id: str, event) -> None:
        """Runs inside the stream id's block, so listeners see the event before the stream
        can advance past it (the notifier wakes readers only once it has)."""
        for listener in self.persisted_listeners:
            listener(stream_ordering, room_id, event)

    def send(self, room_id: str, sender: str, event_type: str, content: dict, *, state_key: str | None = None,
             redacts: str | None = None, txn_key: tuple | None = None, relation: tuple | None = None,
             ratelimit=None):
        """Builds, authorizes and persists one event; returns its ID. With a txn_key, a retry of
        the same request returns the event the first attempt created. `ratelimit()`, if given,
        is called before a new event is built (not for a retry) and raises to refuse it."""
        with self.room_lock(room_id):
            if txn_key is not None:
                existing = self.events.get_txn_event_id(*txn_key)
                if existing is not None:
                    return existing
            if ratelimit is not None:
                ratelimit()
            t = self._template(room_id, sender, event_type, content, state_key, redacts)
            room_version, pdu, current, loaded, state_events = t.room_version, t.pdu, t.current, t.loaded, t.state
            create_event, auth_events, prevs = t.create_event, t.auth_events, t.prevs
            event = self._sign(room_version, pdu)
            self._authorize(event, auth_events, create_event)
            if event_type == "m.room.redaction":
                self._check_redaction(room_id, sender, event.redacts, state_events, create_event)
            if state_key is not None:
                # The same state again from the same sender changes nothing: answer with the
                # event already there rather than add one to the timeline (as Synapse does).
                existing = loaded.get(current.get((event_type, state_key)))
                if (existing is not None and existing.redacted_by is None and existing.event.sender == sender
                        and existing.event.content == content):
                    return existing.event.event_id
            # After the auth rules: one who may not send the event learns nothing from its checks.
            for check in self.content_checks.get(event_type, ()):
                check(room_id, sender, content)
            # Last: a hook may ask another server (an invite is counter-signed by the invitee's).
            for hook in self.before_persist:
                event = hook(room_id, event, state_events)

            replaces_state = current.get((event_type, state_key)) if state_key is not None else None
            if len(prevs) == 1:
                before_group, new_group = self._plan_state(event, self.state.get_state_group_for_event(prevs[0][0]),
                                                           None)
            else:
                # The room has forked (federation): the state before the event is the room's
                # current state, the resolution of its extremities' states.
                current_state = self.state.get_current_state_ids(room_id)
                group = self.state_group_holding(current_state, [eid for eid, _ in prevs])
                before_group, new_group = self._plan_state(event, group, current_state)
            writers = [w for prepare in self.persist_preparers if (w := prepare(room_id, event, state_events))]
            with self.stream_ids.get_next() as stream_ordering:
                plan = PersistPlan(event, stream_ordering, before_group, replaces_state, new_group,
                                   txn_key=txn_key, relation=relation, search_key=_search_key(event),
                                   now_ms=now_ms())
                state_group = self.db.run_txn("persist_event", self._persist_txn, plan, room_id, writers,
                                              _batched=True)
                self.state.remember_state_group_of_event(event.event_id, state_group)
                self._persisted(stream_ordering, room_id, event)
            return event.event_id

    def persist_outliers(self, room_id: str, events: list, negative_orderings) -> None:
        """Writes checked outliers (a join's state and auth chain), a few hundred per transaction;
        `negative_orderings(n)` gives their stream orderings. The caller holds the room's lock."""
        for start in range(0, len(events), OUTLIERS_PER_TRANSACTION):
            chunk = events[start:start + OUTLIERS_PER_TRANSACTION]
            plans = [PersistPlan(event, ordering, None, None, outlier=True, now_ms=now_ms())
                     for event, ordering in zip(chunk, negative_orderings(len(chunk)), strict=True)]

            def txn(cur, plans=plans):
                for plan in plans:
                    self.events.persist_event_txn(cur, plan, room_id)
            self.db.run_txn("persist_outliers", txn)

    def _template(self, room_id: str, sender: str, event_type: str, content: dict, state_key, redacts=None):
        """An unsigned event at the room's current position: prev_events, depth, auth events."""
        version = self.rooms.get_room_version(room_id)
        if version is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        room_version = get_room_version(version)
        auth_keys = auth_types_for_event(room_version, event_type, state_key, sender, content)
        wanted = set(auth_keys) | {("m.room.create", "")}
        if state_key is not None:
            wanted.add((event_type, state_key))
        current = self.state.get_current_state_ids(room_id, sorted(wanted))
        loaded = self.events.get_events(current.values())
        state_events = {key: loaded[eid].effective_event for key, eid in current.items() if eid in loaded}
        create_event = state_events.get(("m.room.create", ""))
        auth_events = {key: state_events[key] for key in auth_keys if key in state_events}
        extremities = sorted(self.events.get_forward_extremities(room_id), key=lambda x: -x[1])
        prevs = extremities[:MAX_PREV_EVENTS]
        pdu = {"room_id": room_id, "type": event_type, "sender": sender, "content": content,
               "origin_server_ts": now_ms(), "depth": max(depth for _, depth in prevs) + 1,
               "prev_events": [eid for eid, _ in prevs],
               "auth_events": [e.event_id for e in auth_events.values()]}
        if state_key is not None:
            pdu["state_key"] = state_key
        if redacts is not None and not room_version.redacts_in_content:
            pdu["redacts"] = redacts
        return _Template(room_version, pdu, current, loaded, state_events, create_event, auth_events, prevs)

    def build_for_remote(self, room_id: str, sender: str, event_type: str, content: dict, state_key: str):
        """(room_version, unsigned event) for make_join/make_leave/make_knock: what a remote
        user's server signs and sends back. Raises MatrixError 403 if the rules would refuse it."""
        with self.room_lock(room_id):
            t = self._template(room_id, sender, event_type, content, state_key)
        pdu = t.pdu
        if t.room_version.event_format == EventFormat.V1:
            pdu["event_id"] = make_v1_event_id(self.server_name)
            pdu["prev_events"] = self._with_hashes(t.room_version, pdu["prev_events"])
            pdu["auth_events"] = self._with_hashes(t.room_version, pdu["auth_events"])
        if t.room_version.redaction != Redaction.V11:
            pdu["origin"] = sender.split(":", 1)[1]
        self._authorize(event_from_pdu(t.room_version, add_content_hash(pdu)), t.auth_events, t.create_event)
        return t.room_version, pdu

    def persist_received(self, room_id: str, event, state_before: dict, before_group: int | None, *,
                         outlier: bool = False, backfilled: bool = False, current_state_delta: dict | None = None,
                         negative_ordering=None, pre_txn=None, forward_extremity: bool = True,
                         redaction_applies: bool = True) -> int:
        """Persists an event that came over federation, already checked; the caller holds the
        room's lock. `state_before` is the state before the event (None for an outlier whose
        state we do not know); `before_group` an existing state group holding exactly that
        state, if there is one. Timeline events reach the listeners (sync, push) as local
        ones do; outliers and backfilled history take `negative_ordering()` and reach nobody.
        `pre_txn(cur)` runs first in the same transaction. Returns the stream ordering."""
        group, new_group = None, None
        if state_before is not None:
            group, new_group = self._plan_state(event, before_group, state_before)
        in_timeline = not (outlier or backfilled)
        writers = []
        if in_timeline and state_before is not None:
            wanted = auth_types_for_event(event.room_version, event.type, event.state_key, event.sender,
                                          event.content) | {("m.room.create", "")}
            loaded = self.events.get_events([state_before[k] for k in wanted if k in state_before])
            state_events = {k: loaded[state_before[k]].effective_event for k in wanted
                            if k in state_before and state_before[k] in loaded}
            writers = [w for prepare in self.persist_preparers if (w := prepare(room_id, event, state_events))]
        replaces = state_before.get(event.state_key_tuple) if state_before is not None and event.is_state() else None

        def write(stream_ordering: int) -> None:
            plan = PersistPlan(event, stream_ordering, group, replaces, new_group,
                               relation=None if outlier else relation_of(event.content),
                               search_key=None if outlier else _search_key(event), now_ms=now_ms(),
                               outlier=outlier, backfilled=backfilled, current_state_delta=current_state_delta,
                               forward_extremity=forward_extremity, redaction_applies=redaction_applies)

            def txn(cur):
                if pre_txn is not None:
                    pre_txn(cur)
                self._persist_txn(cur, plan, room_id, writers)
            self.db.run_txn("persist_received_event", txn)

        if not in_timeline:
            stream_ordering = negative_ordering()
            write(stream_ordering)
            return stream_ordering
        with self.stream_ids.get_next() as stream_ordering:
            write(stream_ordering)
            self._persisted(stream_ordering, room_id, event)
        return stream_ordering

    def _plan_state(self, event, before_group: int | None, state_before: dict | None) -> tuple:
        """(state_group, new_state_group) for a PersistPlan: the state before the event is
        `before_group`, or, when that is None, exactly `state_before` (written as a new group);
        a state event adds itself on top, in the same new group when there is one."""
        new_group = None
        if before_group is None:
            new_group = self._plan_group_for_state(state_before)
        if event.is_state():
            own = {event.state_key_tuple: event.event_id}
            if new_group is None:
                new_group = self.state.plan_state_group(before_group, own)
            elif new_group[2] == 0:
                new_group = (None, {**new_group[1], **own}, 0)
            else:
                new_group = self.state.plan_state_group(new_group[0], {**new_group[1], **own})
        return before_group, new_group

    def _plan_group_for_state(self, state: dict) -> tuple:
        """A new group holding exactly `state`: a delta against the group of one of its events
        when that is close, else a snapshot."""
        groups = self.state.get_state_groups_for_events(list(state.values())[-50:])
        for base in dict.fromkeys(sorted(groups.values(), reverse=True)[:3]):
            base_state = self.state.get_state_ids(base)
            if set(base_state) <= set(state):
                delta = {k: v for k, v in state.items() if base_state.get(k) != v}
                if len(delta) < max(len(state) // 4, 1):
                    return self.state.plan_state_group(base, delta)
        return None, dict(state), 0

    def state_group_holding(self, state_before: dict, candidate_events) -> int | None:
        """The state group after one of `candidate_events` that holds exactly `state_before`."""
        groups = self.state.get_state_groups_for_events(list(candidate_events))
        for group in dict.fromkeys(groups.values()):
            if self.state.get_state_ids(group) == state_before:
                return group
        return None

    def _persist_txn(self, cur, plan: PersistPlan, room_id: str, writers: list) -> int:
        state_group = self.events.persist_event_txn(cur, plan, room_id)
        for write in writers:
            write(cur, plan.stream_ordering)
        return state_group

    def _check_redaction(self, room_id: str, sender: str, redacts, state_events: dict, create_event) -> None:
        """The auth rules only ask whether the sender may send m.room.redaction; whether it
        takes effect (their own event, or the redact level) is checked here for every way a
        redaction can be sent (/redact, and /send or /state from v11, where `redacts` is in
        content), since once stored it applies."""
        if redacts is None:
            return  # before v11, a redaction without a top-level `redacts` redacts nothing
        if not isinstance(redacts, str):
            raise MatrixError(400, Codes.BAD_JSON, "redacts must be an event ID")
        target = self.events.get_event(redacts)
        target_room = None if target is None else target.event.room_id or room_id_from_create_event_id(redacts)
        if target_room != room_id:
            raise MatrixError(404, Codes.NOT_FOUND, "Event not found")
        if target.event.sender == sender:
            return
        power_levels = state_events.get(("m.room.power_levels", ""))
        if get_user_power_level(sender, power_levels, create_event) < get_named_level("redact", power_levels):
            raise MatrixError(403, Codes.FORBIDDEN, "You may not redact other users' events")

    def _sign(self, room_version: RoomVersion, pdu: dict):
        if room_version.event_format == EventFormat.V1:
            # v1/v2 events carry their own ID, and point at others by [id, reference hash].
            pdu["event_id"] = make_v1_event_id(self.server_name)
            pdu["prev_events"] = self._with_hashes(room_version, pdu["prev_events"])
            pdu["auth_events"] = self._with_hashes(room_version, pdu["auth_events"])
        if room_version.redaction != Redaction.V11:
            pdu["origin"] = self.server_name  # signed (kept by redaction) before room v11
        try:
            signed = sign_event(room_version, pdu, self.server_name, self.signing_key)
            validate_pdu_format(room_version, signed)
        except PduTooLargeError as e:
            raise MatrixError(413, Codes.TOO_LARGE, f"{e} (events may be at most {MAX_PDU_SIZE} bytes)") from None
        except PduFormatError as e:
            raise MatrixError(400, Codes.BAD_JSON, str(e)) from None
        except ValueError as e:
            raise MatrixError(400, Codes.BAD_JSON, f"Event is not valid canonical JSON: {e}") from None
        return event_from_pdu(room_version, signed)

    def _with_hashes(self, room_version, event_ids: list[str]) -> list:
        found = self.events.get_events(event_ids)
        return [[eid, {"sha256": unpadded_b64encode(compute_reference_hash(room_version, found[eid].event.pdu))}]
                for eid in event_ids]

    @staticmethod
    def _authorize(event, auth_events, create_event) -> None:
        try:
            check_auth_rules(event, auth_events, create_event=create_event)
        except AuthError as e:
            raise MatrixError(403, Codes.FORBIDDEN, str(e)) from None


@dataclass
class _Template:
    room_version: RoomVersion
    pdu: dict
    current: dict
    loaded: dict
    state: dict
    create_event: object
    auth_events: dict
    prevs: list


def _search_key(event) -> str | None:
    if event.type == "m.room.message" and isinstance(event.content.get("body"), str):
        return "content.body"
    if event.type == "m.room.name" and isinstance(event.content.get("name"), str):
        return "content.name"
    if event.type == "m.room.topic" and isinstance(event.content.get("topic"), str):
        return "content.topic"
    return None
