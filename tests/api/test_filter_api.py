"""Filters over HTTP (client-server API "Filtering": POST /user/{userId}/filter, GET
/user/{userId}/filter/{filterId}), and the `filter` parameter of /sync and /messages as the
filter handler resolves it, on the same database."""

import itertools
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import psycopg2
import pytest

from hs.errors import MatrixError
from hs.handlers.filters import FilterHandler
from hs.storage.database import Database
from hs.storage.filters import FilterStore
from tests.api.test_response_schemas import assert_matches_spec
from tests.harness import Client, assert_error, running_homeserver

UPLOAD = "/_matrix/client/v3/user/{userId}/filter"
DOWNLOAD = "/_matrix/client/v3/user/{userId}/filter/{filterId}"

# The request example of POST /user/{userId}/filter (filter.yaml).
SPEC_EXAMPLE = {
    "room": {
        "state": {"types": ["m.room.*"], "not_rooms": ["!726s6s6q:example.com"]},
        "timeline": {"limit": 10, "types": ["m.room.message"], "not_rooms": ["!726s6s6q:example.com"],
                     "not_senders": ["@spam:example.com"]},
        "ephemeral": {"types": ["m.receipt", "m.typing"], "not_rooms": ["!726s6s6q:example.com"],
                      "not_senders": ["@spam:example.com"]},
    },
    "presence": {"types": ["m.presence"], "not_senders": ["@alice:example.com"]},
    "event_format": "client",
    "event_fields": ["type", "content", "sender"],
}

_names = itertools.count()


@pytest.fixture(scope="module")
def server(db_dsn):
    with running_homeserver(db_dsn, allow_guest_access=True) as hs:
        yield hs


@pytest.fixture(scope="module")
def handler(db_dsn):
    db = Database(db_dsn, max_connections=2)
    try:
        yield FilterHandler(FilterStore(db))
    finally:
        db.close()


def fresh_user(server) -> Client:
    return Client(server).register(f"filterer{next(_names)}")


def upload_path(user_id: str) -> str:
    return f"/user/{quote(user_id, safe='')}/filter"


def download_path(user_id: str, filter_id: str) -> str:
    return f"/user/{quote(user_id, safe='')}/filter/{quote(filter_id, safe='')}"


def upload(client: Client, body, user_id=None):
    return client.post(upload_path(user_id or client.user_id), body)


def upload_ok(client: Client, body) -> str:
    resp = upload(client, body)
    assert resp.status_code == 200, resp.text
    return resp.json()["filter_id"]


def download(client: Client, filter_id: str, user_id=None):
    return client.get(download_path(user_id or client.user_id, filter_id))


def filter_rows(db_dsn) -> list[tuple]:
    with psycopg2.connect(db_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT user_id, filter_id, filter_json::text FROM user_filters ORDER BY user_id, filter_id")
        rows = cur.fetchall()
    conn.close()
    return rows


# --- upload and download ---

def test_uploaded_spec_example_downloads_unchanged_and_both_match_the_spec(server):
    alice = fresh_user(server)
    resp = upload(alice, SPEC_EXAMPLE)
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, UPLOAD)
    filter_id = resp.json()["filter_id"]
    assert isinstance(filter_id, str) and not filter_id.startswith("{")
    got = download(alice, filter_id)
    assert got.status_code == 200, got.text
    assert_matches_spec(got, DOWNLOAD)
    assert got.json() == SPEC_EXAMPLE


def test_filter_ids_count_up_per_user(server):
    alice, bob = fresh_user(server), fresh_user(server)
    ids = [upload_ok(alice, {"room": {"timeline": {"limit": n}}}) for n in (1, 2, 3)]
    assert ids == ["0", "1", "2"]
    assert upload_ok(bob, {"room": {"timeline": {"limit": 9}}}) == "0"
    assert download(alice, "0").json() == {"room": {"timeline": {"limit": 1}}}
    assert download(bob, "0").json() == {"room": {"timeline": {"limit": 9}}}


def test_uploading_an_equal_filter_again_returns_the_same_id_and_stores_nothing(server, db_dsn):
    alice = fresh_user(server)
    first = upload_ok(alice, {"presence": {"types": ["m.presence"]}, "room": {"include_leave": True}})
    before = filter_rows(db_dsn)
    # Same JSON with the keys in another order: equal as JSON.
    again = upload_ok(alice, {"room": {"include_leave": True}, "presence": {"types": ["m.presence"]}})
    assert again == first
    assert filter_rows(db_dsn) == before
    assert upload_ok(alice, {"presence": {"types": ["m.presence", "x"]}}) != first


def test_empty_filter_is_a_valid_filter(server):
    alice = fresh_user(server)
    filter_id = upload_ok(alice, {})
    got = download(alice, filter_id)
    assert got.status_code == 200 and got.json() == {}
    assert_matches_spec(got, DOWNLOAD)


