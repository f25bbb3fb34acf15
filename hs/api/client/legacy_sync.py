"""The deprecated sync API: GET /events, GET /events/{eventId}, GET /initialSync and
GET /rooms/{roomId}/initialSync (hs/handlers/legacy_sync.py)."""

from hs.api.app import Resource
from hs.api.request import query_bool, query_int
from hs.api.routes import add_client_route
from hs.handlers.legacy_sync import DEFAULT_LIMIT, MAX_LIMIT
from hs.identifiers import check_event_id, check_room_id


def _limit(req) -> int:
    return min(query_int(req, "limit", DEFAULT_LIMIT, minimum=0), MAX_LIMIT)


class EventsResource(Resource):
    # Guest Access lists GET /events.
    guest_access = frozenset({"GET"})

    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp):
        resp.media = self.handler.events_stream(req.context.requester, from_token=req.get_param("from"),
                                                timeout_ms=query_int(req, "timeout", 0, minimum=0),
                                                limit=max(_limit(req), 1))


class EventResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp, event_id):
        check_event_id(event_id)
        resp.media = self.handler.get_event(req.context.requester, event_id)


class InitialSyncResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp):
        resp.media = self.handler.initial_sync(req.context.requester, limit=_limit(req),
                                               archived=query_bool(req, "archived"))


class RoomInitialSyncResource(Resource):
    # Guest Access lists GET /rooms/:room_id/initialSync.
    guest_access = frozenset({"GET"})

    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp, room_id):
        check_room_id(room_id)
        resp.media = self.handler.room_initial_sync(req.context.requester, room_id, limit=_limit(req))


def register(app, hs):
    add_client_route(app, "/events", EventsResource(hs.legacy_sync))
    add_client_route(app, "/events/{event_id}", EventResource(hs.legacy_sync))
    add_client_route(app, "/initialSync", InitialSyncResource(hs.legacy_sync))
    add_client_route(app, "/rooms/{room_id}/initialSync", RoomInitialSyncResource(hs.legacy_sync))
