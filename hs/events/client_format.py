"""Events as clients see them (the spec's ClientEvent), from the stored PDU. Pure."""

from hs.events.event import Event
from hs.events.redaction import prune_event_dict


def client_event(event: Event, room_id: str, *, now_ms: int, redaction: Event | None = None,
                 prev_state: Event | None = None, transaction_id: str | None = None,
                 relations: dict | None = None) -> dict:
    """`room_id` is passed because a room version 12 create event does not carry one.
    `redaction` is the event that redacted this one; the content is then pruned as the room
    version's redaction algorithm says, and the redaction is named in unsigned."""
    content = event.content
    if redaction is not None:
        content = prune_event_dict(event.room_version, event.pdu).get("content", {})
    body = {"type": event.type, "content": content, "sender": event.sender, "event_id": event.event_id,
            "origin_server_ts": event.origin_server_ts, "room_id": room_id}
    if event.is_state():
        body["state_key"] = event.state_key
    if event.type == "m.room.redaction" and event.redacts:
        # Clients of every room version find `redacts` in both places (/rooms/v11).
        body["redacts"] = event.redacts
        if "redacts" not in content:
            body["content"] = {**content, "redacts": event.redacts}
    unsigned = {"age": max(0, now_ms - event.origin_server_ts)}
    if redaction is not None:
        unsigned["redacted_because"] = client_event(redaction, room_id, now_ms=now_ms)
    if prev_state is not None:
        unsigned["replaces_state"] = prev_state.event_id
        unsigned["prev_content"] = prev_state.content
        unsigned["prev_sender"] = prev_state.sender
    if transaction_id is not None:
        unsigned["transaction_id"] = transaction_id
    if relations:
        unsigned["m.relations"] = relations
    body["unsigned"] = unsigned
    return body


def stripped_state_event(event: Event) -> dict:
    """The stripped form shown to invitees and knockers (and in room summaries)."""
    return {"type": event.type, "state_key": event.state_key, "content": event.content, "sender": event.sender}
