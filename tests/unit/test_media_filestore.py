"""hs/media/filestore.py: content stored once per SHA-256, limits while streaming, and paths that
can only ever name files inside the store."""

import hashlib
import os

import pytest

from hs.media.filestore import MediaFileStore, TooLarge


@pytest.fixture
def store(tmp_path):
    return MediaFileStore(str(tmp_path / "media"))


def files_under(root) -> list:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_received_content_is_hashed_and_lands_under_its_digest(store):
    data = b"hello media" * 1000
    received = store.receive(iter([data[:5000], data[5000:]]), limit=len(data))
    digest = hashlib.sha256(data).hexdigest()
    assert (received.sha256, received.length) == (digest, len(data))
    path = store.commit(received)
    assert path == os.path.join(store.root, "content", digest[:2], digest[2:4], digest[4:])
    with open(path, "rb") as f:
        assert f.read() == data
    assert os.listdir(os.path.join(store.root, "tmp")) == []


def test_identical_content_is_stored_once(store):
    first = store.commit(store.receive([b"same bytes"], limit=100))
    second = store.commit(store.receive([b"same", b" bytes"], limit=100))
    assert first == second
    assert files_under(store.root) == [os.path.relpath(first, store.root)]


def test_body_over_the_limit_keeps_nothing_and_stops_reading(store):
    consumed = []

    def chunks():
        for i in range(100):
            consumed.append(i)
            yield b"x" * 10
    with pytest.raises(TooLarge):
        store.receive(chunks(), limit=25)
    assert consumed == [0, 1, 2]  # the third chunk went past 25 bytes: nothing more was read
    assert files_under(store.root) == []


def test_body_of_exactly_the_limit_is_accepted(store):
    assert store.receive([b"x" * 25], limit=25).length == 25


def test_a_failing_body_stream_leaves_no_temporary_file(store):
    def chunks():
        yield b"partial"
        raise ConnectionError("client went away")
    with pytest.raises(ConnectionError):
        store.receive(chunks(), limit=100)
    assert files_under(store.root) == []


def test_discard_removes_the_received_file(store):
    received = store.receive([b"unwanted"], limit=100)
    store.discard(received)
    store.discard(received)  # twice is harmless
    assert files_under(store.root) == []


@pytest.mark.parametrize("bad", ["../../../etc/passwd", "..", "", "A" * 64, "0" * 63, "0" * 65,
                                 "0" * 62 + "/.", "ab/../" + "0" * 58, None, "0" * 64 + "\n"])
def test_paths_are_built_only_from_hex_digests(store, bad):
    with pytest.raises(ValueError):
        store.content_path(bad)
    with pytest.raises(ValueError):
        store.thumbnail_dir(bad)
    with pytest.raises(ValueError):
        store.delete_content(bad)


def test_thumbnail_paths_take_only_known_methods_and_types(store):
    digest = "ab" * 32
    path = store.thumbnail_path(digest, 32, 24, "crop", "image/png", False)
    assert path == os.path.join(store.root, "thumbnails", "ab", "ab", "ab" * 30, "32x24-crop.png")
    assert store.thumbnail_path(digest, 8, 8, "scale", "image/webp", True).endswith("8x8-scale-animated.webp")
    with pytest.raises(ValueError):
        store.thumbnail_path(digest, 32, 24, "../crop", "image/png", False)
    with pytest.raises(KeyError):
        store.thumbnail_path(digest, 32, 24, "crop", "text/html", False)
    with pytest.raises(ValueError):
        store.thumbnail_path(digest, "1/../../x", 24, "crop", "image/png", False)


def test_delete_content_removes_the_file_and_all_its_thumbnails(store):
    content = store.commit(store.receive([b"an image"], limit=100))
    other = store.commit(store.receive([b"another image"], limit=100))
    digest = hashlib.sha256(b"an image").hexdigest()
    for size in (32, 96):
        store.write_thumbnail(store.thumbnail_path(digest, size, size, "crop", "image/png", False), b"png")
    store.delete_content(digest)
    store.delete_content(digest)  # already gone: not an error
    assert not os.path.exists(content)
    assert not os.path.exists(store.thumbnail_dir(digest))
    assert files_under(store.root) == [os.path.relpath(other, store.root)]


def test_written_thumbnails_hold_their_bytes_and_leave_no_temporary_file(store):
    path = store.thumbnail_path("cd" * 32, 10, 10, "scale", "image/jpeg", False)
    store.write_thumbnail(path, b"jpeg bytes")
    with open(path, "rb") as f:
        assert f.read() == b"jpeg bytes"
    assert os.listdir(os.path.join(store.root, "tmp")) == []
