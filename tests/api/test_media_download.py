"""Downloads and thumbnails: safe headers on every response, Content-Disposition, byte ranges, the
legacy endpoints' freeze, path parameters that can never reach outside the store, and who may ask."""

import http.client
import io
import os
import time

import pytest
import requests
from PIL import Image

from hs.api.media_serving import content_disposition, parse_range
from hs.errors import MatrixError
from tests.api.test_media_upload import assert_error, download, jpeg_bytes, png_bytes, uploaded_id
from tests.harness import Client, HomeserverProcess, free_port, new_user, query, running_homeserver

CSP = ("sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf;"
       " style-src 'unsafe-inline'; media-src 'self'; object-src 'self';")
AUTHED = "/_matrix/client/v1/media"


@pytest.fixture(scope="module")
def server(db_dsn):
    with running_homeserver(db_dsn, allow_guest_access=True) as hs:
        yield hs


@pytest.fixture(scope="module")
def alice(server):
    return new_user(server, "alice")


@pytest.fixture(scope="module")
def guest(server):
    resp = Client(server).post("/register?kind=guest", {})
    assert resp.status_code == 200, resp.text
    return Client(server, resp.json()["access_token"])


@pytest.fixture(scope="module")
def png(alice):
    data = png_bytes()
    return uploaded_id(alice, data, "image/png", "picture.png"), data


@pytest.fixture(scope="module")
def blob(alice):
    """Two megabytes of random bytes, for ranges."""
    data = os.urandom(2 * 1024 * 1024)
    return uploaded_id(alice, data, "application/octet-stream", "blob.bin"), data


