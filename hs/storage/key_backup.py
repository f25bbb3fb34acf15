"""Server-side key backups: each user's backup versions and the room keys stored in them.

Every write takes the user's advisory lock first, so an upload sees the version it checked
still current when it commits, and two uploads of one session compare against each other.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass

from hs.storage.database import Database

# The first key of the two-key advisory lock serialising one user's backup writes (the second
# is a hash of the user ID); two-key locks never collide with the one-key migration lock.
_LOCK_CLASS = 0x726B_6579  # "rkey"
_MAX_BIGINT = 2 ** 63 - 1

_CURRENT_VERSION = ("SELECT version FROM e2e_room_keys_versions WHERE user_id = %s AND NOT deleted"
                    " ORDER BY version DESC LIMIT 1")


@dataclass(frozen=True)
class RoomKey:
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: dict

    def to_json(self) -> dict:
        return {"first_message_index": self.first_message_index, "forwarded_count": self.forwarded_count,
                "is_verified": self.is_verified, "session_data": self.session_data}


@dataclass(frozen=True)
class UploadResult:
    """`stored` is False when `version` is not the user's current one (nothing was written);
    `current_version` is then the current one, or None when the user has no backup."""
    stored: bool
    current_version: str | None = None
    version_exists: bool = True
    etag: int = 0
    count: int = 0


def parse_version(version: str) -> int | None:
    """The number a version string we issued stands for; None for any other string."""
    if not version.isascii() or not version.isdigit() or (len(version) > 1 and version[0] == "0"):
        return None
    number = int(version)
    return number if number <= _MAX_BIGINT else None


def _lock(cur, user_id: str) -> None:
    cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, user_id))


def _etag_and_count(cur, user_id: str, version: int) -> tuple[int, int]:
    cur.execute("SELECT etag, (SELECT COUNT(*) FROM e2e_room_keys k WHERE k.user_id = v.user_id"
                " AND k.version = v.version) FROM e2e_room_keys_versions v WHERE user_id = %s AND version = %s",
                (user_id, version))
    etag, count = cur.fetchone()
    return etag, count


def _key_filter(room_id: str | None, session_id: str | None) -> tuple[str, tuple]:
    if session_id is not None:
        return " AND room_id = %s AND session_id = %s", (room_id, session_id)
    if room_id is not None:
        return " AND room_id = %s", (room_id,)
    return "", ()


class KeyBackupStore:
    def __init__(self, db: Database):
        self.db = db

    def create_version(self, user_id: str, algorithm: str, auth_data: dict) -> str:
        def txn(cur):
            _lock(cur, user_id)
            # Deleted versions count: a number is never handed out twice.
            cur.execute("INSERT INTO e2e_room_keys_versions (user_id, version, algorithm, auth_data)"
                        " SELECT %s, COALESCE(MAX(version), 0) + 1, %s, %s::jsonb FROM e2e_room_keys_versions"
                        " WHERE user_id = %s RETURNING version",
                        (user_id, algorithm, json.dumps(auth_data, ensure_ascii=False), user_id))
            return cur.fetchone()[0]

        return str(self.db.run_txn("create_room_keys_version", txn))

    def get_version(self, user_id: str, version: str | None) -> dict | None:
        """The version's {algorithm, auth_data, version, etag, count}; `version` None means the
        current one (the newest not deleted). None if there is no such (undeleted) version."""
        if version is not None and parse_version(version) is None:
            return None

        def txn(cur):
            if version is None:
                cur.execute(_CURRENT_VERSION, (user_id,))
                row = cur.fetchone()
                if row is None:
                    return None
                number = row[0]
            else:
                number = parse_version(version)
            cur.execute("SELECT algorithm, auth_data, etag FROM e2e_room_keys_versions"
                        " WHERE user_id = %s AND version = %s AND NOT deleted", (user_id, number))
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute("SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = %s AND version = %s", (user_id, number))
            return {"algorithm": row[0], "auth_data": row[1], "version": str(number), "etag": str(row[2]),
                    "count": cur.fetchone()[0]}

        return self.db.run_txn("get_room_keys_version", txn, _isolation="repeatable read")

    def update_auth_data(self, user_id: str, version: str, auth_data: dict) -> bool:
        """False if there is no such (undeleted) version."""
        number = parse_version(version)
        if number is None:
            return False
        rows = self.db.execute("update_room_keys_version",
                               "UPDATE e2e_room_keys_versions SET auth_data = %s::jsonb"
                               " WHERE user_id = %s AND version = %s AND NOT deleted RETURNING version",
                               (json.dumps(auth_data, ensure_ascii=False), user_id, number))
        return bool(rows)

    def delete_version(self, user_id: str, version: str) -> bool:
        """Marks the version deleted and drops its keys; False if the user never had such a
        version (deleting a deleted one again succeeds, as the spec says)."""
        number = parse_version(version)
        if number is None:
            return False

        def txn(cur):
            _lock(cur, user_id)
            cur.execute("UPDATE e2e_room_keys_versions SET deleted = TRUE"
                        " WHERE user_id = %s AND version = %s RETURNING version", (user_id, number))
            if cur.fetchone() is None:
                return False
            cur.execute("DELETE FROM e2e_room_keys WHERE user_id = %s AND version = %s", (user_id, number))
            return True

        return self.db.run_txn("delete_room_keys_version", txn)

    def upload_keys(self, user_id: str, version: str, keys: list[tuple[str, str, RoomKey]],
                    should_replace: Callable[[RoomKey, RoomKey], bool]) -> UploadResult:
        """Stores each (room_id, session_id, key) into the current version, where
        `should_replace(stored, new)` allows replacing a key already there. The version's etag
        goes up when anything changed."""
        number = parse_version(version)

        def txn(cur):
            _lock(cur, user_id)
            cur.execute(_CURRENT_VERSION, (user_id,))
            row = cur.fetchone()
            current = row[0] if row else None
            if current is None or current != number:
                exists = number is not None and current is not None and number < current and self._exists(
                    cur, user_id, number)
                return UploadResult(False, None if current is None else str(current), exists)
            changed = False
            for room_id, session_id, key in keys:
                cur.execute("SELECT first_message_index, forwarded_count, is_verified, session_data"
                            " FROM e2e_room_keys WHERE user_id = %s AND version = %s AND room_id = %s"
                            " AND session_id = %s", (user_id, number, room_id, session_id))
                row = cur.fetchone()
                if row is not None and not should_replace(RoomKey(*row), key):
                    continue
                changed = True
                cur.execute("INSERT INTO e2e_room_keys (user_id, version, room_id, session_id, first_message_index,"
                            " forwarded_count, is_verified, session_data) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)"
                            " ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET"
                            " first_message_index = EXCLUDED.first_message_index,"
                            " forwarded_count = EXCLUDED.forwarded_count, is_verified = EXCLUDED.is_verified,"
                            " session_data = EXCLUDED.session_data",
                            (user_id, number, room_id, session_id, key.first_message_index, key.forwarded_count,
                             key.is_verified, json.dumps(key.session_data, ensure_ascii=False)))
            if changed:
                self._bump_etag(cur, user_id, number)
            etag, count = _etag_and_count(cur, user_id, number)
            return UploadResult(True, str(number), True, etag, count)

        return self.db.run_txn("upload_room_keys", txn)

    def get_keys(self, user_id: str, version: str, room_id: str | None = None,
                 session_id: str | None = None) -> list[tuple[str, str, RoomKey]] | None:
        """The version's keys (in one room, or one session); None if there is no such version."""
        number = parse_version(version)
        if number is None:
            return None
        where, params = _key_filter(room_id, session_id)

        def txn(cur):
            if not self._exists(cur, user_id, number):
                return None
            cur.execute("SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data"
                        " FROM e2e_room_keys WHERE user_id = %s AND version = %s" + where,
                        (user_id, number) + params)
            return [(r[0], r[1], RoomKey(*r[2:])) for r in cur.fetchall()]

        return self.db.run_txn("get_room_keys", txn, _isolation="repeatable read")

    def delete_keys(self, user_id: str, version: str, room_id: str | None = None,
                    session_id: str | None = None) -> tuple[int, int] | None:
        """Deletes the version's keys (in one room, or one session): the (etag, count) after,
        or None if there is no such version."""
        number = parse_version(version)
        if number is None:
            return None
        where, params = _key_filter(room_id, session_id)

        def txn(cur):
            _lock(cur, user_id)
            if not self._exists(cur, user_id, number):
                return None
            cur.execute("DELETE FROM e2e_room_keys WHERE user_id = %s AND version = %s" + where,
                        (user_id, number) + params)
            if cur.rowcount:
                self._bump_etag(cur, user_id, number)
            return _etag_and_count(cur, user_id, number)

        return self.db.run_txn("delete_room_keys", txn)

    @staticmethod
    def _exists(cur, user_id: str, number: int) -> bool:
        cur.execute("SELECT 1 FROM e2e_room_keys_versions WHERE user_id = %s AND version = %s AND NOT deleted",
                    (user_id, number))
        return cur.fetchone() is not None

    @staticmethod
    def _bump_etag(cur, user_id: str, number: int) -> None:
        cur.execute("UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = %s AND version = %s",
                    (user_id, number))

    def delete_user_backups(self, user_id: str) -> None:
        """A deactivated account's backups: its keys go, its versions stay marked deleted (a
        version number is never handed out twice)."""
        def txn(cur):
            cur.execute("DELETE FROM e2e_room_keys WHERE user_id = %s", (user_id,))
            cur.execute("UPDATE e2e_room_keys_versions SET deleted = TRUE WHERE user_id = %s", (user_id,))
        self.db.run_txn("delete_user_backups", txn)
