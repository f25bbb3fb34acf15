"""Pushers (client-server API "Push Notifications", pusher.yaml): GET /pushers and
POST /pushers/set, removal with the owning device, and the pushers stream's rows."""

import uuid

import pytest

from hs.storage.database import Database
from hs.storage.pushers import PusherStore
from tests.api.test_devices import password_auth, start_uia
from tests.api.test_response_schemas import assert_matches_spec
from tests.api.test_sync import assert_error
from tests.harness import Client, new_user, query

PUSHERS = "/_matrix/client/v3/pushers"
SET = "/_matrix/client/v3/pushers/set"
GATEWAY = "https://push.example.com/_matrix/push/v1/notify"


def pusher_body(**overrides) -> dict:
    body = {"kind": "http", "app_id": "com.example.app.ios", "pushkey": f"key-{uuid.uuid4().hex}",
            "app_display_name": "Mat Rix", "device_display_name": "iPhone 9", "profile_tag": "xxyyzz",
            "lang": "en", "data": {"url": GATEWAY, "format": "event_id_only"}}
    body.update(overrides)
    return body


def set_pusher(client, body) -> None:
    resp = client.post("/pushers/set", body)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}


def pushers(client) -> list[dict]:
    resp = client.get("/pushers")
    assert resp.status_code == 200, resp.text
    return resp.json()["pushers"]


def listed(body: dict) -> dict:
    """What GET /pushers shows for a pusher set with `body`."""
    return {k: v for k, v in body.items() if k != "append"}


def test_set_pusher_is_listed_in_the_spec_shape(homeserver):
    alice = new_user(homeserver, "pu")
    body = pusher_body()
    resp = alice.post("/pushers/set", body)
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, SET)
    resp = alice.get("/pushers")
    assert_matches_spec(resp, PUSHERS)
    assert resp.json() == {"pushers": [listed(body)]}


def test_user_without_pushers_gets_an_empty_list(homeserver):
    assert pushers(new_user(homeserver, "pu")) == []


def test_profile_tag_is_optional_and_absent_when_not_set(homeserver):
    alice = new_user(homeserver, "pu")
    body = pusher_body()
    del body["profile_tag"]
    set_pusher(alice, body)
    assert pushers(alice) == [body]


def test_setting_the_same_app_id_and_pushkey_updates_the_pusher(homeserver):
    alice = new_user(homeserver, "pu")
    body = pusher_body()
    set_pusher(alice, body)
    updated = dict(body, app_display_name="New name", lang="fr", data={"url": GATEWAY, "custom": 1})
    set_pusher(alice, updated)
    assert pushers(alice) == [listed(updated)]


def test_pushers_are_per_user(homeserver):
    alice, bob = new_user(homeserver, "pu"), new_user(homeserver, "pu")
    set_pusher(alice, pusher_body())
    assert pushers(bob) == []


def test_append_false_removes_other_users_pusher_with_the_same_pushkey(homeserver):
    alice, bob = new_user(homeserver, "pu"), new_user(homeserver, "pu")
    body = pusher_body()
    set_pusher(alice, body)
    set_pusher(bob, body)
    assert pushers(alice) == []
    assert pushers(bob) == [listed(body)]


def test_append_true_keeps_other_users_pusher_with_the_same_pushkey(homeserver):
    alice, bob = new_user(homeserver, "pu"), new_user(homeserver, "pu")
    body = pusher_body()
    set_pusher(alice, body)
    set_pusher(bob, dict(body, append=True))
    assert pushers(alice) == [listed(body)]
    assert pushers(bob) == [listed(body)]


def test_append_false_keeps_other_users_pushers_with_another_app_id(homeserver):
    alice, bob = new_user(homeserver, "pu"), new_user(homeserver, "pu")
    body = pusher_body()
    set_pusher(alice, body)
    set_pusher(bob, dict(body, app_id="com.example.app.android"))
    assert pushers(alice) == [listed(body)]


def test_kind_null_deletes_the_pusher_and_only_that_one(homeserver):
    alice = new_user(homeserver, "pu")
    gone, kept = pusher_body(), pusher_body()
    set_pusher(alice, gone)
    set_pusher(alice, kept)
    set_pusher(alice, {"kind": None, "app_id": gone["app_id"], "pushkey": gone["pushkey"]})
    assert pushers(alice) == [listed(kept)]


def test_kind_null_for_an_absent_pusher_succeeds(homeserver):
    alice = new_user(homeserver, "pu")
    set_pusher(alice, {"kind": None, "app_id": "com.example.app", "pushkey": "never-set"})


def test_kind_null_does_not_delete_another_users_pusher(homeserver):
    alice, bob = new_user(homeserver, "pu"), new_user(homeserver, "pu")
    body = pusher_body()
    set_pusher(alice, body)
    set_pusher(bob, {"kind": None, "app_id": body["app_id"], "pushkey": body["pushkey"]})
    assert pushers(alice) == [listed(body)]


