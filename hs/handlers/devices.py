"""A user's devices: list, rename, delete (under user-interactive auth)."""

from hs.errors import Codes, MatrixError
from hs.handlers.uia import PASSWORD

MAX_DISPLAY_NAME_LENGTH = 100


class DeviceHandler:
    def __init__(self, devices, uia):
        self.devices = devices
        self.uia = uia

    def list_devices(self, requester) -> list[dict]:
        return [d.to_json(requester.user_id) for d in self.devices.get_devices(requester.user_id)]

    def get_device(self, requester, device_id: str) -> dict:
        device = self.devices.get_device(requester.user_id, device_id)
        if device is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Device not found")
        return device.to_json(requester.user_id)

    def rename_device(self, requester, device_id: str, body: dict) -> None:
        name = body.get("display_name")
        if name is not None and (not isinstance(name, str) or len(name) > MAX_DISPLAY_NAME_LENGTH):
            raise MatrixError(400, Codes.BAD_JSON,
                              f"display_name must be a string of at most {MAX_DISPLAY_NAME_LENGTH} characters")
        if "display_name" not in body:
            # Nothing to change; the device must still exist.
            self.get_device(requester, device_id)
            return
        if not self.devices.set_display_name(requester.user_id, device_id, name):
            raise MatrixError(404, Codes.NOT_FOUND, "Device not found")

    def delete_devices(self, req, requester, body: dict, device_ids: list) -> None:
        if not all(isinstance(d, str) for d in device_ids):
            raise MatrixError(400, Codes.BAD_JSON, "devices must be an array of strings")
        self.uia.check(req, body, [[PASSWORD]], user_id=requester.user_id)
        self.devices.delete_devices(requester.user_id, device_ids)
