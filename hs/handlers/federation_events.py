"""Events from other servers: the checks on a received PDU, in the spec's order, and its place
in the room graph (/server-server-api#checks-performed-on-receipt-of-a-pdu).

1. A PDU that is malformed for its room version, or whose signatures do not verify, is
   dropped: nothing of it is stored. One whose content hash is wrong is kept redacted.
2. Gaps before it are filled: missing prev_events are asked for with /get_missing_events; a
   gap that remains is bridged with the state at the missing event (/state_ids), whose events
   are stored as outliers.
3. It is checked against its own auth events, then against the state before it (the
   resolution of its prev_events' states): failing either, it is stored as rejected, never
   served and never part of any state.
4. Against the room's current state: failing that, it is soft-failed: kept as an outlier (other
   events may cite it), but not shown to clients nor built upon.
5. Persisted, and the room's current state becomes the resolution of its forward extremities.

Everything here for one room runs under that room's lock (EventCreationHandler.room_lock), the
same one local sends take, so local and remote events of a room are placed one at a time.
"""

import logging

import gevent

from hs.clock import now_ms
from hs.events.auth_rules import AuthError, auth_types_for_event, check_auth_events_list, check_auth_rules
from hs.events.hashing import check_content_hash, event_from_pdu
from hs.events.power_levels import InvalidPowerLevelError, get_named_level, get_user_power_level
from hs.events.redaction import prune_event_dict
from hs.events.room_versions import get_room_version
from hs.events.signing import SignatureVerifyError
from hs.events.state_res import MissingEventError, resolve_state
from hs.events.validation import PduFormatError, validate_pdu_format
from hs.federation.http_client import FederationRequestError
from hs.federation.server_name import quote_path_segment as q
from hs.handlers.event_creation import KeyedLock

logger = logging.getLogger(__name__)

CREATE_KEY = ("m.room.create", "")
# How many missing prev_events one /get_missing_events asks for (Synapse asks for 10).
MISSING_EVENTS_LIMIT = 10
RECEIVED_TRANSACTION_LIFETIME_MS = 24 * 3600 * 1000
PRUNE_INTERVAL_S = 3600
# Past this many missing events, the state at an event is fetched whole with /state.
MAX_EVENTS_FETCHED_ONE_BY_ONE = 10


class PduRejected(Exception):
    """The PDU was refused; the message says why (it is logged and answered in /send)."""


