"""Rooms: createRoom, sending, state, redaction, and reading events, members and pages."""

from hs.api.app import Resource
from hs.api.request import json_body, query_int
from hs.api.routes import add_client_route
from hs.errors import Codes, MatrixError
from hs.events.event import relation_of
from hs.identifiers import check_event_id, check_room_id

DEFAULT_PAGE = 10


def _check_path_text(**values) -> None:
    """Event types, state keys and transaction IDs from the path: any string but NUL, which no
    event ID, PostgreSQL text or other server could carry."""
    for name, value in values.items():
        if "\x00" in value:
            raise MatrixError(400, Codes.INVALID_PARAM, f"{name} may not contain NUL")


class CreateRoomResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_post(self, req, resp):
        resp.media = self.handler.create_room(req.context.requester, json_body(req, allow_empty=True))


def _message_limit(limiters, requester):
    """The message rate limit, which an application service with `rate_limited: false` (and
    the users it acts as) skips, as in Synapse."""
    if not requester.rate_limited:
        return None
    return lambda: limiters.message.check(requester.user_id)


class SendResource(Resource):
    # Guests may send m.room.message only (Guest Access: "PUT /rooms/:room_id/send/m.room.message/:txn_id").
    guest_access = frozenset({"PUT"})

    def __init__(self, creation, limiters):
        self.creation = creation
        self.limiters = limiters

    def on_put(self, req, resp, room_id, event_type, txn_id):
        check_room_id(room_id)
        _check_path_text(eventType=event_type, txnId=txn_id)
        requester = req.context.requester
        if requester.is_guest and event_type != "m.room.message":
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guests may only send m.room.message events")
        content = json_body(req, allow_empty=True)
        txn_key = (requester.user_id, requester.txn_device_id, f"send {room_id} {event_type}", txn_id)
        event_id = self.creation.send(room_id, requester.user_id, event_type, content, txn_key=txn_key,
                                      relation=relation_of(content),
                                      ratelimit=_message_limit(self.limiters, requester))
        resp.media = {"event_id": event_id}


class StateEventResource(Resource):
    guest_access = frozenset({"GET"})

    def __init__(self, creation, reads, limiters, membership):
        self.creation = creation
        self.reads = reads
        self.limiters = limiters
        self.membership = membership

    def on_get(self, req, resp, room_id, event_type, state_key=""):
        check_room_id(room_id)
        _check_path_text(eventType=event_type, stateKey=state_key)
        stored = self.reads.get_state_event(req.context.requester, room_id, event_type, state_key)
        if req.get_param("format") == "event":
            resp.media = self.reads.serialize([stored], room_id)[0]
        else:
            resp.media = self.reads.serialize([stored], room_id)[0]["content"]

    def on_put(self, req, resp, room_id, event_type, state_key=""):
        check_room_id(room_id)
        _check_path_text(eventType=event_type, stateKey=state_key)
        requester = req.context.requester
        content = json_body(req, allow_empty=True)
        event_id = self.creation.send(room_id, requester.user_id, event_type, content, state_key=state_key,
                                      ratelimit=_message_limit(self.limiters, requester))
        if event_type == "m.room.guest_access" and state_key == "":
            self.membership.remove_guests_unless_allowed(room_id)
        resp.media = {"event_id": event_id}

    # /state/{type} with no state key means the empty state key.
    on_get_empty = on_get
    on_put_empty = on_put


class StateResource(Resource):
    guest_access = frozenset({"GET"})

    def __init__(self, reads):
        self.reads = reads

    def on_get(self, req, resp, room_id):
        check_room_id(room_id)
        resp.media = self.reads.get_state(req.context.requester, room_id)


class RedactResource(Resource):
    def __init__(self, redactions, limiters):
        self.redactions = redactions
        self.limiters = limiters

    def on_put(self, req, resp, room_id, event_id, txn_id):
        check_room_id(room_id)
        check_event_id(event_id)
        _check_path_text(txnId=txn_id)
        body = json_body(req, allow_empty=True)
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise MatrixError(400, Codes.BAD_JSON, "reason must be a string")
        requester = req.context.requester
        resp.media = {"event_id": self.redactions.redact(
            requester, room_id, event_id, reason, txn_id,
            ratelimit=_message_limit(self.limiters, requester))}


