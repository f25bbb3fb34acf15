"""Remote media both ways against a real Synapse on loopback (issue 11): our users read Synapse's
media (fetched over /_matrix/federation/v1/media/download, cached, thumbnailed here), Synapse's
users read ours (Synapse fetches it from us over the same endpoint), and the cache's retention and
purge. Origins that misbehave (unreachable, no federation media endpoint, redirects, garbage) are
played by small servers of the test's own.

Whether a download reached Synapse is read from Synapse's access log, which names every request
path it served.
"""

import concurrent.futures
import io
import os
import time
import uuid
from urllib.parse import unquote

import pytest
import requests
from PIL import Image

from hs.media.multipart import MultipartError, boundary_of, media_head, media_tail, read_media_part
from hs.worker_routes import serves
from tests.federation_fixture import FederatingHomeserver, SyncWatcher, join, ok, register
from tests.harness import Client, assert_error, free_port, q, query, wait_for
from tests.json_http import QuietHandler, start_server

AUTHED = "/_matrix/client/v1/media"
FED_DOWNLOAD = "/_matrix/federation/v1/media/download/"


def png(width: int = 320, height: int = 240) -> bytes:
    """A PNG no other test uploads (random pixels), so content addressing shares nothing."""
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def upload(client: Client, data: bytes, name: str = "cat.png", content_type: str = "image/png") -> str:
    resp = client.post("/_matrix/media/v3/upload", params={"filename": name}, data=data,
                       headers={"Content-Type": content_type})
    mxc = ok(resp)["content_uri"]
    assert mxc.startswith(f"mxc://{client.server.server_name}/")
    return mxc.rsplit("/", 1)[1]


def download(client: Client, server_name: str, media_id: str, **params) -> requests.Response:
    return client.get(f"{AUTHED}/download/{server_name}/{media_id}", params=params)


def thumbnail(client: Client, server_name: str, media_id: str, width: int = 32, height: int = 32,
              method: str = "scale") -> requests.Response:
    return client.get(f"{AUTHED}/thumbnail/{server_name}/{media_id}",
                      params={"width": width, "height": height, "method": method})


def synapse_fetches(synapse, media_id: str) -> int:
    """How many times Synapse served its federation download of ``media_id``."""
    with open(synapse.log_path, errors="replace") as f:
        return sum(1 for line in f if FED_DOWNLOAD + media_id in line and "Processed request" in line)


def cached_rows(db_dsn: str, origin: str, media_id: str) -> list:
    return query(db_dsn, "SELECT media_length, sha256, media_type, upload_name FROM remote_media"
                         " WHERE media_origin = %s AND media_id = %s", (origin, media_id))


@pytest.fixture(scope="module")
def alice(ours):
    return register(ours, "media")


@pytest.fixture(scope="module")
def sam(synapse):
    return register(synapse, "media")


# --- Synapse's media, read by our users ---

def test_synapse_media_is_downloaded_cached_and_thumbnailed_here(ours, synapse, alice, sam, db_dsn):
    data = png()
    media_id = upload(sam, data, "cat.png")
    resp = download(alice, synapse.server_name, media_id)
    assert resp.status_code == 200, resp.text
    assert resp.content == data
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.headers["Content-Disposition"] == "inline; filename=cat.png"
    assert resp.headers["Content-Security-Policy"].startswith("sandbox")
    [(length, sha256, media_type, name)] = cached_rows(db_dsn, synapse.server_name, media_id)
    assert (length, media_type, name) == (len(data), "image/png", "cat.png")
    assert synapse_fetches(synapse, media_id) == 1

    # The file name of the request wins, as for local media.
    named = alice.get(f"{AUTHED}/download/{synapse.server_name}/{media_id}/other.png")
    assert named.content == data and named.headers["Content-Disposition"] == "inline; filename=other.png"

    thumb = thumbnail(alice, synapse.server_name, media_id, 64, 64, "crop")
    assert thumb.status_code == 200, thumb.text
    assert thumb.headers["Content-Type"] in ("image/png", "image/jpeg")
    image = Image.open(io.BytesIO(thumb.content))
    assert image.size[0] <= 320 and image.size[0] >= 64
    # Everything came from our cache: Synapse was asked once.
    assert synapse_fetches(synapse, media_id) == 1
    assert query(db_dsn, "SELECT count(*) FROM media_thumbnails WHERE sha256 = %s", (sha256,))[0][0] > 0


def test_concurrent_downloads_of_one_remote_media_fetch_it_once(synapse, alice, sam):
    data = png(200, 200)
    media_id = upload(sam, data)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: download(alice, synapse.server_name, media_id), range(6)))
    assert [r.status_code for r in answers] == [200] * 6
    assert all(r.content == data for r in answers)
    assert synapse_fetches(synapse, media_id) == 1


