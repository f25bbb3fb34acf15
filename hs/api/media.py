"""The content repository: /_matrix/client/v1/media/* (authenticated) and the legacy
/_matrix/media/{r0,v3,v1}/* (downloads and thumbnails unauthenticated, as the spec had them).

Uploads are streamed to disk in chunks, never held in memory; downloads are streamed from disk
(hs/api/media_serving.py). No path parameter ever becomes a file path: files are named by the
SHA-256 of their content (hs/media/filestore.py).
"""

import re

from hs.api.app import Resource
from hs.api.media_serving import content_disposition, send_file, set_security_headers
from hs.api.request import body_chunks, query_bool, query_int
from hs.errors import Codes, MatrixError
from hs.media.filestore import THUMBNAIL_EXTENSIONS, THUMBNAIL_METHODS

AUTHED_PREFIX = "/_matrix/client/v1/media"
LEGACY_PREFIXES = ("/_matrix/media/r0", "/_matrix/media/v3", "/_matrix/media/v1")

# Synapse's: how long a download waits for an asynchronous upload, by default and at most.
DEFAULT_TIMEOUT_MS = 20_000
MAX_TIMEOUT_MS = 60_000
# Printable ASCII: a media type is echoed back as a response header.
_MEDIA_TYPE = re.compile(r"[\x20-\x7e]{1,255}")


def _upload_metadata(req) -> tuple[str, str | None]:
    """(media type, file name) of an upload: its Content-Type and `filename` parameter."""
    media_type = req.get_header("Content-Type") or "application/octet-stream"
    if not _MEDIA_TYPE.fullmatch(media_type):
        raise MatrixError(400, Codes.INVALID_PARAM, "Content-Type must be printable ASCII")
    upload_name = req.get_param("filename") or None
    if upload_name is not None and "\x00" in upload_name:
        raise MatrixError(400, Codes.INVALID_PARAM, "filename must not contain NUL")
    return media_type, upload_name


def _timeout_ms(req) -> int:
    return min(query_int(req, "timeout_ms", DEFAULT_TIMEOUT_MS, minimum=0), MAX_TIMEOUT_MS)


def _allow_remote(req) -> bool:
    # The legacy endpoints' switch: a server fetching from us sends false, so nothing loops.
    return query_bool(req, "allow_remote", True)


class UploadResource(Resource):
    """POST /_matrix/media/v3/upload"""

    def __init__(self, handler, max_upload_size: int):
        self.handler = handler
        self.max_upload_size = max_upload_size

    def on_post(self, req, resp):
        media_type, upload_name = _upload_metadata(req)
        chunks = body_chunks(req, self.max_upload_size)
        resp.media = {"content_uri": self.handler.upload(req.context.requester.user_id, chunks, media_type,
                                                         upload_name)}


class AsyncUploadResource(Resource):
    """PUT /_matrix/media/v3/upload/{serverName}/{mediaId}: the content of a media ID from /create."""

    def __init__(self, handler, max_upload_size: int):
        self.handler = handler
        self.max_upload_size = max_upload_size

    def on_put(self, req, resp, server_name, media_id):
        media_type, upload_name = _upload_metadata(req)
        self.handler.fill_pending(req.context.requester.user_id, server_name, media_id,
                                  lambda: body_chunks(req, self.max_upload_size), media_type, upload_name)
        resp.media = {}


class CreateResource(Resource):
    """POST /_matrix/media/v1/create"""

    def __init__(self, handler):
        self.handler = handler

    def on_post(self, req, resp):
        resp.media = self.handler.create_pending(req.context.requester.user_id)


class DownloadResource(Resource):
    """GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]"""

    guest_access = frozenset({"GET"})
    legacy = False

    def __init__(self, handler, files):
        self.handler = handler
        self.files = files

    def on_get(self, req, resp, server_name, media_id, file_name=None):
        set_security_headers(resp)
        media = self.handler.media_for_download(server_name, media_id, legacy=self.legacy,
                                                timeout_ms=_timeout_ms(req), allow_remote=_allow_remote(req))
        send_file(req, resp, self.files.content_path(media.sha256), media.media_type,
                  content_disposition(media.media_type, file_name or media.upload_name))


