"""GET /sync."""

from hs.api.app import Resource
from hs.api.request import query_bool, query_int
from hs.api.routes import add_client_route
from hs.handlers.sync import check_set_presence


class SyncResource(Resource):
    # Guests sync too (Guest Access lists GET /sync).
    guest_access = frozenset({"GET"})

    def __init__(self, handler, filters):
        self.handler = handler
        self.filters = filters

    def on_get(self, req, resp):
        requester = req.context.requester
        timeout_ms = query_int(req, "timeout", 0, minimum=0)
        full_state = query_bool(req, "full_state")
        # Accepted and checked, but not acted on until presence exists: syncing marks no one
        # online yet.
        check_set_presence(req.get_param("set_presence"))
        sync_filter = self.filters.sync_filter(requester.user_id, req.get_param("filter"))
        # use_state_after (MSC4222) is not implemented: `state_after` is never sent, which tells
        # clients to use `state` and the timeline, as the spec says they must.
        resp.media = self.handler.sync(requester, since=req.get_param("since"), timeout_ms=timeout_ms,
                                       full_state=full_state, sync_filter=sync_filter)


def register(app, hs):
    add_client_route(app, "/sync", SyncResource(hs.sync, hs.filter_handler))
