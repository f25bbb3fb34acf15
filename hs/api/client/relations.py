"""GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]] and GET /rooms/{roomId}/threads
(client-server API v1: relations.yaml, threads_list.yaml)."""

from hs.api.app import Resource
from hs.api.request import query_bool, query_int
from hs.api.routes import add_client_route
from hs.errors import Codes, MatrixError
from hs.identifiers import check_event_id, check_room_id

V1 = ("/_matrix/client/v1",)
# Synapse's defaults; the spec asks for a default and a maximum on both.
DEFAULT_RELATIONS_PAGE, MAX_RELATIONS_PAGE = 5, 1000
DEFAULT_THREADS_PAGE, MAX_THREADS_PAGE = 5, 100


class RelationsResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp, room_id, event_id, rel_type=None, event_type=None):
        check_room_id(room_id)
        check_event_id(event_id)
        direction = req.get_param("dir") or "b"
        if direction not in ("b", "f"):
            raise MatrixError(400, Codes.INVALID_PARAM, "dir must be b or f")
        recurse = query_bool(req, "recurse") if req.get_param("recurse") is not None else None
        limit = min(query_int(req, "limit", DEFAULT_RELATIONS_PAGE, minimum=1), MAX_RELATIONS_PAGE)
        resp.media = self.handler.get_relations(
            req.context.requester, room_id, event_id, rel_type=rel_type, event_type=event_type,
            from_token=req.get_param("from"), to_token=req.get_param("to"), direction=direction, limit=limit,
            recurse=recurse)


class ThreadsResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp, room_id):
        check_room_id(room_id)
        include = req.get_param("include") or "all"
        if include not in ("all", "participated"):
            raise MatrixError(400, Codes.INVALID_PARAM, "include must be all or participated")
        limit = min(query_int(req, "limit", DEFAULT_THREADS_PAGE, minimum=1), MAX_THREADS_PAGE)
        resp.media = self.handler.get_threads(req.context.requester, room_id, include=include,
                                              from_token=req.get_param("from"), limit=limit)


def register(app, hs):
    relations = RelationsResource(hs.relation_handler)
    for path in ("/rooms/{room_id}/relations/{event_id}", "/rooms/{room_id}/relations/{event_id}/{rel_type}",
                 "/rooms/{room_id}/relations/{event_id}/{rel_type}/{event_type}"):
        add_client_route(app, path, relations, prefixes=V1)
    add_client_route(app, "/rooms/{room_id}/threads", ThreadsResource(hs.relation_handler), prefixes=V1)