@pytest.mark.parametrize("missing", ["kind", "app_id", "pushkey", "app_display_name", "device_display_name",
                                     "lang", "data"])
def test_missing_required_field_is_m_missing_param(homeserver, missing):
    alice = new_user(homeserver, "pu")
    body = pusher_body()
    del body[missing]
    resp = alice.post("/pushers/set", body)
    assert_error(resp, 400, "M_MISSING_PARAM")
    assert missing in resp.json()["error"]
    assert pushers(alice) == []


@pytest.mark.parametrize("missing", ["app_id", "pushkey"])
def test_deletion_without_app_id_or_pushkey_is_m_missing_param(homeserver, missing):
    body = {"kind": None, "app_id": "com.example.app", "pushkey": "k"}
    del body[missing]
    assert_error(new_user(homeserver, "pu").post("/pushers/set", body), 400, "M_MISSING_PARAM")


@pytest.mark.parametrize("key, value", [
    ("kind", 1), ("app_id", ["x"]), ("pushkey", 5), ("app_display_name", {}), ("device_display_name", True),
    ("profile_tag", 3), ("lang", 2), ("data", "https://push.example.com"), ("append", "yes"),
])
def test_mistyped_field_is_m_bad_json(homeserver, key, value):
    alice = new_user(homeserver, "pu")
    assert_error(alice.post("/pushers/set", pusher_body(**{key: value})), 400, "M_BAD_JSON")
    assert pushers(alice) == []


@pytest.mark.parametrize("key, value", [
    ("kind", "carrier-pigeon"),
    ("app_id", "a" * 65),
    ("pushkey", "é" * 257),  # 514 bytes, 257 characters
    ("lang", "en\x00"),
    ("data", {"url": GATEWAY, "format": "full"}),
])
def test_invalid_field_value_is_m_invalid_param(homeserver, key, value):
    alice = new_user(homeserver, "pu")
    assert_error(alice.post("/pushers/set", pusher_body(**{key: value})), 400, "M_INVALID_PARAM")
    assert pushers(alice) == []


def test_longest_allowed_app_id_and_pushkey_are_accepted(homeserver):
    alice = new_user(homeserver, "pu")
    body = pusher_body(app_id="a" * 64, pushkey="k" + "é" * 255 + "x")  # 512 bytes
    set_pusher(alice, body)
    assert pushers(alice) == [listed(body)]


def test_http_pusher_without_data_url_is_m_missing_param(homeserver):
    alice = new_user(homeserver, "pu")
    assert_error(alice.post("/pushers/set", pusher_body(data={"format": "event_id_only"})), 400, "M_MISSING_PARAM")


@pytest.mark.parametrize("url", [
    "https://push.example.com/_matrix/push/v1/notify/",
    "https://push.example.com/notify",
    "https://push.example.com",
    "ftp://push.example.com/_matrix/push/v1/notify",
    "/_matrix/push/v1/notify",
    42,
])
def test_http_pusher_url_must_be_http_with_the_notify_path(homeserver, url):
    alice = new_user(homeserver, "pu")
    assert_error(alice.post("/pushers/set", pusher_body(data={"url": url})), 400, "M_INVALID_PARAM")
    assert pushers(alice) == []


def test_plain_http_gateway_url_is_accepted(homeserver):
    alice = new_user(homeserver, "pu")
    body = pusher_body(data={"url": "http://127.0.0.1:5000/_matrix/push/v1/notify"})
    set_pusher(alice, body)
    assert pushers(alice) == [listed(body)]


def test_email_pusher_for_an_unbound_address_is_m_threepid_not_found(homeserver):
    # Synapse's answer for an address not bound to the account; no address can be bound yet.
    alice = new_user(homeserver, "pu")
    resp = alice.post("/pushers/set", pusher_body(kind="email", app_id="m.email", pushkey="alice@example.com",
                                                  data={}))
    assert_error(resp, 400, "M_THREEPID_NOT_FOUND")
    assert pushers(alice) == []


def test_pushers_need_an_access_token(homeserver):
    anonymous = Client(homeserver)
    assert_error(anonymous.get("/pushers"), 401, "M_MISSING_TOKEN")
    assert_error(anonymous.post("/pushers/set", pusher_body()), 401, "M_MISSING_TOKEN")
    assert_error(anonymous.get("/pushers", token="not-a-token"), 401, "M_UNKNOWN_TOKEN")


def login_again(homeserver, client) -> Client:
    return Client(homeserver).login(client.user_id.split(":")[0][1:])


