"""hs/media/thumbnailer.py on real images made with Pillow here: sizes for crop and scale (never
upscaled), JPEG/PNG by transparency, EXIF orientation, animations kept or stilled, and refusal
of decompression bombs, corrupt data and non-images."""

import io
import struct
import time
import zlib
from collections import namedtuple

import pytest
from PIL import Image

from hs.media.thumbnailer import (
    MAX_ANIMATION_FRAMES,
    ImageTooLarge,
    SourceImage,
    ThumbnailError,
    output_size,
    select_thumbnail,
)

MAX_PIXELS = 32 * 1024 * 1024
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def thumbnail(path: str, width: int, height: int, method: str, animated: bool = False, max_pixels=MAX_PIXELS):
    with SourceImage(path, max_pixels) as source:
        return source.render(width, height, method, animated)


def decoded(rendered) -> Image.Image:
    image = Image.open(io.BytesIO(rendered.data))
    assert image.size == (rendered.width, rendered.height)
    return image


def near(pixel, color, tolerance=40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], color, strict=True))


def stripes(width: int, height: int, colors) -> Image.Image:
    """Vertical stripes of equal width, left to right."""
    image = Image.new("RGB", (width, height))
    step = width // len(colors)
    for i, color in enumerate(colors):
        image.paste(color, (i * step, 0, (i + 1) * step, height))
    return image


def animation(fmt: str, colors, size=(120, 80), **kw) -> bytes:
    frames = [Image.new("RGB", size, color) for color in colors]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0, **kw)


def with_ihdr_size(png: bytes, width: int, height: int) -> bytes:
    """A PNG whose header claims width x height while its pixel data stays tiny."""
    ihdr = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


# output_size: the spec's "MUST NOT upscale", Synapse's aspect arithmetic.

@pytest.mark.parametrize("src, box, method, expected", [
    ((800, 600), (320, 240), "scale", (320, 240)),
    ((1000, 500), (320, 240), "scale", (320, 160)),
    ((500, 1000), (320, 240), "scale", (120, 240)),
    ((50, 40), (320, 240), "scale", (50, 40)),
    ((800, 600), (96, 96), "crop", (96, 96)),
    ((50, 40), (96, 96), "crop", (40, 40)),
    ((100, 50), (32, 64), "crop", (25, 50)),
])
def test_output_size_fits_the_box_without_upscaling(src, box, method, expected):
    assert output_size(*src, *box, method) == expected


def test_opaque_image_becomes_a_jpeg_scaled_to_fit(tmp_path):
    path = write(tmp_path, "photo.png", encode(Image.new("RGB", (1000, 500), BLUE), "PNG"))
    rendered = thumbnail(path, 320, 240, "scale")
    assert (rendered.media_type, rendered.width, rendered.height, rendered.animated) == ("image/jpeg", 320, 160,
                                                                                         False)
    image = decoded(rendered)
    assert image.format == "JPEG"
    assert near(image.getpixel((160, 80)), BLUE)


def test_image_with_transparency_becomes_a_png_keeping_alpha(tmp_path):
    image = Image.new("RGBA", (400, 300), (255, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, 200, 300))
    path = write(tmp_path, "alpha.png", encode(image, "PNG"))
    rendered = thumbnail(path, 96, 96, "scale")
    assert (rendered.media_type, rendered.width, rendered.height) == ("image/png", 96, 72)
    out = decoded(rendered)
    assert (out.format, out.mode) == ("PNG", "RGBA")
    assert out.getpixel((5, 36))[3] == 0
    assert out.getpixel((90, 36)) == (255, 0, 0, 255)


def test_alpha_channel_opaque_everywhere_gives_a_jpeg(tmp_path):
    path = write(tmp_path, "opaque.png", encode(Image.new("RGBA", (200, 200), (0, 255, 0, 255)), "PNG"))
    assert thumbnail(path, 32, 32, "crop").media_type == "image/jpeg"


def test_crop_fills_the_box_and_keeps_the_centre(tmp_path):
    path = write(tmp_path, "stripes.png", encode(stripes(300, 100, [RED, GREEN, BLUE]), "PNG"))
    rendered = thumbnail(path, 50, 50, "crop")
    assert (rendered.width, rendered.height) == (50, 50)
    image = decoded(rendered).convert("RGB")
    assert near(image.getpixel((2, 25)), GREEN) and near(image.getpixel((47, 25)), GREEN)


