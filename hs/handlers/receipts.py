"""Receipts and read markers (POST /rooms/{roomId}/receipt/..., /rooms/{roomId}/read_markers),
and their part of /sync: an m.receipt event in each joined room's `ephemeral`.

A receipt needs the sender joined and the event in the room and visible to them. A receipt for
an event older than the user's current one (same type and thread) is ignored, as in Synapse:
receipts only move forward. m.read.private is shown to its owner only. m.fully_read is not a
receipt: it is the room account data of that type ({"event_id": ...}), written through the
account data stream (hs/handlers/account_data.py refuses it on its own endpoint), and like a
receipt it only moves forward.

Not checked: that a threaded receipt's event belongs to its thread (the spec allows a 400).
"""

import time

from hs.errors import Codes, MatrixError

RECEIPT_TYPES = ("m.read", "m.read.private")
FULLY_READ = "m.fully_read"


class ReceiptHandler:
    def __init__(self, store, stream, notifier, rooms, events, reads, account_data):
        self.store = store
        self.stream = stream
        self.notifier = notifier
        self.rooms = rooms
        self.events = events
        self.reads = reads
        self.account_data = account_data  # AccountDataHandler: m.fully_read lives there
        # Called with (room_id, receipt_type, user_id, event_id, data) for each receipt stored
        # (the federation sender tells the room's other servers of public ones).
        self.receipt_listeners = []

    # --- the endpoints ---------------------------------------------------------------------------

    def send_receipt(self, requester, room_id: str, receipt_type: str, event_id: str, body: dict) -> None:
        if receipt_type not in RECEIPT_TYPES + (FULLY_READ,):
            raise MatrixError(400, Codes.INVALID_PARAM, f"Receipt type {receipt_type!r} is not known")
        thread_id = None
        if "thread_id" in body:
            thread_id = body["thread_id"]
            if not isinstance(thread_id, str) or not thread_id:
                raise MatrixError(400, Codes.INVALID_PARAM, "thread_id field must be a non-empty string")
            if receipt_type == FULLY_READ:
                raise MatrixError(400, Codes.INVALID_PARAM, f"thread_id is not allowed for {FULLY_READ}")
            if thread_id != "main" and not thread_id.startswith("$"):
                raise MatrixError(400, Codes.INVALID_PARAM, "thread_id must be 'main' or an event ID")
        self._check_joined(requester.user_id, room_id)
        position = self._visible_event(requester.user_id, room_id, event_id)
        if receipt_type == FULLY_READ:
            self._set_fully_read(requester.user_id, room_id, event_id, position)
        else:
            self._put(requester.user_id, room_id, receipt_type, event_id, position, thread_id)

    def set_read_markers(self, requester, room_id: str, body: dict) -> None:
        markers = {}
        for key in (FULLY_READ,) + RECEIPT_TYPES:
            if key in body and body[key] is not None:
                if not isinstance(body[key], str) or not body[key].startswith("$"):
                    raise MatrixError(400, Codes.INVALID_PARAM, f"{key} must be an event ID")
                markers[key] = body[key]
        self._check_joined(requester.user_id, room_id)
        positions = {k: self._visible_event(requester.user_id, room_id, e) for k, e in markers.items()}
        for key, event_id in markers.items():
            if key == FULLY_READ:
                self._set_fully_read(requester.user_id, room_id, event_id, positions[key])
            else:
                self._put(requester.user_id, room_id, key, event_id, positions[key], None)

    def _check_joined(self, user_id: str, room_id: str) -> None:
        membership = self.rooms.get_membership(room_id, user_id)
        if membership is None or membership[0] != "join":
            raise MatrixError(403, Codes.FORBIDDEN, "You are not joined to this room")

    def _visible_event(self, user_id: str, room_id: str, event_id: str) -> int:
        """The event's stream ordering; 404 when it is not in the room or hidden from the user."""
        stored = self.events.get_event(event_id)
        if stored is None or stored.event.room_id_in_any_version != room_id:
            raise MatrixError(404, Codes.NOT_FOUND, "Event not found")
        if not self.reads.visible(user_id, [stored], self.reads.access(user_id, room_id)):
            raise MatrixError(404, Codes.NOT_FOUND, "Event not found")
        return stored.stream_ordering

    def _put(self, user_id, room_id, receipt_type, event_id, position, thread_id) -> None:
        data = {"ts": int(time.time() * 1000)}
        if thread_id is not None:
            data["thread_id"] = thread_id
        self.put_receipt(user_id, room_id, receipt_type, event_id, position, thread_id, data)

    def put_receipt(self, user_id, room_id, receipt_type, event_id, position, thread_id, data: dict) -> None:
        """Stores a checked receipt (also a remote user's, from an m.receipt EDU)."""
        with self.stream.get_next() as stream_id:
            if self.store.put(room_id, receipt_type, user_id, thread_id, event_id, position, data, stream_id):
                self.notifier.written(stream_id, rooms=[room_id])
                for listener in self.receipt_listeners:
                    listener(room_id, receipt_type, user_id, event_id, data)

    def _set_fully_read(self, user_id: str, room_id: str, event_id: str, position: int) -> None:
        # Like receipts, the marker only moves forward (as Synapse's read marker handler does).
        current = self.account_data.store.get(user_id, room_id, FULLY_READ)
        current_id = current.get("event_id") if isinstance(current, dict) else None
        if isinstance(current_id, str):
            stored = self.events.get_event(current_id)
            if stored is not None and stored.stream_ordering >= position:
                return
        self.account_data.set_by_server(user_id, room_id, FULLY_READ, {"event_id": event_id})

    # --- /sync -----------------------------------------------------------------------------------

    def sync_events(self, user_id: str, since: int | None, now: int, room_ids: list[str],
                    sync_filter) -> dict[str, dict]:
        """{room_id: m.receipt event} for the receipts written in (since, now] (all current
        receipts when since is None) in the rooms of `room_ids` the ephemeral filter lets through."""
        ephemeral = sync_filter.room.ephemeral
        wanted = [r for r in room_ids if ephemeral.includes_room(r)]
        if not wanted or ephemeral.blocks_all():
            return {}
        contents: dict[str, dict] = {}
        for room_id, rtype, user, _, event_id, data in self.store.get_changes(wanted, since, now, user_id,
                                                                               RECEIPT_TYPES):
            contents.setdefault(room_id, {}).setdefault(event_id, {}).setdefault(rtype, {})[user] = data
        result = {}
        for room_id, content in contents.items():
            event = {"type": "m.receipt", "content": content}
            if ephemeral.matches(event, room_id):
                result[room_id] = event
        return result