def test_unknown_keys_are_stored_and_returned(server):
    alice = fresh_user(server)
    body = {"org.example.future": {"x": [1, 2.5, None]}, "room": {"timeline": {"org.matrix.labels": ["#x"]}}}
    assert download(alice, upload_ok(alice, body)).json() == body


def test_filters_work_under_the_r0_prefix_too(server):
    alice = fresh_user(server)
    quoted = quote(alice.user_id, safe="")
    resp = alice.post(f"/_matrix/client/r0/user/{quoted}/filter", {"room": {"timeline": {"limit": 4}}})
    assert resp.status_code == 200, resp.text
    got = alice.get(f"/_matrix/client/r0/user/{quoted}/filter/{resp.json()['filter_id']}")
    assert got.json() == {"room": {"timeline": {"limit": 4}}}


def test_concurrent_uploads_of_different_filters_get_distinct_consecutive_ids(server, db_dsn):
    alice = fresh_user(server)
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda n: upload_ok(alice, {"room": {"timeline": {"limit": n + 1}}}), range(8)))
    assert sorted(ids, key=int) == [str(n) for n in range(8)]
    for n, filter_id in enumerate(ids):
        assert download(alice, filter_id).json() == {"room": {"timeline": {"limit": n + 1}}}


def test_concurrent_uploads_of_one_filter_store_it_once(server, db_dsn):
    alice = fresh_user(server)
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: upload_ok(alice, {"account_data": {"types": ["m.direct"]}}), range(8)))
    assert ids == {"0"}
    assert [row[:2] for row in filter_rows(db_dsn) if row[0] == alice.user_id] == [(alice.user_id, 0)]


# --- refused uploads leave the database as it was ---

def test_uploading_for_another_user_is_forbidden(server, db_dsn):
    alice, bob = fresh_user(server), fresh_user(server)
    before = filter_rows(db_dsn)
    assert_error(upload(alice, {}, user_id=bob.user_id), 403, "M_FORBIDDEN")
    assert_error(upload(alice, {}, user_id="@nobody:elsewhere.example"), 403, "M_FORBIDDEN")
    assert filter_rows(db_dsn) == before


# Sytest's "Check creating invalid filters returns 4xx" (tests/80torture/10filters.pl), and more.
INVALID_FILTERS = [
    {"presence": "not_an_object"},
    {"room": {"timeline": "not_an_object"}},
    {"room": {"state": "not_an_object"}},
    {"room": {"ephemeral": "not_an_object"}},
    {"room": {"account_data": "not_an_object"}},
    {"room": {"timeline": {"rooms": "not_a_list"}}},
    {"room": {"timeline": {"not_rooms": "not_a_list"}}},
    {"room": {"timeline": {"senders": "not_a_list"}}},
    {"room": {"timeline": {"not_senders": "not_a_list"}}},
    {"room": {"timeline": {"types": "not_a_list"}}},
    {"room": {"timeline": {"not_types": "not_a_list"}}},
    {"room": {"timeline": {"types": [0]}}},
    {"room": {"timeline": {"rooms": ["not_a_room_id"]}}},
    {"room": {"timeline": {"senders": ["not_a_sender_id"]}}},
    {"room": {"timeline": {"limit": -1}}},
    {"room": {"timeline": {"limit": "10"}}},
    {"room": {"timeline": {"contains_url": "true"}}},
    {"room": {"include_leave": 1}},
    {"event_format": "xml"},
    {"event_fields": [1]},
]


def test_invalid_filters_are_refused_as_bad_json_and_store_nothing(server, db_dsn):
    alice = fresh_user(server)
    before = filter_rows(db_dsn)
    for body in INVALID_FILTERS:
        resp = upload(alice, body)
        assert_error(resp, 400, "M_BAD_JSON")
        assert resp.json()["error"].startswith("Invalid filter: "), body
    assert filter_rows(db_dsn) == before


def test_filter_naming_the_wrong_place_says_where(server):
    alice = fresh_user(server)
    resp = upload(alice, {"room": {"timeline": {"senders": ["@ok:x", "bad"]}}})
    assert_error(resp, 400, "M_BAD_JSON")
    assert "room.timeline.senders[1]" in resp.json()["error"]


def test_filter_with_a_nul_character_is_refused_and_stores_nothing(server, db_dsn):
    alice = fresh_user(server)
    before = filter_rows(db_dsn)
    assert_error(upload(alice, {"room": {"timeline": {"types": ["m.\u0000"]}}}), 400, "M_BAD_JSON")
    assert_error(upload(alice, {"x\u0000": 1}), 400, "M_BAD_JSON")
    assert filter_rows(db_dsn) == before


