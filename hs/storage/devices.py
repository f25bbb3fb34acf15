"""Devices of a user, and the last-seen record clients show in their session lists."""

from dataclasses import dataclass

from hs.storage.database import Database


@dataclass
class Device:
    device_id: str
    display_name: str | None
    last_seen_ts: int | None
    last_seen_ip: str | None

    def to_json(self, user_id: str) -> dict:
        # Unknown values are null rather than absent (the spec says absent): Synapse sends null,
        # and clients written against it, matrix-nio among them, reject a device without the keys.
        return {"device_id": self.device_id, "user_id": user_id, "display_name": self.display_name,
                "last_seen_ip": self.last_seen_ip, "last_seen_ts": self.last_seen_ts}


_COLUMNS = "device_id, display_name, last_seen_ts, last_seen_ip"


class DeviceStore:
    def __init__(self, db: Database):
        self.db = db

    @staticmethod
    def upsert_device_txn(cur, user_id, device_id, display_name, now_ms) -> None:
        """Creates the device; an existing device keeps its name unless a new one is given."""
        cur.execute(
            "INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (user_id, device_id) DO UPDATE"
            " SET display_name = COALESCE(EXCLUDED.display_name, devices.display_name)",
            (user_id, device_id, display_name, now_ms))

    def get_devices(self, user_id: str) -> list[Device]:
        rows = self.db.execute("get_devices", f"SELECT {_COLUMNS} FROM devices WHERE user_id = %s ORDER BY device_id",
                               (user_id,))
        return [Device(*row) for row in rows]

    def get_device(self, user_id: str, device_id: str) -> Device | None:
        rows = self.db.execute("get_device", f"SELECT {_COLUMNS} FROM devices WHERE user_id = %s AND device_id = %s",
                               (user_id, device_id))
        return Device(*rows[0]) if rows else None

    def set_display_name(self, user_id: str, device_id: str, display_name: str | None) -> bool:
        def txn(cur):
            cur.execute("UPDATE devices SET display_name = %s WHERE user_id = %s AND device_id = %s",
                        (display_name, user_id, device_id))
            return cur.rowcount > 0
        return self.db.run_txn("set_device_display_name", txn)

    @staticmethod
    def delete_devices_txn(cur, user_id: str, device_ids: list[str] | None) -> None:
        """Deletes the devices (all of the user's when None); their tokens go with them by cascade."""
        if device_ids is None:
            cur.execute("DELETE FROM devices WHERE user_id = %s", (user_id,))
        else:
            cur.execute("DELETE FROM devices WHERE user_id = %s AND device_id = ANY(%s)", (user_id, device_ids))

    @staticmethod
    def delete_other_devices_txn(cur, user_id: str, keep_device_id: str) -> None:
        cur.execute("DELETE FROM devices WHERE user_id = %s AND device_id <> %s", (user_id, keep_device_id))

    def delete_devices(self, user_id: str, device_ids: list[str] | None) -> None:
        self.db.run_txn("delete_devices", self.delete_devices_txn, user_id, device_ids)

    def record_last_seen(self, user_id, device_id, ip, user_agent, now_ms) -> None:
        self.db.execute(
            "record_last_seen",
            "UPDATE devices SET last_seen_ts = %s, last_seen_ip = %s, last_seen_user_agent = %s"
            " WHERE user_id = %s AND device_id = %s", (now_ms, ip, user_agent, user_id, device_id))
