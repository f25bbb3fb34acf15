"""Server admins' queries over local media: quarantine, protection, listing and selecting media
to delete. Deleting itself is MediaStore.delete_local_media, which keeps files and rows in step."""

import json
import re

from hs.storage.database import Database
from hs.storage.media import _COLUMNS, LocalMedia

# GET /users/{id}/media `order_by` values (Synapse's) and the column each sorts on.
ORDER_COLUMNS = {"media_id": "media_id", "upload_name": "upload_name", "created_ts": "created_ts",
                 "last_access_ts": "last_access_ts", "media_length": "media_length", "media_type": "media_type",
                 "quarantined_by": "quarantined_by", "safe_from_quarantine": "safe_from_quarantine"}

_MXC = re.compile(r"^mxc://([^/]+)/([^/#?]+)")
_ROOM_EVENTS_PAGE = 500


def _quarantine_txn(cur, media_ids: list[str], by: str | None) -> int:
    """Quarantines (``by`` an admin's user ID) or releases (None) the content of ``media_ids``, as
    Synapse does: the bytes are what is quarantined, so every media ID naming the same digest
    goes with them; a protected media is never quarantined, neither named nor by its digest.
    Returns how many rows changed."""
    unprotected = " AND NOT safe_from_quarantine" if by is not None else ""
    cur.execute("SELECT media_id, sha256 FROM local_media WHERE media_id = ANY(%s)" + unprotected, (media_ids,))
    rows = cur.fetchall()
    digests = sorted({sha for _, sha in rows if sha is not None})
    pending = [media_id for media_id, sha in rows if sha is None]  # no content yet: only the ID itself
    cur.execute("UPDATE local_media SET quarantined_by = %s WHERE (sha256 = ANY(%s) OR media_id = ANY(%s))"
                + unprotected + " RETURNING media_id", (by, digests, pending))
    return len(cur.fetchall())


def _media_urls(content) -> list[str]:
    if not isinstance(content, dict):
        return []
    info = content.get("info")
    urls = [content.get("url"), info.get("thumbnail_url") if isinstance(info, dict) else None]
    return [url for url in urls if isinstance(url, str)]


class MediaAdminStore:
    def __init__(self, db: Database, server_name: str):
        self.db = db
        self.server_name = server_name
        self._mxc_prefix = f"mxc://{server_name}/"

    def set_quarantined(self, media_id: str, by: str | None) -> int:
        return self.db.run_txn("set_media_quarantined", _quarantine_txn, [media_id], by)

    def quarantine_user_media(self, user_id: str, by: str) -> int:
        """The content of every media the user uploaded that is not quarantined yet."""
        def txn(cur):
            cur.execute("SELECT media_id FROM local_media WHERE user_id = %s AND quarantined_by IS NULL", (user_id,))
            return _quarantine_txn(cur, [media_id for (media_id,) in cur.fetchall()], by)
        return self.db.run_txn("quarantine_user_media", txn)

    def quarantine_room_media(self, room_id: str, by: str) -> int:
        def txn(cur):
            local, _remote = self._room_media_txn(cur, room_id)
            return _quarantine_txn(cur, local, by)
        return self.db.run_txn("quarantine_room_media", txn)

    def room_media(self, room_id: str) -> tuple[list[str], list[tuple[str, str]]]:
        return self.db.run_txn("room_media", self._room_media_txn, room_id)

    def _room_media_txn(self, cur, room_id: str) -> tuple[list[str], list[tuple[str, str]]]:
        """Local media IDs and remote (server, media ID) pairs the room's events point at, newest
        first, each once. As in Synapse: `url` and `info.thumbnail_url` of events with a `url`
        (m.image, m.file, ..., and m.room.avatar); member avatars are not counted."""
        local, remote = {}, {}
        before = None
        while True:
            cur.execute("SELECT stream_ordering, json FROM events WHERE room_id = %s AND contains_url"
                        " AND (%s::BIGINT IS NULL OR stream_ordering < %s) ORDER BY stream_ordering DESC LIMIT %s",
                        (room_id, before, before, _ROOM_EVENTS_PAGE))
            rows = cur.fetchall()
            for _, pdu in rows:
                for url in _media_urls(json.loads(pdu).get("content")):
                    match = _MXC.match(url)
                    if match is None:
                        continue
                    if match.group(1) == self.server_name:
                        local.setdefault(match.group(2), None)
                    else:
                        remote.setdefault((match.group(1), match.group(2)), None)
            if len(rows) < _ROOM_EVENTS_PAGE:
                return list(local), list(remote)
            before = rows[-1][0]

    def set_protected(self, media_id: str, protected: bool) -> bool:
        return bool(self.db.execute("set_media_protected",
                                    "UPDATE local_media SET safe_from_quarantine = %s WHERE media_id = %s"
                                    " RETURNING media_id", (protected, media_id)))

    def list_user_media(self, user_id: str, start: int, limit: int, order_by: str,
                        descending: bool) -> tuple[list[LocalMedia], int]:
        # Ties always by ascending media_id, as Synapse documents, so pages are stable.
        rows = self.db.execute(
            "list_user_media",
            f"SELECT {_COLUMNS} FROM local_media WHERE user_id = %s"
            f" ORDER BY {ORDER_COLUMNS[order_by]} {'DESC' if descending else 'ASC'}, media_id ASC"
            " LIMIT %s OFFSET %s", (user_id, limit, start))
        total = self.db.execute("count_user_media", "SELECT count(*) FROM local_media WHERE user_id = %s",
                                (user_id,))[0][0]
        return [LocalMedia(*row) for row in rows], total

    def media_ids_to_delete(self, before_ts: int, size_gt: int, keep_profiles: bool) -> list[str]:
        """What POST /media/delete and retention remove: media last used (accessed, else uploaded)
        before ``before_ts``, larger than ``size_gt``, never protected or quarantined media
        (Synapse's rule), and, with ``keep_profiles``, none used as an avatar: a user's, a
        per-room member's or a room's current one (Synapse's list, less its user directory,
        which reads the same profiles)."""
        keep = ""
        if keep_profiles:
            keep = (" AND NOT EXISTS (SELECT 1 FROM profiles WHERE avatar_url = %(p)s || m.media_id)"
                    " AND NOT EXISTS (SELECT 1 FROM room_memberships WHERE avatar_url = %(p)s || m.media_id)"
                    " AND NOT EXISTS (SELECT 1 FROM current_state_events c JOIN events e ON e.event_id = c.event_id"
                    " WHERE c.type = 'm.room.avatar' AND c.state_key = ''"
                    " AND e.json::jsonb #>> '{content,url}' = %(p)s || m.media_id)")
        return [media_id for (media_id,) in self.db.execute(
            "media_ids_to_delete",
            "SELECT m.media_id FROM local_media m WHERE COALESCE(m.last_access_ts, m.created_ts) < %(before)s"
            " AND COALESCE(m.media_length, 0) > %(size_gt)s AND NOT m.safe_from_quarantine"
            " AND m.quarantined_by IS NULL" + keep,
            {"before": before_ts, "size_gt": size_gt, "p": self._mxc_prefix})]
