"""A user's devices: list, rename, delete (under user-interactive auth).

Every lookup is by (requester's user ID, device ID): a device ID alone never reaches another
user's device, so another user's device looks exactly like one that does not exist.
"""

from hs.errors import Codes, MatrixError
from hs.handlers.uia import PASSWORD

MAX_DISPLAY_NAME_LENGTH = 100


def _may_exist(device_id: str) -> bool:
    # PostgreSQL text cannot hold NUL, so no stored device has one; asking would be an error.
    return "\x00" not in device_id


class DeviceHandler:
    def __init__(self, devices, uia):
        self.devices = devices
        self.uia = uia
        # Called with the user ID after devices were deleted (pushers go with their device).
        self.devices_deleted_listeners = []
        # Called with the user ID after a device's display name was set (its device list changed).
        self.device_renamed_listeners = []

    def list_devices(self, requester) -> list[dict]:
        return [d.to_json(requester.user_id) for d in self.devices.get_devices(requester.user_id)]

    def get_device(self, requester, device_id: str) -> dict:
        device = self.devices.get_device(requester.user_id, device_id) if _may_exist(device_id) else None
        if device is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Device not found")
        return device.to_json(requester.user_id)

    def rename_device(self, requester, device_id: str, body: dict) -> None:
        name = body.get("display_name")
        if name is not None and (not isinstance(name, str) or len(name) > MAX_DISPLAY_NAME_LENGTH):
            raise MatrixError(400, Codes.BAD_JSON,
                              f"display_name must be a string of at most {MAX_DISPLAY_NAME_LENGTH} characters")
        if name is not None and "\x00" in name:
            raise MatrixError(400, Codes.INVALID_PARAM, "display_name must not contain NUL")
        if "display_name" not in body:
            # Nothing to change; the device must still exist.
            self.get_device(requester, device_id)
            return
        if not _may_exist(device_id) or not self.devices.set_display_name(requester.user_id, device_id, name):
            raise MatrixError(404, Codes.NOT_FOUND, "Device not found")
        for listener in self.device_renamed_listeners:
            listener(requester.user_id)

    def delete_devices(self, req, requester, body: dict, device_ids: list) -> None:
        if not all(isinstance(d, str) for d in device_ids):
            raise MatrixError(400, Codes.BAD_JSON, "devices must be an array of strings")
        self.uia.check(req, body, [[PASSWORD]], user_id=requester.user_id)
        # Deleting a device that does not exist succeeds: it "had been removed previously".
        self.devices.delete_devices(requester.user_id, [d for d in device_ids if _may_exist(d)])
        for listener in self.devices_deleted_listeners:
            listener(requester.user_id)
