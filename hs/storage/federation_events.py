"""What the inbound federation path keeps besides events: rejections, outlier bookkeeping and
received transactions."""

import json

from hs.storage.database import Database


class FederationEventStore:
    def __init__(self, db: Database):
        self.db = db

    def next_negative_stream_ordering(self) -> int:
        """A stream ordering for an outlier or a backfilled event: below zero, so no stream
        reader takes it for something new (migration 020)."""
        return -self.db.execute("negative_stream_id", "SELECT nextval('negative_stream_ids')")[0][0]

    def next_negative_stream_orderings(self, count: int) -> list[int]:
        return [-row[0] for row in self.db.execute(
            "negative_stream_ids", "SELECT nextval('negative_stream_ids') FROM generate_series(1, %s)", (count,))]

    def get_known(self, event_ids) -> dict[str, str]:
        """event ID -> 'timeline', 'outlier' or 'rejected', for those we hold."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        rows = self.db.execute(
            "known_events",
            "SELECT event_id, CASE WHEN outlier THEN 'outlier' ELSE 'timeline' END FROM events"
            " WHERE event_id = ANY(%s) UNION ALL SELECT event_id, 'rejected' FROM rejected_events"
            " WHERE event_id = ANY(%s)", (ids, ids))
        return dict(rows)

    def get_rejected_reasons(self, event_ids) -> dict[str, str]:
        ids = list(event_ids)
        if not ids:
            return {}
        return dict(self.db.execute("rejected_reasons", "SELECT event_id, reason FROM rejected_events"
                                                        " WHERE event_id = ANY(%s)", (ids,)))

    def add_rejected(self, event, room_id: str, reason: str, now_ms: int, state_group: int | None) -> None:
        """A rejected event's state is the state before it: an event citing it as a prev_event
        starts from there."""
        def txn(cur):
            cur.execute("INSERT INTO rejected_events (event_id, room_id, reason, json, received_ts)"
                        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (event.event_id, room_id, reason[:1000],
                         json.dumps(event.pdu, ensure_ascii=False, separators=(",", ":")), now_ms))
            if state_group is not None:
                cur.execute("INSERT INTO event_to_state_groups (event_id, state_group) VALUES (%s, %s)"
                            " ON CONFLICT DO NOTHING", (event.event_id, state_group))
        self.db.run_txn("add_rejected_event", txn)

    @staticmethod
    def delete_outlier_txn(cur, event_id: str) -> None:
        """Makes room for the event to be written again as part of the timeline."""
        cur.execute("DELETE FROM event_to_state_groups WHERE event_id = %s"
                    " AND EXISTS (SELECT 1 FROM events WHERE event_id = %s AND outlier)", (event_id, event_id))
        cur.execute("DELETE FROM room_memberships WHERE event_id = %s"
                    " AND EXISTS (SELECT 1 FROM events WHERE event_id = %s AND outlier)", (event_id, event_id))
        cur.execute("DELETE FROM events WHERE event_id = %s AND outlier", (event_id,))

    @staticmethod
    def hide_from_timeline_txn(cur, event_ids: list[str]) -> None:
        """An invite or knock kept while this server was outside the room is the user's record,
        not room history: once we are in, it leaves the room's timeline (the join follows it)."""
        cur.execute("UPDATE events SET outlier = TRUE WHERE event_id = ANY(%s)", (event_ids,))

    def get_auth_chain_ids(self, event_ids, *, include_given: bool = False) -> set[str]:
        """Every event reachable from the given ones through auth_events."""
        ids = list(event_ids)
        if not ids:
            return set()
        rows = self.db.execute(
            "auth_chain_ids",
            "WITH RECURSIVE chain(event_id) AS (SELECT auth_id FROM event_auth WHERE event_id = ANY(%s)"
            " UNION SELECT a.auth_id FROM event_auth a JOIN chain c ON a.event_id = c.event_id)"
            " SELECT event_id FROM chain", (ids,))
        found = {row[0] for row in rows}
        return found | set(ids) if include_given else found

    def get_backward_extremities(self, room_id: str) -> list[str]:
        """The events the room's timeline points back at that we do not have in it: where
        earlier history continues."""
        rows = self.db.execute(
            "backward_extremities",
            "SELECT DISTINCT g.prev_event_id FROM events e JOIN event_edges g ON g.event_id = e.event_id"
            " WHERE e.room_id = %s AND NOT e.outlier"
            " AND NOT EXISTS (SELECT 1 FROM events p WHERE p.event_id = g.prev_event_id AND NOT p.outlier)"
            " AND NOT EXISTS (SELECT 1 FROM rejected_events r WHERE r.event_id = g.prev_event_id)", (room_id,))
        return [row[0] for row in rows]

    def get_received_transaction(self, origin: str, transaction_id: str) -> dict | None:
        rows = self.db.execute("received_txn", "SELECT response FROM received_transactions"
                                               " WHERE origin = %s AND transaction_id = %s", (origin, transaction_id))
        return json.loads(rows[0][0]) if rows else None

    def add_received_transaction(self, origin: str, transaction_id: str, response: dict, now_ms: int) -> None:
        self.db.execute("add_received_txn",
                        "INSERT INTO received_transactions (origin, transaction_id, response, received_ts)"
                        " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (origin, transaction_id, json.dumps(response), now_ms))

    def delete_received_transactions_before(self, ts: int) -> None:
        self.db.execute("prune_received_txns", "DELETE FROM received_transactions WHERE received_ts < %s", (ts,))
