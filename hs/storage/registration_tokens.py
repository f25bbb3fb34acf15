"""Registration tokens: how many uses are allowed, how many completed, when each expires."""

from hs.storage.database import Database

_VALID = "(uses_allowed IS NULL OR completed < uses_allowed) AND (expiry_time IS NULL OR expiry_time > %s)"


class RegistrationTokenStore:
    def __init__(self, db: Database):
        self.db = db

    def is_valid(self, token: str, now_ms: int) -> bool:
        if "\x00" in token:
            return False  # PostgreSQL text holds no NUL, so no stored token has one
        return bool(self.db.execute("registration_token_valid",
                                    f"SELECT 1 FROM registration_tokens WHERE token = %s AND {_VALID}",
                                    (token, now_ms)))

    @staticmethod
    def consume_txn(cur, token: str, now_ms: int) -> bool:
        """Counts one use, atomically, only on a registration that succeeds: concurrent
        registrations cannot overdraw a token, and abandoned sessions use nothing."""
        if "\x00" in token:
            return False
        cur.execute(f"UPDATE registration_tokens SET completed = completed + 1 WHERE token = %s AND {_VALID}",
                    (token, now_ms))
        return cur.rowcount == 1

    def create(self, token: str, uses_allowed: int | None, expiry_time: int | None) -> dict | None:
        """The new token, or None if the token already exists."""
        rows = self.db.execute("registration_token_create",
                               "INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES (%s, %s, %s)"
                               f" ON CONFLICT DO NOTHING RETURNING {_COLUMNS}", (token, uses_allowed, expiry_time))
        return _as_json(rows[0]) if rows else None

    def get(self, token: str) -> dict | None:
        rows = self.db.execute("registration_token_get", f"SELECT {_COLUMNS} FROM registration_tokens WHERE token = %s",
                               (token,))
        return _as_json(rows[0]) if rows else None

    def list(self, valid: bool | None, now_ms: int) -> list[dict]:
        where = "" if valid is None else f"WHERE {'' if valid else 'NOT '}({_VALID})"
        rows = self.db.execute("registration_token_list",
                               f"SELECT {_COLUMNS} FROM registration_tokens {where} ORDER BY token",
                               (now_ms,) if valid is not None else ())
        return [_as_json(row) for row in rows]

    def update(self, token: str, changes: dict) -> dict | None:
        """`changes` maps uses_allowed / expiry_time to new values (None lifts the limit)."""
        assignments = ", ".join(f"{column} = %s" for column in changes)
        rows = self.db.execute("registration_token_update",
                               f"UPDATE registration_tokens SET {assignments} WHERE token = %s RETURNING {_COLUMNS}",
                               (*changes.values(), token))
        return _as_json(rows[0]) if rows else None

    def delete(self, token: str) -> bool:
        return bool(self.db.execute("registration_token_delete",
                                    "DELETE FROM registration_tokens WHERE token = %s RETURNING 1", (token,)))


_COLUMNS = "token, uses_allowed, completed, expiry_time"


def _as_json(row) -> dict:
    token, uses_allowed, completed, expiry_time = row
    # Synapse's shape; uses are counted when a registration completes, so none is ever pending.
    return {"token": token, "uses_allowed": uses_allowed, "pending": 0, "completed": completed,
            "expiry_time": expiry_time}
