"""Local media metadata (the local_media table) and the per-digest lock that keeps the content
files on disk in step with the rows naming them.

A content file may be named by several media rows (identical uploads are stored once), so it is
removed only when the last row naming its digest goes. An upload commits its file and inserts
its row, and a deletion removes rows and then (if no row names the digest any more) the file,
both under the digest's advisory lock: a deletion can never remove a file an upload has just
claimed.
"""

import os
from dataclasses import dataclass

from hs.media.filestore import MediaFileStore, Received
from hs.storage.database import Database

# The first key of the two-key advisory lock serialising one user's asynchronous creates.
_PENDING_LOCK_CLASS = 0x6D65_6469  # "medi"

_COLUMNS = ("media_id, user_id, media_type, upload_name, media_length, sha256, created_ts, unused_expires_ts,"
            " last_access_ts, authenticated, quarantined_by, safe_from_quarantine")


@dataclass
class LocalMedia:
    media_id: str
    user_id: str
    media_type: str | None
    upload_name: str | None
    media_length: int | None
    sha256: str | None
    created_ts: int
    unused_expires_ts: int | None
    last_access_ts: int | None
    authenticated: bool
    quarantined_by: str | None
    safe_from_quarantine: bool

    @property
    def pending(self) -> bool:
        """Created by POST /media/v1/create and not uploaded yet."""
        return self.sha256 is None


def content_lock(cur, sha256: str) -> None:
    """Holds the digest's lock until the transaction ends: taken by every transaction that
    commits content files (with the row naming them) or deletes them."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (sha256,))


def content_in_use(cur, sha256: str) -> bool:
    """Whether a local media or a cached remote media (023_remote_media.sql) names the digest;
    call it under content_lock."""
    cur.execute("SELECT EXISTS (SELECT 1 FROM local_media WHERE sha256 = %s)"
                " OR EXISTS (SELECT 1 FROM remote_media WHERE sha256 = %s)", (sha256, sha256))
    return cur.fetchone()[0]


class MediaStore:
    def __init__(self, db: Database):
        self.db = db

    def get_local_media(self, media_id: str) -> LocalMedia | None:
        rows = self.db.execute("get_local_media", f"SELECT {_COLUMNS} FROM local_media WHERE media_id = %s",
                               (media_id,))
        return LocalMedia(*rows[0]) if rows else None

    def store_upload(self, files: MediaFileStore, received: Received, *, media_id: str, user_id: str,
                     media_type: str, upload_name: str | None, now_ms: int, authenticated: bool) -> None:
        """Moves ``received`` into the store and inserts its row (POST /upload)."""
        def txn(cur):
            content_lock(cur, received.sha256)
            cur.execute("INSERT INTO local_media (media_id, user_id, media_type, upload_name, media_length, sha256,"
                        " created_ts, last_access_ts, authenticated) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (media_id, user_id, media_type, upload_name, received.length, received.sha256, now_ms,
                         now_ms, authenticated))
            # Last, so that a failed INSERT leaves nothing on disk; a retried attempt finds the
            # file already in place.
            _commit_file(files, received)
        self.db.run_txn("store_media_upload", txn)

    def create_pending(self, *, media_id: str, user_id: str, now_ms: int, expires_ms: int, authenticated: bool,
                       max_pending: int) -> int | None:
        """Inserts a row awaiting its content (POST /media/v1/create) and returns None; or, when
        the user already has ``max_pending`` unexpired pending rows, inserts nothing and returns
        when the earliest of them expires."""
        def txn(cur):
            cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_PENDING_LOCK_CLASS, user_id))
            cur.execute("SELECT COUNT(*), MIN(unused_expires_ts) FROM local_media"
                        " WHERE user_id = %s AND sha256 IS NULL AND unused_expires_ts > %s", (user_id, now_ms))
            count, earliest = cur.fetchone()
            if count >= max_pending:
                return earliest
            cur.execute("INSERT INTO local_media (media_id, user_id, created_ts, unused_expires_ts, authenticated)"
                        " VALUES (%s, %s, %s, %s, %s)", (media_id, user_id, now_ms, expires_ms, authenticated))
            return None
        return self.db.run_txn("create_pending_media", txn)

    def fill_pending(self, files: MediaFileStore, received: Received, *, media_id: str, user_id: str,
                     media_type: str, upload_name: str | None, now_ms: int) -> bool:
        """Gives a pending row its content (PUT /upload/{serverName}/{mediaId}); False (nothing
        kept) if the row is not ``user_id``'s, already has content or has expired."""
        def txn(cur):
            content_lock(cur, received.sha256)
            cur.execute("UPDATE local_media SET media_type = %s, upload_name = %s, media_length = %s, sha256 = %s,"
                        " last_access_ts = %s, unused_expires_ts = NULL"
                        " WHERE media_id = %s AND user_id = %s AND sha256 IS NULL AND unused_expires_ts > %s",
                        (media_type, upload_name, received.length, received.sha256, now_ms, media_id, user_id,
                         now_ms))
            if cur.rowcount == 0:
                return False
            _commit_file(files, received)
            return True
        filled = self.db.run_txn("fill_pending_media", txn)
        if not filled:
            files.discard(received)
        return filled

    def touch_local_media(self, media_id: str, now_ms: int, min_interval_ms: int) -> None:
        """Records a download, at most once per ``min_interval_ms`` per media (retention reads it)."""
        self.db.execute("touch_local_media",
                        "UPDATE local_media SET last_access_ts = %s WHERE media_id = %s"
                        " AND (last_access_ts IS NULL OR last_access_ts < %s)",
                        (now_ms, media_id, now_ms - min_interval_ms))

    def delete_local_media(self, media_ids: list[str], files: MediaFileStore) -> list[str]:
        """Deletes the rows (returning the IDs that existed) and the content, with its
        thumbnails, of every digest no row names any more."""
        def txn(cur):
            # Row locks first: a concurrent PUT can no longer give a pending row a digest we
            # have not locked. (A PUT holding its digest lock and waiting for our row is a
            # deadlock, which run_txn retries.)
            cur.execute("SELECT sha256 FROM local_media WHERE media_id = ANY(%s) FOR UPDATE", (list(media_ids),))
            digests = sorted({sha for (sha,) in cur.fetchall() if sha is not None})
            for sha in digests:  # in one order, so two deletions cannot deadlock
                content_lock(cur, sha)
            cur.execute("DELETE FROM local_media WHERE media_id = ANY(%s) RETURNING media_id", (list(media_ids),))
            deleted = [media_id for (media_id,) in cur.fetchall()]
            for sha in digests:
                if not content_in_use(cur, sha):
                    cur.execute("DELETE FROM media_thumbnails WHERE sha256 = %s", (sha,))
                    # Idempotent, so a retried attempt may run it again.
                    files.delete_content(sha)
            return deleted
        if not media_ids:
            return []
        return self.db.run_txn("delete_local_media", txn)


def _commit_file(files: MediaFileStore, received: Received) -> None:
    # A retried transaction has already moved the file: the content path holds it.
    try:
        files.commit(received)
    except FileNotFoundError:
        if not os.path.exists(files.content_path(received.sha256)):
            raise
