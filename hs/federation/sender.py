"""Outbound federation, on the master only: which server gets which PDU and EDU. The sending
itself (transactions, order, backoff, catch-up) is one DestinationQueue per server
(hs/federation/transaction_queue.py).

PDUs: the sender follows the events stream from a position kept in the database, so an event
persisted just before a crash is still routed after the restart. Each event whose sender is one
of our users goes to every other server with a member joined to the room after it, and a kick,
ban or leave also to the server of the member it is about (no longer joined, it must still hear
of it). Invites go by /invite, not here. `send_pdu` sends events of other servers we relay (a
remote join through send_join).

EDUs come from hooks on the handlers that make them (`start` lists them): typing, public
receipts, presence (when enabled), device list and cross-signing key changes of our users, to
the servers sharing a room with them; to-device messages to their recipients' servers. Hooks run
inside requests, so they only queue a job; one greenlet runs the jobs in order (a typing start
and its stop must not swap). Every client write that makes an EDU is served by the master (a
worker forwards presence as USER_SYNC, which the master applies through the same writer), so
hooking the master's handlers sees them all.
"""

import hashlib
import logging

import gevent
from gevent.event import Event as Wakeup
from gevent.queue import Queue
from prometheus_client import Counter

from hs.caches import LruCache
from hs.clock import now_ms
from hs.federation.server_name import server_name_of
from hs.federation.transaction_queue import DestinationQueue
from hs.handlers.presence import format_presence
from hs.metrics import REGISTRY
from hs.storage.federation_sender import FederationSenderStore

logger = logging.getLogger(__name__)

ROOM_SERVERS_MAX_AGE_MS = 60_000
TRANSACTIONS_SENT = Counter("hs_federation_transactions_sent", "Federation transactions accepted by their destination",
                            registry=REGISTRY)
TRANSACTIONS_FAILED = Counter("hs_federation_transactions_failed",
                              "Federation transactions that failed (no answer, 5xx, 429) or were refused",
                              registry=REGISTRY)
PDUS_SENT = Counter("hs_federation_pdus_sent", "PDUs in accepted federation transactions", registry=REGISTRY)
EDUS_SENT = Counter("hs_federation_edus_sent", "EDUs in accepted federation transactions", registry=REGISTRY)

# EDUs kept in the database until delivered, with what makes a newer one replace an older one
# (None: never replaced).
PERSISTENT_EDUS = {"m.direct_to_device", "m.device_list_update", "m.signing_key_update"}
# Membership changes that leave the member's server out of the room, which must still hear of them.
_LEAVING = ("leave", "ban")
EVENT_ROWS_PER_READ = 100
DATABASE_RETRY_S = 5.0
PUBLIC_RECEIPT_TYPES = ("m.read",)


def _server_of(user_id: str) -> str | None:
    try:
        return server_name_of(user_id)
    except ValueError:
        return None


def pdu_json(event) -> dict:
    """The PDU as sent: `unsigned` holds what this server adds locally."""
    return {k: v for k, v in event.pdu.items() if k != "unsigned"}


