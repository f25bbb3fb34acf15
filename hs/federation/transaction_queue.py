"""One destination's queue of outbound federation: PDUs and EDUs batched into transactions
(PUT /_matrix/federation/v1/send/{txnId}), one in flight at a time, in order, with backoff.

- PDUs wait in memory while the destination is healthy. When a transaction fails, they are
  dropped and the queue *catches up* instead: from destination_rooms it sends, per room, the
  newest event the destination has not accepted (the receiver fetches what lies between with
  get_missing_events, as with Synapse). While the destination is backing off, new PDUs are only
  recorded there (hs/storage/federation_sender.py), so a long outage holds nothing in memory.
- EDUs that must arrive (to-device, device list and signing key updates) wait in the database
  outbox until a transaction carrying them is accepted. The others are kept in memory by a key,
  the newest replacing the older (presence per user, receipts per room and user); typing is
  dropped rather than sent late.
- Backoff: a failure (no answer, 5xx or 429) waits federation_min_retry_ms, each further one
  federation_retry_multiplier times longer, up to federation_max_retry_ms; it lives in the
  database so a restart keeps waiting. Any other answer ends the transaction: 200 with per-PDU
  errors means the destination has it, and another 4xx is its refusal (as Synapse, neither backs
  off). `clear_backoff` (the destination contacted us) retries at once.
"""

import logging
from collections import OrderedDict

import gevent
from gevent.event import Event as Wakeup

from hs.clock import now_ms
from hs.federation.http_client import FederationDenied, FederationHttpError, FederationRequestError
from hs.storage.federation_sender import RetryState

logger = logging.getLogger(__name__)

# The spec's limits per transaction.
MAX_PDUS = 50
MAX_EDUS = 100
# A typing notification older than this is dropped rather than sent to a server that was down.
TYPING_STALE_MS = 30_000
DATABASE_RETRY_S = 5.0


