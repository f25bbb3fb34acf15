"""GET /sync."""

from hs.api.app import Resource
from hs.api.request import query_bool, query_int
from hs.api.routes import add_client_route
from hs.handlers.sync import check_set_presence


class SyncResource(Resource):
    # Guests sync too (Guest Access lists GET /sync).
    guest_access = frozenset({"GET"})

    def __init__(self, handler, filters, presence):
        self.handler = handler
        self.filters = filters
        self.presence = presence

    def on_get(self, req, resp):
        requester = req.context.requester
        timeout_ms = query_int(req, "timeout", 0, minimum=0)
        full_state = query_bool(req, "full_state")
        set_presence = req.get_param("set_presence")
        check_set_presence(set_presence)
        sync_filter = self.filters.sync_filter(requester.user_id, req.get_param("filter"))
        # use_state_after (MSC4222) is not implemented: `state_after` is never sent, which tells
        # clients to use `state` and the timeline, as the spec says they must.
        # set_presence=offline: this sync leaves the user's presence as it is (as in Synapse).
        with self.presence.user_syncing(requester.user_id, requester.device_id, set_presence != "offline",
                                        set_presence or "online"):
            resp.media = self.handler.sync(requester, since=req.get_param("since"), timeout_ms=timeout_ms,
                                           full_state=full_state, sync_filter=sync_filter)


def register(app, hs):
    add_client_route(app, "/sync", SyncResource(hs.sync, hs.filter_handler, hs.presence_writer))
