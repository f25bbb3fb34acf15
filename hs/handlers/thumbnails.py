"""Thumbnails of local media: made when an image is uploaded (config thumbnail_sizes), chosen
per request among those made (the spec's nearest size), or made on demand when none is stored
or when dynamic_thumbnails asks for exact sizes.

Pillow runs on a thread pool of its own (hs/media/thumbnailer.py releases the GIL while it
decodes and resizes), so the hub keeps serving, and a burst of uploads cannot take the threads
that password hashing uses. A thumbnail being made is made once per process however many
requests want it (SingleFlight).
"""

import logging
import os
from dataclasses import dataclass

import gevent
import gevent.threadpool

from hs.caches import SingleFlight
from hs.errors import Codes, MatrixError
from hs.media.filestore import MediaFileStore
from hs.media.thumbnailer import (
    THUMBNAILABLE_TYPES,
    ImageTooLarge,
    SourceImage,
    ThumbnailError,
    output_size,
    select_thumbnail,
)
from hs.storage.media import LocalMedia
from hs.storage.media_thumbnails import ThumbnailInfo, ThumbnailStore

logger = logging.getLogger(__name__)

THUMBNAIL_THREADS = 2


@dataclass(frozen=True)
class Thumbnail:
    path: str
    media_type: str
    length: int


def _cannot_thumbnail() -> MatrixError:
    # The spec's example error for content the server cannot thumbnail.
    return MatrixError(400, Codes.UNKNOWN, "Cannot generate thumbnails for the requested content")


def _key(info) -> tuple:
    return info.width, info.height, info.method, info.animated


