"""Cached device lists of other servers' users (hs/handlers/remote_device_lists.py), and what the
server-server device API tells other servers about ours.

A cached list is a `remote_device_lists` row (the last update's stream_id, the cross-signing
keys) with one `remote_devices` row per device. Every write of a user's list takes the row's
lock first, so an update applied by `apply_updates` is checked against the stream_id it was
decided on."""

import json
from dataclasses import dataclass

from hs.storage.database import Database

MEMBER = "m.room.member"


def _dump(value) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, allow_nan=False)


@dataclass
class CachedDeviceList:
    stream_id: str | None
    devices: dict  # device_id -> (device keys or None, display name or None)
    master_key: dict | None
    self_signing_key: dict | None


@dataclass
class DeviceUpdate:
    device_id: str
    deleted: bool
    keys: dict | None = None
    display_name: str | None = None


class RemoteDeviceListStore:
    def __init__(self, db: Database, server_name: str):
        self.db = db
        self.server_name = server_name

    # --- reads ----------------------------------------------------------------------------------------

    def users_sharing_a_room(self, user_ids: list[str]) -> set[str]:
        """Those of `user_ids` joined to a room a user of ours is joined to."""
        if not user_ids:
            return set()
        rows = self.db.execute(
            "remote_users_sharing_a_room",
            "SELECT DISTINCT theirs.state_key FROM current_state_events theirs"
            " JOIN current_state_events ours ON ours.room_id = theirs.room_id AND ours.type = %s"
            "  AND ours.membership = 'join' AND substr(ours.state_key, strpos(ours.state_key, ':') + 1) = %s"
            " WHERE theirs.type = %s AND theirs.membership = 'join' AND theirs.state_key = ANY(%s)",
            (MEMBER, self.server_name, MEMBER, list(user_ids)))
        return {row[0] for row in rows}

    def get_stream_id(self, user_id: str) -> tuple[bool, str | None]:
        """(whether the user's list is cached, its stream_id)."""
        rows = self.db.execute("get_remote_device_list_stream_id",
                               "SELECT stream_id FROM remote_device_lists WHERE user_id = %s", (user_id,))
        return (True, rows[0][0]) if rows else (False, None)

    def get_cached(self, user_ids: list[str]) -> dict[str, CachedDeviceList]:
        if not user_ids:
            return {}
        rows = self.db.execute("get_remote_device_lists",
                               "SELECT user_id, stream_id, master_key, self_signing_key FROM remote_device_lists"
                               " WHERE user_id = ANY(%s)", (list(user_ids),))
        cached = {user_id: CachedDeviceList(stream_id, {}, master, self_signing)
                  for user_id, stream_id, master, self_signing in rows}
        for user_id, device_id, key_json, display_name in self.db.execute(
                "get_remote_devices", "SELECT user_id, device_id, key_json, display_name FROM remote_devices"
                " WHERE user_id = ANY(%s)", (list(cached),)):
            if user_id in cached:
                cached[user_id].devices[device_id] = (key_json, display_name)
        return cached

    # --- writes ---------------------------------------------------------------------------------------

    def replace(self, user_id: str, stream_id: str | None, devices: list[DeviceUpdate], master_key: dict | None,
                self_signing_key: dict | None, now_ms: int, *, only_if_absent: bool = False) -> bool:
        """The user's whole list (a resync, or a key query's answer with `only_if_absent`, which
        never replaces a list kept by updates). Returns whether it was written."""
        def txn(cur):
            if only_if_absent:
                cur.execute("INSERT INTO remote_device_lists (user_id, stream_id, master_key, self_signing_key,"
                            " updated_ts) VALUES (%s, %s, %s::jsonb, %s::jsonb, %s) ON CONFLICT DO NOTHING",
                            (user_id, stream_id, _dump(master_key), _dump(self_signing_key), now_ms))
                if cur.rowcount == 0:
                    return False
            else:
                cur.execute("INSERT INTO remote_device_lists (user_id, stream_id, master_key, self_signing_key,"
                            " updated_ts) VALUES (%s, %s, %s::jsonb, %s::jsonb, %s) ON CONFLICT (user_id) DO UPDATE"
                            " SET stream_id = EXCLUDED.stream_id, master_key = EXCLUDED.master_key,"
                            " self_signing_key = EXCLUDED.self_signing_key, updated_ts = EXCLUDED.updated_ts",
                            (user_id, stream_id, _dump(master_key), _dump(self_signing_key), now_ms))
                cur.execute("DELETE FROM remote_devices WHERE user_id = %s", (user_id,))
            self._put_devices(cur, user_id, devices)
            return True
        return self.db.run_txn("replace_remote_device_list", txn)

    def apply_updates(self, user_id: str, expected_stream_id: str, stream_id: str, updates: list[DeviceUpdate],
                      now_ms: int) -> bool:
        """Applies updates that follow `expected_stream_id`; False (nothing written) if the list
        moved on meanwhile."""
        def txn(cur):
            cur.execute("SELECT stream_id FROM remote_device_lists WHERE user_id = %s FOR UPDATE", (user_id,))
            row = cur.fetchone()
            if row is None or row[0] != expected_stream_id:
                return False
            deleted = [u.device_id for u in updates if u.deleted]
            if deleted:
                cur.execute("DELETE FROM remote_devices WHERE user_id = %s AND device_id = ANY(%s)", (user_id, deleted))
            self._put_devices(cur, user_id, [u for u in updates if not u.deleted])
            cur.execute("UPDATE remote_device_lists SET stream_id = %s, updated_ts = %s WHERE user_id = %s",
                        (stream_id, now_ms, user_id))
            return True
        return self.db.run_txn("apply_remote_device_updates", txn)

    @staticmethod
    def _put_devices(cur, user_id: str, devices: list[DeviceUpdate]) -> None:
        for device in devices:
            cur.execute("INSERT INTO remote_devices (user_id, device_id, display_name, key_json)"
                        " VALUES (%s, %s, %s, %s::jsonb) ON CONFLICT (user_id, device_id) DO UPDATE"
                        " SET display_name = EXCLUDED.display_name, key_json = EXCLUDED.key_json",
                        (user_id, device.device_id, device.display_name, _dump(device.keys)))

    def set_cross_signing_keys(self, user_id: str, keys: dict[str, dict], now_ms: int) -> None:
        """The given key types ("master", "self_signing") of a cached user; nothing if not cached."""
        sets = ", ".join(f"{key_type}_key = %s::jsonb" for key_type in keys)
        self.db.execute("set_remote_cross_signing_keys",
                        f"UPDATE remote_device_lists SET {sets}, updated_ts = %s WHERE user_id = %s",
                        (*(_dump(k) for k in keys.values()), now_ms, user_id))

    def forget(self, user_ids: list[str]) -> None:
        """Drops cached lists (a failed resync, users no longer sharing a room): the next query
        asks their server."""
        if user_ids:
            self.db.execute("forget_remote_device_lists", "DELETE FROM remote_device_lists WHERE user_id = ANY(%s)",
                            (list(user_ids),))

    # --- our users, as other servers see them --------------------------------------------------------

    def get_local_stream_id(self, user_id: str) -> int:
        """The stream_id of our last m.device_list_update for the user (the prev_id of the next),
        else of the user's last device list change, else 0."""
        rows = self.db.execute(
            "get_local_device_list_stream_id",
            "SELECT COALESCE((SELECT stream_id FROM federation_device_lists_last WHERE user_id = %s),"
            " (SELECT max(stream_id) FROM device_lists_stream WHERE user_id = %s), 0)", (user_id, user_id))
        return rows[0][0]
