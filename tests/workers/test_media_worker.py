"""The media_repository worker behind a real HAProxy, the master running with
`enable_media_repo: false`: media goes through the proxy to the worker and back byte for byte,
the master itself answers no media path, a token is checked against PostgreSQL on every request
(logged out, or its row gone, it fails at once), and no path parameter reaches outside the store.

The master, the worker and HAProxy are shared by the module's tests and stopped by pid at its end
(tests/workers/synctl_cluster.py)."""

import http.client
import io
import itertools
import json
import os
import time
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image

from hs.media.filestore import MediaFileStore
from hs.storage.tokens import token_digest
from tests.harness import assert_error, query
from tests.workers.synctl_cluster import running_cluster, running_haproxy

AUTHED = "/_matrix/client/v1/media"
_names = itertools.count()


# Long enough for every other test to finish with its media, short enough to watch it go.
LIFETIME_S = 15


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return str(tmp_path_factory.mktemp("media_store"))


@pytest.fixture(scope="module")
def deployment(db_dsn, store):
    with running_cluster(database={"name": "psycopg2", "args": {"dsn": db_dsn, "cp_max": 5}},
                         enable_media_repo=False, media_store_path=store,
                         media_retention={"local_media_lifetime": f"{LIFETIME_S}s"}) as cluster:
        cluster.add_worker("media1", "apps.media_repository", resources=("client", "media"))
        started = cluster.run("-a", cluster.dir, "start", cluster.main)
        assert started.returncode == 0, started.stdout + started.stderr
        with running_haproxy(cluster) as base:
            yield cluster, base


def register(base: str) -> tuple[dict, str]:
    resp = requests.post(f"{base}/_matrix/client/v3/register", timeout=20,
                         json={"username": f"mw{next(_names)}", "password": "media worker pw",
                               "auth": {"type": "m.login.dummy"}})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}, resp.json()["access_token"]


def upload(base: str, auth: dict, data: bytes, content_type: str, name: str) -> tuple[str, str]:
    resp = requests.post(f"{base}/_matrix/media/v3/upload", params={"filename": name}, data=data,
                         headers={**auth, "Content-Type": content_type}, timeout=60)
    assert resp.status_code == 200, resp.text
    server_name, media_id = resp.json()["content_uri"][len("mxc://"):].split("/")
    return server_name, media_id


