"""Other servers' media for our users: fetched over federation once, cached in the media store
(content addressed, shared with local media), thumbnailed here, and dropped again by retention.

A fetch asks the origin's `/_matrix/federation/v1/media/download/{mediaId}` (a multipart answer,
hs/media/multipart.py, whose second part may be only a `Location` to follow), and falls back to
the legacy `/_matrix/media/v3/download/{origin}/{mediaId}?allow_remote=false` when the origin does
not know that endpoint, as Synapse does. A redirect is followed once, to an http(s) URL, through
the outbound IP filter of federation. Concurrent requests for the same media share one fetch.

What the client is told when the origin cannot give the media: 404 M_NOT_FOUND (unreachable,
refusing, unknown media, a malformed answer), 504 M_NOT_YET_UPLOADED passed on, and 502
M_TOO_LARGE past max_upload_size: the statuses the spec documents for these endpoints.
"""

import logging
import os
from urllib.parse import urlsplit

import requests

from hs.caches import SingleFlight
from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.events.canonical_json import decode_json
from hs.federation.http_client import USER_AGENT, FederationRequestError
from hs.federation.server_name import parse_server_name, quote_path_segment
from hs.media.filestore import MediaFileStore, TooLarge
from hs.media.multipart import READ_SIZE, MultipartError, boundary_of, filename_of, read_media_part
from hs.push.outbound import OutboundHttp
from hs.storage.remote_media import RemoteMedia, RemoteMediaStore

logger = logging.getLogger(__name__)

# As for local media (hs/handlers/media.py): retention's periods are days.
ACCESS_RECORD_INTERVAL_MS = 5 * 60_000
ERROR_BODY_BYTES = 64 * 1024
REDIRECT_TIMEOUT_S = (10, 60)
REDIRECT_STATUSES = (301, 302, 303, 307, 308)


class _FetchFailed(Exception):
    """The origin did not give the media; ``error`` is what the client is told."""

    def __init__(self, error: MatrixError):
        super().__init__(error.message)
        self.error = error


def _not_found(why: str = "Remote media not found") -> MatrixError:
    return MatrixError(404, Codes.NOT_FOUND, why)


def _too_large() -> MatrixError:
    return MatrixError(502, Codes.TOO_LARGE, "Content is too large to serve")


