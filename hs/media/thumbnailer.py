"""Thumbnails with Pillow: a file path in, encoded bytes out. No database, no HTTP, no clock.

Everything here runs on a thread (hs/handlers/thumbnails.py), over bytes any user uploaded, so
the decoder is part of what an attacker reaches: only JPEG, PNG (and APNG), GIF and WebP are
opened whatever the declared type, the pixel count is refused from the header before a single
pixel is decoded, and anything Pillow cannot decode becomes ThumbnailError.

Output follows Synapse: JPEG for opaque stills, PNG when the image has transparency. Animated
sources asked for `animated` keep their animation as WebP, which the spec says servers should
prefer. Thumbnails are never larger than the source (the spec forbids upscaling).
"""

import io
import logging
from dataclasses import dataclass

from PIL import Image, ImageSequence

logger = logging.getLogger(__name__)

THUMBNAILABLE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# Pillow's format names: the decoders we trust with hostile bytes (Synapse keeps the same four).
_PILLOW_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")

# An animation costs a decode of every source frame and holds every output frame in memory:
# both stop growing here, and the thumbnail is the animation's first frames.
MAX_ANIMATION_FRAMES = 200
ANIMATION_PIXEL_BUDGET = 50_000_000
# Browsers play GIF frame delays this short as 100 ms; a WebP would play them literally.
_MIN_FRAME_MS = 20
_DEFAULT_FRAME_MS = 100

_EXIF_ORIENTATION = 0x0112
# The transposition that undoes each EXIF orientation (the table ImageOps.exif_transpose uses),
# kept here so that every frame of an animation gets the same one.
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}



class ThumbnailError(Exception):
    """The content cannot be thumbnailed: not an image we decode, corrupt or truncated."""


class ImageTooLarge(ThumbnailError):
    """More pixels than max_image_pixels: refused before decoding (a decompression bomb, or just big)."""


@dataclass(frozen=True)
class Rendered:
    data: bytes
    width: int
    height: int
    method: str
    media_type: str
    animated: bool


