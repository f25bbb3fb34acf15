"""Rows of media_thumbnails: the thumbnails made of each content digest (014_media.sql).

A thumbnail is written with its row under the digest's content lock, after checking that some
media row still names the digest: a deletion of the last such row (hs/storage/media.py) takes
the same lock, so it can never leave behind a thumbnail generated while it ran.
"""

from dataclasses import dataclass

from hs.media.filestore import MediaFileStore
from hs.storage.database import Database
from hs.storage.media import content_in_use, content_lock


@dataclass(frozen=True)
class ThumbnailInfo:
    width: int
    height: int
    method: str
    media_type: str
    animated: bool
    length: int


class ThumbnailStore:
    def __init__(self, db: Database):
        self.db = db

    def get_thumbnails(self, sha256: str) -> list[ThumbnailInfo]:
        rows = self.db.execute("get_media_thumbnails",
                               "SELECT width, height, method, media_type, animated, length FROM media_thumbnails"
                               " WHERE sha256 = %s ORDER BY width, height, method, media_type, animated",
                               (sha256,))
        return [ThumbnailInfo(*row) for row in rows]

    def store_thumbnails(self, files: MediaFileStore, sha256: str, thumbnails: list[tuple[ThumbnailInfo, bytes]]
                         ) -> bool:
        """Writes the thumbnails' files and rows in one transaction, so that a reader sees all
        of an upload's pregenerated sizes or none (and then waits for them); False (nothing
        kept) when no media names the digest any more. A row already there (another process
        made the same thumbnail) is kept."""
        def txn(cur):
            content_lock(cur, sha256)
            if not content_in_use(cur, sha256):
                return False
            for info, data in thumbnails:
                cur.execute("INSERT INTO media_thumbnails (sha256, width, height, method, media_type, animated,"
                            " length) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                            (sha256, info.width, info.height, info.method, info.media_type, info.animated,
                             info.length))
                # Under the lock, so that a deletion waiting for it removes these files too;
                # rewriting them on a retried attempt is harmless.
                files.write_thumbnail(files.thumbnail_path(sha256, info.width, info.height, info.method,
                                                            info.media_type, info.animated), data)
            return True
        return self.db.run_txn("store_media_thumbnails", txn)