class EventResource(Resource):
    guest_access = frozenset({"GET"})

    def __init__(self, reads):
        self.reads = reads

    def on_get(self, req, resp, room_id, event_id):
        check_room_id(room_id)
        check_event_id(event_id)
        resp.media = self.reads.get_event(req.context.requester, room_id, event_id)


class MembersResource(Resource):
    guest_access = frozenset({"GET"})

    def __init__(self, reads):
        self.reads = reads

    def on_get(self, req, resp, room_id):
        check_room_id(room_id)
        memberships = ("join", "invite", "knock", "leave", "ban")
        membership, not_membership = req.get_param("membership"), req.get_param("not_membership")
        for value in (membership, not_membership):
            if value is not None and value not in memberships:
                raise MatrixError(400, Codes.INVALID_PARAM, f"Unknown membership {value!r}")
        resp.media = {"chunk": self.reads.get_members(req.context.requester, room_id, at=req.get_param("at"),
                                                      membership=membership, not_membership=not_membership)}


class JoinedMembersResource(Resource):
    def __init__(self, reads):
        self.reads = reads

    def on_get(self, req, resp, room_id):
        check_room_id(room_id)
        resp.media = {"joined": self.reads.get_joined_members(req.context.requester, room_id)}


class MessagesResource(Resource):
    guest_access = frozenset({"GET"})

    def __init__(self, reads, filters):
        self.reads = reads
        self.filters = filters

    def on_get(self, req, resp, room_id):
        check_room_id(room_id)
        direction = req.get_param("dir")
        if direction is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: dir")
        if direction not in ("b", "f"):
            raise MatrixError(400, Codes.INVALID_PARAM, "dir must be b or f")
        requester = req.context.requester
        event_filter = self.filters.room_event_filter(req.get_param("filter"))
        limit = query_int(req, "limit", DEFAULT_PAGE, minimum=0)
        if event_filter is not None and event_filter.limit is not None:
            limit = event_filter.limit
        resp.media = self.reads.get_messages(requester, room_id, from_token=req.get_param("from"),
                                             to_token=req.get_param("to"), direction=direction,
                                             limit=min(limit, 1000), event_filter=event_filter)


class ContextResource(Resource):
    guest_access = frozenset({"GET"})

    def __init__(self, reads, filters):
        self.reads = reads
        self.filters = filters

    def on_get(self, req, resp, room_id, event_id):
        check_room_id(room_id)
        check_event_id(event_id)
        requester = req.context.requester
        event_filter = self.filters.room_event_filter(req.get_param("filter"))
        limit = min(query_int(req, "limit", DEFAULT_PAGE, minimum=0), 100)
        resp.media = self.reads.get_context(requester, room_id, event_id, limit, event_filter)


def register(app, hs):
    add_client_route(app, "/createRoom", CreateRoomResource(hs.room_creation))
    add_client_route(app, "/rooms/{room_id}/send/{event_type}/{txn_id}",
                     SendResource(hs.event_creation, hs.limiters))
    state_event = StateEventResource(hs.event_creation, hs.room_reads, hs.limiters, hs.membership)
    add_client_route(app, "/rooms/{room_id}/state/{event_type}/{state_key}", state_event)
    for prefix in ("/_matrix/client/r0", "/_matrix/client/v3"):
        app.add_route(prefix + "/rooms/{room_id}/state/{event_type}", state_event, suffix="empty")
    add_client_route(app, "/rooms/{room_id}/state", StateResource(hs.room_reads))
    add_client_route(app, "/rooms/{room_id}/redact/{event_id}/{txn_id}", RedactResource(hs.redactions, hs.limiters))
    add_client_route(app, "/rooms/{room_id}/event/{event_id}", EventResource(hs.room_reads))
    add_client_route(app, "/rooms/{room_id}/members", MembersResource(hs.room_reads))
    add_client_route(app, "/rooms/{room_id}/joined_members", JoinedMembersResource(hs.room_reads))
    add_client_route(app, "/rooms/{room_id}/messages", MessagesResource(hs.room_reads, hs.filter_handler))
    add_client_route(app, "/rooms/{room_id}/context/{event_id}", ContextResource(hs.room_reads, hs.filter_handler))
