"""PUT /sendToDevice/{eventType}/{txnId}."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route


class SendToDeviceResource(Resource):
    # Guests may use end-to-end encryption, which needs to-device messages (as Synapse allows).
    guest_access = frozenset({"PUT"})

    def __init__(self, handler):
        self.handler = handler

    def on_put(self, req, resp, event_type, txn_id):
        self.handler.send(req.context.requester, event_type, txn_id, json_body(req))
        resp.media = {}


def register(app, hs):
    add_client_route(app, "/sendToDevice/{event_type}/{txn_id}", SendToDeviceResource(hs.send_to_device))