class FederationSender:
    def __init__(self, hs, client=None):
        self.hs = hs
        config = hs.config
        self.server_name = config.server_name
        self.store = FederationSenderStore(hs.db)
        self.client = client  # hs.federation_client unless given; read at start, built after us
        self.min_retry_ms = config.federation_min_retry_ms
        self.retry_multiplier = config.federation_retry_multiplier
        self.max_retry_ms = config.federation_max_retry_ms
        self.domain_whitelist = config.federation_domain_whitelist
        self._queues: dict[str, DestinationQueue] = {}
        self._position = None  # events stream: routed up to here
        self._events_advanced = Wakeup()
        self._jobs = Queue()
        # room ID -> (servers joined to it, when read): every PDU, typing notice and receipt asks,
        # and reading it scans the room's members. A member event passing through the events
        # stream drops its room's entry; entries also age out, since resolving a fork can change
        # memberships on an event that is not one.
        self._room_servers = LruCache("federation_room_servers", 10_000,
                                      invalidated_by="member events in the events stream; 60 s age")

    # --- start-up -----------------------------------------------------------------------------------

    def start(self) -> None:
        hs = self.hs
        if self.client is None:
            self.client = hs.federation_client
        position = self.store.get_stream_position()
        if position is None:  # the first start: from now, not the server's history
            position = hs.event_stream.get_current_token()
            self.store.set_stream_position(position)
        self._position = position
        for state in self.store.get_retry_states():
            self._queue(state.destination).retry = state
        for destination in self.store.get_destinations_with_work():
            queue = self._queue(destination)
            queue.catching_up = True
            queue.wake()
        hs.event_stream.add_listener(lambda _token: self._events_advanced.set())
        # The hooks (each handler calls its listeners with what changed; see the on_* methods).
        hs.typing.typing_listeners.append(self._job(self.on_typing))
        hs.receipts.receipt_listeners.append(self._job(self.on_receipt))
        if hs.config.presence_enabled and hs.config.presence_federation_outbound:
            hs.presence_writer.presence_listeners.append(self._job(self.on_presence))
        hs.device_list_writer.changed_listeners.append(self._job(self.on_device_list_change))
        hs.cross_signing.keys_changed_listeners.append(self._job(self.on_signing_keys_changed))
        hs.send_to_device.federation_sender = self
        gevent.spawn(self._route_events)
        gevent.spawn(self._run_jobs)
        self._events_advanced.set()
        logger.info("federation sender started at events position %s", position)

    def _job(self, fn):
        def enqueue(*args):
            self._jobs.put((fn, args))
        return enqueue

    def _run_jobs(self) -> None:
        for fn, args in self._jobs:
            try:
                fn(*args)
            except Exception:
                logger.exception("federation sender: %s%r failed", fn.__name__, args)

    # --- the interface ----------------------------------------------------------------------------------

    def send_pdu(self, event, destinations) -> None:
        """Sends a persisted event (ours or one we relay) to `destinations`."""
        stored = self.hs.events.get_event(event.event_id)
        if stored is None:
            raise ValueError(f"send_pdu: {event.event_id} is not persisted")
        self._enqueue_pdu(stored.stream_ordering, event.room_id_in_any_version, event, set(destinations))

    def send_edu(self, destination: str, edu_type: str, content: dict, key=None) -> None:
        self._send_edu({destination}, edu_type, content, key)

    def wake_destination(self, destination: str) -> None:
        """A valid request from `destination` came in: it is up, so any backoff ends now."""
        queue = self._queues.get(destination)
        if queue is not None and queue.retry is not None:
            gevent.spawn(queue.clear_backoff)

    def status(self) -> dict:
        now = now_ms()
        failing = [{"destination": q.destination, "failing_since_ms": q.retry.failure_ts,
                    "retry_in_ms": q.backoff_remaining_ms()}
                   for q in self._queues.values() if q.retry is not None]
        pending = [q.pending() for q in self._queues.values()]
        return {"destinations_failing": sorted(failing, key=lambda f: f["destination"]),
                "destinations_catching_up": sum(q.catching_up for q in self._queues.values()),
                "pdus_queued": sum(p for p, _ in pending), "edus_queued": sum(e for _, e in pending),
                "events_position": self._position, "checked_at_ms": now}

    def status_summary(self) -> dict:
        """For `synctl status`: one flat line, the failing destinations named with how long they
        have failed and when they are tried next."""
        status, now = self.status(), now_ms()
        failing = status["destinations_failing"]
        named = [f"{f['destination']} (for {max(0, now - f['failing_since_ms']) // 1000}s, retry in "
                 f"{f['retry_in_ms'] // 1000}s)" for f in failing[:5] if f["failing_since_ms"] is not None]
        return {"failing": len(failing), "catching_up": status["destinations_catching_up"],
                "pdus_queued": status["pdus_queued"], "edus_queued": status["edus_queued"],
                "failing_destinations": "; ".join(named) or None}

    # --- for the queues ----------------------------------------------------------------------------------

    def current_stream_ordering(self) -> int:
        return self.hs.event_stream.get_current_token()

    def load_pdus(self, rows: list[tuple[int, str]]) -> list[tuple[int, dict]]:
        stored = self.hs.events.get_events([event_id for _, event_id in rows])
        return [(so, pdu_json(stored[event_id].event)) for so, event_id in rows if event_id in stored]

    def metrics_sent(self, pdus: int, edus: int) -> None:
        TRANSACTIONS_SENT.inc()
        PDUS_SENT.inc(pdus)
        EDUS_SENT.inc(edus)

    def metrics_failed(self) -> None:
        TRANSACTIONS_FAILED.inc()

    # --- routing ---------------------------------------------------------------------------------------

    def _queue(self, destination: str) -> DestinationQueue:
        queue = self._queues.get(destination)
        if queue is None:
            queue = self._queues[destination] = DestinationQueue(self, destination)
        return queue

    def _allowed(self, destinations) -> list[str]:
        return sorted(d for d in destinations if d and d != self.server_name
                      and (self.domain_whitelist is None or d in self.domain_whitelist))

    def _is_ours(self, user_id) -> bool:
        return isinstance(user_id, str) and _server_of(user_id) == self.server_name

    def _route_events(self) -> None:
        while True:
            self._events_advanced.wait()
            self._events_advanced.clear()
            try:
                self._route_new_events()
            except Exception:
                logger.exception("federation sender: routing events failed; retrying")
                gevent.sleep(DATABASE_RETRY_S)
                self._events_advanced.set()

    def _route_new_events(self) -> None:
        upto = self.hs.event_stream.get_current_token()
        while self._position < upto:
            rows = self.hs.events.get_stream_rows(self._position, upto, EVENT_ROWS_PER_READ)
            stored = self.hs.events.get_events([row["event_id"] for _, row in rows])
            for stream_ordering, row in rows:
                if row["type"] == "m.room.member":
                    self._room_servers.invalidate(row["room_id"])
                found = stored.get(row["event_id"])
                if found is not None and self._is_ours(found.event.sender):
                    self._route_pdu(stream_ordering, row["room_id"], found.event)
            self._position = rows[-1][0] if len(rows) == EVENT_ROWS_PER_READ else upto
            self.store.set_stream_position(self._position)

    def _route_pdu(self, stream_ordering: int, room_id: str, event) -> None:
        destinations = self._joined_servers(room_id)
        if event.type == "m.room.member" and event.membership in _LEAVING:
            destinations.add(_server_of(event.state_key))
        self._enqueue_pdu(stream_ordering, room_id, event, destinations)

    def _joined_servers(self, room_id: str) -> set[str]:
        cached = self._room_servers.get(room_id)
        if cached is None or now_ms() - cached[1] > ROOM_SERVERS_MAX_AGE_MS:
            cached = (frozenset(self.hs.rooms.get_joined_servers(room_id)), now_ms())
            self._room_servers.put(room_id, cached)
        return set(cached[0])

    def _enqueue_pdu(self, stream_ordering: int, room_id: str, event, destinations: set) -> None:
        destinations = self._allowed(destinations)
        if not destinations:
            return
        self.store.record_pdu(stream_ordering, room_id, destinations)
        pdu = pdu_json(event)
        for destination in destinations:
            self._queue(destination).add_pdu(stream_ordering, pdu)

    def _send_edu(self, destinations, edu_type: str, content: dict, key=None) -> None:
        destinations = self._allowed(destinations)
        if not destinations:
            return
        if edu_type in PERSISTENT_EDUS:
            self.store.add_to_outbox(destinations, edu_type, content, key)
            for destination in destinations:
                self._queue(destination).wake()
        else:
            for destination in destinations:
                self._queue(destination).add_edu(edu_type, content, key)

    # --- the hooks ---------------------------------------------------------------------------------------

    def on_typing(self, room_id: str, user_id: str, typing: bool) -> None:
        """TypingHandler: a local user started (again) or stopped typing."""
        if self._is_ours(user_id):
            self._send_edu(self._joined_servers(room_id), "m.typing",
                           {"room_id": room_id, "user_id": user_id, "typing": typing}, (room_id, user_id))

    def on_receipt(self, room_id: str, receipt_type: str, user_id: str, event_id: str, data: dict) -> None:
        """ReceiptHandler: a receipt moved forward. Private receipts never leave the server."""
        if receipt_type not in PUBLIC_RECEIPT_TYPES or not self._is_ours(user_id):
            return
        content = {room_id: {receipt_type: {user_id: {"event_ids": [event_id], "data": data}}}}
        self._send_edu(self._joined_servers(room_id), "m.receipt", content,
                       (room_id, receipt_type, user_id, data.get("thread_id")))

    def on_presence(self, presence) -> None:
        """PresenceWriter: a change others are told about (a UserPresence)."""
        if not self._is_ours(presence.user_id):
            return
        push = {"user_id": presence.user_id, **format_presence(presence, now_ms())}
        self._send_edu(self.store.get_servers_sharing_a_room(presence.user_id), "m.presence", {"push": [push]},
                       presence.user_id)

    def on_device_list_change(self, user_id: str, stream_id: int) -> None:
        """DeviceListWriter: the user's device list changed at `stream_id`. One update per device
        the user has now (with its keys) and one per device announced before and gone now; all
        carry `stream_id`. The first names the previous announcement as prev_id and the others
        `stream_id` itself (as Synapse chains them), so a receiver that saw the previous one applies
        each as it comes and one that did not resyncs."""
        if not self._is_ours(user_id):
            return
        devices = [d.device_id for d in self.hs.devices.get_devices(user_id)]
        before, previous = self.store.swap_announced_devices(user_id, devices, stream_id)
        destinations = self.store.get_servers_sharing_a_room(user_id)
        if not self._allowed(destinations):
            return
        keys = self.hs.e2e_key_store.get_device_keys(user_id, devices)
        prev_id = [previous] if previous is not None else []
        for device_id in devices:
            content = {"user_id": user_id, "device_id": device_id, "stream_id": stream_id, "prev_id": prev_id,
                       "deleted": False}
            if device_id in keys:
                content["keys"] = keys[device_id][0]
            self._send_edu(destinations, "m.device_list_update", content)
            prev_id = [stream_id]
        for device_id in sorted(before - set(devices)):
            self._send_edu(destinations, "m.device_list_update",
                           {"user_id": user_id, "device_id": device_id, "stream_id": stream_id,
                            "prev_id": prev_id, "deleted": True})
            prev_id = [stream_id]

    def on_signing_keys_changed(self, user_id: str) -> None:
        """CrossSigningHandler: the user's cross-signing keys (or signatures) changed; the
        public keys go out (the user-signing key is the user's own business)."""
        if not self._is_ours(user_id):
            return
        keys = self.hs.cross_signing_store.get_keys([user_id]).get(user_id, {})
        content = {"user_id": user_id}
        for key_type in ("master", "self_signing"):
            if key_type in keys:
                content[f"{key_type}_key"] = keys[key_type]
        if len(content) > 1:
            self._send_edu(self.store.get_servers_sharing_a_room(user_id), "m.signing_key_update", content, user_id)

    def send_to_device(self, sender: str, sender_device: str, txn_id: str, event_type: str, destination: str,
                       messages: dict) -> None:
        """SendToDeviceHandler: messages ({user_id: {device_id or "*": content}}) from a local
        device to users of `destination`. The message_id derives from the client's transaction,
        so a retried request is delivered once (the receiver dedupes by it)."""
        message_id = hashlib.sha256(f"{sender}\0{sender_device}\0{txn_id}\0{destination}".encode()).hexdigest()[:32]
        self._send_edu({destination}, "m.direct_to_device",
                       {"sender": sender, "type": event_type, "message_id": message_id, "messages": messages})
