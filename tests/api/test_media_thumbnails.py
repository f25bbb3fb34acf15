"""Thumbnails through real HTTP: sizes made at upload (thumbnail_sizes, on disk and in
media_thumbnails), the nearest stored size per request, crop vs scale, animations kept or
stilled, clean errors for what cannot be thumbnailed, made on demand when none is stored or
with dynamic_thumbnails, and the legacy vs authenticated endpoints."""

import concurrent.futures
import hashlib
import io
import os
import shutil
import struct
import time
import zlib

import pytest
from PIL import Image

from tests.harness import Client, assert_error, new_user, query, running_homeserver, wait_for

AUTHED = "/_matrix/client/v1/media/thumbnail/test.local/"
LEGACY = "/_matrix/media/v3/thumbnail/test.local/"
DEFAULT_SIZES = {(32, 32, "crop"), (96, 96, "crop"), (320, 240, "scale"), (640, 480, "scale"), (800, 600, "scale")}
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def photo(width: int, height: int) -> bytes:
    return encode(Image.new("RGB", (width, height), (30, 120, 200)), "PNG")


def animated_gif(colors=(RED, GREEN, BLUE), size=(200, 150)) -> bytes:
    frames = [Image.new("RGB", size, color) for color in colors]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)


def upload(client: Client, data: bytes, content_type: str) -> str:
    resp = client.post("/_matrix/media/v3/upload", data=data, headers={"Content-Type": content_type})
    assert resp.status_code == 200, resp.text
    return resp.json()["content_uri"].rsplit("/", 1)[1]


def thumbnail(client: Client, media_id: str, width: int, height: int, method: str | None = None,
              prefix: str = AUTHED, token=None, **extra):
    params = {"width": width, "height": height, **extra}
    if method:
        params["method"] = method
    return client.get(prefix + media_id, params=params, token=token)


def image_of(resp) -> Image.Image:
    assert resp.status_code == 200, resp.text
    return Image.open(io.BytesIO(resp.content))


def thumbnail_rows(db_dsn: str, data: bytes) -> set:
    return set(query(db_dsn, "SELECT width, height, method, media_type, animated, length FROM media_thumbnails"
                             " WHERE sha256 = %s", (hashlib.sha256(data).hexdigest(),)))