def raw_get(server, path: str, token: str | None = None) -> tuple[int, dict, bytes]:
    """GET with the path sent exactly as written (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        if token:
            conn.putheader("Authorization", f"Bearer {token}")
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def assert_safe_headers(resp):
    assert resp.headers["Content-Security-Policy"] == CSP
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cross-Origin-Resource-Policy"] == "cross-origin"


# --- headers ---

def test_png_download_carries_every_safety_header(alice, png):
    media_id, data = png
    resp = download(alice, media_id)
    assert resp.status_code == 200
    assert resp.content == data
    assert_safe_headers(resp)
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.headers["Content-Disposition"] == "inline; filename=picture.png"
    assert resp.headers["Cache-Control"] == "public,max-age=86400,s-maxage=0,proxy-revalidate"
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["Content-Length"] == str(len(data))
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("media_type, content_type, disposition", [
    ("text/html", "text/html; charset=UTF-8", "attachment"),
    ("image/svg+xml", "image/svg+xml; charset=UTF-8", "attachment"),
    ("application/javascript", "application/javascript", "attachment"),
    ("text/plain", "text/plain; charset=UTF-8", "inline"),
    ("text/plain; charset=UTF-16", "text/plain; charset=UTF-16", "inline"),
    ("video/mp4", "video/mp4", "inline"),
    ("application/pdf", "application/pdf", "attachment"),
])
def test_only_safe_types_are_inline(alice, media_type, content_type, disposition):
    resp = download(alice, uploaded_id(alice, b"<script>alert(1)</script>", media_type, "page.html"))
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == content_type
    assert resp.headers["Content-Disposition"] == f"{disposition}; filename=page.html"
    assert_safe_headers(resp)


def test_file_name_in_the_path_overrides_the_uploaded_one(alice, png):
    resp = alice.get(f"{AUTHED}/download/test.local/{png[0]}/other%20name%20%E2%98%83.png")
    assert resp.status_code == 200
    assert resp.headers["Content-Disposition"] == "inline; filename*=utf-8''other%20name%20%E2%98%83.png"


@pytest.mark.parametrize("name, header", [
    ('a";b.txt', "attachment; filename*=utf-8''a%22%3Bb.txt"),
    ("line\r\nX-Evil: 1", "attachment; filename*=utf-8''line%0D%0AX-Evil%3A%201"),
    ("../../etc/passwd", "attachment; filename*=utf-8''..%2F..%2Fetc%2Fpasswd"),
    ("plain.bin", "attachment; filename=plain.bin"),
])
def test_file_names_cannot_break_out_of_content_disposition(name, header):
    assert content_disposition("application/octet-stream", name) == header


def test_media_without_a_name_has_a_bare_disposition(alice):
    resp = download(alice, uploaded_id(alice, b"anon", "image/gif"))
    assert resp.headers["Content-Disposition"] == "inline"


def test_error_responses_carry_the_safety_headers_too(alice):
    resp = download(alice, "NoSuchMediaNoSuchMediaNo")
    assert_error(resp, 404, "M_NOT_FOUND")
    assert_safe_headers(resp)


def test_head_answers_headers_without_the_body(server, alice, png):
    media_id, data = png
    resp = requests.head(server.url(f"{AUTHED}/download/test.local/{media_id}"),
                         headers={"Authorization": f"Bearer {alice.access_token}"}, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Length"] == str(len(data))
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.content == b""
    assert_safe_headers(resp)


# --- ranges ---

@pytest.mark.parametrize("header, first, last", [
    ("bytes=0-9", 0, 9), ("bytes=1000-1999999", 1000, 1999999), ("bytes=2097000-", 2097000, 2097151),
    ("bytes=-100", 2097052, 2097151), ("bytes=5-99999999", 5, 2097151), ("bytes=-99999999", 0, 2097151),
])
def test_single_range_is_206_with_content_range(alice, blob, header, first, last):
    media_id, data = blob
    resp = download(alice, media_id, headers={"Range": header})
    assert resp.status_code == 206, resp.text
    assert resp.headers["Content-Range"] == f"bytes {first}-{last}/{len(data)}"
    assert resp.headers["Content-Length"] == str(last - first + 1)
    assert resp.content == data[first:last + 1]
    assert_safe_headers(resp)


@pytest.mark.parametrize("header", ["bytes=5-3", "bytes=0-1,5-9", "items=0-5", "bytes=-", "bytes=abc"])
def test_ranges_we_do_not_take_get_the_whole_file(alice, blob, header):
    media_id, data = blob
    resp = download(alice, media_id, headers={"Range": header})
    assert resp.status_code == 200
    assert "Content-Range" not in resp.headers
    assert resp.content == data


@pytest.mark.parametrize("header", ["bytes=2097152-", "bytes=99999999-100000000", "bytes=-0"])
def test_unsatisfiable_range_is_416(alice, blob, header):
    resp = download(alice, blob[0], headers={"Range": header})
    assert resp.status_code == 416
    assert resp.headers["Content-Range"] == f"bytes */{len(blob[1])}"
    assert_safe_headers(resp)


def test_any_range_of_an_empty_file_is_unsatisfiable():
    for header in ("bytes=0-", "bytes=-1"):
        with pytest.raises(MatrixError) as e:
            parse_range(header, 0)
        assert e.value.status == 416


# --- which media a request may see ---

def test_legacy_download_refuses_media_uploaded_since_the_freeze(server, png):
    media_id, _ = png
    for prefix in ("/_matrix/media/v3", "/_matrix/media/r0", "/_matrix/media/v1"):
        resp = Client(server).get(f"{prefix}/download/test.local/{media_id}")
        assert_error(resp, 404, "M_NOT_FOUND")
        assert_safe_headers(resp)
    assert_error(Client(server).get(f"/_matrix/media/v3/thumbnail/test.local/{media_id}",
                                    params={"width": 32, "height": 32}), 404, "M_NOT_FOUND")


def test_legacy_download_serves_media_from_before_the_freeze_without_a_token(server, alice, db_dsn):
    data = jpeg_bytes()
    media_id = uploaded_id(alice, data, "image/jpeg", "old.jpg")
    query(db_dsn, "UPDATE local_media SET authenticated = FALSE WHERE media_id = %s", (media_id,))
    for prefix in ("/_matrix/media/v3", "/_matrix/media/r0"):
        resp = Client(server).get(f"{prefix}/download/test.local/{media_id}")
        assert resp.status_code == 200
        assert resp.content == data
        assert resp.headers["Content-Disposition"] == "inline; filename=old.jpg"
        assert_safe_headers(resp)
    resp = Client(server).get(f"/_matrix/media/v3/download/test.local/{media_id}/renamed.jpg")
    assert resp.headers["Content-Disposition"] == "inline; filename=renamed.jpg"


def test_legacy_endpoints_serve_all_media_when_the_freeze_is_off(db_dsn):
    with running_homeserver(db_dsn, enable_authenticated_media=False) as other:
        client = new_user(other)
        media_id = uploaded_id(client, b"unfrozen", "text/plain")
        assert query(db_dsn, "SELECT authenticated FROM local_media WHERE media_id = %s", (media_id,)) == [(False,)]
        assert Client(other).get(f"/_matrix/media/v3/download/test.local/{media_id}").content == b"unfrozen"


def test_remote_media_is_404_until_federation(alice):
    for server_name in ("matrix.org", "example.com:8448", "[::1]:8448"):
        assert_error(download(alice, "SomeRemoteMediaIdSomeRem", server_name), 404, "M_NOT_FOUND")


def test_quarantined_media_is_404(alice, db_dsn):
    media_id = uploaded_id(alice, b"bad stuff", "text/plain")
    query(db_dsn, "UPDATE local_media SET quarantined_by = %s WHERE media_id = %s", (alice.user_id, media_id))
    assert_error(download(alice, media_id), 404, "M_NOT_FOUND")


def test_media_whose_file_vanished_is_404_not_500(alice, db_dsn):
    media_id = uploaded_id(alice, b"soon gone", "text/plain")
    query(db_dsn, "UPDATE local_media SET sha256 = %s WHERE media_id = %s", ("00" * 32, media_id))
    assert_error(download(alice, media_id), 404, "M_NOT_FOUND")


def test_download_records_access_at_most_every_few_minutes(alice, db_dsn):
    media_id = uploaded_id(alice, b"accessed", "text/plain")

    def last_access():
        return query(db_dsn, "SELECT last_access_ts FROM local_media WHERE media_id = %s", (media_id,))[0][0]
    recent = int(time.time() * 1000) - 60_000
    query(db_dsn, "UPDATE local_media SET last_access_ts = %s WHERE media_id = %s", (recent, media_id))
    download(alice, media_id)
    assert last_access() == recent
    query(db_dsn, "UPDATE local_media SET last_access_ts = 1000 WHERE media_id = %s", (media_id,))
    before = int(time.time() * 1000)
    download(alice, media_id)
    assert before <= last_access() <= int(time.time() * 1000)


# --- path traversal: no parameter ever names a file ---

TRAVERSALS = ["..", "%2E%2E", "..%2F..%2F..%2Fetc%2Fpasswd", "%2F..%2F", "....%2F%2F", "....//", "../content",
              "%2Fetc%2Fpasswd", "%00", "a%00b"]


@pytest.mark.parametrize("bad", TRAVERSALS)
def test_traversal_in_server_name_is_a_clean_404(server, alice, png, bad):
    for path in (f"{AUTHED}/download/{bad}/{png[0]}", f"{AUTHED}/thumbnail/{bad}/{png[0]}?width=32&height=32",
                 f"/_matrix/media/v3/download/{bad}/{png[0]}"):
        status, headers, body = raw_get(server, path, alice.access_token)
        assert status in (400, 404), (path, status, body)
        assert b"root:" not in body and headers["content-type"] == "application/json"


@pytest.mark.parametrize("bad", TRAVERSALS)
def test_traversal_in_media_id_is_a_clean_404(server, alice, bad):
    for path in (f"{AUTHED}/download/test.local/{bad}", f"{AUTHED}/thumbnail/test.local/{bad}?width=32&height=32",
                 f"/_matrix/media/r0/download/test.local/{bad}", f"{AUTHED}/download/test.local/{bad}/x.png"):
        status, headers, body = raw_get(server, path, alice.access_token)
        assert status in (400, 404), (path, status, body)
        assert b"root:" not in body and headers["content-type"] == "application/json"


@pytest.mark.parametrize("bad", TRAVERSALS)
def test_traversal_in_file_name_only_names_the_download(server, alice, png, bad):
    media_id, data = png
    status, headers, body = raw_get(server, f"{AUTHED}/download/test.local/{media_id}/{bad}", alice.access_token)
    if status == 200:  # the name is only a Content-Disposition parameter, encoded
        assert body == data
        assert headers["content-disposition"].startswith("inline")
        assert "/" not in headers["content-disposition"].split("filename", 1)[-1]
    else:  # "....//" and "../content" are extra path segments: no route
        assert status == 404 and headers["content-type"] == "application/json", (status, body)


@pytest.mark.parametrize("bad", TRAVERSALS)
def test_traversal_in_async_upload_ids_is_a_clean_404(server, alice, bad):
    for path in (f"/_matrix/media/v3/upload/{bad}/AAAAAAAAAAAAAAAAAAAAAAAA",
                 f"/_matrix/media/v3/upload/test.local/{bad}"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            conn.request("PUT", path, body=b"payload", headers={"Authorization": f"Bearer {alice.access_token}"})
            resp = conn.getresponse()
            assert resp.status in (400, 404), (path, resp.status)
            assert resp.getheader("Content-Type") == "application/json"
            resp.read()
        finally:
            conn.close()


# --- thumbnails: the resource's parameters and answers ---

@pytest.mark.parametrize("params, status, errcode", [
    ({"height": 32}, 400, "M_MISSING_PARAM"),
    ({"width": 32}, 400, "M_MISSING_PARAM"),
    ({"width": "abc", "height": 32}, 400, "M_INVALID_PARAM"),
    ({"width": 0, "height": 32}, 400, "M_INVALID_PARAM"),
    ({"width": 32, "height": -3}, 400, "M_INVALID_PARAM"),
    ({"width": "3.5", "height": 32}, 400, "M_INVALID_PARAM"),
    ({"width": 32, "height": 32, "method": "stretch"}, 400, "M_INVALID_PARAM"),
    ({"width": 32, "height": 32, "animated": "maybe"}, 400, "M_INVALID_PARAM"),
    ({"width": 32, "height": 32, "timeout_ms": "-5"}, 400, "M_INVALID_PARAM"),
])
def test_bad_thumbnail_parameters_are_400(alice, png, params, status, errcode):
    resp = alice.get(f"{AUTHED}/thumbnail/test.local/{png[0]}", params=params)
    assert_error(resp, status, errcode)
    assert_safe_headers(resp)


def test_thumbnail_of_unknown_or_remote_media_is_404(alice):
    for server_name in ("test.local", "matrix.org"):
        resp = alice.get(f"{AUTHED}/thumbnail/{server_name}/NoSuchMediaNoSuchMediaNo",
                         params={"width": 32, "height": 32})
        assert_error(resp, 404, "M_NOT_FOUND")


# --- who may call what ---

@pytest.mark.parametrize("path", [f"{AUTHED}/download/test.local/{'A' * 24}",
                                  f"{AUTHED}/download/test.local/{'A' * 24}/name.png",
                                  f"{AUTHED}/thumbnail/test.local/{'A' * 24}?width=32&height=32",
                                  f"{AUTHED}/config", f"{AUTHED}/preview_url?url=https://example.org",
                                  "/_matrix/media/v3/config", "/_matrix/media/r0/config"])
def test_authenticated_endpoints_need_a_token(server, path):
    assert_error(Client(server).get(path), 401, "M_MISSING_TOKEN")
    assert_error(Client(server, "not-a-token").get(path), 401, "M_UNKNOWN_TOKEN")


def test_guests_may_download_and_thumbnail_but_not_read_config(guest, png):
    media_id, data = png
    assert download(guest, media_id).content == data
    resp = guest.get(f"{AUTHED}/thumbnail/test.local/{media_id}", params={"width": 0, "height": 1})
    assert_error(resp, 400, "M_INVALID_PARAM")  # past authentication
    assert_error(guest.get(f"{AUTHED}/config"), 403, "M_GUEST_ACCESS_FORBIDDEN")


def test_preview_url_is_disabled_as_synapse_disables_it(server, alice):
    assert_error(alice.get(f"{AUTHED}/preview_url", params={"url": "https://example.org"}), 404, "M_UNRECOGNIZED")
    for prefix in ("/_matrix/media/v3", "/_matrix/media/r0"):
        assert_error(Client(server).get(f"{prefix}/preview_url", params={"url": "https://example.org"}),
                     404, "M_UNRECOGNIZED")


def test_a_media_listener_serves_the_media_api_and_nothing_else(db_dsn):
    server = HomeserverProcess(db_dsn)
    media_port = free_port()
    server.config["listeners"].append({"port": media_port, "type": "http", "bind_addresses": ["127.0.0.1"],
                                       "resources": [{"names": ["media"]}]})
    try:
        server.start()
        client = new_user(server)
        media_id = uploaded_id(client, b"via media listener", "text/plain")
        base = f"http://127.0.0.1:{media_port}"
        headers = {"Authorization": f"Bearer {client.access_token}"}
        resp = requests.get(f"{base}{AUTHED}/download/test.local/{media_id}", headers=headers, timeout=10)
        assert resp.content == b"via media listener"
        resp = requests.post(f"{base}/_matrix/media/v3/upload", data=b"x", headers=headers, timeout=10)
        assert resp.status_code == 200
        resp = requests.get(f"{base}/_matrix/client/v3/account/whoami", headers=headers, timeout=10)
        assert_error(resp, 404, "M_UNRECOGNIZED")
    finally:
        server.stop()


def test_media_is_not_served_when_the_media_repo_is_disabled(db_dsn):
    with running_homeserver(db_dsn, enable_media_repo=False) as other:
        client = new_user(other)
        assert_error(client.post("/_matrix/media/v3/upload", data=b"x"), 404, "M_UNRECOGNIZED")
        assert_error(client.get(f"{AUTHED}/config"), 404, "M_UNRECOGNIZED")


def thumbnail(client, media_id, prefix=AUTHED, **params):
    return client.get(f"{prefix}/thumbnail/test.local/{media_id}", params={"width": 32, "height": 32, **params})


@pytest.mark.parametrize("method", ["crop", "scale"])
def test_thumbnail_of_a_png_is_an_inline_image_with_the_safety_headers(alice, png, method):
    resp = thumbnail(alice, png[0], method=method)
    assert resp.status_code == 200, resp.text
    ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}[resp.headers["Content-Type"]]
    assert resp.headers["Content-Disposition"] == f"inline; filename=thumbnail.{ext}"
    assert resp.headers["Content-Length"] == str(len(resp.content))
    assert_safe_headers(resp)
    with Image.open(io.BytesIO(resp.content)) as image:
        width, height = image.size
    # crop gives the requested size; scale keeps the 4:3 aspect, at least as large as asked.
    assert (width, height) == ((32, 32) if method == "crop" else (width, width * 3 // 4))
    assert 32 <= width <= 800 and height >= 24


def test_thumbnail_head_answers_headers_only(server, alice, png):
    resp = requests.head(server.url(f"{AUTHED}/thumbnail/test.local/{png[0]}?width=32&height=32"),
                         headers={"Authorization": f"Bearer {alice.access_token}"}, timeout=10)
    assert resp.status_code == 200
    assert int(resp.headers["Content-Length"]) > 0 and resp.content == b""


def test_legacy_thumbnail_serves_media_from_before_the_freeze(server, alice, db_dsn):
    media_id = uploaded_id(alice, jpeg_bytes(), "image/jpeg")
    query(db_dsn, "UPDATE local_media SET authenticated = FALSE WHERE media_id = %s", (media_id,))
    resp = thumbnail(Client(server), media_id, prefix="/_matrix/media/v3")
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Disposition"].startswith("inline; filename=thumbnail.")
    assert_safe_headers(resp)


def test_thumbnail_of_a_file_that_is_no_image_is_a_clean_400(alice):
    resp = thumbnail(alice, uploaded_id(alice, b"just text", "text/plain"))
    assert_error(resp, 400, "M_UNKNOWN")  # the spec's example for content it cannot thumbnail
    assert_safe_headers(resp)
