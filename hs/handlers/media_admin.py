"""Synapse's media admin API (quarantine, protection, per-user listing, deletion) and the
retention job (`media_retention`), for the process that serves media."""

import logging

import gevent

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.identifiers import check_room_id, user_id_parts
from hs.storage.media_admin import ORDER_COLUMNS

logger = logging.getLogger(__name__)

MAX_RETENTION_INTERVAL_S = 3600.0


def _media_info(media) -> dict:
    return {"media_id": media.media_id, "media_type": media.media_type, "media_length": media.media_length,
            "upload_name": media.upload_name, "created_ts": media.created_ts,
            "last_access_ts": media.last_access_ts, "quarantined_by": media.quarantined_by,
            "safe_from_quarantine": media.safe_from_quarantine, "user_id": media.user_id,
            "authenticated": media.authenticated, "sha256": media.sha256}


def _deleted(ids: list) -> dict:
    return {"deleted_media": ids, "total": len(ids)}


class MediaAdminHandler:
    def __init__(self, config, admin, accounts, media_store, admin_store, files):
        self.server_name = config.server_name
        self.retention_ms = config.media_retention_local_ms
        self.remote_retention_ms = config.media_retention_remote_ms
        self.remote_media = None  # RemoteMediaHandler, set by hs/server.py
        self.admin = admin  # require_admin
        self.accounts = accounts
        self.media_store = media_store
        self.store = admin_store
        self.files = files

    def require_admin(self, requester) -> None:
        self.admin.require_admin(requester)

    def _local(self, server_name: str, media_id: str):
        if server_name != self.server_name:
            raise MatrixError(400, Codes.INVALID_PARAM, "Only local media can be managed here")
        media = self.media_store.get_local_media(media_id)
        if media is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown media")
        return media

    def _local_user(self, user_id: str) -> str:
        if user_id_parts(user_id)[1] != self.server_name:
            raise MatrixError(400, Codes.INVALID_PARAM, "Can only look up local users")
        return user_id

    def _known_local_user(self, user_id: str) -> str:
        if not self.accounts.user_exists(self._local_user(user_id)):
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown user")
        return user_id

    def info(self, server_name: str, media_id: str) -> dict:
        return {"media_info": _media_info(self._local(server_name, media_id))}

    def delete(self, server_name: str, media_id: str) -> dict:
        self._local(server_name, media_id)
        return _deleted(self.media_store.delete_local_media([media_id], self.files))

    def quarantine(self, requester, server_name: str, media_id: str, quarantined: bool) -> dict:
        self._local(server_name, media_id)
        self.store.set_quarantined(media_id, requester.user_id if quarantined else None)
        return {}

    def protect(self, media_id: str, protected: bool) -> dict:
        if not self.store.set_protected(media_id, protected):
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown media")
        return {}

    def quarantine_user_media(self, requester, user_id: str) -> dict:
        return {"num_quarantined": self.store.quarantine_user_media(self._local_user(user_id), requester.user_id)}

    def quarantine_room_media(self, requester, room_id: str) -> dict:
        check_room_id(room_id)
        return {"num_quarantined": self.store.quarantine_room_media(room_id, requester.user_id)}

    def room_media(self, room_id: str) -> dict:
        check_room_id(room_id)
        local, remote = self.store.room_media(room_id)
        return {"local": [f"mxc://{self.server_name}/{media_id}" for media_id in local],
                "remote": [f"mxc://{server}/{media_id}" for server, media_id in remote]}

    def _user_media_page(self, user_id: str, start: int, limit: int, order_by: str | None, direction: str | None):
        # With neither order_by nor dir, newest first: Synapse's default, kept for its old clients.
        if order_by is None and direction is None:
            order_by, direction = "created_ts", "b"
        order_by, direction = order_by or "created_ts", direction or "f"
        if order_by not in ORDER_COLUMNS:
            raise MatrixError(400, Codes.INVALID_PARAM, f"order_by must be one of {', '.join(ORDER_COLUMNS)}")
        if direction not in ("f", "b"):
            raise MatrixError(400, Codes.INVALID_PARAM, "dir must be f or b")
        return self.store.list_user_media(self._known_local_user(user_id), start, limit, order_by, direction == "b")

    def list_user_media(self, user_id: str, start: int, limit: int, order_by: str | None,
                        direction: str | None) -> dict:
        media, total = self._user_media_page(user_id, start, limit, order_by, direction)
        body = {"media": [_media_info(m) for m in media], "total": total}
        if start + len(media) < total:
            body["next_token"] = start + len(media)
        return body

    def delete_user_media(self, user_id: str, start: int, limit: int, order_by: str | None,
                          direction: str | None) -> dict:
        """Deletes one page of the user's media, the page GET would list (Synapse's semantics)."""
        media, _ = self._user_media_page(user_id, start, limit, order_by, direction)
        return _deleted(self.media_store.delete_local_media([m.media_id for m in media], self.files))

    def delete_old(self, server_name: str, before_ts: int, size_gt: int, keep_profiles: bool) -> dict:
        if server_name != self.server_name:
            raise MatrixError(400, Codes.INVALID_PARAM, "Can only delete local media")
        ids = self.store.media_ids_to_delete(before_ts, size_gt, keep_profiles)
        return _deleted(self.media_store.delete_local_media(ids, self.files))

    # --- retention ---

    def purge_media_cache(self, before_ts: int) -> dict:
        """Drops cached remote media not read since ``before_ts`` (Synapse's purge_media_cache)."""
        return {"deleted": self.remote_media.delete_unused_since(before_ts)}

    def start_retention(self) -> None:
        """Deletes local media unused for `media_retention.local_media_lifetime`, and cached remote
        media unused for `remote_media_lifetime`, shortly after start and then periodically."""
        if self.retention_ms is not None or self.remote_retention_ms is not None:
            gevent.spawn(self._retention_loop)

    def _retention_loop(self) -> None:
        # Hourly, or four times per lifetime when that is shorter, so nothing lives much past it.
        shortest = min(ms for ms in (self.retention_ms, self.remote_retention_ms) if ms is not None)
        interval = min(MAX_RETENTION_INTERVAL_S, max(1.0, shortest / 4000))
        gevent.sleep(min(interval, 10.0))
        while True:
            try:
                self.apply_retention(now_ms())
            except Exception:
                logger.exception("media retention failed; trying again in %.0f s", interval)
            gevent.sleep(interval)

    def apply_retention(self, now: int) -> list:
        """Returns the local media IDs deleted (remote deletions are logged)."""
        if self.remote_retention_ms is not None and self.remote_media is not None:
            self.remote_media.delete_unused_since(now - self.remote_retention_ms)
        if self.retention_ms is None:
            return []
        ids = self.store.media_ids_to_delete(now - self.retention_ms, -1, keep_profiles=True)
        deleted = self.media_store.delete_local_media(ids, self.files)
        if deleted:
            logger.info("media retention deleted %d local media", len(deleted))
        return deleted
