"""GET /_matrix/client/v1/room_summary/{roomIdOrAlias} and GET /_matrix/client/v1/rooms/{roomId}/hierarchy."""

from hs.api.app import Resource
from hs.api.request import query_bool, query_int
from hs.api.routes import add_client_route
from hs.identifiers import check_room_id

V1 = ("/_matrix/client/v1",)


class RoomSummaryResource(Resource):
    # The spec lets servers answer without a token for rooms anyone could join or read; the
    # handler shows those alone when there is no requester.
    optional_auth = frozenset({"GET"})
    guest_access = frozenset({"GET"})

    def __init__(self, summaries):
        self.summaries = summaries

    def on_get(self, req, resp, room_id_or_alias):
        # `via` names the servers to ask about a room this server is not in.
        resp.media = self.summaries.get_summary(req.context.requester, room_id_or_alias,
                                                req.get_param_as_list("via") or [])


class HierarchyResource(Resource):
    guest_access = frozenset({"GET"})

    def __init__(self, summaries):
        self.summaries = summaries

    def on_get(self, req, resp, room_id):
        check_room_id(room_id)
        resp.media = self.summaries.get_hierarchy(
            req.context.requester, room_id,
            suggested_only=query_bool(req, "suggested_only", False),
            max_depth=query_int(req, "max_depth", None, minimum=0),
            limit=query_int(req, "limit", None, minimum=1),
            from_token=req.get_param("from"))


def register(app, hs):
    add_client_route(app, "/room_summary/{room_id_or_alias}", RoomSummaryResource(hs.room_summaries), prefixes=V1)
    add_client_route(app, "/rooms/{room_id}/hierarchy", HierarchyResource(hs.room_summaries), prefixes=V1)
