"""Uploads to the content repository: POST /_matrix/media/v3/upload (streamed, size-limited, stored
once per content) and the asynchronous POST /_matrix/media/v1/create + PUT /upload/{server}/{id}."""

import hashlib
import http.client
import io
import os
import re
import threading
import time

import pytest
import requests
from PIL import Image

from hs.handlers.media import PENDING_POLL_SECONDS
from hs.media.filestore import MediaFileStore
from hs.storage.database import Database
from hs.storage.media import MediaStore
from tests.harness import Client, assert_error, new_user, query, running_homeserver

MB = 1024 * 1024
SMALL_LIMIT = MB


def png_bytes(width: int = 800, height: int = 600, color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(width: int = 640, height: int = 480) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (20, 120, 220)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def upload(client: Client, data, content_type: str | None = "application/octet-stream", filename=None,
           prefix="/_matrix/media/v3") -> requests.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    params = {"filename": filename} if filename is not None else None
    return client.post(prefix + "/upload", data=data, headers=headers, params=params)


def uploaded_id(client: Client, data, content_type="application/octet-stream", filename=None) -> str:
    resp = upload(client, data, content_type, filename)
    assert resp.status_code == 200, resp.text
    return resp.json()["content_uri"].rsplit("/", 1)[1]


def download(client: Client, media_id: str, server_name: str = "test.local", **kw) -> requests.Response:
    return client.get(f"/_matrix/client/v1/media/download/{server_name}/{media_id}", **kw)


def content_files(server) -> list:
    root = os.path.join(server.dir, "media_store", "content")
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


def temp_files(server) -> list:
    return os.listdir(os.path.join(server.dir, "media_store", "tmp"))


def media_row(db_dsn, media_id: str):
    rows = query(db_dsn, "SELECT user_id, media_type, upload_name, media_length, sha256, authenticated,"
                         " unused_expires_ts FROM local_media WHERE media_id = %s", (media_id,))
    return rows[0] if rows else None


def chunks_of(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i:i + size]


@pytest.fixture
def alice(homeserver):
    """A new user per test: pending uploads count against each user."""
    return new_user(homeserver, "alice")


@pytest.fixture(scope="module")
def small(db_dsn):
    """A server with a 1 MiB upload limit and at most two pending asynchronous uploads."""
    with running_homeserver(db_dsn, max_upload_size="1M", max_pending_media_uploads=2) as server:
        yield server


# --- POST /upload ---

def test_png_upload_returns_an_mxc_uri_and_records_its_metadata(homeserver, alice, db_dsn):
    data = png_bytes()
    resp = upload(alice, data, "image/png", "cat.png")
    assert resp.status_code == 200, resp.text
    uri = resp.json()["content_uri"]
    match = re.fullmatch(r"mxc://test\.local/([A-Za-z]{24})", uri)
    assert match, uri
    assert media_row(db_dsn, match.group(1)) == (alice.user_id, "image/png", "cat.png", len(data),
                                                 hashlib.sha256(data).hexdigest(), True, None)
    got = download(alice, match.group(1))
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["Content-Type"] == "image/png"


def test_jpeg_upload_round_trips_byte_for_byte(alice):
    data = jpeg_bytes()
    got = download(alice, uploaded_id(alice, data, "image/jpeg"))
    assert (got.status_code, got.headers["Content-Type"], got.content) == (200, "image/jpeg", data)


def test_upload_without_content_type_is_application_octet_stream(alice, db_dsn):
    media_id = uploaded_id(alice, b"\x00\x01 raw", content_type=None)
    assert media_row(db_dsn, media_id)[1] == "application/octet-stream"
    assert download(alice, media_id).headers["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize("prefix", ["/_matrix/media/r0", "/_matrix/media/v1"])
def test_upload_is_served_on_the_legacy_prefixes_too(alice, prefix):
    resp = upload(alice, b"legacy prefix", "text/plain", prefix=prefix)
    assert resp.status_code == 200, resp.text
    assert resp.json()["content_uri"].startswith("mxc://test.local/")


def test_unicode_filename_is_kept(alice, db_dsn):
    media_id = uploaded_id(alice, b"naive", "text/plain", "naïve café.txt")
    assert media_row(db_dsn, media_id)[2] == "naïve café.txt"


def test_empty_filename_is_no_filename(alice, db_dsn):
    assert media_row(db_dsn, uploaded_id(alice, b"nameless", "text/plain", ""))[2] is None


def test_filename_with_nul_is_400(alice):
    assert_error(upload(alice, b"x", "text/plain", "a\x00b"), 400, "M_INVALID_PARAM")


def test_empty_body_is_a_valid_upload(alice):
    got = download(alice, uploaded_id(alice, b"", "text/plain"))
    assert (got.status_code, got.content) == (200, b"")


def test_twenty_megabyte_chunked_upload_is_streamed_and_stored_intact(homeserver, alice, db_dsn):
    data = os.urandom(20 * MB)
    resp = requests.post(homeserver.url("/_matrix/media/v3/upload"), data=chunks_of(data, 256 * 1024),
                         headers={"Authorization": f"Bearer {alice.access_token}",
                                  "Content-Type": "application/octet-stream"}, timeout=120)
    assert resp.request.headers.get("Transfer-Encoding") == "chunked"
    assert resp.status_code == 200, resp.text
    media_id = resp.json()["content_uri"].rsplit("/", 1)[1]
    digest = hashlib.sha256(data).hexdigest()
    assert media_row(db_dsn, media_id)[3:5] == (20 * MB, digest)
    assert os.path.getsize(os.path.join(homeserver.dir, "media_store", "content", digest[:2], digest[2:4],
                                        digest[4:])) == 20 * MB
    got = download(alice, media_id, stream=True)
    assert got.headers["Content-Length"] == str(20 * MB)
    assert hashlib.sha256(got.raw.read()).hexdigest() == digest


def test_identical_uploads_share_one_file(homeserver, alice, db_dsn):
    data = png_bytes(37, 41, (1, 2, 3))
    before = content_files(homeserver)
    first = uploaded_id(alice, data, "image/png", "one.png")
    second = uploaded_id(new_user(homeserver), data, "image/png", "two.png")
    assert first != second
    added = sorted(set(content_files(homeserver)) - set(before))
    assert [os.path.basename(path) for path in added] == [hashlib.sha256(data).hexdigest()[4:]]
    assert media_row(db_dsn, first)[4] == media_row(db_dsn, second)[4]
    assert download(alice, first).content == download(alice, second).content == data


def test_upload_without_a_token_is_401(homeserver):
    assert_error(upload(Client(homeserver), b"anonymous"), 401, "M_MISSING_TOKEN")


def test_guest_may_not_upload(db_dsn):
    with running_homeserver(db_dsn, allow_guest_access=True) as server:
        guest = Client(server, Client(server).post("/register?kind=guest", {}).json()["access_token"])
        assert_error(upload(guest, b"guest bytes"), 403, "M_GUEST_ACCESS_FORBIDDEN")
        assert_error(guest.post("/_matrix/media/v1/create"), 403, "M_GUEST_ACCESS_FORBIDDEN")


# --- the size limit ---

def _assert_nothing_kept(server, db_dsn, user_id, files_before):
    assert query(db_dsn, "SELECT media_id FROM local_media WHERE user_id = %s AND sha256 IS NOT NULL",
                 (user_id,)) == []
    assert content_files(server) == files_before
    assert temp_files(server) == []


def test_declared_body_over_the_limit_is_413_before_it_is_sent(small, db_dsn):
    client = new_user(small)
    before = content_files(small)
    # Only the headers go out: the answer must come without the server waiting for the body.
    conn = http.client.HTTPConnection("127.0.0.1", small.port, timeout=10)
    try:
        conn.putrequest("POST", "/_matrix/media/v3/upload")
        conn.putheader("Authorization", f"Bearer {client.access_token}")
        conn.putheader("Content-Length", str(SMALL_LIMIT + 1))
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 413
        assert b'"M_TOO_LARGE"' in resp.read()
    finally:
        conn.close()
    _assert_nothing_kept(small, db_dsn, client.user_id, before)


def test_chunked_body_over_the_limit_is_413_and_nothing_is_kept(small, db_dsn):
    client = new_user(small)
    before = content_files(small)
    resp = requests.post(small.url("/_matrix/media/v3/upload"), data=chunks_of(os.urandom(SMALL_LIMIT + MB // 2),
                                                                                 64 * 1024),
                         headers={"Authorization": f"Bearer {client.access_token}"}, timeout=30)
    assert resp.request.headers.get("Transfer-Encoding") == "chunked"
    assert_error(resp, 413, "M_TOO_LARGE")
    _assert_nothing_kept(small, db_dsn, client.user_id, before)
    assert requests.get(small.url("/_matrix/client/versions"), timeout=10).status_code == 200


def _raw_upload(server, token: str, head: str, body: bytes) -> bytes:
    """Sends a hand-written request (headers after the request line, then ``body``) and
    returns what the server answered, once it closes or stops sending."""
    import socket
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {token}\r\n{head}\r\n".encode() + body)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("head, body", [
    ("Transfer-Encoding: chunked\r\n", b"zz\r\nhello\r\n0\r\n\r\n"),   # a chunk size that is not hex
    ("Content-Length: 1000\r\n", b"only part of it"),                      # the client hangs up early
], ids=["malformed-chunked", "truncated"])
def test_broken_or_truncated_body_is_400_and_nothing_is_kept(small, db_dsn, head, body):
    client = new_user(small)
    before = content_files(small)
    answer = _raw_upload(small, client.access_token, head, body)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    _assert_nothing_kept(small, db_dsn, client.user_id, before)
    assert requests.get(small.url("/_matrix/client/versions"), timeout=10).status_code == 200


def test_body_of_exactly_the_limit_is_accepted(small):
    client = new_user(small)
    data = os.urandom(SMALL_LIMIT)
    got = download(client, uploaded_id(client, chunks_of(data, 100_000)))
    assert got.content == data


def test_config_reports_the_upload_limit(small):
    client = new_user(small)
    for path in ("/_matrix/client/v1/media/config", "/_matrix/media/v3/config", "/_matrix/media/r0/config"):
        resp = client.get(path)
        assert resp.status_code == 200, path
        assert resp.json() == {"m.upload.size": SMALL_LIMIT}


# --- asynchronous upload ---

def create(client: Client) -> tuple[str, dict]:
    resp = client.post("/_matrix/media/v1/create")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return body["content_uri"].rsplit("/", 1)[1], body


def put(client: Client, media_id: str, data, server_name="test.local", content_type="text/plain", **params):
    return client.put(f"/_matrix/media/v3/upload/{server_name}/{media_id}", data=data,
                      headers={"Content-Type": content_type}, params=params or None)


def test_create_then_put_makes_downloadable_media(alice, db_dsn):
    start = int(time.time() * 1000)
    media_id, body = create(alice)
    assert re.fullmatch(r"mxc://test\.local/[A-Za-z]{24}", body["content_uri"])
    assert start + 24 * 3600 * 1000 <= body["unused_expires_at"] <= int(time.time() * 1000) + 24 * 3600 * 1000
    assert media_row(db_dsn, media_id)[3] is None
    resp = put(alice, media_id, b"later bytes", filename="later.txt")
    assert (resp.status_code, resp.json()) == (200, {})
    assert media_row(db_dsn, media_id)[1:4] == ("text/plain", "later.txt", 11)
    got = download(alice, media_id)
    assert (got.status_code, got.content) == (200, b"later bytes")


def test_put_twice_is_409_cannot_overwrite(alice):
    media_id, _ = create(alice)
    assert put(alice, media_id, b"first").status_code == 200
    assert_error(put(alice, media_id, b"second"), 409, "M_CANNOT_OVERWRITE_MEDIA")
    assert download(alice, media_id).content == b"first"


def test_put_to_an_ordinary_upload_is_409(alice):
    assert_error(put(alice, uploaded_id(alice, b"direct"), b"again"), 409, "M_CANNOT_OVERWRITE_MEDIA")


def test_only_the_creator_may_put(homeserver, alice):
    media_id, _ = create(alice)
    assert_error(put(new_user(homeserver), media_id, b"hijack"), 403, "M_FORBIDDEN")
    assert put(alice, media_id, b"mine").status_code == 200


@pytest.mark.parametrize("server_name, media_id", [
    ("test.local", "UnknownMediaIdUnknownMed"), ("test.local", "short"), ("other.example", None)])
def test_put_to_an_unknown_id_or_another_server_is_404(alice, server_name, media_id):
    media_id = media_id or create(alice)[0]
    assert_error(put(alice, media_id, b"x", server_name=server_name), 404, "M_NOT_FOUND")


def test_put_after_expiry_is_404(alice, db_dsn):
    media_id, _ = create(alice)
    query(db_dsn, "UPDATE local_media SET unused_expires_ts = %s WHERE media_id = %s",
          (int(time.time() * 1000) - 1, media_id))
    assert_error(put(alice, media_id, b"too late"), 404, "M_NOT_FOUND")


def test_put_without_a_token_is_401(homeserver, alice):
    media_id, _ = create(alice)
    assert_error(put(Client(homeserver), media_id, b"x"), 401, "M_MISSING_TOKEN")
    assert_error(Client(homeserver).post("/_matrix/media/v1/create"), 401, "M_MISSING_TOKEN")


def test_put_over_the_limit_is_413_and_the_id_stays_usable(small, db_dsn):
    client = new_user(small)
    media_id, _ = create(client)
    assert_error(put(client, media_id, chunks_of(os.urandom(SMALL_LIMIT + 1000), 100_000)), 413, "M_TOO_LARGE")
    assert media_row(db_dsn, media_id)[3] is None
    assert temp_files(small) == []
    assert put(client, media_id, b"fits").status_code == 200


def test_pending_uploads_are_limited_per_user(small):
    client = new_user(small)
    first, body = create(client)
    create(client)
    resp = client.post("/_matrix/media/v1/create")
    assert_error(resp, 429, "M_LIMIT_EXCEEDED")
    # The earliest pending ID expires in about a day: that is when another may be created.
    retry = resp.json()["retry_after_ms"]
    assert 0 < retry <= body["unused_expires_at"] - int(time.time() * 1000) + 1000
    assert retry > 24 * 3600 * 1000 - 60_000
    assert new_user(small).post("/_matrix/media/v1/create").status_code == 200  # per user
    assert put(client, first, b"done").status_code == 200
    create(client)


def test_expired_pending_uploads_do_not_count(small, db_dsn):
    client = new_user(small)
    ids = [create(client)[0], create(client)[0]]
    query(db_dsn, "UPDATE local_media SET unused_expires_ts = 1 WHERE media_id = ANY(%s)", (ids,))
    create(client)


def test_download_waits_for_the_put_and_is_woken_by_it(alice):
    media_id, _ = create(alice)
    result = {}

    def fetch():
        start = time.monotonic()
        result["resp"] = download(alice, media_id, params={"timeout_ms": 10_000})
        result["elapsed"] = time.monotonic() - start
    waiter = threading.Thread(target=fetch)
    waiter.start()
    time.sleep(1.0)
    assert put(alice, media_id, b"worth the wait").status_code == 200
    waiter.join(15)
    assert (result["resp"].status_code, result["resp"].content) == (200, b"worth the wait")
    # Answered once the PUT landed, long before its 10 s timeout.
    assert 1.0 <= result["elapsed"] < 1.0 + PENDING_POLL_SECONDS + 1.5


def test_download_of_media_not_yet_uploaded_is_504_after_the_timeout(alice):
    media_id, _ = create(alice)
    start = time.monotonic()
    resp = download(alice, media_id, params={"timeout_ms": 300})
    elapsed = time.monotonic() - start
    assert_error(resp, 504, "M_NOT_YET_UPLOADED")
    assert 0.3 <= elapsed < 5
    assert_error(download(alice, media_id, params={"timeout_ms": 0}), 504, "M_NOT_YET_UPLOADED")


def test_download_of_an_expired_pending_id_is_404(alice, db_dsn):
    media_id, _ = create(alice)
    query(db_dsn, "UPDATE local_media SET unused_expires_ts = 1 WHERE media_id = %s", (media_id,))
    assert_error(download(alice, media_id, params={"timeout_ms": 5000}), 404, "M_NOT_FOUND")


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_bad_timeout_ms_is_400(alice, value):
    media_id, _ = create(alice)
    assert_error(download(alice, media_id, params={"timeout_ms": value}), 400, "M_INVALID_PARAM")


# --- deletion (MediaStore.delete_local_media, which the admin API and retention call) ---

def test_deleting_media_removes_its_content_only_with_the_last_media_naming_it(homeserver, alice, db_dsn):
    data = png_bytes(23, 29, (9, 9, 9))
    digest = hashlib.sha256(data).hexdigest()
    first, second = uploaded_id(alice, data, "image/png"), uploaded_id(alice, data, "image/png")
    files = MediaFileStore(os.path.join(homeserver.dir, "media_store"))
    thumbnail = files.thumbnail_path(digest, 8, 8, "crop", "image/png", False)
    files.write_thumbnail(thumbnail, b"thumbnail bytes")
    query(db_dsn, "INSERT INTO media_thumbnails VALUES (%s, 8, 8, 'crop', 'image/png', FALSE, 15)", (digest,))
    db = Database(db_dsn, max_connections=1)
    try:
        store = MediaStore(db)
        assert store.delete_local_media([first, "NoSuchMediaNoSuchMediaNo"], files) == [first]
        assert os.path.exists(files.content_path(digest)) and os.path.exists(thumbnail)
        assert download(alice, second).content == data
        assert_error(download(alice, first), 404, "M_NOT_FOUND")
        assert store.delete_local_media([second], files) == [second]
    finally:
        db.close()
    assert not os.path.exists(files.content_path(digest))
    assert not os.path.exists(files.thumbnail_dir(digest))
    assert query(db_dsn, "SELECT 1 FROM media_thumbnails WHERE sha256 = %s", (digest,)) == []
    assert_error(download(alice, second), 404, "M_NOT_FOUND")


def test_deleting_a_pending_media_id_removes_it(alice, db_dsn):
    media_id, _ = create(alice)
    db = Database(db_dsn, max_connections=1)
    try:
        assert MediaStore(db).delete_local_media([media_id], MediaFileStore(os.path.join(alice.server.dir,
                                                                                        "media_store"))) == [media_id]
    finally:
        db.close()
    assert media_row(db_dsn, media_id) is None