class LegacyDownloadResource(DownloadResource):
    """GET /_matrix/media/v3/download/...: unauthenticated, and refuses media uploaded since the
    freeze (enable_authenticated_media)."""

    public = frozenset({"GET"})
    legacy = True


class ThumbnailResource(Resource):
    """GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}"""

    guest_access = frozenset({"GET"})
    legacy = False

    def __init__(self, handler, thumbnails):
        self.handler = handler
        self.thumbnails = thumbnails

    def on_get(self, req, resp, server_name, media_id):
        set_security_headers(resp)
        width, height = _dimension(req, "width"), _dimension(req, "height")
        method = req.get_param("method") or "scale"
        if method not in THUMBNAIL_METHODS:
            raise MatrixError(400, Codes.INVALID_PARAM, "method must be crop or scale")
        animated = query_bool(req, "animated", False)
        media = self.handler.media_for_download(server_name, media_id, legacy=self.legacy,
                                                timeout_ms=_timeout_ms(req), allow_remote=_allow_remote(req))
        thumbnail = self.thumbnails.get_thumbnail(media, width, height, method, animated)
        name = f"thumbnail.{THUMBNAIL_EXTENSIONS.get(thumbnail.media_type, 'bin')}"
        send_file(req, resp, thumbnail.path, thumbnail.media_type,
                  content_disposition(thumbnail.media_type, name))


class LegacyThumbnailResource(ThumbnailResource):
    public = frozenset({"GET"})
    legacy = True


def _dimension(req, name: str) -> int:
    value = query_int(req, name, minimum=1)
    if value is None:
        raise MatrixError(400, Codes.MISSING_PARAM, f"Missing parameter: {name}")
    return value


class ConfigResource(Resource):
    """GET .../config: the upload size limit."""

    def __init__(self, max_upload_size: int):
        self.body = {"m.upload.size": max_upload_size}

    def on_get(self, req, resp):
        resp.media = self.body


class PreviewUrlResource(Resource):
    """GET /_matrix/client/v1/media/preview_url. URL previews are off (url_preview_enabled must
    be false for now): Synapse then answers 404 M_UNRECOGNIZED, after authenticating, and does
    not serve the legacy path at all."""

    def on_get(self, req, resp):
        raise MatrixError(404, Codes.UNRECOGNIZED, "URL previews are disabled")


def register(app, hs):
    handler, files, max_size = hs.media, hs.media_files, hs.config.max_upload_size
    config = ConfigResource(max_size)
    _add_serving(app, AUTHED_PREFIX, DownloadResource(handler, files), ThumbnailResource(handler, hs.thumbnails),
                 config)
    app.add_route(AUTHED_PREFIX + "/preview_url", PreviewUrlResource())
    download, thumbnail = LegacyDownloadResource(handler, files), LegacyThumbnailResource(handler, hs.thumbnails)
    upload = UploadResource(handler, max_size)
    for prefix in LEGACY_PREFIXES:
        _add_serving(app, prefix, download, thumbnail, config)
        app.add_route(prefix + "/upload", upload)
    app.add_route("/_matrix/media/v3/upload/{server_name}/{media_id}", AsyncUploadResource(handler, max_size))
    app.add_route("/_matrix/media/v1/create", CreateResource(handler))


def _add_serving(app, prefix: str, download, thumbnail, config) -> None:
    app.add_route(prefix + "/download/{server_name}/{media_id}", download)
    app.add_route(prefix + "/download/{server_name}/{media_id}/{file_name}", download)
    app.add_route(prefix + "/thumbnail/{server_name}/{media_id}", thumbnail)
    app.add_route(prefix + "/config", config)
