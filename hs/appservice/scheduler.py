"""Transactions to application services: every event (and, with receive_ephemeral, typing,
receipts and presence) a service is interested in, in stream order, in batches, one transaction in
flight per service, retried with the same ID until the service accepts it.

One code path for the master and the appservice worker: a service's sender wakes whenever the
events (or an ephemeral) position of this process advances — the writer's id generator on the
master, the replicated position on the worker — and reads what is new from PostgreSQL.

Nothing is lost or sent twice across a restart: a transaction is stored together with the positions
it moves the service past (hs/storage/appservice_txns.py), and is deleted only once accepted; a
stored transaction is resent, with its ID, before anything new is built. A service that accepted
a transaction whose deletion a crash prevented sees its ID again, which the spec tells it to ignore.
"""

import logging

import gevent
from gevent.event import Event as Wakeup

from hs.clock import now_ms
from hs.handlers.presence import format_presence
from hs.storage.appservice_txns import AppServiceTxnStore, ServicePositions

logger = logging.getLogger(__name__)

# Synapse's caps per transaction.
MAX_EVENTS = 100
MAX_EPHEMERAL = 100
# Rows of the events stream read per pass: a service interested in few of them moves on quickly.
SCAN_ROWS = 500
MIN_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
DATABASE_RETRY_S = 5.0
SAVE_POSITIONS_AFTER_S = 2.0
PUBLIC_RECEIPT_TYPES = ("m.read",)


class _SenderState:
    """One service's sender: where it is (`saved`: what the database holds), the typing position
    (in memory only: a restarted sender starts from now) and its stored transaction not yet
    accepted (at most one: a new one is built only once the last is accepted)."""

    def __init__(self, positions: ServicePositions, typing_at: int, pending: tuple | None):
        self.positions = self.saved = positions
        self.typing_at = typing_at
        self.pending = pending


