"""Synapse's media admin API: media info, quarantine (by content), protection, per-user listing
and deletion, deletion by age, and the retention job; files really leave media_store_path."""

import os
import time
import uuid

import pytest

from tests.api.test_admin_tokens import shared_secret_register
from tests.api.test_media_thumbnails import photo, thumbnail
from tests.api.test_media_upload import content_files, download, uploaded_id
from tests.harness import Client, assert_error, new_user, q, query, running_homeserver

SERVER = "test.local"
V1 = "/_synapse/admin/v1"


@pytest.fixture(scope="module")
def admin(homeserver):
    return shared_secret_register(homeserver, f"root{uuid.uuid4().hex[:6]}", admin=True)


@pytest.fixture
def alice(homeserver):
    return new_user(homeserver, "media")


def media_path(media_id: str, server_name: str = SERVER) -> str:
    return f"{V1}/media/{server_name}/{media_id}"


def test_every_endpoint_needs_a_server_admin(homeserver, alice):
    media_id = uploaded_id(alice, b"mine")
    calls = [("GET", media_path(media_id)), ("DELETE", media_path(media_id)),
             ("POST", f"{V1}/media/quarantine/{SERVER}/{media_id}"),
             ("POST", f"{V1}/media/unquarantine/{SERVER}/{media_id}"),
             ("POST", f"{V1}/media/protect/{media_id}"), ("POST", f"{V1}/media/unprotect/{media_id}"),
             ("POST", f"{V1}/user/{q(alice.user_id)}/media/quarantine"),
             ("GET", f"{V1}/users/{q(alice.user_id)}/media"), ("DELETE", f"{V1}/users/{q(alice.user_id)}/media"),
             ("GET", f"/_synapse/admin/v2/users/{q(alice.user_id)}/media"),
             ("POST", f"{V1}/media/delete?before_ts=1"), ("POST", f"{V1}/purge_media_cache?before_ts=1")]
    for method, path in calls:
        assert_error(alice.request(method, path), 403, "M_FORBIDDEN")
        assert_error(Client(homeserver).request(method, path), 401, "M_MISSING_TOKEN")
    assert download(alice, media_id).content == b"mine"


def test_media_info_and_unknown_or_remote_media(admin, alice):
    media_id = uploaded_id(alice, b"info", "text/plain", filename="a.txt")
    info = admin.get(media_path(media_id)).json()["media_info"]
    assert info["media_id"] == media_id and info["user_id"] == alice.user_id
    assert (info["media_type"], info["media_length"], info["upload_name"]) == ("text/plain", 4, "a.txt")
    assert info["quarantined_by"] is None and info["safe_from_quarantine"] is False
    assert_error(admin.get(media_path("A" * 24)), 404, "M_NOT_FOUND")
    assert_error(admin.get(media_path(media_id, "elsewhere.example")), 400, "M_INVALID_PARAM")


def test_quarantine_stops_serving_every_id_of_that_content_until_released(homeserver, admin, alice):
    data = photo(400, 300)
    first, second = uploaded_id(alice, data, "image/jpeg"), uploaded_id(alice, data, "image/jpeg")
    other = uploaded_id(alice, b"other bytes")
    assert admin.post(f"{V1}/media/quarantine/{SERVER}/{first}", {}).json() == {}
    for media_id in (first, second):
        assert_error(download(alice, media_id), 404, "M_NOT_FOUND")
        assert_error(thumbnail(alice, media_id, 32, 32), 404, "M_NOT_FOUND")
        assert admin.get(media_path(media_id)).json()["media_info"]["quarantined_by"] == admin.user_id
    assert download(alice, other).status_code == 200
    assert admin.post(f"{V1}/media/unquarantine/{SERVER}/{second}", {}).json() == {}
    for media_id in (first, second):
        assert download(alice, media_id).content == data
        assert thumbnail(alice, media_id, 32, 32).status_code == 200


def test_user_quarantine_spares_protected_media(admin, alice):
    kept, hit = uploaded_id(alice, os.urandom(64)), uploaded_id(alice, os.urandom(64))
    assert admin.post(f"{V1}/media/protect/{kept}", {}).json() == {}
    resp = admin.post(f"{V1}/user/{q(alice.user_id)}/media/quarantine", {})
    assert resp.json() == {"num_quarantined": 1}
    assert download(alice, kept).status_code == 200
    assert_error(download(alice, hit), 404, "M_NOT_FOUND")
    assert admin.post(f"{V1}/media/unprotect/{kept}", {}).json() == {}
    assert admin.get(media_path(kept)).json()["media_info"]["safe_from_quarantine"] is False
    assert_error(admin.post(f"{V1}/media/protect/{'B' * 24}", {}), 404, "M_NOT_FOUND")


