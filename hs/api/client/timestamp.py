"""GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event: the event closest to a time."""

from hs.api.app import Resource
from hs.api.request import query_int
from hs.api.routes import add_client_route
from hs.errors import Codes, MatrixError
from hs.identifiers import check_room_id


class TimestampToEventResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp, room_id):
        check_room_id(room_id)
        ts = query_int(req, "ts")
        if ts is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: ts")
        direction = req.get_param("dir")
        if direction is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: dir")
        if direction not in ("f", "b"):
            raise MatrixError(400, Codes.INVALID_PARAM, "dir must be f or b")
        resp.media = self.handler.event_at_timestamp(req.context.requester, room_id, ts, direction)


def register(app, hs):
    add_client_route(app, "/rooms/{room_id}/timestamp_to_event", TimestampToEventResource(hs.search),
                     prefixes=("/_matrix/client/v1",))
