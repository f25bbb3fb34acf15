"""Transactions to application services: each service's stream positions and its transactions not
yet accepted. Only the process that sends transactions (hs/appservice/scheduler.py) uses this."""

import json
from dataclasses import dataclass

from hs.storage.database import Database


@dataclass
class ServicePositions:
    events: int
    receipts: int
    presence: int


class AppServiceTxnStore:
    def __init__(self, db: Database):
        self.db = db

    def get_positions(self, service_id: str, start: ServicePositions) -> ServicePositions:
        """The service's positions; a service seen for the first time starts at `start` (now):
        it gets what happens from its registration on, not the server's history."""
        self.db.execute("init_appservice_positions",
                        "INSERT INTO appservice_stream_positions"
                        " (service_id, events_position, receipts_position, presence_position)"
                        " VALUES (%s, %s, %s, %s) ON CONFLICT (service_id) DO NOTHING",
                        (service_id, start.events, start.receipts, start.presence))
        rows = self.db.execute("get_appservice_positions",
                               "SELECT events_position, receipts_position, presence_position"
                               " FROM appservice_stream_positions WHERE service_id = %s", (service_id,))
        return ServicePositions(*rows[0])

    def set_positions(self, service_id: str, positions: ServicePositions) -> None:
        """Positions moved past rows that held nothing for the service."""
        self.db.execute("set_appservice_positions",
                        "UPDATE appservice_stream_positions SET events_position = %s, receipts_position = %s,"
                        " presence_position = %s WHERE service_id = %s",
                        (positions.events, positions.receipts, positions.presence, service_id))

    def create_txn(self, service_id: str, positions: ServicePositions, body: dict) -> int:
        """Stores a new transaction and moves the positions past what it carries, atomically: a
        crash leaves either both or neither, so nothing is lost or built twice. Returns its ID."""
        def txn(cur):
            cur.execute("UPDATE appservice_stream_positions SET last_txn_id = last_txn_id + 1, events_position = %s,"
                        " receipts_position = %s, presence_position = %s WHERE service_id = %s RETURNING last_txn_id",
                        (positions.events, positions.receipts, positions.presence, service_id))
            txn_id = cur.fetchone()[0]
            cur.execute("INSERT INTO appservice_txns (service_id, txn_id, body) VALUES (%s, %s, %s)",
                        (service_id, txn_id, json.dumps(body)))
            return txn_id
        return self.db.run_txn("create_appservice_txn", txn)

    def get_oldest_txn(self, service_id: str) -> tuple[int, dict] | None:
        rows = self.db.execute("get_oldest_appservice_txn",
                               "SELECT txn_id, body FROM appservice_txns WHERE service_id = %s"
                               " ORDER BY txn_id LIMIT 1", (service_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    def complete_txn(self, service_id: str, txn_id: int) -> None:
        self.db.execute("complete_appservice_txn",
                        "DELETE FROM appservice_txns WHERE service_id = %s AND txn_id = %s", (service_id, txn_id))
