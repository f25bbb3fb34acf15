"""Send-to-device messages: the inbox of each device, and the to_device stream's ids.

Each message to each device is one row with its own stream id. Rows go when the device's sync
acknowledges them, or with the device (a foreign key with ON DELETE CASCADE). So every row
still here is undelivered (or delivered and not yet acknowledged)."""

import json

import psycopg2.errors

from hs.storage.database import Database

# The stream's position outlives the rows: see to_device_stream_position in 005_to_device.sql.
STREAM_TABLES = [("to_device_stream_position", "stream_id")]
TXN_ID_LIFETIME_MS = 24 * 3600 * 1000


class ToDeviceStore:
    def __init__(self, db: Database):
        self.db = db

    # --- writing (the master) ----------------------------------------------------------------------

    def add_messages(self, sender: str, sender_device: str, txn_id: str, now_ms: int,
                     rows: list[tuple[int, str, str, dict]]) -> bool:
        """Stores (stream_id, user_id, device_id, message) rows, for the devices that exist, under
        the sender's transaction ID; False (nothing stored) when that transaction was already
        stored, or the sending device is gone."""
        def txn(cur):
            # A client retries within minutes; a day of transaction IDs per device is plenty, and
            # keeps the table from growing with every message ever sent.
            cur.execute("DELETE FROM to_device_txns WHERE user_id = %s AND device_id = %s AND created_ts < %s",
                        (sender, sender_device, now_ms - TXN_ID_LIFETIME_MS))
            cur.execute("INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts)"
                        " SELECT user_id, device_id, %s, %s FROM devices WHERE user_id = %s AND device_id = %s"
                        " ON CONFLICT DO NOTHING", (txn_id, now_ms, sender, sender_device))
            if cur.rowcount == 0:
                return False
            self.insert_inbox_txn(cur, rows)
            return True
        return self.run_inbox_txn(self.db, "add_to_device_messages", txn)

    @staticmethod
    def insert_inbox_txn(cur, rows: list[tuple[int, str, str, dict]]) -> None:
        """(stream_id, user_id, device_id, message) rows into the inboxes of the devices that exist."""
        if not rows:
            return
        cur.execute("INSERT INTO device_inbox (stream_id, user_id, device_id, message)"
                    " SELECT r.stream_id, r.user_id, r.device_id, r.message::jsonb"
                    " FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[])"
                    "  AS r(stream_id, user_id, device_id, message)"
                    " JOIN devices d ON d.user_id = r.user_id AND d.device_id = r.device_id",
                    ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                     [json.dumps(r[3], ensure_ascii=False, allow_nan=False) for r in rows]))
        cur.execute("UPDATE to_device_stream_position SET stream_id = GREATEST(stream_id, %s)",
                    (max(r[0] for r in rows),))

    @staticmethod
    def run_inbox_txn(db, desc: str, txn):
        try:
            return db.run_txn(desc, txn)
        except psycopg2.errors.ForeignKeyViolation:
            # A target device was deleted between the join and the insert's key check: once
            # more, and the join no longer finds it.
            return db.run_txn(desc, txn)

    # --- reading (any process that serves /sync) --------------------------------------------------

    def get_messages(self, user_id: str, device_id: str, after: int, upto: int,
                     limit: int) -> list[tuple[int, dict]]:
        """(stream_id, message) of the device's messages in (after, upto], oldest first, at most `limit`."""
        rows = self.db.execute("get_to_device_messages",
                               "SELECT stream_id, message FROM device_inbox WHERE user_id = %s AND device_id = %s"
                               " AND stream_id > %s AND stream_id <= %s ORDER BY stream_id LIMIT %s",
                               (user_id, device_id, after, upto, limit))
        return [(stream_id, message) for stream_id, message in rows]

    def delete_messages(self, user_id: str, device_id: str, upto: int) -> int:
        """Deletes the device's messages up to `upto` (the client has them); returns how many."""
        def txn(cur):
            cur.execute("DELETE FROM device_inbox WHERE user_id = %s AND device_id = %s AND stream_id <= %s",
                        (user_id, device_id, upto))
            return cur.rowcount
        return self.db.run_txn("delete_to_device_messages", txn)

    def get_stream_rows(self, from_id: int, upto_id: int, limit: int | None) -> list[tuple[int, dict]]:
        """Replication: (stream_id, {"user_id", "device_id"}) of the messages in (from_id, upto_id],
        ordered by id, at most `limit` (None: all); one row per id. Messages already acknowledged (deleted) are not listed:
        their device has them, so no one needs waking for them."""
        rows = self.db.execute("to_device_stream_rows",
                               "SELECT stream_id, user_id, device_id FROM device_inbox"
                               " WHERE stream_id > %s AND stream_id <= %s ORDER BY stream_id LIMIT %s",
                               (from_id, upto_id, limit))
        return [(stream_id, {"user_id": user_id, "device_id": device_id}) for stream_id, user_id, device_id in rows]
