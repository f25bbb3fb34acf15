"""An event as the algorithms see it: the PDU JSON, its room version and its event ID.

The PDU dict is what is hashed, signed and sent; everything else here is read from it.
Nothing in this module does I/O.
"""

from hs.events.room_versions import EventFormat, RoomVersion


class Event:
    __slots__ = ("pdu", "room_version", "event_id", "rejected_reason")

    def __init__(self, pdu: dict, room_version: RoomVersion, event_id: str, rejected_reason: str | None = None):
        self.pdu = pdu
        self.room_version = room_version
        self.event_id = event_id
        self.rejected_reason = rejected_reason

    @property
    def type(self) -> str:
        return self.pdu["type"]

    @property
    def state_key(self) -> str | None:
        return self.pdu.get("state_key")

    def is_state(self) -> bool:
        return "state_key" in self.pdu

    @property
    def state_key_tuple(self) -> tuple[str, str]:
        return self.pdu["type"], self.pdu["state_key"]

    @property
    def sender(self) -> str:
        return self.pdu["sender"]

    @property
    def room_id(self) -> str | None:
        """None only for a v12 create event, whose room ID is derived from its event ID."""
        return self.pdu.get("room_id")

    @property
    def room_id_in_any_version(self) -> str | None:
        """The room this event belongs to, also for a v12 create event (which has no room_id)."""
        if self.room_id is None and self.type == "m.room.create":
            return room_id_from_create_event_id(self.event_id)
        return self.room_id

    @property
    def content(self) -> dict:
        return self.pdu.get("content", {})

    @property
    def origin_server_ts(self) -> int:
        return self.pdu.get("origin_server_ts", 0)

    @property
    def depth(self) -> int:
        return self.pdu.get("depth", 0)

    @property
    def membership(self) -> str | None:
        return self.content.get("membership") if self.type == "m.room.member" else None

    @property
    def prev_event_ids(self) -> list[str]:
        return _edge_ids(self.pdu.get("prev_events", []), self.room_version)

    @property
    def auth_event_ids(self) -> list[str]:
        return _edge_ids(self.pdu.get("auth_events", []), self.room_version)

    @property
    def redacts(self) -> str | None:
        """The event a redaction targets: in content from v11, top-level before."""
        if self.type != "m.room.redaction":
            return None
        if self.room_version.redacts_in_content:
            return self.content.get("redacts")
        return self.pdu.get("redacts")

    def __repr__(self) -> str:
        return f"<Event {self.event_id} {self.type} {self.state_key!r} by {self.pdu.get('sender')}>"


def relation_of(content: dict) -> tuple | None:
    """(target event ID, rel_type, annotation key) of an event's m.relates_to, if it has one."""
    relates = content.get("m.relates_to")
    if not isinstance(relates, dict):
        return None
    rel_type, target = relates.get("rel_type"), relates.get("event_id")
    if not isinstance(rel_type, str) or not isinstance(target, str):
        return None
    key = relates.get("key") if rel_type == "m.annotation" and isinstance(relates.get("key"), str) else None
    return target, rel_type, key


def _edge_ids(edges: list, room_version: RoomVersion) -> list[str]:
    if room_version.event_format == EventFormat.V1:
        # v1/v2 edges are [event_id, {"sha256": ...}] pairs.
        return [edge[0] for edge in edges]
    return list(edges)


def room_id_from_create_event_id(event_id: str) -> str:
    """The ID of a room version 12+ room: its create event's ID with the ``!`` sigil (/appendices#room-ids)."""
    if not isinstance(event_id, str) or not event_id.startswith("$") or len(event_id) < 2:
        raise ValueError(f"not an event ID: {event_id!r}")
    return "!" + event_id[1:]
