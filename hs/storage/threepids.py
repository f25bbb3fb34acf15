"""Third-party identifiers bound to accounts (user_threepids) and the validation sessions that
prove a user controls one (threepid_validation_session)."""

from hs.storage.database import Database


class ThreepidStore:
    def __init__(self, db: Database):
        self.db = db

    # --- bound addresses ----------------------------------------------------------------------

    def get_threepids(self, user_id: str) -> list[dict]:
        rows = self.db.execute("get_threepids",
                               "SELECT medium, address, validated_at, added_at FROM user_threepids"
                               " WHERE user_id = %s ORDER BY added_at, address", (user_id,))
        return [{"medium": m, "address": a, "validated_at": v, "added_at": t} for m, a, v, t in rows]

    def get_owner(self, medium: str, address: str) -> str | None:
        rows = self.db.execute("get_threepid_owner",
                               "SELECT user_id FROM user_threepids WHERE medium = %s AND address = %s",
                               (medium, address))
        return rows[0][0] if rows else None

    def bind_validated(self, session_id: str, client_secret: str, user_id: str, now_ms: int) -> str:
        """Binds the session's address to the user and ends the session. 'bound', or why not:
        'no_session' (unknown, expired or not validated) or 'in_use' (another account has it)."""
        def txn(cur):
            cur.execute("DELETE FROM threepid_validation_session WHERE session_id = %s AND client_secret = %s"
                        " AND validated_at IS NOT NULL AND expires_ts > %s RETURNING medium, address, validated_at",
                        (session_id, client_secret, now_ms))
            row = cur.fetchone()
            if row is None:
                return "no_session"
            medium, address, validated_at = row
            cur.execute("INSERT INTO user_threepids (medium, address, user_id, validated_at, added_at)"
                        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (medium, address) DO NOTHING",
                        (medium, address, user_id, validated_at, now_ms))
            if cur.rowcount:
                return "bound"
            cur.execute("SELECT user_id FROM user_threepids WHERE medium = %s AND address = %s", (medium, address))
            # Binding again to the same account is a no-op success, as in Synapse.
            return "bound" if cur.fetchone()[0] == user_id else "in_use"
        return self.db.run_txn("bind_threepid", txn)

    def unbind(self, user_id: str, medium: str, address: str) -> bool:
        rows = self.db.execute("unbind_threepid",
                               "DELETE FROM user_threepids WHERE user_id = %s AND medium = %s AND address = %s"
                               " RETURNING 1", (user_id, medium, address))
        return bool(rows)

    def unbind_all(self, user_id: str) -> list[tuple[str, str]]:
        rows = self.db.execute("unbind_all_threepids",
                               "DELETE FROM user_threepids WHERE user_id = %s RETURNING medium, address", (user_id,))
        return [tuple(r) for r in rows]

    # --- validation sessions ------------------------------------------------------------------

    def start_session(self, session_id: str, medium: str, address: str, client_secret: str, send_attempt: int,
                      token_sha256: str, next_link: str | None, now_ms: int, expires_ts: int) -> tuple[str, bool]:
        """(sid, whether to send a new email). A repeated request with the same client_secret and
        address keeps its session; only a higher send_attempt mails again, with a fresh token
        (the spec: the server must not send another email for the same send_attempt)."""
        def txn(cur):
            cur.execute("DELETE FROM threepid_validation_session WHERE expires_ts <= %s", (now_ms,))
            cur.execute("INSERT INTO threepid_validation_session (session_id, medium, address, client_secret,"
                        " last_send_attempt, token_sha256, next_link, created_ts, expires_ts)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT (client_secret, medium, address) DO UPDATE SET"
                        " last_send_attempt = EXCLUDED.last_send_attempt, token_sha256 = EXCLUDED.token_sha256,"
                        " next_link = EXCLUDED.next_link, expires_ts = EXCLUDED.expires_ts"
                        " WHERE threepid_validation_session.last_send_attempt < EXCLUDED.last_send_attempt"
                        " RETURNING session_id",
                        (session_id, medium, address, client_secret, send_attempt, token_sha256, next_link,
                         now_ms, expires_ts))
            row = cur.fetchone()
            if row is not None:
                return row[0], True
            cur.execute("SELECT session_id FROM threepid_validation_session"
                        " WHERE client_secret = %s AND medium = %s AND address = %s", (client_secret, medium, address))
            return cur.fetchone()[0], False
        return self.db.run_txn("start_threepid_session", txn)

    def validate_session(self, session_id: str, client_secret: str, token_sha256: str,
                         now_ms: int) -> tuple[bool, str | None]:
        """(validated, next_link): marks the session validated when sid, secret and token match
        an unexpired session (validating twice is fine)."""
        rows = self.db.execute(
            "validate_threepid_session",
            "UPDATE threepid_validation_session SET validated_at = COALESCE(validated_at, %s)"
            " WHERE session_id = %s AND client_secret = %s AND token_sha256 = %s AND expires_ts > %s"
            " RETURNING next_link", (now_ms, session_id, client_secret, token_sha256, now_ms))
        return (True, rows[0][0]) if rows else (False, None)
