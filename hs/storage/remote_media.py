"""The cache of other servers' media: the remote_media table (023_remote_media.sql).

Its content files are shared with local media by digest (hs/storage/media.py): a row and its
file are committed, and rows and then unnamed files deleted, under the digest's content lock, so
a deletion can never remove a file a download has just claimed.
"""

from dataclasses import dataclass

from hs.media.filestore import MediaFileStore, Received
from hs.storage.database import Database
from hs.storage.media import _commit_file, content_in_use, content_lock

_COLUMNS = ("media_origin, media_id, media_type, upload_name, media_length, sha256, created_ts, last_access_ts,"
            " quarantined_by, authenticated")


@dataclass
class RemoteMedia:
    media_origin: str
    media_id: str
    media_type: str | None
    upload_name: str | None
    media_length: int
    sha256: str
    created_ts: int
    last_access_ts: int
    quarantined_by: str | None
    authenticated: bool


class RemoteMediaStore:
    def __init__(self, db: Database):
        self.db = db

    def get_remote_media(self, origin: str, media_id: str) -> RemoteMedia | None:
        rows = self.db.execute("get_remote_media",
                               f"SELECT {_COLUMNS} FROM remote_media WHERE media_origin = %s AND media_id = %s",
                               (origin, media_id))
        return RemoteMedia(*rows[0]) if rows else None

    def store_remote_media(self, files: MediaFileStore, received: Received, *, origin: str, media_id: str,
                           media_type: str | None, upload_name: str | None, now_ms: int,
                           authenticated: bool) -> RemoteMedia:
        """Moves ``received`` into the store and records it; when another process cached the same
        media meanwhile, its row is kept (and returned) and ``received`` discarded."""
        def txn(cur):
            content_lock(cur, received.sha256)
            cur.execute("INSERT INTO remote_media (media_origin, media_id, media_type, upload_name, media_length,"
                        " sha256, created_ts, last_access_ts, authenticated) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                        f" ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
                        (origin, media_id, media_type, upload_name, received.length, received.sha256, now_ms,
                         now_ms, authenticated))
            row = cur.fetchone()
            if row is None:
                return None
            _commit_file(files, received)
            return RemoteMedia(*row)
        stored = self.db.run_txn("store_remote_media", txn)
        if stored is None:
            files.discard(received)
            stored = self.get_remote_media(origin, media_id)
        return stored

    def touch_remote_media(self, origin: str, media_id: str, now_ms: int, min_interval_ms: int) -> None:
        """Records a read, at most once per ``min_interval_ms`` per media (retention reads it)."""
        self.db.execute("touch_remote_media",
                        "UPDATE remote_media SET last_access_ts = %s WHERE media_origin = %s AND media_id = %s"
                        " AND last_access_ts < %s", (now_ms, origin, media_id, now_ms - min_interval_ms))

    def unused_since(self, before_ts: int) -> list[tuple[str, str]]:
        """(origin, media ID) of cached media not read since ``before_ts``; quarantined media
        stays, as in Synapse, so the quarantine keeps holding."""
        return [(origin, media_id) for origin, media_id in self.db.execute(
            "remote_media_unused_since",
            "SELECT media_origin, media_id FROM remote_media WHERE last_access_ts < %s AND quarantined_by IS NULL",
            (before_ts,))]

    def delete_remote_media(self, keys: list[tuple[str, str]], files: MediaFileStore) -> int:
        """Deletes the cached media ``keys`` (origin, media ID) and the content, with its
        thumbnails, of every digest no row names any more; returns how many rows went."""
        if not keys:
            return 0
        origins, media_ids = [k[0] for k in keys], [k[1] for k in keys]

        def txn(cur):
            cur.execute("SELECT r.sha256 FROM remote_media r JOIN unnest(%s::text[], %s::text[]) AS k(o, m)"
                        " ON r.media_origin = k.o AND r.media_id = k.m FOR UPDATE OF r", (origins, media_ids))
            digests = sorted({sha for (sha,) in cur.fetchall()})
            for sha in digests:  # in one order, so two deletions cannot deadlock
                content_lock(cur, sha)
            cur.execute("DELETE FROM remote_media r USING unnest(%s::text[], %s::text[]) AS k(o, m)"
                        " WHERE r.media_origin = k.o AND r.media_id = k.m", (origins, media_ids))
            deleted = cur.rowcount
            for sha in digests:
                if not content_in_use(cur, sha):
                    cur.execute("DELETE FROM media_thumbnails WHERE sha256 = %s", (sha,))
                    files.delete_content(sha)  # idempotent, so a retried attempt may run it again
            return deleted
        return self.db.run_txn("delete_remote_media", txn)