class RemoteMediaHandler:
    def __init__(self, config, store: RemoteMediaStore, files: MediaFileStore, federation_client):
        self.server_name = config.server_name
        self.max_size = config.max_upload_size
        self.authenticated_media = config.enable_authenticated_media
        self.store = store
        self.files = files
        self.client = federation_client
        self.outbound = OutboundHttp(config.federation_ip_range_blacklist, config.ip_range_whitelist,
                                     user_agent=USER_AGENT)
        # callables(RemoteMedia) once media was fetched (thumbnails).
        self.fetched_listeners: list = []
        self._flight = SingleFlight()

    def get(self, origin: str, media_id: str, *, legacy: bool, timeout_ms: int) -> RemoteMedia:
        """The cached media ``origin``/``media_id``, fetched first if need be, its access recorded.
        ``legacy``: for the unauthenticated endpoints, which (with enable_authenticated_media) serve
        only what was cached before the freeze and fetch nothing."""
        if not _plausible(origin, media_id):
            raise _not_found()
        media = self.store.get_remote_media(origin, media_id)
        if media is not None and not os.path.exists(self.files.content_path(media.sha256)):
            # The file went (by hand, a lost disk) but not the row: fetch it again.
            self.store.delete_remote_media([(origin, media_id)], self.files)
            media = None
        if legacy and self.authenticated_media and (media is None or media.authenticated):
            raise _not_found("Media not found")
        if media is None:
            media = self._flight.run((origin, media_id), lambda: self._fetch(origin, media_id, timeout_ms))
        elif now_ms() - media.last_access_ts >= ACCESS_RECORD_INTERVAL_MS:
            self.store.touch_remote_media(origin, media_id, now_ms(), ACCESS_RECORD_INTERVAL_MS)
        if media.quarantined_by is not None:
            raise _not_found("Media not found")
        return media

    def _fetch(self, origin: str, media_id: str, timeout_ms: int) -> RemoteMedia:
        # Another process (or a flight that just ended) may have cached it meanwhile.
        media = self.store.get_remote_media(origin, media_id)
        if media is not None:
            return media
        try:
            received, media_type, upload_name = self._download(origin, media_id, timeout_ms)
        except _FetchFailed as e:
            logger.info("fetching media %s/%s failed: %s", origin, media_id, e)
            raise e.error from None
        except FederationRequestError as e:
            logger.info("fetching media %s/%s failed: %s", origin, media_id, e)
            raise _not_found() from None
        try:
            media = self.store.store_remote_media(self.files, received, origin=origin, media_id=media_id,
                                                  media_type=media_type, upload_name=upload_name, now_ms=now_ms(),
                                                  authenticated=self.authenticated_media)
        except BaseException:
            self.files.discard(received)
            raise
        logger.info("cached media %s/%s (%d bytes, %s)", origin, media_id, media.media_length, media.media_type)
        for listener in self.fetched_listeners:
            try:
                listener(media)
            except Exception:
                logger.exception("remote media listener failed for %s/%s", origin, media_id)
        return media

    def _download(self, origin: str, media_id: str, timeout_ms: int):
        """(Received, media type, file name) of the media, from the federation endpoint or else
        the legacy one."""
        args = {"timeout_ms": str(timeout_ms)}
        status, headers, resp = self.client.get_stream(
            origin, f"/_matrix/federation/v1/media/download/{quote_path_segment(media_id)}", args)
        try:
            if 200 <= status < 300:
                return self._from_multipart(headers, resp)
            error = _error_body(resp)
            if not _unknown_endpoint(status, error):
                raise _FetchFailed(_client_error(status, error))
        finally:
            # Not back to the pool: a body given up on part way would poison the connection.
            resp.close()
        logger.info("%s has no federation media endpoint: asking its legacy download endpoint", origin)
        legacy_args = {"allow_remote": "false", "allow_redirect": "true", **args}
        status, headers, resp = self.client.get_stream(
            origin, f"/_matrix/media/v3/download/{quote_path_segment(origin)}/{quote_path_segment(media_id)}",
            legacy_args)
        try:
            if status in REDIRECT_STATUSES and headers.get("location"):
                return self._follow(headers["location"])
            if not 200 <= status < 300:
                raise _FetchFailed(_client_error(status, _error_body(resp)))
            return self._receive(resp.stream(READ_SIZE), headers.get("content-type"),
                                 headers.get("content-disposition"))
        finally:
            resp.close()

    def _from_multipart(self, headers: dict, resp):
        boundary = boundary_of(headers.get("content-type"))
        if boundary is None:
            raise _FetchFailed(_not_found("The origin's answer is not multipart/mixed"))
        try:
            part = read_media_part(resp.stream(READ_SIZE), boundary)
            if part.location is not None:
                return self._follow(part.location)
            return self._receive(part.chunks, part.headers.get("content-type"),
                                 part.headers.get("content-disposition"))
        except MultipartError as e:
            raise _FetchFailed(_not_found(f"Malformed answer from the origin: {e}")) from None

    def _follow(self, location: str):
        """The media at a redirect target (once: a redirect from there is not followed)."""
        parts = urlsplit(location)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _FetchFailed(_not_found("The origin redirected to an unusable URL"))
        try:
            resp = self.outbound.session.get(location, stream=True, allow_redirects=False,
                                             timeout=REDIRECT_TIMEOUT_S)
        except requests.RequestException as e:
            raise _FetchFailed(_not_found(f"Fetching the redirect target failed: {e}")) from None
        with resp:
            if resp.status_code != 200:
                raise _FetchFailed(_not_found(f"The redirect target answered {resp.status_code}"))
            try:
                return self._receive(resp.iter_content(READ_SIZE), resp.headers.get("Content-Type"),
                                     resp.headers.get("Content-Disposition"))
            except requests.RequestException as e:
                raise _FetchFailed(_not_found(f"Reading the redirect target failed: {e}")) from None

    def _receive(self, chunks, content_type: str | None, disposition: str | None):
        try:
            received = self.files.receive(chunks, self.max_size)
        except TooLarge:
            raise _FetchFailed(_too_large()) from None
        except (OSError, ValueError) as e:  # the connection broke, or urllib3's read errors
            raise _FetchFailed(_not_found(f"Reading the media failed: {e}")) from None
        return received, _media_type(content_type), filename_of(disposition)

    # --- retention and the admin API ---

    def delete_unused_since(self, before_ts: int) -> int:
        """Drops cached media not read since ``before_ts``: retention and purge_media_cache."""
        deleted = self.store.delete_remote_media(self.store.unused_since(before_ts), self.files)
        if deleted:
            logger.info("deleted %d cached remote media unused since %d", deleted, before_ts)
        return deleted


def _plausible(origin: str, media_id: str) -> bool:
    try:
        parse_server_name(origin)
    except ValueError:
        return False
    return 0 < len(media_id) <= 255 and media_id.isprintable()


def _media_type(content_type: str | None) -> str:
    value = (content_type or "").strip()
    return value if value and value.isascii() and value.isprintable() and len(value) <= 255 \
        else "application/octet-stream"


def _error_body(resp) -> dict | None:
    try:
        raw = resp.read(ERROR_BODY_BYTES)
        body = decode_json(raw) if raw.strip() else None
    except Exception:  # unreadable or not JSON: an error either way
        return None
    return body if isinstance(body, dict) else None


def _unknown_endpoint(status: int, body: dict | None) -> bool:
    """Synapse's rule: 404/405 with M_UNRECOGNIZED or no JSON body; an old Synapse's 400 M_UNRECOGNIZED."""
    errcode = body.get("errcode") if body else None
    return (status in (404, 405) and (body is None or errcode == Codes.UNRECOGNIZED)) or \
        (status == 400 and errcode == Codes.UNRECOGNIZED)


def _client_error(status: int, body: dict | None) -> MatrixError:
    errcode = body.get("errcode") if body else None
    if status == 504 and errcode == Codes.NOT_YET_UPLOADED:
        return MatrixError(504, Codes.NOT_YET_UPLOADED, "Media has not been uploaded yet")
    if errcode == Codes.TOO_LARGE:
        return _too_large()
    return _not_found()