def test_logout_removes_the_devices_pushers_only(homeserver):
    phone = new_user(homeserver, "pu")
    laptop = login_again(homeserver, phone)
    on_phone, on_laptop = pusher_body(), pusher_body()
    set_pusher(phone, on_phone)
    set_pusher(laptop, on_laptop)
    assert phone.post("/logout", {}).status_code == 200
    assert pushers(laptop) == [listed(on_laptop)]


def test_logout_all_removes_every_pusher(homeserver):
    phone = new_user(homeserver, "pu")
    laptop = login_again(homeserver, phone)
    set_pusher(phone, pusher_body())
    set_pusher(laptop, pusher_body())
    assert phone.post("/logout/all", {}).status_code == 200
    assert pushers(login_again(homeserver, phone)) == []


def test_deleting_a_device_removes_its_pushers(homeserver):
    phone = new_user(homeserver, "pu")
    laptop = login_again(homeserver, phone)
    set_pusher(phone, pusher_body())
    kept = pusher_body()
    set_pusher(laptop, kept)
    body = {"devices": [phone.device_id]}
    session = start_uia(laptop, "POST", "/delete_devices", body)
    resp = laptop.post("/delete_devices", {**body, "auth": password_auth(session, laptop.user_id)})
    assert resp.status_code == 200, resp.text
    assert pushers(laptop) == [listed(kept)]


def test_a_password_change_that_logs_out_other_devices_removes_their_pushers(homeserver):
    phone = new_user(homeserver, "pu")
    laptop = login_again(homeserver, phone)
    set_pusher(phone, pusher_body())
    kept = pusher_body()
    set_pusher(laptop, kept)
    body = {"new_password": "another horse battery"}
    session = start_uia(laptop, "POST", "/account/password", body)
    resp = laptop.post("/account/password", {**body, "auth": password_auth(session, laptop.user_id)})
    assert resp.status_code == 200, resp.text
    assert pushers(laptop) == [listed(kept)]


def test_deactivation_removes_every_pusher(homeserver, db_dsn):
    phone = new_user(homeserver, "pu")
    set_pusher(phone, pusher_body())
    session = start_uia(phone, "POST", "/account/deactivate", {})
    resp = phone.post("/account/deactivate", {"auth": password_auth(session, phone.user_id)})
    assert resp.status_code == 200, resp.text
    assert query(db_dsn, "SELECT count(*) FROM pushers WHERE user_id = %s", (phone.user_id,)) == [(0,)]


def test_updating_another_devices_pusher_keeps_its_owner(homeserver, db_dsn):
    # As in Synapse: the pusher stays with the device that created it.
    phone = new_user(homeserver, "pu")
    laptop = login_again(homeserver, phone)
    body = pusher_body()
    set_pusher(phone, body)
    set_pusher(laptop, dict(body, lang="de"))
    rows = query(db_dsn, "SELECT device_id FROM pushers WHERE user_id = %s", (phone.user_id,))
    assert rows == [(phone.device_id,)]


def test_stream_rows_report_each_change_and_deletion_in_order(homeserver, db_dsn):
    alice, bob = new_user(homeserver, "pu"), new_user(homeserver, "pu")
    db = Database(db_dsn, max_connections=1)
    try:
        store = PusherStore(db)
        # Earlier ids may have gone unused (deleting an absent pusher): start from what is stored.
        start = query(db_dsn, "SELECT GREATEST((SELECT MAX(stream_id) FROM pushers),"
                              " (SELECT MAX(stream_id) FROM deleted_pushers), 0)")[0][0]
        body = pusher_body()
        key = {"app_id": body["app_id"], "pushkey": body["pushkey"]}
        set_pusher(alice, body)
        set_pusher(bob, body)  # deletes alice's, then sets bob's
        set_pusher(bob, {"kind": None, **key})
        rows = store.get_stream_rows(start, 2**62, 100)
        assert [r[1] for r in rows] == [{"user_id": alice.user_id, **key, "deleted": True},
                                        {"user_id": bob.user_id, **key, "deleted": True}]
        first, second = rows[0][0], rows[1][0]
        # Between the two deletions bob's pusher was written, and was then overwritten by its tombstone.
        assert start + 1 < first < second - 1
        assert store.get_stream_rows(start, first, 100) == rows[:1]
        assert store.get_stream_rows(start, 2**62, 1) == rows[:1]

        other = pusher_body()
        set_pusher(alice, other)
        set_pusher(alice, dict(other, lang="de"))
        rows = store.get_stream_rows(second, 2**62, 100)
        # A pusher changed twice shows once, at its latest id.
        assert rows == [(second + 2, {"user_id": alice.user_id, "app_id": other["app_id"],
                                      "pushkey": other["pushkey"], "deleted": False})]
        assert store.get_stream_rows(second + 2, 2**62, 100) == []
    finally:
        db.close()