class FederationEventHandler:
    def __init__(self, config, rooms, events, state, creation, store, keyring, client):
        self.server_name = config.server_name
        self.rooms = rooms
        self.events = events
        self.state = state
        self.creation = creation
        self.store = store
        self.keyring = keyring
        self.client = client
        # Set by hs/server.py: applies EDUs (hs/handlers/federation_edus.py).
        self.edus = None
        # fn(origin, room_id) -> bool: whether the room's server ACL lets `origin` in.
        self.server_allowed = lambda origin, room_id: True
        self.origin_lock = KeyedLock()

    def start_pruning(self) -> None:
        """Forgets received transaction IDs after a day, as Synapse does: a sender retries a
        transaction within minutes, and the table would otherwise grow with every one."""
        def run():
            while True:
                try:
                    self.store.delete_received_transactions_before(now_ms() - RECEIVED_TRANSACTION_LIFETIME_MS)
                except Exception:
                    logger.exception("pruning received transactions failed")
                gevent.sleep(PRUNE_INTERVAL_S)
        gevent.spawn(run)

    # --- /send ---------------------------------------------------------------------------------

    def on_transaction(self, origin: str, transaction_id: str, pdus: list, edus: list) -> dict:
        """Applies an inbound transaction once: a retry gets the first answer."""
        # One transaction of an origin at a time (as Synapse): a retry that arrives while the
        # first attempt still runs waits for its answer instead of applying it again.
        with self.origin_lock(origin):
            done = self.store.get_received_transaction(origin, transaction_id)
            if done is not None:
                return done
            return self._apply_transaction(origin, transaction_id, pdus, edus)

    def _apply_transaction(self, origin: str, transaction_id: str, pdus: list, edus: list) -> dict:
        results = {}
        for pdu in pdus:
            event_id, error = self._receive_from_transaction(origin, pdu)
            if event_id is not None:
                results[event_id] = {} if error is None else {"error": error}
        for edu in edus:
            if not isinstance(edu, dict) or not isinstance(edu.get("edu_type"), str):
                continue
            try:
                if self.edus is not None:
                    self.edus.on_edu(origin, edu["edu_type"], edu.get("content"))
            except Exception:  # one bad EDU must not fail the PDUs of the transaction
                logger.exception("EDU %s from %s failed", edu.get("edu_type"), origin)
        response = {"pdus": results}
        self.store.add_received_transaction(origin, transaction_id, response, now_ms())
        return response

    def _receive_from_transaction(self, origin: str, pdu) -> tuple[str | None, str | None]:
        room_id = pdu.get("room_id") if isinstance(pdu, dict) else None
        room = self.rooms.get_room(room_id) if isinstance(room_id, str) and "\x00" not in room_id else None
        if room is None:
            logger.info("Dropping a PDU from %s for unknown room %r", origin, room_id)
            return None, None
        try:
            event = self.parse_pdu(get_room_version(room.room_version), pdu)
        except PduRejected as e:
            logger.info("Dropping a PDU from %s in %s: %s", origin, room_id, e)
            return None, None
        try:
            if not self.server_allowed(origin, room_id):
                raise PduRejected(f"server ACL of {room_id} denies {origin}")
            with self.creation.room_lock(room_id):
                self.receive_pdu(origin, room_id, event)
        except PduRejected as e:
            logger.info("PDU %s from %s not accepted: %s", event.event_id, origin, e)
            return event.event_id, str(e)
        except FederationRequestError as e:
            logger.info("PDU %s from %s: could not fetch what it needs: %s", event.event_id, origin, e)
            return event.event_id, f"could not fetch missing events: {e}"
        return event.event_id, None

    # --- checks --------------------------------------------------------------------------------

    @staticmethod
    def parse_pdu(room_version, pdu) -> object:
        """The Event of a PDU that has the right shape for its room version (step 1)."""
        if not isinstance(pdu, dict):
            raise PduRejected("PDU is not a JSON object")
        # `unsigned` is the sender's local data: nothing of it is covered by the signatures.
        pdu = {k: v for k, v in pdu.items() if k != "unsigned"}
        try:
            validate_pdu_format(room_version, pdu)
            event = event_from_pdu(room_version, pdu)
        except (PduFormatError, ValueError) as e:
            raise PduRejected(f"malformed PDU: {e}") from None
        # IDs, type and state key are columns, and PostgreSQL text cannot hold NUL.
        identifiers = [event.room_id_in_any_version, event.sender, event.type, event.state_key,
                       *event.prev_event_ids, *event.auth_event_ids, event.redacts]
        if any(isinstance(i, str) and "\x00" in i for i in identifiers):
            raise PduRejected("malformed PDU: an identifier holds NUL")
        return event

    def check_signatures(self, event):
        """The event if its signatures verify; redacted if its content hash is wrong (step 2)."""
        from hs.federation.keyring import EventSignatureError, KeyLookupError

        try:
            self.keyring.verify_event(event.room_version, event.pdu)
        except (EventSignatureError, KeyLookupError, SignatureVerifyError, ValueError) as e:
            raise PduRejected(f"bad signature: {e}") from None
        if not check_content_hash(event.pdu):
            logger.info("Event %s has a wrong content hash: keeping it redacted", event.event_id)
            return type(event)(prune_event_dict(event.room_version, event.pdu), event.room_version, event.event_id)
        return event

    def receive_pdu(self, origin: str, room_id: str, event, *, fetch_missing: bool = True) -> None:
        """Steps 2-5 for a timeline event; the caller holds the room lock."""
        known = self.store.get_known([event.event_id, *event.prev_event_ids])
        if known.get(event.event_id) in ("timeline", "rejected"):
            return
        if not self.is_host_in_room(room_id):
            raise PduRejected("this server is not in the room")
        event = self.check_signatures(event)
        missing = [p for p in event.prev_event_ids if p not in known or known[p] == "outlier"]
        if missing and fetch_missing:
            self._fetch_missing_prev_events(origin, room_id, event)
        state_before, before_group = self.state_before(origin, room_id, event)
        self.check_and_persist(origin, room_id, event, state_before, before_group)

    def receive_checked(self, origin: str, room_id: str, event) -> tuple[str, dict]:
        """A membership event sent to us directly (send_join and the like), whose prev_events
        are ours: ('timeline' or 'soft_failed', the state before it). Room lock held."""
        event = self.check_signatures(event)
        state_before, before_group = self.state_before(origin, room_id, event)
        return self.check_and_persist(origin, room_id, event, state_before, before_group), state_before

    def is_host_in_room(self, room_id: str) -> bool:
        return self.rooms.has_local_joined_member(room_id, self.server_name)

    def _fetch_missing_prev_events(self, origin: str, room_id: str, event) -> None:
        """Asks the origin for the events between what we have and `event`, and processes
        them oldest first; what it cannot give is bridged with state later."""
        latest = [eid for eid, _ in self.events.get_forward_extremities(room_id)]
        try:
            body = self.client.post_json(origin, f"/_matrix/federation/v1/get_missing_events/{q(room_id)}",
                                         {"earliest_events": latest, "latest_events": [event.event_id],
                                          "limit": MISSING_EVENTS_LIMIT,
                                          "min_depth": max(event.depth - 20, 0)})
        except FederationRequestError as e:
            logger.info("get_missing_events for %s from %s failed: %s", event.event_id, origin, e)
            return
        pdus = body.get("events") if isinstance(body, dict) else None
        if not isinstance(pdus, list):
            return
        parsed = []
        for pdu in pdus[:MISSING_EVENTS_LIMIT * 2]:
            try:
                parsed.append(self.parse_pdu(event.room_version, pdu))
            except PduRejected as e:
                logger.info("Missing event from %s dropped: %s", origin, e)
        for missing in sorted(parsed, key=lambda e: (e.depth, e.origin_server_ts)):
            if missing.room_id != room_id or missing.event_id == event.event_id:
                continue
            try:
                self.receive_pdu(origin, room_id, missing, fetch_missing=False)
            except PduRejected as e:
                logger.info("Missing event %s not accepted: %s", missing.event_id, e)

    # --- state ---------------------------------------------------------------------------------

    def state_before(self, origin: str, room_id: str, event) -> tuple[dict, int | None]:
        """The state before `event` and, when it is one already stored, its group."""
        prevs = event.prev_event_ids
        if not prevs:
            return {}, None  # the create event
        groups = self.state.get_state_groups_for_events(prevs)
        state_maps = []
        for prev in prevs:
            if prev in groups:
                state_maps.append(self.state.get_state_ids(groups[prev]))
            else:
                state_maps.append(self.fetch_state_after(origin, room_id, prev, event.room_version))
        if len(prevs) == 1 and prevs[0] in groups:
            return state_maps[0], groups[prevs[0]]
        resolved = self.resolve(event.room_version, state_maps)
        return resolved, self.creation.state_group_holding(resolved, [p for p in prevs if p in groups])

    def fetch_state_after(self, origin: str, room_id: str, event_id: str, room_version) -> dict:
        """The state after an event we do not have in the timeline, from /state_ids (which
        gives the state before it) plus the event itself; what is missing is fetched and
        stored as outliers, the event included (with that state)."""
        body = self.client.get_json(origin, f"/_matrix/federation/v1/state_ids/{q(room_id)}",
                                    {"event_id": event_id})
        pdu_ids, chain_ids = body.get("pdu_ids"), body.get("auth_chain_ids")
        if not (isinstance(pdu_ids, list) and isinstance(chain_ids, list)
                and all(isinstance(i, str) for i in pdu_ids + chain_ids)):
            raise PduRejected(f"{origin} gave a malformed /state_ids answer")
        wanted = [*chain_ids, *pdu_ids, event_id]
        missing = [i for i in wanted if i not in self.store.get_known(wanted)]
        if len(missing) > MAX_EVENTS_FETCHED_ONE_BY_ONE:
            # One /state answer instead of an /event per missing event of a big room.
            body = self.client.get_json(origin, f"/_matrix/federation/v1/state/{q(room_id)}", {"event_id": event_id})
            pdus = [*(body.get("auth_chain") or []), *(body.get("pdus") or [])] if isinstance(body, dict) else []
            self.persist_outliers(room_id, room_version, [p for p in pdus if isinstance(p, dict)])
        self.fetch_outliers(origin, room_id, room_version, wanted)
        loaded = self.events.get_events([*pdu_ids, event_id])
        if event_id not in loaded:
            raise PduRejected(f"could not get {event_id} from {origin}")
        state = {loaded[i].event.state_key_tuple: i for i in pdu_ids
                 if i in loaded and loaded[i].event.is_state()}
        prev_event = loaded[event_id].event
        if prev_event.is_state() and event_id not in self.store.get_rejected_reasons([event_id]):
            state[prev_event.state_key_tuple] = event_id
        return state

    def fetch_outliers(self, origin: str, room_id: str, room_version, event_ids: list) -> None:
        """Fetches the events we lack among `event_ids` one by one and stores them as outliers."""
        known = self.store.get_known(event_ids)
        pdus = []
        for event_id in dict.fromkeys(event_ids):
            if event_id in known:
                continue
            try:
                body = self.client.get_json(origin, f"/_matrix/federation/v1/event/{q(event_id)}")
            except FederationRequestError as e:
                logger.info("Could not fetch %s from %s: %s", event_id, origin, e)
                continue
            found = body.get("pdus") if isinstance(body, dict) else None
            if isinstance(found, list) and found:
                pdus.append(found[0])
        self.persist_outliers(room_id, room_version, pdus)

    def persist_outliers(self, room_id: str, room_version, pdus: list) -> dict:
        """Checks and stores events as outliers, each after its auth events (a batch of a
        join's state and auth chain, or events fetched to bridge a gap). Returns event ID ->
        None if accepted or the reason it was rejected. Events that fail their signatures
        are dropped."""
        parsed = {}
        for pdu in pdus:
            try:
                event = self.check_signatures(self.parse_pdu(room_version, pdu))
            except PduRejected as e:
                logger.info("Outlier in %s dropped: %s", room_id, e)
                continue
            if (event.room_id_in_any_version or room_id) == room_id:
                parsed[event.event_id] = event
        known = self.store.get_known(list(parsed) + [a for e in parsed.values() for a in e.auth_event_ids])
        # The auth events outside the batch, read once: a big room's state is thousands of events.
        outside = {a for e in parsed.values() for a in e.auth_event_ids if a not in parsed}
        prefetched = (self.events.get_events(outside), self.store.get_rejected_reasons(outside))
        outcome, accepted = {}, []
        for event in _auth_order(parsed):
            if event.event_id in known:
                continue
            reason = self._check_own_auth_events(event, parsed, outcome, prefetched)
            outcome[event.event_id] = reason
            if reason is None:
                accepted.append(event)
            else:
                self.store.add_rejected(event, room_id, reason, now_ms(), None)
        self.creation.persist_outliers(room_id, accepted, self.store.next_negative_stream_orderings)
        return outcome

    def _check_own_auth_events(self, event, batch: dict, outcome: dict, prefetched=None) -> str | None:
        """Why `event` fails the auth rules against its own auth events, or None. `prefetched`:
        (stored events, rejection reasons) already read for the auth events outside `batch`."""
        if event.type == CREATE_KEY[0]:
            try:
                check_auth_rules(event, {})
                return None
            except AuthError as e:
                return str(e)
        ids = event.auth_event_ids
        if prefetched is not None:
            stored, rejected = prefetched
        else:
            stored, rejected = self.events.get_events(ids), self.store.get_rejected_reasons(ids)
        auth_events = []
        for auth_id in ids:
            if auth_id in rejected or outcome.get(auth_id):
                return f"auth event {auth_id} was rejected"
            if auth_id in stored:
                auth_events.append(stored[auth_id].effective_event)
            elif auth_id in batch:
                auth_events.append(batch[auth_id])
            else:
                return f"auth event {auth_id} is missing"
        try:
            keyed = check_auth_events_list(event, auth_events)
            check_auth_rules(event, keyed, create_event=self._create_event_for(event, keyed, batch))
        except AuthError as e:
            return str(e)
        return None

    def _create_event_for(self, event, keyed: dict, batch: dict | None = None):
        if CREATE_KEY in keyed:
            return keyed[CREATE_KEY]
        room_id = event.room_id_in_any_version
        create_id = "$" + room_id[1:] if event.room_version.room_id_from_create_event else None
        if create_id is None:
            return None
        if batch and create_id in batch:
            return batch[create_id]
        stored = self.events.get_event(create_id)
        return stored.event if stored is not None else None

    def resolve(self, room_version, state_maps: list[dict]) -> dict:
        """State resolution over stored events (their auth chains are stored with them)."""
        if all(m == state_maps[0] for m in state_maps[1:]):
            return dict(state_maps[0])
        ids = {eid for m in state_maps for eid in m.values()}
        ids |= self.store.get_auth_chain_ids(ids)
        event_map = {eid: stored.effective_event for eid, stored in self.events.get_events(ids).items()}
        try:
            return resolve_state(room_version, state_maps, event_map)
        except MissingEventError as e:
            raise PduRejected(f"state resolution needs events we do not have: {sorted(e.event_ids)[:5]}") from None

    # --- auth and persisting ------------------------------------------------------------------

    def check_and_persist(self, origin: str, room_id: str, event, state_before: dict, before_group,
                           *, backfilled: bool = False) -> str:
        """Steps 3-5; returns 'timeline', 'soft_failed' or raises PduRejected (after storing
        the rejection)."""
        self.fetch_outliers(origin, room_id, event.room_version,
                            [a for a in event.auth_event_ids if a not in self.store.get_known(event.auth_event_ids)])
        reason = self._check_own_auth_events(event, {}, {})
        if reason is None:
            reason = self.check_against_state(event, state_before)
        if reason is not None:
            self._store_rejected(room_id, event, reason, state_before, before_group)
            raise PduRejected(f"rejected: {reason}")
        # De-outlier: an event we held only for its state or auth joins the timeline.
        pre_txn = None
        if self.store.get_known([event.event_id]).get(event.event_id) == "outlier":
            self.events.forget_cached(event.event_id)
            event_id = event.event_id
            pre_txn = lambda cur: self.store.delete_outlier_txn(cur, event_id)  # noqa: E731
        negative = self.store.next_negative_stream_ordering
        applies = self._redaction_applies(event, state_before)
        if backfilled:
            self.creation.persist_received(room_id, event, state_before, before_group, backfilled=True,
                                           negative_ordering=negative, pre_txn=pre_txn, redaction_applies=applies)
            return "timeline"
        keys = auth_types_for_event(event.room_version, event.type, event.state_key, event.sender, event.content)
        current_auth = self.state.get_current_state_ids(room_id, sorted(keys | {CREATE_KEY}))
        if self.check_against_state(event, current_auth) is not None:
            logger.info("Soft-failing %s from %s: it does not pass the room's current state", event.event_id, origin)
            self.creation.persist_received(room_id, event, state_before, before_group, outlier=True,
                                           negative_ordering=negative, pre_txn=pre_txn)
            return "soft_failed"
        delta = self._current_state_delta(room_id, event, state_before, before_group)
        self.creation.persist_received(room_id, event, state_before, before_group, current_state_delta=delta,
                                       negative_ordering=negative, pre_txn=pre_txn, redaction_applies=applies)
        return "timeline"

    def _redaction_applies(self, event, state_before: dict) -> bool:
        """The auth rules let anyone allowed to send m.room.redaction send one; it redacts only
        an event of the sender's own server, or with the redact power level (as Synapse; an
        event we do not have yet counts as another server's)."""
        redacts = event.redacts
        if event.type != "m.room.redaction" or not isinstance(redacts, str):
            return True
        target = self.events.get_event(redacts)
        if target is not None and target.event.sender.partition(":")[2] == event.sender.partition(":")[2]:
            return True
        keys = [("m.room.power_levels", ""), CREATE_KEY]
        loaded = self.events.get_events([state_before[k] for k in keys if k in state_before])
        levels, create = (loaded[state_before[k]].effective_event if k in state_before and state_before[k] in loaded
                          else None for k in keys)
        if create is None:
            create = self._create_event_for(event, {})
        try:
            return get_user_power_level(event.sender, levels, create) >= get_named_level("redact", levels)
        except InvalidPowerLevelError:
            return False

    def check_against_state(self, event, state: dict) -> str | None:
        keys = auth_types_for_event(event.room_version, event.type, event.state_key, event.sender, event.content)
        keys.add(CREATE_KEY)
        loaded = self.events.get_events([state[k] for k in keys if k in state])
        auth = {k: loaded[state[k]].effective_event for k in keys if k in state and state[k] in loaded}
        try:
            check_auth_rules(event, auth, create_event=self._create_event_for(event, auth))
        except AuthError as e:
            return str(e)
        return None

    def _store_rejected(self, room_id, event, reason, state_before, before_group) -> None:
        logger.info("Rejecting %s: %s", event.event_id, reason)
        self.store.add_rejected(event, room_id, reason, now_ms(), before_group)

    def _current_state_delta(self, room_id: str, event, state_before: dict, before_group):
        """None when the event simply extends the room (its own key, if any, is the only
        change); else the change that makes current state the resolution of the new forward
        extremities' states."""
        extremities = {eid for eid, _ in self.events.get_forward_extremities(room_id)}
        prevs = set(event.prev_event_ids)
        if extremities == prevs and len(prevs) == 1 and before_group is not None:
            # The room's one extremity is the event's one prev_event, and current state is the
            # state after it: nothing to load.
            return None
        current = self.state.get_current_state_ids(room_id)
        if extremities <= prevs and state_before == current:
            return None
        after = dict(state_before)
        if event.is_state():
            after[event.state_key_tuple] = event.event_id
        others = extremities - prevs
        groups = self.state.get_state_groups_for_events(list(others))
        resolved = self.resolve(event.room_version, [after, *(self.state.get_state_ids(g) for g in groups.values())])
        changed = {k: v for k, v in resolved.items() if current.get(k) != v}
        loaded = self.events.get_events(changed.values())
        delta = {}
        for key, event_id in changed.items():
            member = loaded[event_id].event.membership if event_id in loaded else None
            delta[key] = (event_id, member if isinstance(member, str) else None)
        for key in current.keys() - resolved.keys():
            delta[key] = None
        return delta


def _auth_order(events: dict) -> list:
    """The events with each after those of its auth events that are in the batch."""
    ordered, seen = [], set()

    def visit(event, path=()):
        if event.event_id in seen or event.event_id in path:
            return
        for auth_id in event.auth_event_ids:
            if auth_id in events:
                visit(events[auth_id], (*path, event.event_id))
        seen.add(event.event_id)
        ordered.append(event)

    for event in sorted(events.values(), key=lambda e: e.depth):
        visit(event)
    return ordered
