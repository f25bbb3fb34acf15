"""Registration tokens: how many uses are allowed, how many completed, when each expires."""

from hs.storage.database import Database

_VALID = "(uses_allowed IS NULL OR completed < uses_allowed) AND (expiry_time IS NULL OR expiry_time > %s)"


class RegistrationTokenStore:
    def __init__(self, db: Database):
        self.db = db

    def is_valid(self, token: str, now_ms: int) -> bool:
        return bool(self.db.execute("registration_token_valid",
                                    f"SELECT 1 FROM registration_tokens WHERE token = %s AND {_VALID}",
                                    (token, now_ms)))

    @staticmethod
    def consume_txn(cur, token: str, now_ms: int) -> bool:
        """Counts one use, atomically, only on a registration that succeeds: concurrent
        registrations cannot overdraw a token, and abandoned sessions use nothing."""
        cur.execute(f"UPDATE registration_tokens SET completed = completed + 1 WHERE token = %s AND {_VALID}",
                    (token, now_ms))
        return cur.rowcount == 1

    def create(self, token: str, uses_allowed: int | None, expiry_time: int | None) -> None:
        self.db.execute("registration_token_create",
                        "INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES (%s, %s, %s)",
                        (token, uses_allowed, expiry_time))