def test_scale_keeps_the_whole_image(tmp_path):
    path = write(tmp_path, "stripes.png", encode(stripes(300, 100, [RED, GREEN, BLUE]), "PNG"))
    image = decoded(thumbnail(path, 150, 150, "scale")).convert("RGB")
    assert image.size == (150, 50)
    assert near(image.getpixel((5, 25)), RED) and near(image.getpixel((144, 25)), BLUE)


def test_small_image_is_never_upscaled(tmp_path):
    path = write(tmp_path, "small.jpg", encode(Image.new("RGB", (50, 40), RED), "JPEG"))
    assert decoded(thumbnail(path, 800, 600, "scale")).size == (50, 40)
    assert decoded(thumbnail(path, 96, 96, "crop")).size == (40, 40)


@pytest.mark.parametrize("orientation, top_color", [(6, RED), (8, BLUE), (1, None)])
def test_exif_orientation_is_applied(tmp_path, orientation, top_color):
    # Stored 200x100, red left half, blue right half. Orientation 6 means "rotate 90 degrees
    # clockwise to display": red goes to the top; 8 is the other way round.
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stripes(200, 100, [RED, BLUE]), "JPEG", exif=exif.tobytes(), quality=95)
    path = write(tmp_path, "rotated.jpg", data)
    with SourceImage(path, MAX_PIXELS) as source:
        expected = (200, 100) if top_color is None else (100, 200)
        assert (source.width, source.height) == expected
        rendered = source.render(200, 200, "scale")
    image = decoded(rendered)
    assert image.size == expected
    if top_color is not None:
        assert near(image.getpixel((50, 10)), top_color)
        assert near(image.getpixel((50, 190)), BLUE if top_color == RED else RED)
    # The thumbnail carries no EXIF: no second rotation by viewers, and no camera metadata.
    assert 0x0112 not in image.getexif()


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_true_keeps_every_frame_as_animated_webp(tmp_path, fmt):
    path = write(tmp_path, f"anim.{fmt.lower()}", animation(fmt, [RED, GREEN, BLUE, GREEN]))
    rendered = thumbnail(path, 60, 60, "scale", animated=True)
    assert (rendered.media_type, rendered.animated, rendered.width, rendered.height) == ("image/webp", True, 60, 40)
    image = decoded(rendered)
    assert (image.format, image.n_frames) == ("WEBP", 4)
    colors = []
    for i in range(4):
        image.seek(i)
        colors.append(image.convert("RGB").getpixel((30, 20)))
    assert [near(c, e) for c, e in zip(colors, [RED, GREEN, BLUE, GREEN], strict=True)] == [True] * 4


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_false_gives_a_still_of_the_first_frame(tmp_path, fmt):
    path = write(tmp_path, f"anim.{fmt.lower()}", animation(fmt, [RED, GREEN, BLUE]))
    rendered = thumbnail(path, 32, 32, "crop", animated=False)
    assert (rendered.media_type, rendered.animated, rendered.width, rendered.height) == ("image/jpeg", False, 32, 32)
    image = decoded(rendered)
    assert getattr(image, "n_frames", 1) == 1
    assert near(image.getpixel((16, 16)), RED)


def test_animated_request_on_a_still_image_gives_a_still(tmp_path):
    path = write(tmp_path, "still.gif", encode(Image.new("RGB", (64, 64), GREEN), "GIF"))
    rendered = thumbnail(path, 32, 32, "scale", animated=True)
    assert (rendered.animated, rendered.media_type) == (False, "image/jpeg")


def test_long_animation_is_cut_to_the_frame_cap(tmp_path):
    colors = [RED if i % 2 else BLUE for i in range(MAX_ANIMATION_FRAMES + 50)]
    path = write(tmp_path, "long.gif", animation("GIF", colors, size=(16, 16)))
    image = decoded(thumbnail(path, 8, 8, "scale", animated=True))
    assert image.n_frames == MAX_ANIMATION_FRAMES