def test_delete_removes_the_file_only_when_no_other_id_names_it(homeserver, admin, alice):
    data = os.urandom(4096)
    first, second = uploaded_id(alice, data), uploaded_id(alice, data)
    before = content_files(homeserver)
    assert admin.delete(media_path(first)).json() == {"deleted_media": [first], "total": 1}
    assert_error(download(alice, first), 404, "M_NOT_FOUND")
    assert content_files(homeserver) == before  # `second` still names the bytes
    assert admin.delete(media_path(second)).json() == {"deleted_media": [second], "total": 1}
    assert len(content_files(homeserver)) == len(before) - 1
    assert_error(admin.delete(media_path(second)), 404, "M_NOT_FOUND")


def test_user_media_is_listed_in_pages_and_deleted(homeserver, admin):
    bob = new_user(homeserver, "lister")
    ids = [uploaded_id(bob, os.urandom(100 + i)) for i in range(3)]
    path = f"{V1}/users/{q(bob.user_id)}/media"
    page = admin.get(path, params={"limit": 2}).json()
    assert page["total"] == 3 and page["next_token"] == 2
    assert [m["media_id"] for m in page["media"]] == ids[:2]
    rest = admin.get(path, params={"from": 2}).json()
    assert [m["media_id"] for m in rest["media"]] == ids[2:] and "next_token" not in rest
    newest = admin.get(f"/_synapse/admin/v2/users/{q(bob.user_id)}/media", params={"dir": "b"}).json()
    assert newest["media"][0]["media_id"] == ids[2]
    by_size = admin.get(path, params={"order_by": "media_length", "dir": "b"}).json()
    assert [m["media_length"] for m in by_size["media"]] == [102, 101, 100]
    for params in ({"order_by": "nope"}, {"dir": "x"}, {"limit": "-1"}, {"from": "a"}):
        assert_error(admin.get(path, params=params), 400, "M_INVALID_PARAM")
    assert_error(admin.get(f"{V1}/users/{q('@x:elsewhere.example')}/media"), 400, "M_INVALID_PARAM")
    deleted = admin.delete(path).json()
    assert sorted(deleted["deleted_media"]) == sorted(ids) and deleted["total"] == 3
    assert admin.get(path).json() == {"media": [], "total": 0}


def test_delete_by_age_keeps_protected_quarantined_recent_and_avatar_media(homeserver, admin, db_dsn):
    bob = new_user(homeserver, "old")
    old, protected, quarantined, avatar = (uploaded_id(bob, os.urandom(50)) for _ in range(4))
    assert bob.put(f"/profile/{q(bob.user_id)}/avatar_url", {"avatar_url": f"mxc://{SERVER}/{avatar}"}).ok
    admin.post(f"{V1}/media/protect/{protected}", {})
    admin.post(f"{V1}/media/quarantine/{SERVER}/{quarantined}", {})
    cutoff = int(time.time() * 1000) + 1000
    recent = uploaded_id(bob, os.urandom(50))
    query(db_dsn, "UPDATE local_media SET created_ts = created_ts + 60000, last_access_ts = created_ts + 60000 WHERE media_id = %s", (recent,))
    resp = admin.post(f"{V1}/media/delete", params={"before_ts": cutoff})
    assert resp.status_code == 200, resp.text
    deleted = set(resp.json()["deleted_media"])
    assert old in deleted
    assert {"protected": protected in deleted, "quarantined": quarantined in deleted, "avatar": avatar in deleted,
            "recent": recent in deleted} == {"protected": False, "quarantined": False, "avatar": False,
                                             "recent": False}
    again = admin.post(f"{V1}/media/{SERVER}/delete", params={"before_ts": cutoff, "keep_profiles": "false"})
    assert avatar in again.json()["deleted_media"]
    assert_error(admin.post(f"{V1}/media/delete"), 400, "M_MISSING_PARAM")
    assert_error(admin.post(f"{V1}/media/delete", params={"before_ts": "x"}), 400, "M_INVALID_PARAM")
    assert_error(admin.post(f"{V1}/media/elsewhere.example/delete", params={"before_ts": 1}), 400,
                 "M_INVALID_PARAM")


def test_purge_media_cache_has_nothing_to_purge_until_federation(admin):
    assert admin.post(f"{V1}/purge_media_cache", params={"before_ts": 1}).json() == {"deleted": 0}
    assert_error(admin.post(f"{V1}/purge_media_cache"), 400, "M_MISSING_PARAM")


def test_retention_deletes_media_unused_past_its_lifetime_and_keeps_protected(db_dsn):
    with running_homeserver(db_dsn, media_retention={"local_media_lifetime": "2s"}) as server:
        alice = new_user(server, "ret")
        admin = shared_secret_register(server, f"root{uuid.uuid4().hex[:6]}", admin=True)
        doomed, protected = uploaded_id(alice, os.urandom(70)), uploaded_id(alice, os.urandom(71))
        admin.post(f"{V1}/media/protect/{protected}", {})
        files = len(content_files(server))
        deadline = time.monotonic() + 30
        while download(alice, doomed).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert_error(download(alice, doomed), 404, "M_NOT_FOUND")
        assert download(alice, protected).status_code == 200
        assert len(content_files(server)) == files - 1
