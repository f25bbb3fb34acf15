"""Reads of rooms by other servers: /event, /state, /state_ids, /event_auth, /backfill,
/get_missing_events; and the directory and profile queries."""

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
    """/state, /state_ids and /event_auth: the room's server ACL applies."""

    def __init__(self, serving, acl, what: str):
        self.serving = serving
        self.acl = acl
        self.what = what

    def on_get(self, req, resp, room_id, event_id=None):
        origin = req.context.origin
        self.acl(origin, room_id)
        if self.what == "event_auth":
            resp.media = self.serving.get_event_auth(origin, room_id, event_id)
        elif self.what == "state_ids":
            resp.media = self.serving.get_state_ids(origin, room_id, _required(req, "event_id"))
        else:
            resp.media = self.serving.get_state(origin, room_id, _required(req, "event_id"))


class BackfillResource(FederationResource):
    def __init__(self, serving, acl):
        self.serving = serving
        self.acl = acl

    def on_get(self, req, resp, room_id):
        self.acl(req.context.origin, room_id)
        from_ids = req.get_param_as_list("v")
        if not from_ids:
            raise MatrixError(400, Codes.MISSING_PARAM, "v is required")
        limit = query_int(req, "limit", 10)
        resp.media = self.serving.backfill(req.context.origin, room_id, from_ids, limit)


class MissingEventsResource(FederationResource):
    def __init__(self, serving, acl):
        self.serving = serving
        self.acl = acl

    def on_post(self, req, resp, room_id):
        self.acl(req.context.origin, room_id)
        body = json_body(req)
        earliest, latest = body.get("earliest_events", []), body.get("latest_events")
        limit, min_depth = body.get("limit", 10), body.get("min_depth", 0)
        if not (isinstance(earliest, list) and isinstance(latest, list) and isinstance(limit, int)
                and isinstance(min_depth, int) and all(isinstance(e, str) for e in earliest + latest)):
            raise MatrixError(400, Codes.BAD_JSON, "earliest_events and latest_events must be lists of event IDs")
        resp.media = self.serving.get_missing_events(req.context.origin, room_id, earliest, latest, limit, min_depth)


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
    serving, acl = hs.federation_serving, hs.federation_membership.check_room_access
    base = "/_matrix/federation/v1"
    app.add_route(f"{base}/event/{{event_id}}", EventResource(serving))
    app.add_route(f"{base}/state/{{room_id}}", RoomReadResource(serving, acl, "state"))
    app.add_route(f"{base}/state_ids/{{room_id}}", RoomReadResource(serving, acl, "state_ids"))
    app.add_route(f"{base}/event_auth/{{room_id}}/{{event_id}}", RoomReadResource(serving, acl, "event_auth"))
    app.add_route(f"{base}/backfill/{{room_id}}", BackfillResource(serving, acl))
    app.add_route(f"{base}/get_missing_events/{{room_id}}", MissingEventsResource(serving, acl))
    app.add_route(f"{base}/query/{{query_type}}", QueryResource(serving))
