"""Dehydrated devices (MSC3814, hs/handlers/dehydrated_devices.py), at Synapse's unstable paths:
PUT/GET/DELETE .../dehydrated_device and .../dehydrated_device/{deviceId}/events.

The events come two ways, as in Synapse: POST with {"next_batch"} in the body (the MSC's form,
which Element's clients use, always answering a next_batch), and GET with `from` (the form the
MSC is moving to, answering next_batch only while there may be more)."""

from hs.api.app import Resource
from hs.api.request import json_body, query_int
from hs.errors import Codes, MatrixError
from hs.handlers.dehydrated_devices import DEFAULT_EVENTS_LIMIT

PREFIX = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"


def _limit(req) -> int:
    return query_int(req, "limit", DEFAULT_EVENTS_LIMIT, minimum=1)


class DehydratedDeviceResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp):
        resp.media = self.handler.get(req.context.requester)

    def on_put(self, req, resp):
        resp.media = self.handler.put(req.context.requester, json_body(req))

    def on_delete(self, req, resp):
        resp.media = self.handler.delete(req.context.requester)


class DehydratedDeviceEventsResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp, device_id):
        events, next_batch, more = self.handler.events(req.context.requester, device_id, req.get_param("from"),
                                                       _limit(req))
        resp.media = {"events": events, "next_batch": next_batch} if more else {"events": events}

    def on_post(self, req, resp, device_id):
        next_batch = json_body(req, allow_empty=True).get("next_batch")
        if next_batch is not None and not isinstance(next_batch, str):
            raise MatrixError(400, Codes.BAD_JSON, "next_batch must be a string")
        events, next_batch, _ = self.handler.events(req.context.requester, device_id, next_batch, _limit(req))
        resp.media = {"events": events, "next_batch": next_batch}


def register(app, hs):
    app.add_route(PREFIX, DehydratedDeviceResource(hs.dehydrated_devices))
    app.add_route(PREFIX + "/{device_id}/events", DehydratedDeviceEventsResource(hs.dehydrated_devices))
