"""Inbound EDUs' own writes (hs/handlers/federation_edus.py, the master): to-device messages from
other servers, delivered once per (origin, message_id)."""

from hs.storage.database import Database
from hs.storage.to_device import ToDeviceStore

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
            ToDeviceStore.insert_inbox_txn(cur, rows)
            return True
        return ToDeviceStore.run_inbox_txn(self.db, "add_remote_to_device", txn)
