"""The local media repository: uploads (direct and asynchronous), and which media a download
may see. Bytes go through MediaFileStore; rows through MediaStore."""

import logging
import re
import secrets
import string
import time
import weakref

import gevent.event

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.media.filestore import MediaFileStore, TooLarge
from hs.storage.media import LocalMedia, MediaStore

logger = logging.getLogger(__name__)

# Synapse's: 24 ASCII letters (about 137 bits). Anything else is no media ID of ours, so it is
# answered 404 without a query.
_MEDIA_ID_ALPHABET = string.ascii_letters
_MEDIA_ID = re.compile(r"[A-Za-z]{24}")
# last_access_ts drives retention, whose periods are days: recording each download would make
# every read a write.
ACCESS_RECORD_INTERVAL_MS = 5 * 60_000
# How often a download waiting for an asynchronous upload re-reads the row, for a PUT that
# landed in another process (one in this process wakes it at once).
PENDING_POLL_SECONDS = 0.5


def new_media_id() -> str:
    return "".join(secrets.choice(_MEDIA_ID_ALPHABET) for _ in range(24))


class MediaHandler:
    def __init__(self, config, media_store: MediaStore, files: MediaFileStore):
        self.config = config
        self.server_name = config.server_name
        self.store = media_store
        self.files = files
        # callables(LocalMedia), run once an upload's content is committed (thumbnails).
        self.uploaded_listeners: list = []
        # Downloads waiting for an asynchronous upload, by media ID: an entry lives while a
        # waiter holds its event.
        self._uploaded_events = weakref.WeakValueDictionary()
        # Other servers' media (hs/handlers/remote_media.py), set by hs/server.py.
        self.remote = None

    def mxc(self, media_id: str) -> str:
        return f"mxc://{self.server_name}/{media_id}"

    def upload(self, user_id: str, chunks, media_type: str, upload_name: str | None) -> str:
        """POST /upload: stores the body as new media and returns its mxc:// URI."""
        received = self._receive(chunks)
        media_id = new_media_id()
        try:
            self.store.store_upload(self.files, received, media_id=media_id, user_id=user_id,
                                    media_type=media_type, upload_name=upload_name, now_ms=now_ms(),
                                    authenticated=self.config.enable_authenticated_media)
        except BaseException:
            self.files.discard(received)
            raise
        self._uploaded(media_id)
        return self.mxc(media_id)

    def create_pending(self, user_id: str) -> dict:
        """POST /media/v1/create: a media ID whose content the user PUTs later."""
        media_id = new_media_id()
        now = now_ms()
        expires = now + self.config.unused_expiration_time_ms
        earliest = self.store.create_pending(media_id=media_id, user_id=user_id, now_ms=now, expires_ms=expires,
                                             authenticated=self.config.enable_authenticated_media,
                                             max_pending=self.config.max_pending_media_uploads)
        if earliest is not None:
            retry_ms = max(1, earliest - now)
            raise MatrixError(429, Codes.LIMIT_EXCEEDED, "Too many pending media uploads", retry_after_ms=retry_ms,
                              headers={"Retry-After": str(-(-retry_ms // 1000))})
        return {"content_uri": self.mxc(media_id), "unused_expires_at": expires}

    def check_can_fill(self, user_id: str, server_name: str, media_id: str) -> None:
        """May ``user_id`` give this media ID its content (made before the body is read)?"""
        media = self.store.get_local_media(media_id) if self._is_ours(server_name, media_id) else None
        if media is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown media ID")
        if media.user_id != user_id:
            raise MatrixError(403, Codes.FORBIDDEN, "Only the creator of the media ID can upload to it")
        if not media.pending:
            raise MatrixError(409, Codes.CANNOT_OVERWRITE_MEDIA, "Media ID already has content")
        if media.unused_expires_ts is not None and media.unused_expires_ts <= now_ms():
            raise MatrixError(404, Codes.NOT_FOUND, "Media ID has expired")

    def fill_pending(self, user_id: str, server_name: str, media_id: str, open_body, media_type: str,
                     upload_name: str | None) -> None:
        """PUT /upload/{serverName}/{mediaId}: the content of a media ID from create_pending.
        ``open_body()`` gives the body's chunks; it is called only once the ID's checks have
        passed, so a 403/404/409 comes before a 413 (as in Synapse)."""
        self.check_can_fill(user_id, server_name, media_id)
        received = self._receive(open_body())
        try:
            filled = self.store.fill_pending(self.files, received, media_id=media_id, user_id=user_id,
                                             media_type=media_type, upload_name=upload_name, now_ms=now_ms())
        except BaseException:
            self.files.discard(received)
            raise
        if not filled:
            # Another PUT won, or the ID expired, while this body arrived: say which.
            self.check_can_fill(user_id, server_name, media_id)
            raise MatrixError(409, Codes.CANNOT_OVERWRITE_MEDIA, "Media ID already has content")
        event = self._uploaded_events.get(media_id)
        if event is not None:
            event.set()
        self._uploaded(media_id)

    def media_for_download(self, server_name: str, media_id: str, *, legacy: bool, timeout_ms: int,
                           allow_remote: bool = True):
        """What a download or thumbnail request serves: local media (local_media_for_download), or
        another server's, fetched and cached (404 without fetching when not ``allow_remote``)."""
        if server_name == self.server_name or self.remote is None:
            return self.local_media_for_download(server_name, media_id, legacy=legacy, timeout_ms=timeout_ms)
        if not allow_remote:
            raise MatrixError(404, Codes.NOT_FOUND, "Media not found")
        return self.remote.get(server_name, media_id, legacy=legacy, timeout_ms=timeout_ms)

    def local_media_for_download(self, server_name: str, media_id: str, *, legacy: bool,
                                 timeout_ms: int | None = None) -> LocalMedia:
        """The media a download or thumbnail request may serve, its access recorded.

        404 M_NOT_FOUND for another server's name, unknown, expired, quarantined
        media, and media uploaded while legacy downloads were frozen when ``legacy``. Media whose
        asynchronous upload has not arrived is 404 too when ``timeout_ms`` is None; otherwise
        this waits up to ``timeout_ms`` for it, then answers 504 M_NOT_YET_UPLOADED.
        """
        if not self._is_ours(server_name, media_id):
            raise MatrixError(404, Codes.NOT_FOUND, "Media not found")
        deadline = time.monotonic() + (timeout_ms or 0) / 1000
        event = None
        while True:
            media = self.store.get_local_media(media_id)
            now = now_ms()
            if media is None or media.quarantined_by is not None:
                raise MatrixError(404, Codes.NOT_FOUND, "Media not found")
            if legacy and media.authenticated and self.config.enable_authenticated_media:
                # The spec's freeze: media uploaded since is served on the authenticated endpoints only.
                raise MatrixError(404, Codes.NOT_FOUND, "Media not found")
            if not media.pending:
                break
            if timeout_ms is None or (media.unused_expires_ts is not None and media.unused_expires_ts <= now):
                raise MatrixError(404, Codes.NOT_FOUND, "Media not found")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MatrixError(504, Codes.NOT_YET_UPLOADED, "Media has not been uploaded yet")
            if event is None:
                event = self._uploaded_events.setdefault(media_id, gevent.event.Event())
            event.wait(min(remaining, PENDING_POLL_SECONDS))
        if media.last_access_ts is None or now - media.last_access_ts >= ACCESS_RECORD_INTERVAL_MS:
            self.store.touch_local_media(media_id, now, ACCESS_RECORD_INTERVAL_MS)
        return media

    def _is_ours(self, server_name: str, media_id: str) -> bool:
        return server_name == self.server_name and _MEDIA_ID.fullmatch(media_id) is not None

    def _receive(self, chunks):
        limit = self.config.max_upload_size
        try:
            return self.files.receive(chunks, limit)
        except TooLarge:
            raise MatrixError(413, Codes.TOO_LARGE, f"Upload exceeds {limit} bytes") from None

    def _uploaded(self, media_id: str) -> None:
        media = self.store.get_local_media(media_id)
        for listener in self.uploaded_listeners:
            try:
                listener(media)
            except Exception:
                # Thumbnails are a convenience: the upload itself has succeeded.
                logger.exception("media upload listener failed for %s", media_id)