def output_size(src_width: int, src_height: int, width: int, height: int, method: str) -> tuple[int, int]:
    """The pixel size of a ``method`` thumbnail of a src_width x src_height image asked for at
    width x height. `scale` fits inside the box keeping the aspect ratio; `crop` has the box's
    aspect ratio, shrunk to fit inside the source when the source is smaller. Never upscaled."""
    if method == "scale":
        if src_width <= width and src_height <= height:
            return src_width, src_height
        if width * src_height < height * src_width:
            return width, max(1, width * src_height // src_width)
        return max(1, height * src_width // src_height), height
    if method != "crop":
        raise ValueError(f"unknown thumbnail method {method!r}")
    if width <= src_width and height <= src_height:
        return width, height
    if src_width * height <= src_height * width:
        return src_width, max(1, src_width * height // width)
    return max(1, src_height * width // height), src_height


class SourceImage:
    """An image opened for thumbnailing: header read and checked, pixels decoded on first use.
    One instance renders any number of sizes from one decode (use it as a context manager)."""

    def __init__(self, path: str, max_pixels: int):
        self._max_pixels = max_pixels
        self._still = None
        try:
            self._image = Image.open(path, formats=_PILLOW_FORMATS)
        except FileNotFoundError:
            raise
        except Exception as e:
            raise _refusal(e) from None
        try:
            self._check_size(self._image.size)
            self._transpose = self._orientation()
            width, height = self._image.size
            if self._transpose in (Image.Transpose.TRANSPOSE, Image.Transpose.TRANSVERSE,
                                   Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270):
                width, height = height, width
            self.width, self.height = width, height
            # For a GIF this reads on to the second frame, which may be what is corrupt.
            self.animated = bool(getattr(self._image, "is_animated", False))
        except ThumbnailError:
            self._image.close()
            raise
        except Exception as e:
            self._image.close()
            raise _refusal(e) from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._image.close()
        self._still = None

    def _check_size(self, size: tuple[int, int]) -> None:
        # Past Image.MAX_IMAGE_PIXELS Pillow only warns (it raises past twice that): the warning
        # refuses the image here, whatever the process's warnings filters (and a per-call
        # warnings.catch_warnings would not be thread-safe).
        limit = min(self._max_pixels, Image.MAX_IMAGE_PIXELS or self._max_pixels)
        if size[0] * size[1] > limit:
            raise ImageTooLarge(f"{size[0]}x{size[1]} is more than {limit} pixels")

    def _orientation(self):
        try:
            return _ORIENTATION_TRANSPOSE.get(self._image.getexif().get(_EXIF_ORIENTATION))
        except Exception:  # malformed EXIF: show the image as stored rather than refuse it
            logger.info("unreadable EXIF orientation; thumbnailing the image as stored")
            return None

    def render(self, width: int, height: int, method: str, animated: bool = False) -> Rendered:
        """A thumbnail of about width x height (see output_size). With ``animated`` and an
        animated source, an animated WebP; otherwise a still of the first frame."""
        return self.render_exact(*output_size(self.width, self.height, width, height, method), method, animated)

    def render_exact(self, out_w: int, out_h: int, method: str, animated: bool = False) -> Rendered:
        """A thumbnail of exactly out_w x out_h (a size output_size gave for this source)."""
        try:
            if animated and self.animated:
                return self._render_animation(out_w, out_h, method)
            return self._render_still(out_w, out_h, method)
        except ThumbnailError:
            raise
        except Exception as e:
            raise _refusal(e) from None

    def _first_frame(self) -> Image.Image:
        if self._still is None:
            self._image.seek(0)
            self._still = self._prepare(self._image)
        return self._still

    def _prepare(self, frame: Image.Image) -> Image.Image:
        """The frame decoded, oriented, and as RGB or (when it has any transparency) RGBA."""
        frame.load()
        if frame.mode in ("RGBA", "LA", "PA") or "transparency" in frame.info:
            frame = frame.convert("RGBA")
            if frame.getchannel("A").getextrema()[0] == 255:
                frame = frame.convert("RGB")  # an alpha channel that is opaque everywhere
        else:
            frame = frame.convert("RGB")
        if self._transpose is not None:
            frame = frame.transpose(self._transpose)
        return frame

    def _render_still(self, out_w: int, out_h: int, method: str) -> Rendered:
        image = _resize(self._first_frame(), out_w, out_h, method)
        buf = io.BytesIO()
        if image.mode == "RGBA":
            image.save(buf, "PNG")
            media_type = "image/png"
        else:
            image.save(buf, "JPEG", quality=80)
            media_type = "image/jpeg"
        return Rendered(buf.getvalue(), out_w, out_h, method, media_type, False)

    def _render_animation(self, out_w: int, out_h: int, method: str) -> Rendered:
        frames, durations = [], []
        spent = 0
        for frame in ImageSequence.Iterator(self._image):
            self._check_size(frame.size)
            spent += frame.size[0] * frame.size[1] + out_w * out_h
            if frames and (len(frames) >= MAX_ANIMATION_FRAMES or spent > ANIMATION_PIXEL_BUDGET):
                break
            frames.append(_resize(self._prepare(frame).convert("RGBA"), out_w, out_h, method))
            duration = frame.info.get("duration") or self._image.info.get("duration") or _DEFAULT_FRAME_MS
            durations.append(_DEFAULT_FRAME_MS if duration < _MIN_FRAME_MS else int(duration))
        self._image.seek(0)
        buf = io.BytesIO()
        frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=durations,
                       loop=self._image.info.get("loop", 0), quality=80)
        return Rendered(buf.getvalue(), out_w, out_h, method, "image/webp", True)


def _refusal(e: Exception) -> ThumbnailError:
    """What a Pillow exception means for the caller. Pillow raises a wide, open set of types
    (OSError, SyntaxError, ValueError, struct.error, ...) on malformed input."""
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return ImageTooLarge(str(e))
    return ThumbnailError(f"cannot decode image: {type(e).__name__}: {e}")


def _resize(image: Image.Image, out_w: int, out_h: int, method: str) -> Image.Image:
    """``image`` resized to out_w x out_h: stretched to cover the box then centre-cropped for
    `crop`, resized as is for `scale` (output_size already kept its aspect ratio)."""
    src_w, src_h = image.size
    if method == "crop":
        if out_w * src_h > out_h * src_w:
            scaled = (out_w, max(out_h, out_w * src_h // src_w))
        else:
            scaled = (max(out_w, out_h * src_w // src_h), out_h)
        left, top = (scaled[0] - out_w) // 2, (scaled[1] - out_h) // 2
        box = (left, top, left + out_w, top + out_h)
        if scaled == image.size:
            return image.crop(box)
        return image.resize(scaled, Image.Resampling.LANCZOS, reducing_gap=3.0).crop(box)
    if (out_w, out_h) == image.size:
        return image.copy()
    return image.resize((out_w, out_h), Image.Resampling.LANCZOS, reducing_gap=3.0)


def select_thumbnail(thumbnails: list, width: int, height: int, method: str, animated: bool):
    """The stored thumbnail (objects with width, height, method, animated, length) to serve for
    a request, or None. As the spec and Synapse: of the requested method (any method when none
    was made with it), the smallest at least as big as asked, else the largest. A `scale`
    thumbnail is big enough when one side reaches the box (it has the source's aspect ratio, so
    the other side then fits); a `crop` one must cover the box. Animated thumbnails only when
    asked for, and stills when the source has none (the spec: behave as animated=false)."""
    pool = [t for t in thumbnails if t.animated] if animated else []
    pool = pool or [t for t in thumbnails if not t.animated]
    pool = [t for t in pool if t.method == method] or pool
    if method == "crop":
        big_enough = [t for t in pool if t.width >= width and t.height >= height]
    else:
        big_enough = [t for t in pool if t.width >= width or t.height >= height]
    if big_enough:
        return min(big_enough, key=lambda t: (t.width * t.height, t.length))
    return max(pool, key=lambda t: (t.width * t.height, -t.length), default=None)
