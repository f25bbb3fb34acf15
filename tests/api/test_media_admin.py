"""Synapse's media admin API: media info, quarantine (by content), protection, per-user listing
and deletion, media of a room, deletion by age; files really leave media_store_path."""

import os
import time
import uuid

import pytest

from tests.api.test_admin_tokens import shared_secret_register
from tests.api.test_media_thumbnails import photo, thumbnail
from tests.api.test_media_upload import content_files, download, uploaded_id
from tests.harness import Client, assert_error, create, new_user, q, query

SERVER = "test.local"
V1 = "/_synapse/admin/v1"
ROOM = "!nowhere:test.local"


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
             ("POST", f"{V1}/media/delete?before_ts=1"), ("POST", f"{V1}/purge_media_cache?before_ts=1"),
             ("GET", f"{V1}/room/{q(ROOM)}/media"), ("POST", f"{V1}/room/{q(ROOM)}/media/quarantine"),
             ("POST", f"{V1}/quarantine_media/{q(ROOM)}")]
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


def test_protected_media_is_not_quarantined_by_id_nor_with_its_content(admin, alice):
    data = os.urandom(80)
    protected, sibling = uploaded_id(alice, data), uploaded_id(alice, data)
    assert admin.post(f"{V1}/media/protect/{protected}", {}).json() == {}
    assert admin.post(f"{V1}/media/quarantine/{SERVER}/{protected}", {}).json() == {}
    assert download(alice, protected).content == data and download(alice, sibling).content == data
    admin.post(f"{V1}/media/quarantine/{SERVER}/{sibling}", {})
    assert download(alice, protected).content == data
    assert_error(download(alice, sibling), 404, "M_NOT_FOUND")


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


def test_user_media_is_listed_newest_first_in_pages(homeserver, admin):
    bob = new_user(homeserver, "lister")
    ids = [uploaded_id(bob, os.urandom(100 + i)) for i in range(3)]
    path = f"{V1}/users/{q(bob.user_id)}/media"
    page = admin.get(path, params={"limit": 2}).json()
    assert page["total"] == 3 and page["next_token"] == 2
    assert [m["media_id"] for m in page["media"]] == ids[:0:-1]
    assert page["media"][0]["media_length"] == 102 and page["media"][0]["created_ts"] > 0
    rest = admin.get(path, params={"from": 2}).json()
    assert [m["media_id"] for m in rest["media"]] == ids[:1] and "next_token" not in rest
    oldest = admin.get(f"/_synapse/admin/v2/users/{q(bob.user_id)}/media", params={"dir": "f"}).json()
    assert [m["media_id"] for m in oldest["media"]] == ids
    by_size = admin.get(path, params={"order_by": "media_length", "dir": "b"}).json()
    assert [m["media_length"] for m in by_size["media"]] == [102, 101, 100]
    for params in ({"order_by": "nope"}, {"dir": "x"}, {"limit": "-1"}, {"from": "a"}):
        assert_error(admin.get(path, params=params), 400, "M_INVALID_PARAM")
    assert_error(admin.get(f"{V1}/users/{q('@x:elsewhere.example')}/media"), 400, "M_INVALID_PARAM")
    assert_error(admin.get(f"{V1}/users/{q('@nobody:test.local')}/media"), 404, "M_NOT_FOUND")
    assert_error(admin.delete(f"{V1}/users/{q('@nobody:test.local')}/media"), 404, "M_NOT_FOUND")


def test_user_media_delete_removes_the_page_asked_for_and_the_files(homeserver, admin):
    bob = new_user(homeserver, "deleter")
    ids = [uploaded_id(bob, os.urandom(200 + i)) for i in range(3)]
    path = f"{V1}/users/{q(bob.user_id)}/media"
    before = content_files(homeserver)
    assert admin.delete(path, params={"limit": 1}).json() == {"deleted_media": [ids[2]], "total": 1}
    assert len(content_files(homeserver)) == len(before) - 1
    assert_error(download(bob, ids[2]), 404, "M_NOT_FOUND")
    deleted = admin.delete(path).json()
    assert sorted(deleted["deleted_media"]) == sorted(ids[:2]) and deleted["total"] == 2
    assert admin.get(path).json() == {"media": [], "total": 0}
    assert len(content_files(homeserver)) == len(before) - 3


