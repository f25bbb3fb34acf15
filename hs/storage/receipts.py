"""Receipts: the latest receipt of each type per (room, user, thread). Each write that moves a
receipt forward moves the row to a new position of the receipt stream, which /sync reads."""

import json

from hs.storage.database import Database


class ReceiptStore:
    def __init__(self, db: Database):
        self.db = db

    def put(self, room_id: str, receipt_type: str, user_id: str, thread_id: str | None, event_id: str,
            event_stream_ordering: int, data: dict, stream_id: int) -> bool:
        """Whether the receipt was stored: one for an event older than (or the same as) the
        user's current receipt of that type and thread is ignored, as Synapse does."""
        def txn(cur):
            cur.execute("INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id,"
                        " event_stream_ordering, data, stream_id) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s)"
                        " ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE"
                        " SET event_id = EXCLUDED.event_id, event_stream_ordering = EXCLUDED.event_stream_ordering,"
                        "     data = EXCLUDED.data, stream_id = EXCLUDED.stream_id"
                        " WHERE receipts.event_stream_ordering < EXCLUDED.event_stream_ordering",
                        (room_id, receipt_type, user_id, thread_id or "", event_id, event_stream_ordering,
                         json.dumps(data), stream_id))
            return cur.rowcount > 0
        return self.db.run_txn("put_receipt", txn)

    def get_stream_rows(self, from_id: int, upto_id: int, limit: int | None) -> list[tuple[int, dict]]:
        """For replication: (stream_id, {"room_id", "user_id"}) of the receipts written in
        (from_id, upto_id]. A receipt moved on since shows once, at its latest id."""
        rows = self.db.execute("get_receipt_stream_rows",
                               "SELECT stream_id, room_id, user_id FROM receipts WHERE stream_id > %s AND stream_id <= %s"
                               " ORDER BY stream_id LIMIT %s", (from_id, upto_id, limit))
        return [(r[0], {"room_id": r[1], "user_id": r[2]}) for r in rows]

    def get_changes(self, room_ids: list[str], since: int | None, upto: int, reader: str,
                    receipt_types: tuple[str, ...]) -> list[tuple]:
        """(room_id, receipt_type, user_id, thread_id, event_id, data) of the rows of these
        rooms written in (since, upto] (all up to `upto` when since is None), oldest first;
        m.read.private rows only of `reader`."""
        if not room_ids:
            return []
        rows = self.db.execute("get_receipt_changes",
                               "SELECT room_id, receipt_type, user_id, thread_id, event_id, data FROM receipts"
                               " WHERE room_id = ANY(%(rooms)s) AND receipt_type = ANY(%(types)s)"
                               " AND stream_id > %(since)s AND stream_id <= %(upto)s"
                               " AND (receipt_type <> 'm.read.private' OR user_id = %(reader)s)"
                               " ORDER BY stream_id",
                               {"rooms": room_ids, "types": list(receipt_types), "since": since or 0,
                                "upto": upto, "reader": reader})
        return [tuple(r) for r in rows]