def test_thumbnail_first_fetches_the_media_too(synapse, alice, sam):
    media_id = upload(sam, png(400, 300))
    thumb = thumbnail(alice, synapse.server_name, media_id, 32, 32)
    assert thumb.status_code == 200, thumb.text
    assert Image.open(io.BytesIO(thumb.content)).size[0] <= 400
    assert synapse_fetches(synapse, media_id) == 1


def test_unknown_synapse_media_is_404(synapse, alice):
    assert_error(download(alice, synapse.server_name, "NoSuchMediaAtAllHereXyz"), 404, "M_NOT_FOUND")
    assert_error(thumbnail(alice, synapse.server_name, "NoSuchMediaAtAllHereXyz"), 404, "M_NOT_FOUND")


def test_legacy_endpoints_do_not_fetch_remote_media_after_the_freeze(synapse, alice, sam):
    # enable_authenticated_media is on (the default): as Synapse, the unauthenticated endpoints
    # serve no remote media fetched since the freeze and fetch none.
    media_id = upload(sam, png(50, 50))
    resp = Client(alice.server).get(f"/_matrix/media/v3/download/{synapse.server_name}/{media_id}")
    assert_error(resp, 404, "M_NOT_FOUND")
    assert synapse_fetches(synapse, media_id) == 0


# --- our media, read by Synapse's users ---

def test_synapse_users_download_and_thumbnail_our_media(ours, synapse, alice, sam):
    data = png(300, 200)
    media_id = upload(alice, data, "ours.png")
    resp = sam.get(f"{AUTHED}/download/{ours.server_name}/{media_id}")
    assert resp.status_code == 200, resp.text
    assert resp.content == data
    assert resp.headers["Content-Type"] == "image/png"
    assert "ours.png" in resp.headers.get("Content-Disposition", "")
    thumb = sam.get(f"{AUTHED}/thumbnail/{ours.server_name}/{media_id}", params={"width": 32, "height": 32})
    assert thumb.status_code == 200, thumb.text
    assert thumb.headers["Content-Type"].startswith("image/")
    Image.open(io.BytesIO(thumb.content)).verify()
    assert sam.get(f"{AUTHED}/download/{ours.server_name}/NoSuchMediaNoSuchMediaNo").status_code == 404


def test_our_federation_media_endpoints_need_a_signed_request(ours, alice):
    media_id = upload(alice, b"plain", "a.txt", "text/plain")
    for path in (FED_DOWNLOAD + media_id, f"/_matrix/federation/v1/media/thumbnail/{media_id}?width=8&height=8"):
        resp = requests.get(ours.fed_url + path, verify=ours.ca.cert_path, timeout=10)
        assert_error(resp, 401, "M_UNAUTHORIZED")


def test_our_federation_download_is_the_specs_multipart_body(ours, alice, peer):
    data = png(100, 80)
    media_id = upload(alice, data, "été.png")
    resp = peer.request(ours, "GET", FED_DOWNLOAD + media_id)
    assert resp.status_code == 200, resp.text
    boundary = boundary_of(resp.headers["Content-Type"])
    assert boundary and int(resp.headers["Content-Length"]) == len(resp.content)
    part = read_media_part([resp.content], boundary)
    assert part.metadata == b"{}"
    assert part.headers["content-type"] == "image/png"
    assert part.headers["content-disposition"] == "inline; filename*=utf-8''%C3%A9t%C3%A9.png"
    assert b"".join(part.chunks) == data

    thumb = peer.request(ours, "GET", f"/_matrix/federation/v1/media/thumbnail/{media_id}",
                         params={"width": 32, "height": 32, "method": "crop"})
    assert thumb.status_code == 200, thumb.text
    part = read_media_part([thumb.content], boundary_of(thumb.headers["Content-Type"]))
    assert part.headers["content-type"] in ("image/png", "image/jpeg")
    assert Image.open(io.BytesIO(b"".join(part.chunks))).size == (32, 32)

    assert_error(peer.request(ours, "GET", FED_DOWNLOAD + "NoSuchMediaNoSuchMediaNo"), 404, "M_NOT_FOUND")
    assert_error(peer.request(ours, "GET", f"/_matrix/federation/v1/media/thumbnail/{media_id}"), 400,
                 "M_MISSING_PARAM")


def test_federation_media_goes_where_the_media_repository_is():
    path = FED_DOWNLOAD + "abc"
    assert serves("media_repository", "GET", path)
    assert not serves("federation_reader", "GET", path)
    assert serves("federation_reader", "GET", "/_matrix/federation/v1/event/$x")


# --- origins that misbehave ---

def test_an_unreachable_server_is_404_not_5xx(alice):
    resp = download(alice, f"127.0.0.1:{free_port()}", "SomeMediaSomeMediaSomeMe")
    assert_error(resp, 404, "M_NOT_FOUND")
    assert_error(thumbnail(alice, f"127.0.0.1:{free_port()}", "SomeMediaSomeMediaSomeMe"), 404, "M_NOT_FOUND")