def send(client, room_id: str, content: dict, event_type: str = "m.room.message") -> None:
    resp = client.put(f"/rooms/{q(room_id)}/send/{event_type}/{uuid.uuid4().hex}", content)
    assert resp.status_code == 200, resp.text


def test_room_media_lists_and_quarantines_what_its_events_point_at(homeserver, admin, alice):
    image, thumb, avatar, unrelated = (uploaded_id(alice, os.urandom(90)) for _ in range(4))
    room_id = create(alice)
    send(alice, room_id, {"msgtype": "m.image", "body": "a.png", "url": f"mxc://{SERVER}/{image}",
                          "info": {"thumbnail_url": f"mxc://{SERVER}/{thumb}"}})
    send(alice, room_id, {"msgtype": "m.file", "body": "far", "url": "mxc://elsewhere.example/remoteid"})
    send(alice, room_id, {"msgtype": "m.text", "body": f"mxc://{SERVER}/{unrelated}"})
    assert alice.put(f"/rooms/{q(room_id)}/state/m.room.avatar", {"url": f"mxc://{SERVER}/{avatar}"}).ok
    listed = admin.get(f"{V1}/room/{q(room_id)}/media").json()
    assert sorted(listed["local"]) == sorted(f"mxc://{SERVER}/{m}" for m in (image, thumb, avatar))
    assert listed["remote"] == ["mxc://elsewhere.example/remoteid"]
    resp = admin.post(f"{V1}/room/{q(room_id)}/media/quarantine", {})
    assert resp.json() == {"num_quarantined": 3}
    for media_id in (image, thumb, avatar):
        assert_error(download(alice, media_id), 404, "M_NOT_FOUND")
        assert admin.get(media_path(media_id)).json()["media_info"]["quarantined_by"] == admin.user_id
    assert download(alice, unrelated).status_code == 200
    assert admin.post(f"{V1}/quarantine_media/{q(room_id)}", {}).json() == {"num_quarantined": 3}
    assert admin.get(f"{V1}/room/{q(ROOM)}/media").json() == {"local": [], "remote": []}
    assert_error(admin.get(f"{V1}/room/not-a-room/media"), 400, "M_INVALID_PARAM")
    assert_error(admin.post(f"{V1}/room/not-a-room/media/quarantine", {}), 400, "M_INVALID_PARAM")


def test_delete_by_age_keeps_protected_quarantined_recent_and_avatar_media(homeserver, admin, db_dsn):
    bob = new_user(homeserver, "old")
    old, protected, quarantined, avatar, room_avatar = (uploaded_id(bob, os.urandom(50)) for _ in range(5))
    assert bob.put(f"/profile/{q(bob.user_id)}/avatar_url", {"avatar_url": f"mxc://{SERVER}/{avatar}"}).ok
    assert bob.put(f"/rooms/{q(create(bob))}/state/m.room.avatar", {"url": f"mxc://{SERVER}/{room_avatar}"}).ok
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
            "room_avatar": room_avatar in deleted, "recent": recent in deleted} == {
        "protected": False, "quarantined": False, "avatar": False, "room_avatar": False, "recent": False}
    again = admin.post(f"{V1}/media/{SERVER}/delete", params={"before_ts": cutoff, "keep_profiles": "false"})
    assert sorted(again.json()["deleted_media"]) == sorted([avatar, room_avatar])
    assert_error(admin.post(f"{V1}/media/delete"), 400, "M_MISSING_PARAM")
    assert_error(admin.post(f"{V1}/media/delete", params={"before_ts": "x"}), 400, "M_INVALID_PARAM")
    assert_error(admin.post(f"{V1}/media/elsewhere.example/delete", params={"before_ts": 1}), 400,
                 "M_INVALID_PARAM")


def test_purge_media_cache_has_nothing_to_purge_until_federation(admin):
    assert admin.post(f"{V1}/purge_media_cache", params={"before_ts": 1}).json() == {"deleted": 0}
    assert_error(admin.post(f"{V1}/purge_media_cache"), 400, "M_MISSING_PARAM")
