"""Uploaded filters: per-user IDs counting up from 0, the filter JSON as the client sent it."""

import json
import re

from hs.storage.database import Database

# The first key of the two-key advisory lock that serialises one user's uploads (the second is
# a hash of the user ID); two-key locks never collide with the one-key migration lock.
_LOCK_CLASS = 0x6669_6C74  # "filt"
_FILTER_ID = re.compile(r"0|[1-9][0-9]{0,18}")
_MAX_BIGINT = 2 ** 63 - 1


def parse_filter_id(filter_id: str) -> int | None:
    """The number a filter ID we issued stands for; None for any other string ("01", "-1", "a")."""
    if not _FILTER_ID.fullmatch(filter_id):
        return None
    value = int(filter_id)
    return value if value <= _MAX_BIGINT else None


class FilterStore:
    def __init__(self, db: Database):
        self.db = db

    def add_filter(self, user_id: str, filter_json: dict) -> str:
        """Stores the filter and returns its ID; a filter equal (as JSON) to one the user already
        has gets that one's ID, so clients that upload the same filter on each start do not
        pile up rows. The JSON must hold no NUL character (PostgreSQL's jsonb cannot)."""
        data = json.dumps(filter_json, ensure_ascii=False, allow_nan=False)

        def txn(cur):
            # The duplicate check and the next ID must see the user's concurrent uploads.
            cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, user_id))
            cur.execute("SELECT filter_id FROM user_filters WHERE user_id = %s AND filter_json = %s::jsonb"
                        " ORDER BY filter_id LIMIT 1", (user_id, data))
            row = cur.fetchone()
            if row is not None:
                return row[0]
            cur.execute("INSERT INTO user_filters (user_id, filter_id, filter_json)"
                        " SELECT %s, COALESCE(MAX(filter_id) + 1, 0), %s::jsonb FROM user_filters"
                        " WHERE user_id = %s RETURNING filter_id", (user_id, data, user_id))
            return cur.fetchone()[0]

        return str(self.db.run_txn("add_filter", txn))

    def get_filter(self, user_id: str, filter_id: str | int) -> dict | None:
        """The user's filter with that ID; None when the user has none by that ID."""
        number = parse_filter_id(filter_id) if isinstance(filter_id, str) else filter_id
        if number is None or not 0 <= number <= _MAX_BIGINT:
            return None
        rows = self.db.execute("get_filter",
                               "SELECT filter_json FROM user_filters WHERE user_id = %s AND filter_id = %s",
                               (user_id, number))
        return rows[0][0] if rows else None
