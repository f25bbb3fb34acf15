"""POST /rooms/{roomId}/receipt/{receiptType}/{eventId} and POST /rooms/{roomId}/read_markers."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route


class ReceiptResource(Resource):
    guest_access = frozenset({"POST"})

    def __init__(self, handler):
        self.handler = handler

    def on_post(self, req, resp, room_id, receipt_type, event_id):
        # The body is required by the spec, but older clients send none: read it as {}.
        self.handler.send_receipt(req.context.requester, room_id, receipt_type, event_id,
                                  json_body(req, allow_empty=True))
        resp.media = {}


class ReadMarkersResource(Resource):
    guest_access = frozenset({"POST"})

    def __init__(self, handler):
        self.handler = handler

    def on_post(self, req, resp, room_id):
        self.handler.set_read_markers(req.context.requester, room_id, json_body(req))
        resp.media = {}


def register(app, hs):
    add_client_route(app, "/rooms/{room_id}/receipt/{receipt_type}/{event_id}", ReceiptResource(hs.receipts))
    add_client_route(app, "/rooms/{room_id}/read_markers", ReadMarkersResource(hs.receipts))
