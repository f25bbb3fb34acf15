"""Our media for other servers: GET /_matrix/federation/v1/media/download/{mediaId} and
/thumbnail/{mediaId} (/server-server-api#content-repository), X-Matrix authenticated.

Served where the media repository is (the master with enable_media_repo, else the
media_repository worker). Only our own media: a server asking us for a third server's media is
told 404, so nothing fetches in a loop. The answer is multipart/mixed (hs/media/multipart.py): a
JSON part `{}` and the bytes, streamed from disk with their Content-Type and Content-Disposition.
"""

import os

from hs.api.federation.base import FederationResource
from hs.api.media import _dimension, _timeout_ms
from hs.api.media_serving import CACHE_CONTROL, content_disposition, content_type
from hs.api.request import query_bool
from hs.errors import Codes, MatrixError
from hs.media.filestore import THUMBNAIL_EXTENSIONS, THUMBNAIL_METHODS
from hs.media.multipart import READ_SIZE, media_head, media_tail, new_boundary

PREFIX = "/_matrix/federation/v1/media"


def send_multipart(resp, path: str, media_type: str | None, disposition: str) -> None:
    """Streams the file at ``path`` as the spec's two-part body; 404 if it is gone (deleted
    since its row was read)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise MatrixError(404, Codes.NOT_FOUND, "Media not found") from None
    boundary = new_boundary()
    head, tail = media_head(boundary, content_type(media_type), disposition), media_tail(boundary)
    size = os.fstat(f.fileno()).st_size

    def body():
        with f:
            yield head
            while chunk := f.read(READ_SIZE):
                yield chunk
            yield tail
    resp.content_type = f"multipart/mixed; boundary={boundary}"
    resp.set_header("Cache-Control", CACHE_CONTROL)
    resp.content_length = len(head) + size + len(tail)
    resp.stream = body()


class MediaDownloadResource(FederationResource):
    def __init__(self, media):
        self.media = media

    def on_get(self, req, resp, media_id):
        media = self.media.local_media_for_download(self.media.server_name, media_id, legacy=False,
                                                    timeout_ms=_timeout_ms(req))
        send_multipart(resp, self.media.files.content_path(media.sha256), media.media_type,
                       content_disposition(media.media_type, media.upload_name))


class MediaThumbnailResource(FederationResource):
    def __init__(self, media, thumbnails):
        self.media = media
        self.thumbnails = thumbnails

    def on_get(self, req, resp, media_id):
        width, height = _dimension(req, "width"), _dimension(req, "height")
        method = req.get_param("method") or "scale"
        if method not in THUMBNAIL_METHODS:
            raise MatrixError(400, Codes.INVALID_PARAM, "method must be crop or scale")
        animated = query_bool(req, "animated", False)
        media = self.media.local_media_for_download(self.media.server_name, media_id, legacy=False,
                                                    timeout_ms=_timeout_ms(req))
        thumbnail = self.thumbnails.get_thumbnail(media, width, height, method, animated)
        name = f"thumbnail.{THUMBNAIL_EXTENSIONS.get(thumbnail.media_type, 'bin')}"
        send_multipart(resp, thumbnail.path, thumbnail.media_type, content_disposition(thumbnail.media_type, name))


def register(app, hs):
    app.add_route(PREFIX + "/download/{media_id}", MediaDownloadResource(hs.media))
    app.add_route(PREFIX + "/thumbnail/{media_id}", MediaThumbnailResource(hs.media, hs.thumbnails))
