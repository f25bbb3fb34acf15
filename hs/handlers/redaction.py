"""Redacting events: who may, and the redaction event itself."""

from hs.errors import Codes, MatrixError
from hs.events.power_levels import get_named_level, get_user_power_level
from hs.events.room_versions import get_room_version


class RedactionHandler:
    def __init__(self, rooms, events, state, creation):
        self.rooms = rooms
        self.events = events
        self.state = state
        self.creation = creation

    def redact(self, requester, room_id: str, event_id: str, reason: str | None, txn_id: str) -> str:
        room = self.rooms.get_room(room_id)
        if room is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        target = self.events.get_event(event_id)
        if target is None or target.event.room_id not in (room_id, None):
            raise MatrixError(404, Codes.NOT_FOUND, "Event not found")
        # The auth rules only ask whether the sender may send m.room.redaction; whether the
        # redaction takes effect (own event, or the redact level) is checked here, before sending.
        if target.event.sender != requester.user_id:
            ids = self.state.get_current_state_ids(room_id, [("m.room.power_levels", ""), ("m.room.create", "")])
            loaded = {k: self.events.get_event(v).event for k, v in ids.items()}
            power_levels = loaded.get(("m.room.power_levels", ""))
            level = get_user_power_level(requester.user_id, power_levels, loaded[("m.room.create", "")])
            if level < get_named_level("redact", power_levels):
                raise MatrixError(403, Codes.FORBIDDEN, "You may not redact other users' events")
        content = {} if reason is None else {"reason": reason}
        room_version = get_room_version(room.room_version)
        if room_version.redacts_in_content:
            content["redacts"] = event_id
        txn_key = (requester.user_id, requester.device_id, f"redact {room_id} {event_id}", txn_id)
        return self.creation.send(room_id, requester.user_id, "m.room.redaction", content,
                                  redacts=None if room_version.redacts_in_content else event_id, txn_key=txn_key)