class FakeOrigin:
    """A remote server the test plays over TLS (under the test CA): `routes` maps a request path
    (percent-decoded) to (status, headers, body); what it was asked is in `requests`."""

    def __init__(self, ca, tls=True):
        self.requests: list[str] = []
        self.routes: dict[str, tuple] = {}
        origin = self

        class Handler(QuietHandler):
            def do_GET(self):
                origin.requests.append(self.path)
                status, headers, body = origin.routes.get(unquote(self.path.split("?", 1)[0]),
                                                          (404, {"Content-Type": "application/json"},
                                                           b'{"errcode":"M_UNRECOGNIZED","error":"no"}'))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.port = free_port()
        self.name = f"127.0.0.1:{self.port}"
        tls_files = ca.issue(ca.dir, f"origin{self.port}") if tls else None
        self.server = start_server(Handler, self.port, tls=tls_files)

    def multipart(self, path: str, *, media_type=None, disposition=None, data=b"", location=None) -> None:
        boundary = uuid.uuid4().hex
        body = media_head(boundary, media_type, disposition, location) + data + media_tail(boundary)
        self.routes[path] = (200, {"Content-Type": f"multipart/mixed; boundary={boundary}"}, body)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def origin(test_ca):
    server = FakeOrigin(test_ca)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def plain_http(test_ca):
    server = FakeOrigin(test_ca, tls=False)
    try:
        yield server
    finally:
        server.stop()


def test_a_location_in_the_multipart_answer_is_followed_once(alice, origin, plain_http):
    plain_http.routes["/files/abc"] = (200, {"Content-Type": "text/plain",
                                             "Content-Disposition": "attachment; filename=notes.txt"}, b"redirected!")
    origin.multipart(FED_DOWNLOAD + "redirected", location=f"http://{plain_http.name}/files/abc")
    resp = download(alice, origin.name, "redirected")
    assert resp.status_code == 200, resp.text
    assert resp.content == b"redirected!"
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert "notes.txt" in resp.headers["Content-Disposition"]
    assert plain_http.requests == ["/files/abc"]

    # A redirect target that redirects again is not followed.
    plain_http.routes["/files/loop"] = (302, {"Location": f"http://{plain_http.name}/files/abc"}, b"")
    origin.multipart(FED_DOWNLOAD + "twice", location=f"http://{plain_http.name}/files/loop")
    assert_error(download(alice, origin.name, "twice"), 404, "M_NOT_FOUND")
    origin.multipart(FED_DOWNLOAD + "badscheme", location="file:///etc/passwd")
    assert_error(download(alice, origin.name, "badscheme"), 404, "M_NOT_FOUND")


def test_an_origin_without_the_federation_endpoint_is_asked_on_the_legacy_one(alice, origin):
    origin.routes[f"/_matrix/media/v3/download/{origin.name}/oldmedia"] = (
        200, {"Content-Type": "text/plain", "Content-Disposition": "inline; filename=old.txt"}, b"old server")
    resp = download(alice, origin.name, "oldmedia")
    assert resp.status_code == 200, resp.text
    assert resp.content == b"old server"
    assert "old.txt" in resp.headers["Content-Disposition"]
    legacy = [r for r in origin.requests if r.startswith("/_matrix/media/v3/download/")]
    assert len(legacy) == 1 and "allow_remote=false" in legacy[0]
    # A plain 404 M_NOT_FOUND on the federation endpoint is an answer: no fallback.
    origin.routes[FED_DOWNLOAD + "gone"] = (404, {"Content-Type": "application/json"},
                                            b'{"errcode":"M_NOT_FOUND","error":"gone"}')
    assert_error(download(alice, origin.name, "gone"), 404, "M_NOT_FOUND")
    assert not any(r.startswith("/_matrix/media/v3/download/") and "/gone" in r for r in origin.requests)


def test_garbage_and_truncated_answers_are_404(alice, origin, db_dsn):
    origin.routes[FED_DOWNLOAD + "html"] = (200, {"Content-Type": "text/html"}, b"<html>hello</html>")
    assert_error(download(alice, origin.name, "html"), 404, "M_NOT_FOUND")
    boundary = "b0undary"
    origin.routes[FED_DOWNLOAD + "cut"] = (200, {"Content-Type": f"multipart/mixed; boundary={boundary}"},
                                           media_head(boundary, "text/plain") + b"no end")
    assert_error(download(alice, origin.name, "cut"), 404, "M_NOT_FOUND")
    origin.routes[FED_DOWNLOAD + "later"] = (504, {"Content-Type": "application/json"},
                                             b'{"errcode":"M_NOT_YET_UPLOADED","error":"wait"}')
    assert_error(download(alice, origin.name, "later"), 504, "M_NOT_YET_UPLOADED")
    assert query(db_dsn, "SELECT count(*) FROM remote_media WHERE media_origin = %s", (origin.name,)) == [(0,)]


