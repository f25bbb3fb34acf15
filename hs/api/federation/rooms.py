"""Reads of rooms by other servers: /event, /state, /state_ids, /event_auth, /backfill,
/get_missing_events, /timestamp_to_event; and the directory and profile queries. The handler
(hs/handlers/federation_serving.py) applies the room's server ACL and who may read what."""

from hs.api.federation.base import FederationResource
from hs.api.request import json_body, query_int
from hs.errors import Codes, MatrixError


def _required(req, name: str) -> str:
    value = req.get_param(name)
    if not value:
        raise MatrixError(400, Codes.MISSING_PARAM, f"{name} is required")
    return value


class EventResource(FederationResource):
    def __init__(self, serving):
        self.serving = serving

    def on_get(self, req, resp, event_id):
        resp.media = self.serving.get_event(req.context.origin, event_id)


class RoomReadResource(FederationResource):
    """/state, /state_ids and /event_auth."""

    def __init__(self, serving, what: str):
        self.serving = serving
        self.what = what

    def on_get(self, req, resp, room_id, event_id=None):
        origin = req.context.origin
        if self.what == "event_auth":
            resp.media = self.serving.get_event_auth(origin, room_id, event_id)
        elif self.what == "state_ids":
            resp.media = self.serving.get_state_ids(origin, room_id, _required(req, "event_id"))
        else:
            resp.media = self.serving.get_state(origin, room_id, _required(req, "event_id"))


class BackfillResource(FederationResource):
    def __init__(self, serving):
        self.serving = serving

    def on_get(self, req, resp, room_id):
        from_ids = req.get_param_as_list("v")
        if not from_ids:
            raise MatrixError(400, Codes.MISSING_PARAM, "v is required")
        limit = query_int(req, "limit", 10)
        resp.media = self.serving.backfill(req.context.origin, room_id, from_ids, limit)


class MissingEventsResource(FederationResource):
    def __init__(self, serving):
        self.serving = serving

    def on_post(self, req, resp, room_id):
        body = json_body(req)
        earliest, latest = body.get("earliest_events", []), body.get("latest_events")
        limit, min_depth = body.get("limit", 10), body.get("min_depth", 0)
        if not (isinstance(earliest, list) and isinstance(latest, list) and isinstance(limit, int)
                and isinstance(min_depth, int) and all(isinstance(e, str) for e in earliest + latest)):
            raise MatrixError(400, Codes.BAD_JSON, "earliest_events and latest_events must be lists of event IDs")
        resp.media = self.serving.get_missing_events(req.context.origin, room_id, earliest, latest, limit, min_depth)


class TimestampToEventResource(FederationResource):
    def __init__(self, serving):
        self.serving = serving

    def on_get(self, req, resp, room_id):
        ts = query_int(req, "ts")
        if ts is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "ts is required")
        direction = _required(req, "dir")
        if direction not in ("f", "b"):
            raise MatrixError(400, Codes.INVALID_PARAM, "dir must be f or b")
        resp.media = self.serving.timestamp_to_event(req.context.origin, room_id, ts, direction)


class QueryResource(FederationResource):
    def __init__(self, serving):
        self.serving = serving

    def on_get(self, req, resp, query_type):
        if query_type == "directory":
            resp.media = self.serving.query_directory(_required(req, "room_alias"))
        elif query_type == "profile":
            field = req.get_param("field")
            if field is not None and field not in ("displayname", "avatar_url"):
                raise MatrixError(400, Codes.INVALID_PARAM, "field must be displayname or avatar_url")
            resp.media = self.serving.query_profile(_required(req, "user_id"), field)
        else:
            raise MatrixError(404, Codes.UNRECOGNIZED, f"Unknown query type {query_type}")


def register(app, hs):
    serving = hs.federation_serving
    base = "/_matrix/federation/v1"
    app.add_route(f"{base}/event/{{event_id}}", EventResource(serving))
    app.add_route(f"{base}/state/{{room_id}}", RoomReadResource(serving, "state"))
    app.add_route(f"{base}/state_ids/{{room_id}}", RoomReadResource(serving, "state_ids"))
    app.add_route(f"{base}/event_auth/{{room_id}}/{{event_id}}", RoomReadResource(serving, "event_auth"))
    app.add_route(f"{base}/backfill/{{room_id}}", BackfillResource(serving))
    app.add_route(f"{base}/get_missing_events/{{room_id}}", MissingEventsResource(serving))
    app.add_route(f"{base}/timestamp_to_event/{{room_id}}", TimestampToEventResource(serving))
    app.add_route(f"{base}/query/{{query_type}}", QueryResource(serving))
