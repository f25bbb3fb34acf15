"""Media bytes on disk, under media_store_path.

Every path here is built from a SHA-256 hex digest (checked to be one), integers and names from
fixed tables, never from a media ID, server name or file name a client sent: no request can name
a file outside the store. Content is stored once per digest; thumbnails sit in a directory per
digest so that deleting content deletes its thumbnails with it.

    content/ab/cd/<60 hex>                          the bytes of every upload with that digest
    thumbnails/ab/cd/<60 hex>/<w>x<h>-<method>[-animated].<ext>
    tmp/                                            uploads being received

Writes go to tmp/ first and are renamed into place, so a reader never sees half a file.
"""

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import Iterable

_DIGEST = re.compile(r"[0-9a-f]{64}")
THUMBNAIL_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}
THUMBNAIL_METHODS = ("crop", "scale")


class TooLarge(Exception):
    """The body went past the size limit; nothing was kept."""


@dataclass
class Received:
    """An upload written to tmp/ and hashed, not yet in the store (commit or discard it)."""
    temp_path: str
    sha256: str
    length: int


class MediaFileStore:
    def __init__(self, root: str):
        self.root = os.path.realpath(root)
        self._tmp = os.path.join(self.root, "tmp")
        os.makedirs(self._tmp, exist_ok=True)

    def _inside(self, *parts: str) -> str:
        path = os.path.join(self.root, *parts)
        # The parts are checked where they are made; this guards against a future caller that is not.
        if os.path.commonpath([self.root, os.path.realpath(path)]) != self.root:
            raise ValueError(f"media path outside the store: {path!r}")
        return path

    @staticmethod
    def _split(sha256: str) -> tuple:
        if not isinstance(sha256, str) or not _DIGEST.fullmatch(sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return sha256[:2], sha256[2:4], sha256[4:]

    def content_path(self, sha256: str) -> str:
        return self._inside("content", *self._split(sha256))

    def thumbnail_dir(self, sha256: str) -> str:
        return self._inside("thumbnails", *self._split(sha256))

    def thumbnail_path(self, sha256: str, width: int, height: int, method: str, media_type: str,
                       animated: bool) -> str:
        if method not in THUMBNAIL_METHODS:
            raise ValueError(f"unknown thumbnail method {method!r}")
        ext = THUMBNAIL_EXTENSIONS[media_type]
        name = f"{int(width)}x{int(height)}-{method}{'-animated' if animated else ''}.{ext}"
        return os.path.join(self.thumbnail_dir(sha256), name)

    def receive(self, chunks: Iterable[bytes], limit: int) -> Received:
        """Writes ``chunks`` to a temporary file while hashing them; raises TooLarge (and keeps
        nothing) as soon as more than ``limit`` bytes have arrived, without reading the rest."""
        digest = hashlib.sha256()
        length = 0
        fd, temp_path = tempfile.mkstemp(dir=self._tmp, prefix="upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    length += len(chunk)
                    if length > limit:
                        raise TooLarge(f"more than {limit} bytes")
                    digest.update(chunk)
                    f.write(chunk)
        except BaseException:
            os.unlink(temp_path)
            raise
        return Received(temp_path, digest.hexdigest(), length)

    def commit(self, received: Received) -> str:
        """Moves a received upload to its content path (an identical file already there is kept)."""
        final = self.content_path(received.sha256)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        if os.path.exists(final):
            os.unlink(received.temp_path)
        else:
            os.replace(received.temp_path, final)
        return final

    def discard(self, received: Received) -> None:
        try:
            os.unlink(received.temp_path)
        except FileNotFoundError:
            pass

    def write_thumbnail(self, path: str, data: bytes) -> None:
        """Writes a thumbnail made by the thumbnailer to a path from thumbnail_path()."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, temp_path = tempfile.mkstemp(dir=self._tmp, prefix="thumb-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(temp_path, path)
        except BaseException:
            if os.path.exists(temp_path):
                os.unlink(temp_path)
            raise

    def delete_content(self, sha256: str) -> None:
        """Removes the content and every thumbnail of it; missing files are not an error."""
        try:
            os.unlink(self.content_path(sha256))
        except FileNotFoundError:
            pass
        shutil.rmtree(self.thumbnail_dir(sha256), ignore_errors=True)