def raw_get(base: str, path: str, auth: dict) -> http.client.HTTPResponse:
    """GET with the path sent exactly as written: requests/urllib3 would resolve `..` segments
    before they ever reached HAProxy."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
    conn.request("GET", path, headers=auth)
    resp = conn.getresponse()
    resp.body = resp.read()
    conn.close()
    return resp


def test_the_master_answers_no_media_path_so_the_worker_serves_them_all(deployment):
    cluster, base = deployment
    auth, _ = register(base)
    for method, path in (("POST", "/_matrix/media/v3/upload"), ("GET", f"{AUTHED}/config"),
                         ("GET", "/_matrix/media/v3/config"), ("POST", "/_matrix/media/v1/create")):
        assert_error(requests.request(method, cluster.master_url + path, headers=auth, timeout=20),
                     404, "M_UNRECOGNIZED")
    resp = requests.get(f"{base}{AUTHED}/config", headers=auth, timeout=20)
    assert resp.status_code == 200, resp.text
    assert resp.json()["m.upload.size"] > 0


def test_upload_download_and_thumbnail_through_haproxy_are_byte_identical(deployment):
    _, base = deployment
    auth, _ = register(base)
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    server_name, media_id = upload(base, auth, data, "application/octet-stream", "blob.bin")
    got = requests.get(f"{base}{AUTHED}/download/{server_name}/{media_id}", headers=auth, timeout=60)
    assert got.status_code == 200, got.text
    assert (got.content, got.headers["Content-Type"]) == (data, "application/octet-stream")
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    # enable_authenticated_media (the default) freezes legacy downloads of new media on the worker too.
    legacy = requests.get(f"{base}/_matrix/media/v3/download/{server_name}/{media_id}", headers=auth, timeout=20)
    assert_error(legacy, 404, "M_NOT_FOUND")
    image = io.BytesIO()
    Image.new("RGB", (800, 600), (30, 160, 90)).save(image, "PNG")
    server_name, media_id = upload(base, auth, image.getvalue(), "image/png", "pic.png")
    thumb = requests.get(f"{base}{AUTHED}/thumbnail/{server_name}/{media_id}", headers=auth, timeout=60,
                         params={"width": 64, "height": 64, "method": "crop"})
    assert thumb.status_code == 200, thumb.text
    assert thumb.headers["Content-Type"].startswith("image/")
    # Nearest pregenerated size at least as large: the default thumbnail_sizes' 96x96 crop.
    assert Image.open(io.BytesIO(thumb.content)).size == (96, 96)


def test_async_upload_through_haproxy_is_pending_then_downloadable(deployment):
    _, base = deployment
    auth, _ = register(base)
    created = requests.post(f"{base}/_matrix/media/v1/create", headers=auth, timeout=20)
    assert created.status_code == 200, created.text
    server_name, media_id = created.json()["content_uri"][len("mxc://"):].split("/")
    pending = requests.get(f"{base}{AUTHED}/download/{server_name}/{media_id}", headers=auth,
                           params={"timeout_ms": 0}, timeout=20)
    assert_error(pending, 504, "M_NOT_YET_UPLOADED")
    put = requests.put(f"{base}/_matrix/media/v3/upload/{server_name}/{media_id}", data=b"later bytes",
                       headers={**auth, "Content-Type": "text/plain"}, timeout=20)
    assert (put.status_code, put.json()) == (200, {})
    got = requests.get(f"{base}{AUTHED}/download/{server_name}/{media_id}", headers=auth, timeout=20)
    assert (got.status_code, got.content) == (200, b"later bytes")
    again = requests.put(f"{base}/_matrix/media/v3/upload/{server_name}/{media_id}", data=b"other",
                         headers={**auth, "Content-Type": "text/plain"}, timeout=20)
    assert_error(again, 409, "M_CANNOT_OVERWRITE_MEDIA")


def test_a_token_logged_out_on_the_master_fails_on_the_media_worker_at_once(deployment):
    cluster, base = deployment
    auth, _ = register(base)
    assert requests.get(f"{base}{AUTHED}/config", headers=auth, timeout=20).status_code == 200
    logout = requests.post(f"{cluster.master_url}/_matrix/client/v3/logout", headers=auth, json={}, timeout=20)
    assert logout.status_code == 200, logout.text
    # No wait for replication: the very next request, through the proxy and straight to the worker.
    assert_error(requests.get(f"{base}{AUTHED}/config", headers=auth, timeout=20), 401, "M_UNKNOWN_TOKEN")
    assert_error(requests.get(f"{cluster.url('media1')}{AUTHED}/config", headers=auth, timeout=20),
                 401, "M_UNKNOWN_TOKEN")


def test_the_media_worker_reads_the_token_from_postgresql_on_every_request(deployment, db_dsn):
    # The row goes without the master knowing, so no replication message can tell the worker:
    # only a lookup per request (no cache) refuses the token on the next request.
    _, base = deployment
    auth, token = register(base)
    assert requests.get(f"{base}{AUTHED}/config", headers=auth, timeout=20).status_code == 200
    assert query(db_dsn, "DELETE FROM access_tokens WHERE token_hash = %s RETURNING id", (token_digest(token),))
    assert_error(requests.get(f"{base}{AUTHED}/config", headers=auth, timeout=20), 401, "M_UNKNOWN_TOKEN")


@pytest.mark.parametrize("template,errcode", [
    # Dot segments HAProxy passes on as sent: no route has that many segments.
    ("{p}/download/{s}/../../../../etc/passwd", "M_UNRECOGNIZED"),
    ("{p}/download/../../{m}", "M_NOT_FOUND"),
    # Encoded slashes and dots land inside one parameter, which never names a file.
    ("{p}/download/{s}/..%2F..%2F..%2Fhomeserver.yaml", "M_NOT_FOUND"),
    ("{p}/download/..%2F..%2Fetc/{m}", "M_NOT_FOUND"),
    ("{p}/download/%2E%2E/{m}", "M_NOT_FOUND"),
    ("{p}/thumbnail/{s}/..%2F..%2Fhomeserver.yaml?width=32&height=32", "M_NOT_FOUND"),
    ("{p}/thumbnail/..%2F..%2F/{m}?width=32&height=32", "M_NOT_FOUND"),
])
@pytest.mark.parametrize("prefix", [AUTHED, "/_matrix/media/v3"])
def test_a_path_traversal_through_haproxy_is_a_404_never_a_file(deployment, template, errcode, prefix):
    _, base = deployment
    auth, _ = register(base)
    server_name, media_id = upload(base, auth, b"the only file here", "text/plain", "x.txt")
    resp = raw_get(base, template.format(p=prefix, s=server_name, m=media_id), auth)
    assert (resp.status, resp.getheader("Content-Type")) == (404, "application/json"), resp.body
    assert json.loads(resp.body)["errcode"] == errcode, resp.body


def test_a_traversal_in_the_file_name_only_names_the_download(deployment):
    # The trailing file name is what the browser saves the bytes as; it never picks a file.
    _, base = deployment
    auth, _ = register(base)
    server_name, media_id = upload(base, auth, b"the only file here", "text/plain", "x.txt")
    resp = raw_get(base, f"{AUTHED}/download/{server_name}/{media_id}/..%2F..%2F..%2Fetc%2Fpasswd", auth)
    assert (resp.status, resp.body) == (200, b"the only file here")
    assert resp.getheader("Content-Disposition") == "inline; filename*=utf-8''..%2F..%2F..%2Fetc%2Fpasswd"


def test_retention_runs_on_the_media_worker_and_deletes_the_row_and_the_file(deployment, db_dsn, store):
    # The master (enable_media_repo: false) does not run the job, so only the worker can delete.
    _, base = deployment
    auth, _ = register(base)
    server_name, media_id = upload(base, auth, b"short-lived bytes", "text/plain", "old.txt")
    [(sha256,)] = query(db_dsn, "SELECT sha256 FROM local_media WHERE media_id = %s", (media_id,))
    path = MediaFileStore(store).content_path(sha256)
    assert os.path.isfile(path)
    deadline = time.monotonic() + LIFETIME_S * 3
    while query(db_dsn, "SELECT 1 FROM local_media WHERE media_id = %s", (media_id,)):
        assert time.monotonic() < deadline, "media_retention did not delete the media"
        time.sleep(0.5)
    assert not os.path.exists(path)
    gone = requests.get(f"{base}{AUTHED}/download/{server_name}/{media_id}", headers=auth, timeout=20)
    assert_error(gone, 404, "M_NOT_FOUND")