def test_image_over_max_pixels_is_refused_from_its_header(tmp_path):
    # 6000x6000 claimed, a few bytes of pixel data: decoding would fail as truncated, so
    # ImageTooLarge (not a plain ThumbnailError) proves the refusal came before any decoding.
    bomb = with_ihdr_size(encode(Image.new("RGB", (8, 8)), "PNG"), 6000, 6000)
    path = write(tmp_path, "bomb.png", bomb)
    with pytest.raises(ImageTooLarge):
        SourceImage(path, MAX_PIXELS)
    assert SourceImage(path, 6000 * 6000).width == 6000  # under a higher limit it opens (header only)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [
    10_000,   # 100M pixels: over Image.MAX_IMAGE_PIXELS, so Pillow only warns (DecompressionBombWarning)
    100_000,  # over twice it: Pillow raises DecompressionBombError
])
def test_pillows_own_bomb_refusal_becomes_image_too_large(tmp_path, side):
    assert side * side > Image.MAX_IMAGE_PIXELS
    path = write(tmp_path, "huge.png", with_ihdr_size(encode(Image.new("RGB", (8, 8)), "PNG"), side, side))
    started = time.monotonic()
    with pytest.raises(ImageTooLarge):
        SourceImage(path, 10**12)  # our own limit is above it: Pillow's refusal must still hold
    assert time.monotonic() - started < 1


def test_truncated_image_is_a_thumbnail_error(tmp_path):
    data = encode(stripes(400, 300, [RED, GREEN]), "JPEG", quality=95)
    path = write(tmp_path, "truncated.jpg", data[:len(data) // 2])
    with pytest.raises(ThumbnailError) as info:
        thumbnail(path, 96, 96, "crop")
    assert not isinstance(info.value, ImageTooLarge)


def test_truncated_animation_is_a_thumbnail_error_but_its_intact_first_frame_still_thumbnails(tmp_path):
    data = animation("GIF", [RED, GREEN, BLUE], size=(200, 200))
    path = write(tmp_path, "truncated.gif", data[:len(data) * 2 // 3])
    with pytest.raises(ThumbnailError) as info:
        thumbnail(path, 96, 96, "crop", animated=True)
    assert not isinstance(info.value, ImageTooLarge)
    assert near(decoded(thumbnail(path, 96, 96, "crop", animated=False)).getpixel((48, 48)), RED)


@pytest.mark.parametrize("data", [b"just some text, not an image" * 10, b"",
                                  b"GIF89a" + b"\x00" * 20, encode(Image.new("RGB", (8, 8)), "BMP")])
def test_non_image_or_unsupported_format_is_a_thumbnail_error(tmp_path, data):
    path = write(tmp_path, "not-an-image", data)
    with pytest.raises(ThumbnailError):
        thumbnail(path, 32, 32, "crop")


# select_thumbnail: the spec's "at least as large as requested", else the largest.

T = namedtuple("T", "width height method animated length media_type")
STORED = [T(32, 32, "crop", False, 1, "image/jpeg"), T(96, 96, "crop", False, 2, "image/jpeg"),
          T(320, 240, "scale", False, 3, "image/jpeg"), T(640, 480, "scale", False, 4, "image/jpeg"),
          T(800, 600, "scale", False, 5, "image/jpeg"),
          T(96, 96, "crop", True, 6, "image/webp"), T(320, 240, "scale", True, 7, "image/webp")]


@pytest.mark.parametrize("request_, expected", [
    ((64, 64, "crop", False), (96, 96, "crop", False)),
    ((32, 32, "crop", False), (32, 32, "crop", False)),
    ((200, 200, "crop", False), (96, 96, "crop", False)),      # none covers it: the largest crop
    ((321, 241, "scale", False), (640, 480, "scale", False)),
    ((321, 100, "scale", False), (320, 240, "scale", False)),  # 4:3 fits 133x100: covered
    ((100, 100, "scale", False), (320, 240, "scale", False)),
    ((2000, 2000, "scale", False), (800, 600, "scale", False)),  # none big enough: the largest
    ((64, 64, "crop", True), (96, 96, "crop", True)),
    ((600, 600, "scale", True), (320, 240, "scale", True)),
])
def test_selection_picks_the_smallest_big_enough_else_the_largest(request_, expected):
    chosen = select_thumbnail(STORED, *request_)
    assert (chosen.width, chosen.height, chosen.method, chosen.animated) == expected


def test_selection_never_returns_an_animation_unless_asked_and_falls_back_to_stills():
    stills_only = [t for t in STORED if not t.animated]
    assert not select_thumbnail(STORED, 96, 96, "crop", False).animated
    assert select_thumbnail(stills_only, 96, 96, "crop", True) == STORED[1]
    # Only scale thumbnails stored: a crop request still gets one rather than nothing.
    assert select_thumbnail(stills_only[2:], 96, 96, "crop", False) == STORED[2]
    assert select_thumbnail([], 96, 96, "crop", False) is None
