"""Dehydrated devices (MSC3814): which of a user's devices is the dehydrated one, and its data.

The device is a row of `devices` like any other (keys, inbox and device lists need nothing
new); `dehydrated_devices` marks it and goes with it by foreign-key cascade. Replacing one
device with another takes a per-user lock, so two concurrent uploads leave exactly one."""

import json

from hs.storage.database import Database
from hs.storage.devices import DeviceStore

# The first key of the two-key advisory lock serialising one user's dehydrated-device changes
# (the second is a hash of the user ID).
_LOCK_CLASS = 0x6465_6879  # "dehy"


class DeviceIdInUse(Exception):
    """The requested device ID belongs to one of the user's ordinary devices."""


class DehydratedDeviceGone(Exception):
    """The new device was deleted before it could be made the dehydrated one."""


def _lock(cur, user_id: str) -> None:
    cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, user_id))


def _current_txn(cur, user_id: str) -> str | None:
    cur.execute("SELECT device_id FROM dehydrated_devices WHERE user_id = %s", (user_id,))
    row = cur.fetchone()
    return row[0] if row else None


class DehydratedDeviceStore:
    def __init__(self, db: Database):
        self.db = db

    def get(self, user_id: str) -> tuple[str, dict] | None:
        """(device_id, device_data) of the user's dehydrated device, if there is one."""
        rows = self.db.execute("get_dehydrated_device",
                               "SELECT device_id, device_data FROM dehydrated_devices WHERE user_id = %s",
                               (user_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    def create_device(self, user_id: str, device_id: str, display_name: str | None, now_ms: int) -> bool:
        """Creates the device (with no token) that is to become the dehydrated one. An upload
        with the ID of the current dehydrated device replaces it afresh (as Synapse: its keys
        and messages go), and then True is returned. Raises DeviceIdInUse for the ID of any
        other existing device: turning a logged-in device into a dehydrated one would let the
        next upload delete it."""
        def txn(cur):
            _lock(cur, user_id)
            cur.execute("SELECT 1 FROM devices WHERE user_id = %s AND device_id = %s", (user_id, device_id))
            replaced = False
            if cur.fetchone() is not None:
                if _current_txn(cur, user_id) != device_id:
                    raise DeviceIdInUse(device_id)
                DeviceStore.delete_devices_txn(cur, user_id, [device_id])
                replaced = True
            DeviceStore.upsert_device_txn(cur, user_id, device_id, display_name, now_ms)
            return replaced
        return self.db.run_txn("create_dehydrated_device", txn)

    def set_dehydrated(self, user_id: str, device_id: str, device_data: dict) -> str | None:
        """Makes the (existing) device the user's dehydrated device, deleting the previous one
        with everything that cascades from it; returns the previous one's ID, if there was one.
        Raises DehydratedDeviceGone if the device no longer exists."""
        def txn(cur):
            _lock(cur, user_id)
            cur.execute("SELECT 1 FROM devices WHERE user_id = %s AND device_id = %s", (user_id, device_id))
            if cur.fetchone() is None:
                raise DehydratedDeviceGone(device_id)
            old = _current_txn(cur, user_id)
            cur.execute("INSERT INTO dehydrated_devices (user_id, device_id, device_data) VALUES (%s, %s, %s::jsonb)"
                        " ON CONFLICT (user_id) DO UPDATE"
                        " SET device_id = EXCLUDED.device_id, device_data = EXCLUDED.device_data",
                        (user_id, device_id, json.dumps(device_data, ensure_ascii=False, allow_nan=False)))
            if old is not None and old != device_id:
                DeviceStore.delete_devices_txn(cur, user_id, [old])
            return old if old != device_id else None
        return self.db.run_txn("set_dehydrated_device", txn)

    def delete(self, user_id: str) -> str | None:
        """Deletes the user's dehydrated device (its keys and messages with it); its ID, or None
        if there was none."""
        def txn(cur):
            _lock(cur, user_id)
            device_id = _current_txn(cur, user_id)
            if device_id is not None:
                DeviceStore.delete_devices_txn(cur, user_id, [device_id])
            return device_id
        return self.db.run_txn("delete_dehydrated_device", txn)
