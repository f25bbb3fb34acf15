"""Access, refresh and login tokens, stored as SHA-256 digests of the token."""

import hashlib
from dataclasses import dataclass

from hs.caches import Batcher
from hs.storage.database import Database


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass
class AccessTokenInfo:
    token_id: int
    user_id: str
    device_id: str
    valid_until_ts: int | None
    refresh_token_id: int | None
    used: bool
    is_guest: bool
    deactivated: bool


@dataclass
class RefreshTokenInfo:
    token_id: int
    user_id: str
    device_id: str
    next_token_id: int | None
    expiry_ts: int | None


class TokenStore:
    def __init__(self, db: Database):
        self.db = db
        self._lookups = Batcher(self._get_access_tokens)

    @staticmethod
    def insert_access_token_txn(cur, token, user_id, device_id, now_ms, valid_until_ts=None,
                                refresh_token_id=None) -> int:
        cur.execute(
            "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, valid_until_ts, refresh_token_id)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (token_digest(token), user_id, device_id, now_ms, valid_until_ts, refresh_token_id))
        return cur.fetchone()[0]

    @staticmethod
    def insert_refresh_token_txn(cur, token, user_id, device_id, expiry_ts) -> int:
        cur.execute("INSERT INTO refresh_tokens (token_hash, user_id, device_id, expiry_ts)"
                    " VALUES (%s, %s, %s, %s) RETURNING id",
                    (token_digest(token), user_id, device_id, expiry_ts))
        return cur.fetchone()[0]

    def get_access_token(self, token: str) -> AccessTokenInfo | None:
        """Looked up by digest. The requests arriving together (the /syncs one message woke,
        coming back to park) share a query (hs/caches.py Batcher), read after each arrived."""
        return self._lookups.get(token_digest(token))

    def _get_access_tokens(self, digests: list) -> dict:
        rows = self.db.execute(
            "get_access_token",
            "SELECT t.token_hash, t.id, t.user_id, t.device_id, t.valid_until_ts, t.refresh_token_id, t.used,"
            " u.is_guest, u.deactivated FROM access_tokens t JOIN users u USING (user_id)"
            " WHERE t.token_hash = ANY(%s)", (digests,))
        return {bytes(row[0]) if isinstance(row[0], memoryview) else row[0]: AccessTokenInfo(*row[1:])
                for row in rows}

    def mark_access_token_used(self, token_id: int, refresh_token_id: int | None) -> None:
        """First use of a refreshed session retires the refresh token it replaced."""
        def txn(cur):
            cur.execute("UPDATE access_tokens SET used = TRUE WHERE id = %s AND NOT used", (token_id,))
            if cur.rowcount and refresh_token_id is not None:
                cur.execute("DELETE FROM refresh_tokens WHERE next_token_id = %s", (refresh_token_id,))
        self.db.run_txn("mark_access_token_used", txn)

    def delete_access_token(self, token_id: int) -> None:
        self.db.execute("delete_access_token", "DELETE FROM access_tokens WHERE id = %s", (token_id,))

    @staticmethod
    def get_refresh_token_for_update_txn(cur, token: str) -> RefreshTokenInfo | None:
        cur.execute("SELECT id, user_id, device_id, next_token_id, expiry_ts FROM refresh_tokens"
                    " WHERE token_hash = %s FOR UPDATE", (token_digest(token),))
        row = cur.fetchone()
        return RefreshTokenInfo(*row) if row else None

    @staticmethod
    def replace_refresh_token_txn(cur, old: RefreshTokenInfo, new_token_id: int) -> None:
        """The old token now points at its successor; a still older one is retired for good.

        If the old token had been refreshed before (the client never saw or never used that
        answer), the earlier successor and its access token go: one device, one live chain."""
        cur.execute("UPDATE refresh_tokens SET next_token_id = %s WHERE id = %s", (new_token_id, old.token_id))
        if old.next_token_id is not None:
            # After the UPDATE: the FK cascade would otherwise delete `old` along with it.
            cur.execute("DELETE FROM refresh_tokens WHERE id = %s", (old.next_token_id,))
        cur.execute("DELETE FROM refresh_tokens WHERE next_token_id = %s", (old.token_id,))

    def insert_login_token(self, token: str, user_id: str, expiry_ts: int, now_ms: int) -> None:
        def txn(cur):
            # Tokens nobody used would pile up otherwise; minting a new one is a fine time to sweep.
            cur.execute("DELETE FROM login_tokens WHERE expiry_ts < %s", (now_ms,))
            cur.execute("INSERT INTO login_tokens (token_hash, user_id, expiry_ts) VALUES (%s, %s, %s)",
                        (token_digest(token), user_id, expiry_ts))
        self.db.run_txn("insert_login_token", txn)

    def consume_login_token(self, token: str, now_ms: int) -> str | None:
        """The token's user, once: a second use, or an expired token, gives None."""
        rows = self.db.execute("consume_login_token",
                               "DELETE FROM login_tokens WHERE token_hash = %s RETURNING user_id, expiry_ts",
                               (token_digest(token),))
        if not rows or rows[0][1] < now_ms:
            return None
        return rows[0][0]
