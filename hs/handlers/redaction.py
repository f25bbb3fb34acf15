"""Redacting events: the redaction event itself. Whether a redaction may take effect (own
event, or the redact level) is checked by EventCreationHandler.send for every m.room.redaction,
however it is sent."""

from hs.errors import Codes, MatrixError
from hs.events.room_versions import get_room_version


class RedactionHandler:
    def __init__(self, rooms, events, state, creation):
        self.rooms = rooms
        self.events = events
        self.state = state
        self.creation = creation

    def redact(self, requester, room_id: str, event_id: str, reason: str | None, txn_id: str,
               ratelimit=None) -> str:
        room = self.rooms.get_room(room_id)
        if room is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        content = {} if reason is None else {"reason": reason}
        if get_room_version(room.room_version).redacts_in_content:
            content["redacts"] = event_id
        txn_key = (requester.user_id, requester.txn_device_id, f"redact {room_id} {event_id}", txn_id)
        return self.creation.send(room_id, requester.user_id, "m.room.redaction", content, redacts=event_id,
                                  txn_key=txn_key, ratelimit=ratelimit)