class AppServiceScheduler:
    def __init__(self, hs, api=None, *, max_backoff_s: float = MAX_BACKOFF_S):
        self.hs = hs
        self.api = api or hs.appservice_api
        self.interest = hs.appservice_interest
        self.store = AppServiceTxnStore(hs.db)
        self.max_backoff_s = max_backoff_s
        self.services = [s for s in hs.config.app_services.services if s.url]
        self._wakeups = {s.id: Wakeup() for s in self.services}
        self._greenlets = []

    def start(self) -> None:
        self.hs.event_stream.add_listener(lambda _token: self._wake(self.services))
        ephemeral = [s for s in self.services if s.receive_ephemeral]
        for position in (self.hs.receipt_stream, self.hs.presence_stream, self.hs.typing.position):
            position.add_listener(lambda _token: self._wake(ephemeral))
        for service in self.services:
            self._greenlets.append(gevent.spawn(self._run, service))
        logger.info("sending transactions to application services %s", [s.id for s in self.services])

    def _wake(self, services) -> None:
        for service in services:
            self._wakeups[service.id].set()

    # --- one service ------------------------------------------------------------------------------

    def _run(self, service) -> None:
        wakeup = self._wakeups[service.id]
        state = None
        self._wait_until_following()
        while True:
            try:
                if state is None:  # (re)read from the database, the truth after any failure
                    state = _SenderState(self.store.get_positions(service.id, self._current()),
                                         self.hs.typing.get_current_token(), self.store.get_oldest_txn(service.id))
                # Cleared before reading, so an advance during the read wakes the next pass.
                wakeup.clear()
                if state.pending is not None:
                    self._send_until_accepted(service, *state.pending)
                    self.store.complete_txn(service.id, state.pending[0])
                    state.pending = None
                    continue
                body, positions, state.typing_at = self._build(service, state.positions, state.typing_at)
                if body is not None:
                    state.pending = (self.store.create_txn(service.id, positions, body), body)
                    state.positions = state.saved = positions
                    continue
                if positions != state.positions:
                    state.positions = positions
                    continue
                if state.saved != state.positions and not wakeup.wait(SAVE_POSITIONS_AFTER_S):
                    # Positions past rows that held nothing for the service are saved once quiet:
                    # a crash before that only reads those rows again.
                    self.store.set_positions(service.id, state.positions)
                    state.saved = state.positions
            except Exception:
                logger.exception("application service %s: transaction sender failed; retrying", service.id)
                state = None
                gevent.sleep(DATABASE_RETRY_S)
                continue
            wakeup.wait()

    def _wait_until_following(self) -> None:
        """On the worker: until replication has brought the positions up to the master's, or a
        service seen for the first time would start from 0 and be sent the server's history."""
        catch_up = self.hs.streams.catch_up  # set on a worker only (hs/worker.py)
        while catch_up is not None and not catch_up({}, 60.0):
            logger.info("application service transactions wait for replication to follow the master")

    def _current(self) -> ServicePositions:
        return ServicePositions(self.hs.event_stream.get_current_token(), self.hs.receipt_stream.get_current_token(),
                                self.hs.presence_stream.get_current_token())

    def _send_until_accepted(self, service, txn_id: int, body: dict) -> None:
        delay = MIN_BACKOFF_S
        while not self.api.push_transaction(service, txn_id, body["events"], body.get("ephemeral", [])):
            logger.info("application service %s: retrying transaction %s in %.0fs", service.id, txn_id, delay)
            gevent.sleep(delay)
            delay = min(delay * 2, self.max_backoff_s)

    def _build(self, service, positions: ServicePositions, typing_at: int) -> tuple:
        """(body or None, the positions past what was read, the typing position past it)."""
        aliases = self.interest.new_aliases()
        events, events_at = self._events(service, positions.events, aliases)
        ephemeral = []
        current = self._current()
        typing_now = self.hs.typing.get_current_token()
        if service.receive_ephemeral:
            ephemeral += self._typing(service, typing_at, typing_now, aliases)
            receipts, receipts_at = self._receipts(service, positions.receipts, current.receipts,
                                                   MAX_EPHEMERAL - len(ephemeral), aliases)
            ephemeral += receipts
            presence, presence_at = self._presence(service, positions.presence, current.presence,
                                                   MAX_EPHEMERAL - len(ephemeral))
            ephemeral += presence
        elif events_at != positions.events:
            # Nothing to send; carried along (not written on their own) so turning
            # receive_ephemeral on later sends no backlog.
            receipts_at, presence_at = current.receipts, current.presence
        else:
            receipts_at, presence_at = positions.receipts, positions.presence
        new_positions = ServicePositions(events_at, receipts_at, presence_at)
        body = {"events": events, "ephemeral": ephemeral} if events or ephemeral else None
        return body, new_positions, typing_now

    def _events(self, service, since: int, aliases) -> tuple[list, int]:
        upto = self.hs.event_stream.get_current_token()
        if upto <= since:
            return [], since
        rows = self.hs.events.get_stream_rows(since, upto, SCAN_ROWS)
        stored = self.hs.events.get_events([row["event_id"] for _, row in rows])
        wanted, at, asked = [], since, set()
        for stream_ordering, row in rows:
            if len(wanted) >= MAX_EVENTS:
                break
            at = stream_ordering
            if row["type"] == "m.room.member":
                self.interest.member_event_seen(row["room_id"], stream_ordering)
            event = stored.get(row["event_id"])
            if event is not None and self.interest.wants_event(service, event.event, row["room_id"], aliases):
                self._query_unknown_users(event.event, asked)
                wanted.append((row["room_id"], event))
        if len(rows) < SCAN_ROWS and len(wanted) < MAX_EVENTS:
            at = upto
        return self._serialize(wanted), at

    def _query_unknown_users(self, event, asked: set) -> None:
        """As Synapse, before an event about a local user nobody registered (an invite of a
        bridged user) is sent: the services whose namespace holds them are asked
        (GET /_matrix/app/v1/users/{userId}), so a service may create the user first."""
        users = [event.sender]
        if event.type == "m.room.member" and isinstance(event.state_key, str):
            users.append(event.state_key)
        registry = self.hs.config.app_services
        for user_id in users:
            if user_id in asked or not user_id.endswith(":" + self.hs.config.server_name):
                continue
            asked.add(user_id)
            if self.hs.accounts.get_user(user_id) is not None or any(s.sender == user_id for s in registry.services):
                continue
            for service in registry.services:
                if service.url and service.is_interested_in_user(user_id) and self.api.query_user(service, user_id):
                    break

    def _serialize(self, wanted: list) -> list:
        by_room = {}
        for room_id, event in wanted:
            by_room.setdefault(room_id, []).append(event)
        serialized = {}
        for room_id, events in by_room.items():
            for event, client in zip(events, self.hs.room_reads.serialize(events, room_id), strict=True):
                serialized[event.event.event_id] = client
        return [serialized[event.event.event_id] for _, event in wanted]

    def _typing(self, service, since: int, upto: int, aliases) -> list:
        if upto <= since:
            return []
        return [{"type": "m.typing", "room_id": row["room_id"], "content": {"user_ids": row["user_ids"]}}
                for _, row in self.hs.typing.get_rows(since, upto, None)
                if self.interest.wants_room(service, row["room_id"], aliases)]

    def _receipts(self, service, since: int, upto: int, room_budget: int, aliases) -> tuple[list, int]:
        """m.receipt events (public receipts only, as Synapse) of the rooms of interest; at most
        `room_budget` rows of the stream are read, each giving at most one room's event."""
        if upto <= since or room_budget <= 0:
            return [], since
        rows = self.hs.receipt_store.get_stream_rows(since, upto, room_budget)
        at = rows[-1][0] if len(rows) == room_budget else upto
        rooms = sorted({row["room_id"] for _, row in rows if self.interest.wants_room(service, row["room_id"], aliases)})
        contents = {}
        for room_id, rtype, user, _, event_id, data in self.hs.receipt_store.get_changes(rooms, since, at, "",
                                                                                          PUBLIC_RECEIPT_TYPES):
            contents.setdefault(room_id, {}).setdefault(event_id, {}).setdefault(rtype, {})[user] = data
        return [{"type": "m.receipt", "room_id": room_id, "content": content}
                for room_id, content in contents.items()], at

    def _presence(self, service, since: int, upto: int, budget: int) -> tuple[list, int]:
        if upto <= since or budget <= 0:
            return [], since
        if not self.hs.presence.enabled:
            return [], upto
        rows = self.hs.presence_store.get_stream_rows(since, upto, budget)
        at = rows[-1][0] if len(rows) == budget else upto
        now = now_ms()
        events = []
        for _, row in rows:
            user_id = row["user_id"]
            if not self.interest.wants_presence_of(service, user_id):
                continue
            presence = self.hs.presence_store.get(user_id)
            if presence is not None:
                events.append({"type": "m.presence", "sender": user_id, "content": format_presence(presence, now)})
        return events, at


def register(app, hs) -> None:
    """A resource-module-shaped entry for the appservice worker (apps/appservice.py): it serves no
    resource, it sends the transactions."""
    AppServiceScheduler(hs).start()