class DestinationQueue:
    def __init__(self, sender, destination: str):
        self.sender = sender  # FederationSender: the store, client, clock-free config and metrics
        self.destination = destination
        self.retry: RetryState | None = None
        self.catching_up = False
        self._pdus: list[tuple[int, dict]] = []  # (stream_ordering, PDU JSON), in order
        self._edus: OrderedDict = OrderedDict()  # (edu_type, key) -> (EDU, queued at ms)
        self._wakeup = Wakeup()
        self._greenlet = None

    # --- what the sender hands us -------------------------------------------------------------------

    def add_pdu(self, stream_ordering: int, pdu: dict) -> None:
        """The PDU is already recorded in destination_rooms, which catch-up reads."""
        if self.catching_up and self.backoff_remaining_ms() > 0:
            return
        self._pdus.append((stream_ordering, pdu))
        self.wake()

    def add_edu(self, edu_type: str, content: dict, key) -> None:
        if edu_type == "m.typing" and self.backoff_remaining_ms() > 0:
            return  # stale by the time the destination is tried again
        entry = (edu_type, key if key is not None else object())
        self._edus.pop(entry, None)
        self._edus[entry] = ({"edu_type": edu_type, "content": content}, now_ms())
        self.wake()

    def wake(self) -> None:
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run)
        else:
            self._wakeup.set()

    def clear_backoff(self) -> None:
        if self.retry is None:
            return
        self.retry = None
        self.sender.store.clear_retry_state(self.destination)
        self.wake()

    def backoff_remaining_ms(self) -> int:
        if self.retry is None:
            return 0
        return max(0, self.retry.retry_last_ts + self.retry.retry_interval - now_ms())

    def pending(self) -> tuple[int, int]:
        """(PDUs, EDUs) waiting in memory."""
        return len(self._pdus), len(self._edus)

    # --- the transmission loop ------------------------------------------------------------------------

    def _run(self) -> None:
        """Sends until nothing is left, then ends; `wake` starts it again."""
        while True:
            self._wakeup.clear()
            wait_ms = self.backoff_remaining_ms()
            if wait_ms > 0:
                self._wakeup.wait(wait_ms / 1000)
                continue
            try:
                if not self._send_one():
                    return
            except Exception:
                logger.exception("federation sender for %s failed; retrying", self.destination)
                gevent.sleep(DATABASE_RETRY_S)

    def _send_one(self) -> bool:
        """Builds and sends one transaction; False when there was nothing to send."""
        store = self.sender.store
        if self.catching_up:
            pdus = self._catch_up_pdus()
            if pdus is None:
                return True
        else:
            pdus = self._pdus[:MAX_PDUS]
        outbox = store.get_outbox(self.destination, MAX_EDUS)
        now = now_ms()
        for entry, (edu, queued_at) in list(self._edus.items()):
            if edu["edu_type"] == "m.typing" and now - queued_at > TYPING_STALE_MS:
                del self._edus[entry]
        memory_edus = list(self._edus.items())[:MAX_EDUS - len(outbox)]
        if not pdus and not outbox and not memory_edus:
            return False
        edus = [{"edu_type": edu_type, "content": content} for _, edu_type, content in outbox]
        edus += [edu for _, (edu, _) in memory_edus]
        txn_id = store.next_txn_id(self.destination, now, self.sender.current_stream_ordering())
        body = {"origin": self.sender.server_name, "origin_server_ts": now,
                "pdus": [pdu for _, pdu in pdus], "edus": edus}
        outcome = self._transmit(txn_id, body)
        if outcome == "retry":
            self._failed()
            return True
        # Delivered, or refused for good: either way these are done.
        if not self.catching_up:
            del self._pdus[:len(pdus)]
        if outbox:
            store.delete_from_outbox([row[0] for row in outbox])
        for entry, value in memory_edus:
            if self._edus.get(entry) is value:  # not replaced by a newer one meanwhile
                del self._edus[entry]
        if pdus:  # refused ones too: catch-up must not offer them again
            store.set_last_successful(self.destination, max(so for so, _ in pdus))
        if outcome == "sent":
            self.sender.metrics_sent(len(pdus), len(edus))
            if self.retry is not None:
                self.retry = None
                store.clear_retry_state(self.destination)
        return True

    def _catch_up_pdus(self) -> list[tuple[int, dict]] | None:
        """The next events to catch up with; None (and back to the memory queue) when caught up."""
        rows = self.sender.store.get_catch_up_events(self.destination, MAX_PDUS)
        if not rows:
            self.catching_up = False
            # What arrived while catching up and is not older than what catch-up sent.
            sent = self.sender.store.get_last_successful(self.destination)
            self._pdus = [(so, pdu) for so, pdu in self._pdus if sent is None or so > sent]
            return None
        pdus = self.sender.load_pdus(rows)
        return pdus

    def _transmit(self, txn_id: int, body: dict) -> str:
        """"sent", "refused" (do not send again) or "retry"."""
        path = f"/_matrix/federation/v1/send/{txn_id}"
        try:
            answer = self.sender.client.put_json(self.destination, path, body)
        except FederationDenied as e:
            logger.info("federation: not sending to %s: %s", self.destination, e)
            return "refused"
        except FederationHttpError as e:
            if e.status == 429 or e.status >= 500:
                logger.info("federation: transaction %s to %s: %s; backing off", txn_id, self.destination, e)
                return "retry"
            logger.warning("federation: %s refused transaction %s: %s", self.destination, txn_id, e)
            self.sender.metrics_failed()
            return "refused"
        except FederationRequestError as e:
            logger.info("federation: transaction %s to %s: %s; backing off", txn_id, self.destination, e)
            return "retry"
        errors = {}
        if isinstance(answer, dict) and isinstance(answer.get("pdus"), dict):
            errors = {k: v for k, v in answer["pdus"].items() if isinstance(v, dict) and v.get("error")}
        if errors:
            logger.info("federation: %s accepted transaction %s with PDU errors: %s", self.destination, txn_id,
                        errors)
        return "sent"

    def _failed(self) -> None:
        self.sender.metrics_failed()
        now = now_ms()
        previous = self.retry
        if previous is None:
            interval, since = self.sender.min_retry_ms, now
        else:
            interval = min(int(previous.retry_interval * self.sender.retry_multiplier), self.sender.max_retry_ms)
            since = previous.failure_ts or now
        self.retry = RetryState(self.destination, since, now, max(interval, 1))
        self.sender.store.set_retry_state(self.retry, self.sender.current_stream_ordering())
        # What was in memory is in destination_rooms: catch-up sends the newest of each room.
        self._pdus = []
        self.catching_up = True
        for entry in [e for e in self._edus if e[0] == "m.typing"]:
            del self._edus[entry]
