"""Outbound federation's bookkeeping (hs/federation/sender.py, the master only): per destination
its backoff, transaction IDs, what it accepted (catch-up) and the EDUs it must still get; and
which servers share a room with whom."""

import json
from dataclasses import dataclass

from hs.storage.database import Database

MEMBER = "m.room.member"
# The server name of a user ID in current_state_events.state_key: all after the FIRST ':'.
_SERVER_OF_MEMBER = "substr(state_key, strpos(state_key, ':') + 1)"


@dataclass
class RetryState:
    destination: str
    failure_ts: int | None  # when the current run of failures began; None: not failing
    retry_last_ts: int
    retry_interval: int  # ms to wait after retry_last_ts; 0: send at once


def _dump(value) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


class FederationSenderStore:
    def __init__(self, db: Database):
        self.db = db

    # --- who is where -------------------------------------------------------------------------------

    def get_servers_sharing_a_room(self, user_id: str) -> set[str]:
        """The servers with a member joined to a room `user_id` is joined to."""
        rows = self.db.execute("federation_servers_sharing_a_room",
                               f"SELECT DISTINCT {_SERVER_OF_MEMBER} FROM current_state_events"
                               " WHERE type = %s AND membership = 'join' AND room_id IN ("
                               "  SELECT room_id FROM current_state_events WHERE type = %s AND state_key = %s"
                               "  AND membership = 'join')", (MEMBER, MEMBER, user_id))
        return {r[0] for r in rows}

    # --- the events stream --------------------------------------------------------------------------

    def get_stream_position(self) -> int | None:
        rows = self.db.execute("get_federation_stream_position",
                               "SELECT stream_ordering FROM federation_stream_position")
        return rows[0][0] if rows else None

    def set_stream_position(self, stream_ordering: int) -> None:
        self.db.execute("set_federation_stream_position",
                        "INSERT INTO federation_stream_position (stream_ordering) VALUES (%s)"
                        " ON CONFLICT (lock) DO UPDATE SET stream_ordering = EXCLUDED.stream_ordering",
                        (stream_ordering,))

    def record_pdu(self, stream_ordering: int, room_id: str, destinations: list[str]) -> None:
        """The event at `stream_ordering` is meant for `destinations`: the newest of the room for
        each. A destination seen for the first time has accepted everything before it."""
        def txn(cur):
            cur.execute("INSERT INTO destinations (destination, last_successful_stream_ordering)"
                        " SELECT unnest(%s::text[]), %s ON CONFLICT DO NOTHING", (destinations, stream_ordering - 1))
            cur.execute("INSERT INTO destination_rooms (destination, room_id, stream_ordering)"
                        " SELECT unnest(%s::text[]), %s, %s ON CONFLICT (destination, room_id) DO UPDATE"
                        " SET stream_ordering = GREATEST(destination_rooms.stream_ordering, EXCLUDED.stream_ordering)",
                        (destinations, room_id, stream_ordering))
        self.db.run_txn("federation_record_pdu", txn)

    def set_last_successful(self, destination: str, stream_ordering: int) -> None:
        self.db.execute("federation_set_last_successful",
                        "UPDATE destinations SET last_successful_stream_ordering ="
                        " GREATEST(last_successful_stream_ordering, %s) WHERE destination = %s",
                        (stream_ordering, destination))

    def get_catch_up_events(self, destination: str, limit: int) -> list[tuple[int, str]]:
        """(stream_ordering, event_id) of the newest event of each room the destination has not
        accepted, oldest first."""
        return self.db.execute(
            "federation_catch_up_events",
            "SELECT dr.stream_ordering, e.event_id FROM destination_rooms dr"
            " JOIN destinations d USING (destination)"
            " JOIN events e ON e.stream_ordering = dr.stream_ordering"
            " WHERE dr.destination = %s AND dr.stream_ordering > d.last_successful_stream_ordering"
            " ORDER BY dr.stream_ordering LIMIT %s", (destination, limit))

    # --- backoff and transaction IDs ----------------------------------------------------------------

    def get_retry_states(self) -> list[RetryState]:
        """The destinations that are failing."""
        rows = self.db.execute("federation_get_retry_states",
                               "SELECT destination, failure_ts, retry_last_ts, retry_interval FROM destinations"
                               " WHERE failure_ts IS NOT NULL")
        return [RetryState(*r) for r in rows]

    def set_retry_state(self, state: RetryState, stream_ordering: int) -> None:
        """`stream_ordering`: where a destination not known yet starts (see record_pdu)."""
        self.db.execute("federation_set_retry_state",
                        "INSERT INTO destinations (destination, failure_ts, retry_last_ts, retry_interval,"
                        " last_successful_stream_ordering) VALUES (%s, %s, %s, %s, %s)"
                        " ON CONFLICT (destination) DO UPDATE SET failure_ts = EXCLUDED.failure_ts,"
                        " retry_last_ts = EXCLUDED.retry_last_ts, retry_interval = EXCLUDED.retry_interval",
                        (state.destination, state.failure_ts, state.retry_last_ts, state.retry_interval,
                         stream_ordering))

    def clear_retry_state(self, destination: str) -> None:
        self.db.execute("federation_clear_retry_state",
                        "UPDATE destinations SET failure_ts = NULL, retry_last_ts = 0, retry_interval = 0"
                        " WHERE destination = %s", (destination,))

    def get_last_successful(self, destination: str) -> int | None:
        rows = self.db.execute("federation_get_last_successful",
                               "SELECT last_successful_stream_ordering FROM destinations WHERE destination = %s",
                               (destination,))
        return rows[0][0] if rows else None

    def next_txn_id(self, destination: str, now_ms: int, stream_ordering: int) -> int:
        """A transaction ID above every earlier one for the destination: the clock, or one more
        than the last when the clock went back."""
        rows = self.db.execute("federation_next_txn_id",
                               "INSERT INTO destinations (destination, last_successful_stream_ordering, last_txn_id)"
                               " VALUES (%s, %s, %s) ON CONFLICT (destination) DO UPDATE"
                               " SET last_txn_id = GREATEST(destinations.last_txn_id + 1, EXCLUDED.last_txn_id)"
                               " RETURNING last_txn_id", (destination, stream_ordering, now_ms))
        return rows[0][0]

    def get_destinations_with_work(self) -> list[str]:
        """Destinations with undelivered EDUs or events they have not accepted (after a restart)."""
        rows = self.db.execute("federation_destinations_with_work",
                               "SELECT DISTINCT destination FROM federation_outbox UNION"
                               " SELECT dr.destination FROM destination_rooms dr JOIN destinations d USING (destination)"
                               " WHERE dr.stream_ordering > d.last_successful_stream_ordering")
        return [r[0] for r in rows]

    # --- EDUs that must be delivered ------------------------------------------------------------------

    def add_to_outbox(self, destinations: list[str], edu_type: str, content: dict, coalesce_key: str | None) -> None:
        def txn(cur):
            if coalesce_key is not None:
                cur.execute("DELETE FROM federation_outbox WHERE destination = ANY(%s) AND edu_type = %s"
                            " AND coalesce_key = %s", (destinations, edu_type, coalesce_key))
            cur.execute("INSERT INTO federation_outbox (destination, edu_type, coalesce_key, content)"
                        " SELECT unnest(%s::text[]), %s, %s, %s::jsonb",
                        (destinations, edu_type, coalesce_key, _dump(content)))
        self.db.run_txn("federation_add_to_outbox", txn)

    def get_outbox(self, destination: str, limit: int) -> list[tuple[int, str, dict]]:
        """(id, edu_type, content), oldest first."""
        return self.db.execute("federation_get_outbox",
                               "SELECT id, edu_type, content FROM federation_outbox WHERE destination = %s"
                               " ORDER BY id LIMIT %s", (destination, limit))

    def delete_from_outbox(self, ids: list[int]) -> None:
        self.db.execute("federation_delete_from_outbox", "DELETE FROM federation_outbox WHERE id = ANY(%s)", (ids,))

    def count_outbox(self) -> int:
        return self.db.execute("federation_count_outbox", "SELECT count(*) FROM federation_outbox")[0][0]

    # --- device lists as announced --------------------------------------------------------------------

    def swap_announced_devices(self, user_id: str, device_ids: list[str], stream_id: int) -> tuple[set[str], int | None]:
        """Records `device_ids` as the user's announced devices at `stream_id`; returns the devices
        announced before and the stream_id of the last announcement (None: the first)."""
        def txn(cur):
            cur.execute("SELECT stream_id FROM federation_device_lists_last WHERE user_id = %s FOR UPDATE", (user_id,))
            row = cur.fetchone()
            cur.execute("DELETE FROM federation_device_lists_sent WHERE user_id = %s RETURNING device_id", (user_id,))
            before = {r[0] for r in cur.fetchall()}
            cur.execute("INSERT INTO federation_device_lists_sent (user_id, device_id) SELECT %s, unnest(%s::text[])",
                        (user_id, device_ids))
            cur.execute("INSERT INTO federation_device_lists_last (user_id, stream_id) VALUES (%s, %s)"
                        " ON CONFLICT (user_id) DO UPDATE SET stream_id = EXCLUDED.stream_id", (user_id, stream_id))
            return before, (row[0] if row else None)
        return self.db.run_txn("federation_swap_announced_devices", txn)
