"""GET /keys/changes: the users whose device keys a client must refetch, or may forget, between
two sync tokens (the same rules as /sync's `device_lists`)."""

from hs.api.app import Resource
from hs.api.routes import add_client_route
from hs.errors import Codes, MatrixError
from hs.streams import StreamToken


class KeyChangesResource(Resource):
    # Guests may use end-to-end encryption (as Synapse allows).
    guest_access = frozenset({"GET"})

    def __init__(self, streams, reader):
        self.streams = streams
        self.reader = reader

    def on_get(self, req, resp):
        raw_from = req.get_param("from")
        if raw_from is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: from")
        since = StreamToken.parse(raw_from)
        now = self.streams.current_token()
        # The spec requires `to`; Synapse does not, and reads up to now without it. A `to` beyond
        # what this process has applied (a token from elsewhere) reads as now.
        raw_to = req.get_param("to")
        to = now if raw_to is None else StreamToken.parse(raw_to)
        upto = StreamToken(room=min(to.room, now.room), device_list=min(to.device_list, now.device_list))
        resp.media = self.reader.changes(req.context.requester.user_id, since, upto)


def register(app, hs):
    add_client_route(app, "/keys/changes", KeyChangesResource(hs.streams, hs.device_lists))
