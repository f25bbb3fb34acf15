"""GET /notifications: the events the user's push rules notified them of."""

from hs.api.app import Resource
from hs.api.request import query_int
from hs.api.routes import add_client_route


class NotificationsResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp):
        resp.media = self.handler.notifications(req.context.requester, req.get_param("from"),
                                                query_int(req, "limit", minimum=1), req.get_param("only"))


def register(app, hs):
    add_client_route(app, "/notifications", NotificationsResource(hs.push_action_reader))
