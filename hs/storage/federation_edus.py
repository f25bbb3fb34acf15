"""Inbound EDUs' own writes (hs/handlers/federation_edus.py, the master): to-device messages from
other servers, delivered once per (origin, message_id)."""

import json

import psycopg2.errors

from hs.storage.database import Database

# A sender retries a transaction within hours; message IDs older than this are forgotten.
MESSAGE_ID_LIFETIME_MS = 7 * 24 * 3600 * 1000


class FederationEduStore:
    def __init__(self, db: Database):
        self.db = db

    def add_remote_to_device(self, origin: str, message_id: str, now_ms: int,
                             rows: list[tuple[int, str, str, dict]]) -> bool:
        """Stores (stream_id, user_id, device_id, message) rows for the local devices that exist,
        unless (origin, message_id) was stored before: then nothing, and False."""
        def txn(cur):
            cur.execute("DELETE FROM federation_inbox_messages WHERE received_ts < %s",
                        (now_ms - MESSAGE_ID_LIFETIME_MS,))
            cur.execute("INSERT INTO federation_inbox_messages (origin, message_id, received_ts) VALUES (%s, %s, %s)"
                        " ON CONFLICT DO NOTHING", (origin, message_id, now_ms))
            if cur.rowcount == 0:
                return False
            if rows:
                cur.execute("INSERT INTO device_inbox (stream_id, user_id, device_id, message)"
                            " SELECT r.stream_id, r.user_id, r.device_id, r.message::jsonb"
                            " FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[])"
                            "  AS r(stream_id, user_id, device_id, message)"
                            " JOIN devices d ON d.user_id = r.user_id AND d.device_id = r.device_id",
                            ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                             [json.dumps(r[3], ensure_ascii=False, allow_nan=False) for r in rows]))
                cur.execute("UPDATE to_device_stream_position SET stream_id = GREATEST(stream_id, %s)",
                            (max(r[0] for r in rows),))
            return True
        try:
            return self.db.run_txn("add_remote_to_device", txn)
        except psycopg2.errors.ForeignKeyViolation:
            # A target device was deleted between the join and the key check: once more.
            return self.db.run_txn("add_remote_to_device", txn)