class ThumbnailHandler:
    def __init__(self, config, media_store, thumbnail_store: ThumbnailStore, files: MediaFileStore):
        self.config = config
        self.media_store = media_store
        self.store = thumbnail_store
        self.files = files
        self._flight = SingleFlight()
        self._pool = None  # made on first use, in the process (and hub) that uses it

    @staticmethod
    def thumbnailable(media: LocalMedia) -> bool:
        base = (media.media_type or "").split(";", 1)[0].strip().lower()
        return media.sha256 is not None and base in THUMBNAILABLE_TYPES

    def pregenerate(self, media: LocalMedia) -> None:
        """An upload listener: makes the configured sizes in the background; the upload has
        already succeeded, so an image that cannot be thumbnailed is logged and skipped."""
        if self.thumbnailable(media) and self.config.thumbnail_sizes:
            gevent.spawn(self._pregenerate_logged, media)

    def _pregenerate_logged(self, media: LocalMedia) -> None:
        try:
            self._ensure_pregenerated(media.sha256)
        except ThumbnailError as e:
            logger.info("no thumbnails for media %s (%s): %s", media.media_id, media.media_type, e)
        except FileNotFoundError:
            logger.info("media %s was deleted before its thumbnails were made", media.media_id)
        except Exception:
            logger.exception("making thumbnails of media %s failed", media.media_id)

    def get_thumbnail(self, media: LocalMedia, width: int, height: int, method: str, animated: bool) -> Thumbnail:
        """The thumbnail to serve for a request on ``media`` (local or remote: one media_for_download gave)."""
        if not self.thumbnailable(media):
            raise _cannot_thumbnail()
        try:
            if self.config.dynamic_thumbnails:
                return self._exact(media.sha256, width, height, method, animated)
            return self._nearest(media.sha256, width, height, method, animated)
        except ImageTooLarge:
            raise MatrixError(413, Codes.TOO_LARGE, "Content is too large to thumbnail") from None
        except ThumbnailError as e:
            logger.info("cannot thumbnail media %s: %s", media.media_id, e)
            raise _cannot_thumbnail() from None
        except FileNotFoundError:
            # The content was deleted since its row was read.
            raise MatrixError(404, Codes.NOT_FOUND, "Media not found") from None

    def _nearest(self, sha256: str, width: int, height: int, method: str, animated: bool) -> Thumbnail:
        thumbnails = self.store.get_thumbnails(sha256)
        if not thumbnails:
            # Uploaded before pregeneration finished (or before it existed): join or run it.
            self._ensure_pregenerated(sha256)
            thumbnails = self.store.get_thumbnails(sha256)
        chosen = select_thumbnail(thumbnails, width, height, method, animated)
        if chosen is None:
            raise _cannot_thumbnail()
        path = self._path(sha256, chosen)
        if not os.path.exists(path):
            # The row outlived its file (removed by hand, a lost disk): the row says what to remake.
            return self._make(sha256, chosen.width, chosen.height, chosen.method, chosen.animated)
        return Thumbnail(path, chosen.media_type, chosen.length)

    def _exact(self, sha256: str, width: int, height: int, method: str, animated: bool) -> Thumbnail:
        """dynamic_thumbnails: the thumbnail of exactly what was asked (within the source)."""
        src_w, src_h, src_animated = self._in_thread(_probe, self.files.content_path(sha256),
                                                     self.config.max_image_pixels)
        out_w, out_h = output_size(src_w, src_h, width, height, method)
        animated = animated and src_animated
        return self._stored(sha256, out_w, out_h, method, animated) or self._make(sha256, out_w, out_h, method,
                                                                                  animated)

    def _stored(self, sha256: str, out_w: int, out_h: int, method: str, animated: bool) -> Thumbnail | None:
        for info in self.store.get_thumbnails(sha256):
            if _key(info) == (out_w, out_h, method, animated):
                path = self._path(sha256, info)
                if os.path.exists(path):
                    return Thumbnail(path, info.media_type, info.length)
        return None

    def _make(self, sha256: str, out_w: int, out_h: int, method: str, animated: bool) -> Thumbnail:
        def make():
            # A request that looked before another's flight stored it and starts its own after
            # that flight ended must not make it again.
            stored = self._stored(sha256, out_w, out_h, method, animated)
            if stored is not None:
                return stored
            rendered = self._in_thread(_render_exact, self.files.content_path(sha256), self.config.max_image_pixels,
                                       out_w, out_h, method, animated)
            [info] = self._store(sha256, [rendered])
            return Thumbnail(self._path(sha256, info), info.media_type, info.length)
        return self._flight.run(("exact", sha256, out_w, out_h, method, animated), make)

    def _ensure_pregenerated(self, sha256: str) -> None:
        def pregenerate():
            existing = {_key(info) for info in self.store.get_thumbnails(sha256)}
            self._store(sha256, self._in_thread(_render_sizes, self.files.content_path(sha256),
                                                self.config.max_image_pixels, self.config.thumbnail_sizes, existing))
        self._flight.run(("pregenerate", sha256), pregenerate)

    def _store(self, sha256: str, renders: list) -> list[ThumbnailInfo]:
        made = [(ThumbnailInfo(r.width, r.height, r.method, r.media_type, r.animated, len(r.data)), r.data)
                for r in renders]
        if not self.store.store_thumbnails(self.files, sha256, made):
            raise FileNotFoundError(f"no media has content {sha256} any more")
        for info, _ in made:
            logger.info("stored thumbnail %s", self._path(sha256, info))
        return [info for info, _ in made]

    def _path(self, sha256: str, info) -> str:
        return self.files.thumbnail_path(sha256, info.width, info.height, info.method, info.media_type,
                                         info.animated)

    def _in_thread(self, func, *args):
        if self._pool is None:
            self._pool = gevent.threadpool.ThreadPool(THUMBNAIL_THREADS)
        return self._pool.apply(func, args)


# What runs on the thread pool: file in, thumbnails out, nothing shared.

def _probe(path: str, max_pixels: int) -> tuple[int, int, bool]:
    with SourceImage(path, max_pixels) as source:
        return source.width, source.height, source.animated


def _render_exact(path: str, max_pixels: int, out_w: int, out_h: int, method: str, animated: bool):
    with SourceImage(path, max_pixels) as source:
        return source.render_exact(out_w, out_h, method, animated)


def _render_sizes(path: str, max_pixels: int, sizes: list, existing: set) -> list:
    """Every configured size (and, for an animation, an animated one of each) not in
    ``existing``; sizes that come out the same for this source are made once. An animation
    that breaks after its first frame still gets its stills."""
    made = []
    with SourceImage(path, max_pixels) as source:
        wanted = []
        for size in sizes:
            out = output_size(source.width, source.height, size["width"], size["height"], size["method"])
            for animated in (False, True) if source.animated else (False,):
                key = (*out, size["method"], animated)
                if key not in existing:
                    existing.add(key)
                    wanted.append(key)
        for out_w, out_h, method, animated in sorted(wanted, key=lambda key: key[3]):
            try:
                made.append(source.render_exact(out_w, out_h, method, animated))
            except ThumbnailError as e:
                if not animated:
                    raise
                logger.info("animated thumbnails of %s skipped: %s", path, e)
                break
    return made
