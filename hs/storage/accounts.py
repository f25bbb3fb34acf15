"""Users and their profiles."""

from dataclasses import dataclass

from hs.storage.database import Database


@dataclass
class User:
    user_id: str
    password_hash: str | None
    is_guest: bool
    admin: bool
    deactivated: bool
    appservice_id: str | None


_USER_COLUMNS = "user_id, password_hash, is_guest, admin, deactivated, appservice_id"


class AccountStore:
    def __init__(self, db: Database):
        self.db = db

    def get_user(self, user_id: str) -> User | None:
        rows = self.db.execute("get_user", f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = %s", (user_id,))
        return User(*rows[0]) if rows else None

    def find_user_case_insensitive(self, user_id: str) -> User | None:
        """Logins accept any case for the localpart, as Synapse does."""
        rows = self.db.execute("find_user_ci", f"SELECT {_USER_COLUMNS} FROM users WHERE lower(user_id) = lower(%s)",
                               (user_id,))
        return User(*rows[0]) if rows else None

    def user_exists(self, user_id: str) -> bool:
        return bool(self.db.execute("user_exists", "SELECT 1 FROM users WHERE lower(user_id) = lower(%s)", (user_id,)))

    @staticmethod
    def insert_user_txn(cur, user_id, password_hash, now_ms, *, is_guest=False, admin=False,
                        user_type=None, appservice_id=None, displayname=None) -> bool:
        """False when the ID (in any case) is taken; the caller's transaction goes on either way."""
        cur.execute(
            "INSERT INTO users (user_id, password_hash, created_ts, is_guest, admin, user_type, appservice_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (user_id, password_hash, now_ms, is_guest, admin, user_type, appservice_id))
        if cur.rowcount == 0:
            return False
        cur.execute("INSERT INTO profiles (user_id, displayname) VALUES (%s, %s)", (user_id, displayname))
        return True

    def next_guest_localpart(self) -> str:
        rows = self.db.execute("next_guest", "SELECT nextval('guest_user_ids')")
        return str(rows[0][0])

    @staticmethod
    def set_password_hash_txn(cur, user_id: str, password_hash: str | None) -> None:
        cur.execute("UPDATE users SET password_hash = %s WHERE user_id = %s", (password_hash, user_id))

    @staticmethod
    def deactivate_txn(cur, user_id: str) -> None:
        cur.execute("UPDATE users SET deactivated = TRUE, password_hash = NULL WHERE user_id = %s", (user_id,))
        cur.execute("UPDATE profiles SET displayname = NULL, avatar_url = NULL WHERE user_id = %s", (user_id,))

    def get_profile(self, user_id: str) -> dict | None:
        rows = self.db.execute("get_profile", "SELECT displayname, avatar_url FROM profiles WHERE user_id = %s",
                               (user_id,))
        if not rows:
            return None
        displayname, avatar_url = rows[0]
        return {k: v for k, v in (("displayname", displayname), ("avatar_url", avatar_url)) if v is not None}

    def set_profile_field(self, user_id: str, field: str, value: str | None) -> None:
        if field not in ("displayname", "avatar_url"):
            raise ValueError(f"unknown profile field {field}")
        self.db.execute("set_profile_field", f"UPDATE profiles SET {field} = %s WHERE user_id = %s",
                        (value, user_id))