def wait_for_rows(db_dsn: str, data: bytes, count: int, timeout: float = 20) -> set:
    deadline = time.monotonic() + timeout
    while True:
        rows = thumbnail_rows(db_dsn, data)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def thumbnail_dir(server, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return os.path.join(server.dir, "media_store", "thumbnails", digest[:2], digest[2:4], digest[4:])


@pytest.fixture(scope="module")
def alice(homeserver):
    return new_user(homeserver, "alice")


@pytest.fixture(scope="module")
def landscape(alice, db_dsn):
    """A 1000x750 opaque image with its pregenerated thumbnails in place."""
    data = photo(1000, 750)
    media_id = upload(alice, data, "image/png")
    assert len(wait_for_rows(db_dsn, data, len(DEFAULT_SIZES))) == len(DEFAULT_SIZES)
    return media_id, data


@pytest.fixture(scope="module")
def dynamic(db_dsn):
    """dynamic_thumbnails on and the legacy freeze off."""
    with running_homeserver(db_dsn, dynamic_thumbnails=True, enable_authenticated_media=False) as server:
        yield server


def test_upload_pregenerates_every_configured_size_on_disk(homeserver, landscape, db_dsn):
    media_id, data = landscape
    rows = thumbnail_rows(db_dsn, data)
    assert {(w, h, m, t, a) for w, h, m, t, a, _ in rows} == {
        (w, h, m, "image/jpeg", False) for w, h, m in DEFAULT_SIZES}
    directory = thumbnail_dir(homeserver, data)
    for w, h, m, _, _, length in rows:
        path = os.path.join(directory, f"{w}x{h}-{m}.jpg")
        assert os.path.getsize(path) == length
        with Image.open(path) as image:
            assert (image.format, image.size) == ("JPEG", (w, h))


@pytest.mark.parametrize("width, height, method, size", [
    (400, 300, "scale", (640, 480)),    # the smallest at least as big as asked
    (320, 240, "scale", (320, 240)),
    (100, 100, "scale", (320, 240)),
    (2000, 2000, "scale", (800, 600)),  # none big enough: the largest
    (50, 50, "crop", (96, 96)),
    (20, 20, "crop", (32, 32)),
    (96, 96, None, (320, 240)),         # method defaults to scale
])
def test_nearest_stored_size_is_served(alice, landscape, width, height, method, size):
    resp = thumbnail(alice, landscape[0], width, height, method)
    image = image_of(resp)
    assert (image.format, image.size) == ("JPEG", size)
    assert resp.headers["Content-Type"] == "image/jpeg"
    assert resp.headers["Content-Disposition"] == "inline; filename=thumbnail.jpg"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Security-Policy"].startswith("sandbox;")


def test_crop_has_the_box_shape_and_scale_keeps_the_image_shape(alice, db_dsn):
    data = photo(1000, 400)
    media_id = upload(alice, data, "image/png")
    wait_for_rows(db_dsn, data, len(DEFAULT_SIZES))
    assert image_of(thumbnail(alice, media_id, 96, 96, "crop")).size == (96, 96)
    assert image_of(thumbnail(alice, media_id, 320, 240, "scale")).size == (320, 128)


def test_transparent_png_gets_png_thumbnails(alice, db_dsn):
    image = Image.new("RGBA", (400, 300), (255, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, 100, 300))
    media_id = upload(alice, encode(image, "PNG"), "image/png")
    resp = thumbnail(alice, media_id, 32, 32, "crop")
    out = image_of(resp)
    assert (out.format, out.mode, resp.headers["Content-Type"]) == ("PNG", "RGBA", "image/png")


def test_small_image_is_not_upscaled(alice):
    media_id = upload(alice, photo(60, 40), "image/png")
    assert image_of(thumbnail(alice, media_id, 800, 600, "scale")).size == (60, 40)
    assert image_of(thumbnail(alice, media_id, 96, 96, "crop")).size == (40, 40)


def test_animated_gif_is_animated_only_when_asked(alice, db_dsn):
    data = animated_gif()
    media_id = upload(alice, data, "image/gif")
    # Each size both still and animated (sizes the 200x150 source cannot fill are made once, so
    # there are fewer than two rows per configured size): the rows are written in one transaction.
    kinds = {("crop", "image/jpeg", False), ("scale", "image/jpeg", False),
             ("crop", "image/webp", True), ("scale", "image/webp", True)}
    wait_for(lambda: {(m, t, a) for _, _, m, t, a, _ in thumbnail_rows(db_dsn, data)} == kinds,
             "still and animated thumbnails of each method")

    resp = thumbnail(alice, media_id, 96, 96, "crop", animated="true")
    animated = image_of(resp)
    assert (resp.headers["Content-Type"], animated.format, animated.n_frames, animated.size) == (
        "image/webp", "WEBP", 3, (96, 96))
    for animated_param in ("false", None):
        extra = {"animated": animated_param} if animated_param else {}
        resp = thumbnail(alice, media_id, 96, 96, "crop", **extra)
        still = image_of(resp)
        assert (resp.headers["Content-Type"], still.format, getattr(still, "n_frames", 1)) == (
            "image/jpeg", "JPEG", 1)


def test_animated_request_for_a_still_image_gets_the_still(alice, landscape):
    resp = thumbnail(alice, landscape[0], 96, 96, "crop", animated="true")
    assert (resp.status_code, resp.headers["Content-Type"]) == (200, "image/jpeg")


def test_corrupt_image_is_a_clean_400_and_the_server_keeps_serving(alice, landscape):
    data = encode(Image.new("RGB", (400, 300), RED), "JPEG")
    media_id = upload(alice, data[:len(data) // 3], "image/jpeg")
    for _ in range(2):
        assert_error(thumbnail(alice, media_id, 96, 96, "crop"), 400, "M_UNKNOWN")
    assert image_of(thumbnail(alice, landscape[0], 96, 96, "crop")).size == (96, 96)


def test_animation_broken_after_its_first_frame_still_gets_still_thumbnails(alice):
    data = animated_gif()
    media_id = upload(alice, data[:len(data) * 2 // 3], "image/gif")
    resp = thumbnail(alice, media_id, 96, 96, "crop", animated="true")
    assert (image_of(resp).size, resp.headers["Content-Type"]) == ((96, 96), "image/jpeg")


def test_non_image_content_cannot_be_thumbnailed(alice):
    media_id = upload(alice, b"%PDF-1.4 not an image", "application/pdf")
    assert_error(thumbnail(alice, media_id, 96, 96, "crop"), 400, "M_UNKNOWN")
    # Declared an image, but is not one.
    media_id = upload(alice, b"plain text pretending", "image/png")
    assert_error(thumbnail(alice, media_id, 96, 96, "crop"), 400, "M_UNKNOWN")


def test_decompression_bomb_is_413_too_large(alice):
    png = encode(Image.new("RGB", (8, 8)), "PNG")
    ihdr = b"IHDR" + struct.pack(">II", 60_000, 60_000) + png[24:29]
    bomb = png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]
    media_id = upload(alice, bomb, "image/png")
    assert_error(thumbnail(alice, media_id, 96, 96, "crop"), 413, "M_TOO_LARGE")


def test_thumbnails_lost_from_the_store_are_made_again_on_demand(homeserver, alice, db_dsn):
    data = photo(900, 600)
    media_id = upload(alice, data, "image/png")
    wait_for_rows(db_dsn, data, len(DEFAULT_SIZES))
    # As if uploaded before pregeneration finished: no rows, no files.
    query(db_dsn, "DELETE FROM media_thumbnails WHERE sha256 = %s RETURNING 1", (hashlib.sha256(data).hexdigest(),))
    shutil.rmtree(thumbnail_dir(homeserver, data))
    assert image_of(thumbnail(alice, media_id, 400, 300, "scale")).size == (640, 426)
    assert len(thumbnail_rows(db_dsn, data)) == len(DEFAULT_SIZES)
    # A row whose file went is remade from the row.
    os.unlink(os.path.join(thumbnail_dir(homeserver, data), "96x96-crop.jpg"))
    assert image_of(thumbnail(alice, media_id, 96, 96, "crop")).size == (96, 96)


def test_dynamic_thumbnails_are_made_at_the_exact_size(dynamic, db_dsn):
    bob = new_user(dynamic, "bob")
    data = photo(1000, 500)
    media_id = upload(bob, data, "image/png")
    assert image_of(thumbnail(bob, media_id, 100, 100, "scale")).size == (100, 50)
    assert image_of(thumbnail(bob, media_id, 50, 70, "crop")).size == (50, 70)
    assert {(50, 70, "crop"), (100, 50, "scale")} <= {r[:3] for r in thumbnail_rows(db_dsn, data)}


def test_concurrent_requests_for_a_missing_thumbnail_all_get_it_once(dynamic, db_dsn):
    bob = new_user(dynamic, "bob")
    data = animated_gif(colors=[RED, GREEN] * 10, size=(600, 400))
    media_id = upload(bob, data, "image/gif")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: thumbnail(bob, media_id, 123, 77, "crop", animated="true"), range(8)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    rows = [r for r in thumbnail_rows(db_dsn, data) if r[:3] == (123, 77, "crop") and r[4]]
    assert len(rows) == 1 and rows[0][5] == len(responses[0].content)
    # Made once: the handler logs each thumbnail it stores.
    with open(dynamic.log_path, errors="replace") as f:
        assert f.read().count(os.path.join(thumbnail_dir(dynamic, data), "123x77-crop-animated.webp")) == 1


def test_legacy_endpoint_refuses_media_uploaded_since_the_freeze(homeserver, alice, landscape):
    assert_error(thumbnail(Client(homeserver), landscape[0], 96, 96, "crop", prefix=LEGACY), 404, "M_NOT_FOUND")


def test_authenticated_endpoint_needs_a_token(homeserver, landscape):
    assert_error(thumbnail(Client(homeserver), landscape[0], 96, 96, "crop"), 401, "M_MISSING_TOKEN")


def test_legacy_endpoint_serves_thumbnails_without_a_token_when_not_frozen(dynamic):
    media_id = upload(new_user(dynamic, "carol"), photo(500, 500), "image/png")
    anonymous = Client(dynamic)
    for prefix in (LEGACY, "/_matrix/media/r0/thumbnail/test.local/"):
        resp = thumbnail(anonymous, media_id, 64, 64, "crop", prefix=prefix)
        assert (image_of(resp).size, resp.headers["Content-Type"]) == ((64, 64), "image/jpeg")
