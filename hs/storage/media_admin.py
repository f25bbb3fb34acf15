"""Server admins' queries over local media: quarantine, protection, listing and selecting media
to delete. Deleting itself is MediaStore.delete_local_media, which keeps files and rows in step."""

from hs.storage.database import Database
from hs.storage.media import _COLUMNS, LocalMedia

# GET /users/{id}/media `order_by` values (Synapse's) and the column each sorts on.
ORDER_COLUMNS = {"media_id": "media_id", "upload_name": "upload_name", "created_ts": "created_ts",
                 "last_access_ts": "last_access_ts", "media_length": "media_length", "media_type": "media_type",
                 "quarantined_by": "quarantined_by", "safe_from_quarantine": "safe_from_quarantine"}


class MediaAdminStore:
    def __init__(self, db: Database, server_name: str):
        self.db = db
        self._mxc_prefix = f"mxc://{server_name}/"

    def set_quarantined(self, media_id: str, by: str | None) -> int:
        """Quarantines (``by`` an admin's user ID) or releases (None) the media and every other
        media ID naming the same content, as Synapse does: the bytes are what is quarantined."""
        return len(self.db.execute(
            "set_media_quarantined",
            "UPDATE local_media SET quarantined_by = %s WHERE media_id = %s OR sha256 IN"
            " (SELECT sha256 FROM local_media WHERE media_id = %s AND sha256 IS NOT NULL)"
            " RETURNING media_id", (by, media_id, media_id)))

    def quarantine_user_media(self, user_id: str, by: str) -> int:
        """Every unprotected, not yet quarantined media the user uploaded; returns how many."""
        return len(self.db.execute(
            "quarantine_user_media",
            "UPDATE local_media SET quarantined_by = %s WHERE user_id = %s AND quarantined_by IS NULL"
            " AND NOT safe_from_quarantine RETURNING media_id", (by, user_id)))

    def set_protected(self, media_id: str, protected: bool) -> bool:
        return bool(self.db.execute("set_media_protected",
                                    "UPDATE local_media SET safe_from_quarantine = %s WHERE media_id = %s"
                                    " RETURNING media_id", (protected, media_id)))

    def list_user_media(self, user_id: str, start: int, limit: int, order_by: str,
                        descending: bool) -> tuple[list[LocalMedia], int]:
        direction = "DESC" if descending else "ASC"
        rows = self.db.execute(
            "list_user_media",
            f"SELECT {_COLUMNS} FROM local_media WHERE user_id = %s"
            f" ORDER BY {ORDER_COLUMNS[order_by]} {direction} NULLS LAST, media_id {direction}"
            " LIMIT %s OFFSET %s", (user_id, limit, start))
        total = self.db.execute("count_user_media", "SELECT count(*) FROM local_media WHERE user_id = %s",
                                (user_id,))[0][0]
        return [LocalMedia(*row) for row in rows], total

    def user_media_ids(self, user_id: str) -> list[str]:
        return [media_id for (media_id,) in self.db.execute(
            "user_media_ids", "SELECT media_id FROM local_media WHERE user_id = %s", (user_id,))]

    def media_ids_to_delete(self, before_ts: int, size_gt: int, keep_profiles: bool) -> list[str]:
        """What POST /media/delete removes: media last used (accessed, else uploaded) before
        ``before_ts``, larger than ``size_gt``, never protected or quarantined media (Synapse's
        rule), and, with ``keep_profiles``, none a profile uses as its avatar."""
        profile_filter = (" AND NOT EXISTS (SELECT 1 FROM profiles p WHERE p.avatar_url = %s || m.media_id)"
                          if keep_profiles else "")
        params = [before_ts, size_gt] + ([self._mxc_prefix] if keep_profiles else [])
        return [media_id for (media_id,) in self.db.execute(
            "media_ids_to_delete",
            "SELECT m.media_id FROM local_media m WHERE COALESCE(m.last_access_ts, m.created_ts) < %s"
            " AND COALESCE(m.media_length, 0) > %s AND NOT m.safe_from_quarantine"
            " AND m.quarantined_by IS NULL" + profile_filter, tuple(params))]