def test_multipart_parser_round_trip_and_errors():
    data = os.urandom(200_000)
    boundary = "xyz"
    body = media_head(boundary, "image/png", "inline; filename=a.png") + data + media_tail(boundary)
    for size in (1, 13, 4096, len(body)):
        part = read_media_part([body[i:i + size] for i in range(0, len(body), size)], boundary)
        assert part.metadata == b"{}" and part.headers["content-type"] == "image/png"
        assert b"".join(part.chunks) == data
    assert boundary_of('multipart/mixed; boundary="q r"') == "q r"
    assert boundary_of("application/json") is None
    with pytest.raises(MultipartError):
        read_media_part([b"--xyz\r\nContent-Type: text/plain\r\n\r\nx\r\n--xyz--\r\n"], boundary)


# --- the cache's lifetime ---

@pytest.fixture(scope="module")
def short_lived(db_dsn_b, test_ca):
    """Ours with remote media kept 3 s after its last read, and uploads of at most 100 kB."""
    server = FederatingHomeserver(db_dsn_b, test_ca, media_retention={"remote_media_lifetime": "3s"},
                                  max_upload_size="100K")
    try:
        yield server.start()
    finally:
        server.stop()


def test_retention_drops_unused_remote_media_and_a_later_download_fetches_again(short_lived, synapse, sam,
                                                                                 db_dsn_b):
    reader = register(short_lived, "ret")
    data = png(60, 60)
    media_id = upload(sam, data)
    assert download(reader, synapse.server_name, media_id).content == data
    [(_, sha256, _, _)] = cached_rows(db_dsn_b, synapse.server_name, media_id)
    content = os.path.join(short_lived.dir, "media_store", "content", sha256[:2], sha256[2:4], sha256[4:])
    assert os.path.exists(content)
    wait_for(lambda: not cached_rows(db_dsn_b, synapse.server_name, media_id), "retention of the remote media")
    assert not os.path.exists(content)
    assert synapse_fetches(synapse, media_id) == 1
    assert download(reader, synapse.server_name, media_id).content == data
    assert synapse_fetches(synapse, media_id) == 2


def test_remote_media_above_max_upload_size_is_502_too_large(short_lived, synapse, sam, db_dsn_b):
    reader = register(short_lived, "big")
    media_id = upload(sam, os.urandom(150_000), "big.bin", "application/octet-stream")
    assert_error(download(reader, synapse.server_name, media_id), 502, "M_TOO_LARGE")
    assert cached_rows(db_dsn_b, synapse.server_name, media_id) == []


def test_purge_media_cache_deletes_remote_media_unused_since(ours, synapse, alice, sam, db_dsn):
    admin = register(ours, "admin")
    query(db_dsn, "UPDATE users SET admin = TRUE WHERE user_id = %s", (admin.user_id,))
    media_id = upload(sam, png(40, 40))
    assert download(alice, synapse.server_name, media_id).status_code == 200
    assert cached_rows(db_dsn, synapse.server_name, media_id)
    assert_error(admin.post("/_synapse/admin/v1/purge_media_cache"), 400, "M_MISSING_PARAM")
    kept = ok(admin.post("/_synapse/admin/v1/purge_media_cache", params={"before_ts": 1}))
    assert kept == {"deleted": 0}
    before = int(time.time() * 1000) + 1000
    deleted = ok(admin.post("/_synapse/admin/v1/purge_media_cache", params={"before_ts": before}))["deleted"]
    assert deleted >= 1
    assert cached_rows(db_dsn, synapse.server_name, media_id) == []
    assert_error(alice.post("/_synapse/admin/v1/purge_media_cache", params={"before_ts": before}), 403,
                 "M_FORBIDDEN")


def test_remote_media_in_a_shared_room_shows_on_both_sides(ours, synapse, alice, sam):
    """The user-visible path: an m.image sent on Synapse arrives here and its mxc:// URL loads."""
    room_id = ok(sam.post("/createRoom", {"preset": "public_chat"}))["room_id"]
    join(alice, room_id, via=[synapse.server_name])
    data = png(120, 90)
    media_id = upload(sam, data, "photo.png")
    mxc = f"mxc://{synapse.server_name}/{media_id}"
    ok(sam.put(f"/rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}",
               {"msgtype": "m.image", "body": "photo.png", "url": mxc}))
    event = SyncWatcher(alice).wait_for_event(room_id, lambda e: e.get("content", {}).get("url") == mxc,
                                              "the m.image")
    server_name, remote_id = event["content"]["url"][len("mxc://"):].split("/", 1)
    assert download(alice, server_name, remote_id).content == data
