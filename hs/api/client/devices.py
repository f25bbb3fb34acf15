"""/devices, /devices/{deviceId}, /delete_devices."""

from hs.api.app import Resource
from hs.api.request import field, json_body
from hs.api.routes import add_client_route


class DevicesResource(Resource):
    guest_access = frozenset({"GET"})
    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp):
        resp.media = {"devices": self.handler.list_devices(req.context.requester)}


class DeviceResource(Resource):
    guest_access = frozenset({"GET", "PUT"})
    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp, device_id):
        resp.media = self.handler.get_device(req.context.requester, device_id)

    def on_put(self, req, resp, device_id):
        self.handler.rename_device(req.context.requester, device_id, json_body(req, allow_empty=True))
        resp.media = {}

    def on_delete(self, req, resp, device_id):
        self.handler.delete_devices(req, req.context.requester, json_body(req, allow_empty=True), [device_id])
        resp.media = {}


class DeleteDevicesResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_post(self, req, resp):
        body = json_body(req)
        self.handler.delete_devices(req, req.context.requester, body, field(body, "devices", list))
        resp.media = {}


def register(app, hs):
    add_client_route(app, "/devices", DevicesResource(hs.device_handler))
    add_client_route(app, "/devices/{device_id}", DeviceResource(hs.device_handler))
    add_client_route(app, "/delete_devices", DeleteDevicesResource(hs.device_handler))
