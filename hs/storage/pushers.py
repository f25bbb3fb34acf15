"""Pushers: per user, keyed by (app_id, pushkey), each owned by one device; and the pushers
stream, whose ids order every add, update and delete (deletes leave a row in deleted_pushers,
so a reader of the stream sees them)."""

import json

from hs.storage.database import Database

PusherKey = tuple[str, str, str]  # (user_id, app_id, pushkey)

_CLIENT_COLUMNS = "pushkey, kind, app_id, app_display_name, device_display_name, profile_tag, lang, data"


class PusherStore:
    def __init__(self, db: Database):
        self.db = db

    # --- reads: any process -------------------------------------------------------------------

    def get_pushers(self, user_id: str) -> list[dict]:
        """The user's pushers in the client API's shape."""
        rows = self.db.execute("get_pushers",
                               f"SELECT {_CLIENT_COLUMNS} FROM pushers WHERE user_id = %s ORDER BY app_id, pushkey",
                               (user_id,))
        pushers = []
        for pushkey, kind, app_id, app_name, device_name, profile_tag, lang, data in rows:
            pusher = {"pushkey": pushkey, "kind": kind, "app_id": app_id, "app_display_name": app_name,
                      "device_display_name": device_name, "lang": lang, "data": data}
            if profile_tag is not None:
                pusher["profile_tag"] = profile_tag
            pushers.append(pusher)
        return pushers

    def get_other_users_pushers(self, app_id: str, pushkey: str, user_id: str) -> list[PusherKey]:
        rows = self.db.execute("get_other_users_pushers",
                               "SELECT user_id, app_id, pushkey FROM pushers"
                               " WHERE app_id = %s AND pushkey = %s AND user_id <> %s",
                               (app_id, pushkey, user_id))
        return [tuple(r) for r in rows]

    def get_pushers_of_deleted_devices(self, user_id: str) -> list[PusherKey]:
        """The user's pushers whose device no longer exists (it logged out or was deleted)."""
        rows = self.db.execute("get_pushers_of_deleted_devices",
                               "SELECT p.user_id, p.app_id, p.pushkey FROM pushers p"
                               " WHERE p.user_id = %s AND NOT EXISTS"
                               " (SELECT 1 FROM devices d WHERE d.user_id = p.user_id AND d.device_id = p.device_id)",
                               (user_id,))
        return [tuple(r) for r in rows]

    def get_stream_rows(self, from_id: int, upto_id: int, limit: int) -> list[tuple[int, dict]]:
        """Changes in (from_id, upto_id], oldest first, at most `limit`: which pusher changed and
        whether it is now gone. A pusher changed twice appears once, at its latest id."""
        rows = self.db.execute(
            "get_pusher_stream_rows",
            "SELECT stream_id, user_id, app_id, pushkey, deleted FROM ("
            "  SELECT stream_id, user_id, app_id, pushkey, FALSE AS deleted FROM pushers"
            "  WHERE stream_id > %(from)s AND stream_id <= %(upto)s"
            "  UNION ALL"
            "  SELECT stream_id, user_id, app_id, pushkey, TRUE FROM deleted_pushers"
            "  WHERE stream_id > %(from)s AND stream_id <= %(upto)s"
            ") AS changes ORDER BY stream_id LIMIT %(limit)s",
            {"from": from_id, "upto": upto_id, "limit": limit})
        return [(stream_id, {"user_id": user_id, "app_id": app_id, "pushkey": pushkey, "deleted": deleted})
                for stream_id, user_id, app_id, pushkey, deleted in rows]

    # --- writes: the master only, with ids from its pushers StreamIdGenerator -------------------

    def upsert_pusher(self, user_id: str, device_id: str, pusher: dict, stream_id: int, now_ms: int) -> bool:
        """Create the pusher, or update the user's pusher with its app_id and pushkey (which keeps
        the device that created it). False, writing nothing, when the device no longer exists."""
        def txn(cur):
            # The key-share lock orders this against the device's deletion: either the device
            # is gone and nothing is written, or the pusher commits first and the deletion's
            # clean-up (remove_pushers) finds it.
            cur.execute("SELECT 1 FROM devices WHERE user_id = %s AND device_id = %s FOR KEY SHARE",
                        (user_id, device_id))
            if cur.fetchone() is None:
                return False
            cur.execute(
                "INSERT INTO pushers (user_id, device_id, kind, app_id, pushkey, app_display_name,"
                " device_display_name, profile_tag, lang, data, created_ts, stream_id)"
                " VALUES (%(user)s, %(device)s, %(kind)s, %(app_id)s, %(pushkey)s, %(app_name)s,"
                " %(device_name)s, %(profile_tag)s, %(lang)s, %(data)s::jsonb, %(now)s, %(stream)s)"
                " ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET kind = EXCLUDED.kind,"
                " app_display_name = EXCLUDED.app_display_name,"
                " device_display_name = EXCLUDED.device_display_name, profile_tag = EXCLUDED.profile_tag,"
                " lang = EXCLUDED.lang, data = EXCLUDED.data, stream_id = EXCLUDED.stream_id",
                {"user": user_id, "device": device_id, "kind": pusher["kind"], "app_id": pusher["app_id"],
                 "pushkey": pusher["pushkey"], "app_name": pusher["app_display_name"],
                 "device_name": pusher["device_display_name"], "profile_tag": pusher.get("profile_tag"),
                 "lang": pusher["lang"], "data": json.dumps(pusher["data"], ensure_ascii=False),
                 "now": now_ms, "stream": stream_id})
            return True
        return self.db.run_txn("upsert_pusher", txn)

    def delete_pushers(self, keys: list[PusherKey], stream_ids: list[int]) -> None:
        """Delete each pusher that still exists, leaving its tombstone at its stream id (one id
        per key; the id of a pusher already gone stays unused, a harmless hole)."""
        def txn(cur):
            for (user_id, app_id, pushkey), stream_id in zip(keys, stream_ids, strict=True):
                cur.execute("DELETE FROM pushers WHERE user_id = %s AND app_id = %s AND pushkey = %s",
                            (user_id, app_id, pushkey))
                if cur.rowcount:
                    cur.execute("INSERT INTO deleted_pushers (stream_id, user_id, app_id, pushkey)"
                                " VALUES (%s, %s, %s, %s)", (stream_id, user_id, app_id, pushkey))
        self.db.run_txn("delete_pushers", txn)