def test_body_that_is_not_a_json_object_is_refused(server, db_dsn):
    alice = fresh_user(server)
    before = filter_rows(db_dsn)
    assert_error(upload(alice, ["room"]), 400, "M_BAD_JSON")
    resp = alice.request("POST", upload_path(alice.user_id), data=b"{not json",
                         headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "M_NOT_JSON")
    assert filter_rows(db_dsn) == before


def test_filters_need_a_token(server):
    alice = fresh_user(server)
    filter_id = upload_ok(alice, {})
    assert_error(Client(server).post(upload_path(alice.user_id), {}), 401, "M_MISSING_TOKEN")
    assert_error(Client(server).get(download_path(alice.user_id, filter_id)), 401, "M_MISSING_TOKEN")


def test_guests_may_not_use_the_filter_api(server, db_dsn):
    # Not among the endpoints the guest access module opens to guests (they pass filters inline).
    resp = Client(server).post("/register?kind=guest", {})
    assert resp.status_code == 200, resp.text
    guest = Client(server, resp.json()["access_token"])
    guest.user_id = resp.json()["user_id"]
    before = filter_rows(db_dsn)
    assert_error(upload(guest, {}), 403, "M_GUEST_ACCESS_FORBIDDEN")
    assert_error(download(guest, "0"), 403, "M_GUEST_ACCESS_FORBIDDEN")
    assert filter_rows(db_dsn) == before


# --- downloads that find nothing ---

def test_unknown_filter_id_is_not_found(server):
    alice = fresh_user(server)
    upload_ok(alice, {})
    assert_error(download(alice, "1"), 404, "M_NOT_FOUND")


def test_another_users_filter_is_not_found_either_way(server):
    alice, bob = fresh_user(server), fresh_user(server)
    bob_filter = upload_ok(bob, {"room": {"timeline": {"limit": 1}}})
    # Through bob's path: not alice's to read, and it looks like a filter that does not exist.
    assert_error(download(alice, bob_filter, user_id=bob.user_id), 404, "M_NOT_FOUND")
    # Through her own path: she has no filter with that ID.
    assert_error(download(alice, bob_filter), 404, "M_NOT_FOUND")


@pytest.mark.parametrize("filter_id", ["abc", "01", "-1", "+0", " 0", "1.0", "{}", "9" * 19, "9" * 30, "0\u0000"])
def test_filter_id_we_never_issue_is_not_found(server, filter_id):
    alice = fresh_user(server)
    assert upload_ok(alice, {}) == "0"
    assert_error(download(alice, filter_id), 404, "M_NOT_FOUND")


# --- the `filter` parameter of /sync and /messages (the handler the endpoints call) ---

def test_sync_filter_parameter_by_id_loads_the_users_filter(server, handler):
    alice = fresh_user(server)
    filter_id = upload_ok(alice, {"room": {"timeline": {"limit": 7, "types": ["m.room.*"]}}})
    f = handler.sync_filter(alice.user_id, filter_id)
    assert f.room.timeline.limit == 7
    assert f.room.timeline.matches({"type": "m.room.message", "sender": "@a:x", "room_id": "!r:x", "content": {}})
    assert handler.sync_filter(alice.user_id, filter_id) is f  # parsed once: stored filters never change


def test_sync_filter_parameter_inline_and_absent(handler):
    assert handler.sync_filter("@anyone:test.local", '{"presence": {"types": []}}').presence.blocks_all()
    assert handler.sync_filter("@anyone:test.local", None).json == {}


@pytest.mark.parametrize("raw", ["5", "abc", '{"room": ', '{"room": {"rooms": "!a:x"}}', "{}x"])
def test_bad_sync_filter_parameter_is_invalid_param(server, handler, raw):
    alice = fresh_user(server)
    upload_ok(alice, {})
    with pytest.raises(MatrixError) as info:
        handler.sync_filter(alice.user_id, raw)
    assert (info.value.status, info.value.errcode) == (400, "M_INVALID_PARAM")


def test_sync_filter_parameter_does_not_reach_another_users_filter(server, handler):
    alice, bob = fresh_user(server), fresh_user(server)
    upload_ok(alice, {})
    with pytest.raises(MatrixError) as info:
        handler.sync_filter(bob.user_id, "0")
    assert (info.value.status, info.value.errcode) == (400, "M_INVALID_PARAM")


def test_messages_filter_parameter_is_a_room_event_filter(handler):
    f = handler.room_event_filter('{"contains_url": true, "limit": 3}')
    assert f.contains_url is True and f.limit == 3
    assert handler.room_event_filter(None) is None
    with pytest.raises(MatrixError) as info:
        handler.room_event_filter('{"limit": -3}')
    assert (info.value.status, info.value.errcode) == (400, "M_INVALID_PARAM")
