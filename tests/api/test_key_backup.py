"""Server-side key backups (client-server API "Server-side key backups"): backup versions under
/room_keys/version and the room keys in them under /room_keys/keys at three levels.
(matrix-nio has no key backup API, so these are HTTP tests only.)"""

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.api.test_devices import password_auth, start_uia
from tests.api.test_response_schemas import assert_matches_spec
from tests.api.test_sync import assert_error
from tests.harness import Client, new_user, q, query

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
AUTH_DATA = {"public_key": "abcdefg", "signatures": {"@alice:test.local": {"ed25519:DEV": "sig"}}}
ROOM = "!room:test.local"
SESSION = "sessionid0123456789"
VERSION_PATH = "/_matrix/client/v3/room_keys/version"
VERSION_ID_PATH = "/_matrix/client/v3/room_keys/version/{version}"
KEYS_PATH = "/_matrix/client/v3/room_keys/keys"
ROOM_KEYS_PATH = "/_matrix/client/v3/room_keys/keys/{roomId}"
SESSION_KEY_PATH = "/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}"


def key(first_message_index=0, forwarded_count=0, is_verified=False, tag="a") -> dict:
    return {"first_message_index": first_message_index, "forwarded_count": forwarded_count,
            "is_verified": is_verified, "session_data": {"ciphertext": tag, "mac": "m", "ephemeral": "e"}}


def new_version(client, auth_data=None) -> str:
    resp = client.post("/room_keys/version", {"algorithm": ALGORITHM, "auth_data": auth_data or AUTH_DATA})
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, VERSION_PATH)
    return resp.json()["version"]


def put_session(client, version, body, room_id=ROOM, session_id=SESSION):
    return client.put(f"/room_keys/keys/{q(room_id)}/{q(session_id)}", body, params={"version": version})


def get_session(client, version, room_id=ROOM, session_id=SESSION):
    return client.get(f"/room_keys/keys/{q(room_id)}/{q(session_id)}", params={"version": version})


def version_info(client, version=None) -> dict:
    resp = client.get("/room_keys/version" + ("" if version is None else f"/{q(version)}"))
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture
def user(homeserver):
    return new_user(homeserver, "kb")


# --- versions ---

def test_no_backup_means_404_for_the_current_version(user):
    resp = user.get("/room_keys/version")
    assert_error(resp, 404, "M_NOT_FOUND")
    assert_matches_spec(resp, VERSION_PATH)


def test_created_version_is_current_with_its_auth_data_and_no_keys(user):
    version = new_version(user)
    resp = user.get("/room_keys/version")
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, VERSION_PATH)
    body = resp.json()
    assert body == {"algorithm": ALGORITHM, "auth_data": AUTH_DATA, "version": version, "count": 0,
                    "etag": body["etag"]}
    assert isinstance(body["etag"], str)
    resp = user.get(f"/room_keys/version/{version}")
    assert_matches_spec(resp, VERSION_ID_PATH)
    assert resp.json() == body


def test_a_newer_version_becomes_current_and_the_older_stays_readable(user):
    first = new_version(user)
    second = new_version(user, {"public_key": "second"})
    assert second != first
    assert version_info(user)["version"] == second
    assert version_info(user, first)["auth_data"] == AUTH_DATA


def test_unknown_deleted_and_malformed_versions_are_not_found(user):
    version = new_version(user)
    for bad in ("999", "abc", "-1", "01", "99999999999999999999999"):
        resp = user.get(f"/room_keys/version/{bad}")
        assert_error(resp, 404, "M_NOT_FOUND")
    assert_matches_spec(user.get("/room_keys/version/999"), VERSION_ID_PATH)
    assert user.delete(f"/room_keys/version/{version}").status_code == 200
    assert_error(user.get(f"/room_keys/version/{version}"), 404, "M_NOT_FOUND")
    assert_error(user.get("/room_keys/version"), 404, "M_NOT_FOUND")


def test_deleting_the_current_version_makes_the_previous_one_current(user):
    first = new_version(user)
    second = new_version(user)
    resp = user.delete(f"/room_keys/version/{second}")
    assert resp.status_code == 200 and resp.json() == {}
    assert_matches_spec(resp, VERSION_ID_PATH)
    assert version_info(user)["version"] == first
    # Version numbers are never reused, so a client on the deleted one cannot write into a new one.
    assert int(new_version(user)) > int(second)


def test_deleting_a_version_twice_succeeds_but_an_unknown_one_is_404(user):
    version = new_version(user)
    assert user.delete(f"/room_keys/version/{version}").status_code == 200
    resp = user.delete(f"/room_keys/version/{version}")
    assert resp.status_code == 200, resp.text
    assert_error(user.delete("/room_keys/version/4242"), 404, "M_NOT_FOUND")
    assert_error(user.delete("/room_keys/version/x"), 404, "M_NOT_FOUND")


def test_deleting_a_version_deletes_its_keys(user, db_dsn):
    version = new_version(user)
    assert put_session(user, version, key()).status_code == 200
    assert user.delete(f"/room_keys/version/{version}").status_code == 200
    assert_error(get_session(user, version), 404, "M_NOT_FOUND")
    assert_error(user.get("/room_keys/keys", params={"version": version}), 404, "M_NOT_FOUND")
    rows = query(db_dsn, "SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = %s", (user.user_id,))
    assert rows == [(0,)]


def test_update_replaces_auth_data_only(user):
    version = new_version(user)
    assert put_session(user, version, key()).status_code == 200
    resp = user.put(f"/room_keys/version/{version}", {"algorithm": ALGORITHM, "auth_data": {"public_key": "new"},
                                                      "version": version})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert_matches_spec(resp, VERSION_ID_PATH)
    info = version_info(user, version)
    assert info["auth_data"] == {"public_key": "new"}
    assert info["algorithm"] == ALGORITHM and info["count"] == 1
    # The version in the body is optional.
    resp = user.put(f"/room_keys/version/{version}", {"algorithm": ALGORITHM, "auth_data": {"public_key": "3"}})
    assert resp.status_code == 200, resp.text
    assert version_info(user, version)["auth_data"] == {"public_key": "3"}


def test_update_refuses_another_algorithm_or_a_mismatched_version(user):
    version = new_version(user)
    resp = user.put(f"/room_keys/version/{version}", {"algorithm": "m.other", "auth_data": {}})
    assert_error(resp, 400, "M_INVALID_PARAM")
    assert_matches_spec(resp, VERSION_ID_PATH)
    resp = user.put(f"/room_keys/version/{version}", {"algorithm": ALGORITHM, "auth_data": {},
                                                      "version": str(int(version) + 1)})
    assert_error(resp, 400, "M_INVALID_PARAM")
    assert version_info(user, version)["auth_data"] == AUTH_DATA


def test_update_of_an_unknown_or_deleted_version_is_404(user):
    version = new_version(user)
    body = {"algorithm": ALGORITHM, "auth_data": {}}
    assert_error(user.put("/room_keys/version/777", body), 404, "M_NOT_FOUND")
    user.delete(f"/room_keys/version/{version}")
    assert_error(user.put(f"/room_keys/version/{version}", body), 404, "M_NOT_FOUND")


@pytest.mark.parametrize("body, errcode", [
    ({"auth_data": {}}, "M_MISSING_PARAM"),
    ({"algorithm": ALGORITHM}, "M_MISSING_PARAM"),
    ({"algorithm": 5, "auth_data": {}}, "M_BAD_JSON"),
    ({"algorithm": "", "auth_data": {}}, "M_BAD_JSON"),
    ({"algorithm": ALGORITHM, "auth_data": "x"}, "M_BAD_JSON"),
    ({"algorithm": ALGORITHM, "auth_data": {"k": "a\u0000b"}}, "M_BAD_JSON"),
    ({"algorithm": "a\u0000", "auth_data": {}}, "M_BAD_JSON"),
])
def test_creating_a_version_with_a_bad_body_is_refused_and_stores_nothing(user, body, errcode):
    assert_error(user.post("/room_keys/version", body), 400, errcode)
    assert_error(user.get("/room_keys/version"), 404, "M_NOT_FOUND")


def test_each_user_sees_only_their_own_versions(homeserver):
    alice, bob = new_user(homeserver, "kb"), new_user(homeserver, "kb")
    version = new_version(alice)
    assert put_session(alice, version, key()).status_code == 200
    assert_error(bob.get("/room_keys/version"), 404, "M_NOT_FOUND")
    assert_error(bob.get(f"/room_keys/version/{version}"), 404, "M_NOT_FOUND")
    assert_error(get_session(bob, version), 404, "M_NOT_FOUND")
    assert_error(put_session(bob, version, key()), 404, "M_NOT_FOUND")
    assert_error(bob.delete(f"/room_keys/version/{version}"), 404, "M_NOT_FOUND")
    assert_error(bob.delete("/room_keys/keys", params={"version": version}), 404, "M_NOT_FOUND")
    # Bob's own first version is numbered on its own, and alice's keys are untouched.
    bob_version = new_version(bob)
    assert version_info(bob, bob_version)["count"] == 0
    assert get_session(alice, version).json() == key()


def test_every_endpoint_requires_an_access_token(homeserver):
    anonymous = Client(homeserver)
    for method, path in [("GET", "/room_keys/version"), ("POST", "/room_keys/version"),
                         ("GET", "/room_keys/version/1"), ("PUT", "/room_keys/version/1"),
                         ("DELETE", "/room_keys/version/1"), ("GET", "/room_keys/keys?version=1"),
                         ("PUT", "/room_keys/keys?version=1"), ("DELETE", "/room_keys/keys?version=1"),
                         ("GET", f"/room_keys/keys/{q(ROOM)}?version=1"),
                         ("GET", f"/room_keys/keys/{q(ROOM)}/{SESSION}?version=1")]:
        assert_error(anonymous.request(method, path, json={}), 401, "M_MISSING_TOKEN")


# --- keys ---

def test_keys_uploaded_at_each_level_read_back_at_each_level(user):
    version = new_version(user)
    resp = put_session(user, version, key(tag="s1"))
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, SESSION_KEY_PATH)
    resp = user.put(f"/room_keys/keys/{q(ROOM)}", {"sessions": {"s2": key(tag="s2")}}, params={"version": version})
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, ROOM_KEYS_PATH)
    resp = user.put("/room_keys/keys", {"rooms": {"!other:x": {"sessions": {"s3": key(tag="s3")}}}},
                    params={"version": version})
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, KEYS_PATH)
    assert resp.json()["count"] == 3

    resp = get_session(user, version)
    assert resp.status_code == 200 and resp.json() == key(tag="s1")
    assert_matches_spec(resp, SESSION_KEY_PATH)
    resp = user.get(f"/room_keys/keys/{q(ROOM)}", params={"version": version})
    assert resp.json() == {"sessions": {SESSION: key(tag="s1"), "s2": key(tag="s2")}}
    assert_matches_spec(resp, ROOM_KEYS_PATH)
    resp = user.get("/room_keys/keys", params={"version": version})
    assert resp.json() == {"rooms": {ROOM: {"sessions": {SESSION: key(tag="s1"), "s2": key(tag="s2")}},
                                     "!other:x": {"sessions": {"s3": key(tag="s3")}}}}
    assert_matches_spec(resp, KEYS_PATH)
    assert version_info(user)["count"] == 3


def test_missing_keys_are_404_for_a_session_and_empty_for_a_room_or_the_backup(user):
    version = new_version(user)
    resp = get_session(user, version)
    assert_error(resp, 404, "M_NOT_FOUND")
    assert_matches_spec(resp, SESSION_KEY_PATH)
    resp = user.get(f"/room_keys/keys/{q(ROOM)}", params={"version": version})
    assert resp.status_code == 200 and resp.json() == {"sessions": {}}
    resp = user.get("/room_keys/keys", params={"version": version})
    assert resp.status_code == 200 and resp.json() == {"rooms": {}}


def test_reading_keys_of_an_unknown_version_is_404(user):
    new_version(user)
    for path in ("/room_keys/keys", f"/room_keys/keys/{q(ROOM)}", f"/room_keys/keys/{q(ROOM)}/{SESSION}"):
        assert_error(user.get(path, params={"version": "31337"}), 404, "M_NOT_FOUND")
        assert_error(user.get(path, params={"version": "nope"}), 404, "M_NOT_FOUND")


def test_the_version_parameter_is_required(user):
    new_version(user)
    for path in ("/room_keys/keys", f"/room_keys/keys/{q(ROOM)}", f"/room_keys/keys/{q(ROOM)}/{SESSION}"):
        for method in ("GET", "DELETE"):
            assert_error(user.request(method, path), 400, "M_MISSING_PARAM")
    assert_error(user.put(f"/room_keys/keys/{q(ROOM)}/{SESSION}", key()), 400, "M_MISSING_PARAM")
    assert_error(user.put("/room_keys/keys", {"rooms": {}}), 400, "M_MISSING_PARAM")


def test_uploading_to_an_older_version_is_403_with_the_current_version(user):
    old = new_version(user)
    current = new_version(user)
    for resp in (put_session(user, old, key()),
                 user.put(f"/room_keys/keys/{q(ROOM)}", {"sessions": {"s": key()}}, params={"version": old}),
                 user.put("/room_keys/keys", {"rooms": {}}, params={"version": old})):
        assert_error(resp, 403, "M_WRONG_ROOM_KEYS_VERSION")
        assert resp.json()["current_version"] == current
    assert_matches_spec(put_session(user, old, key()), SESSION_KEY_PATH)
    assert version_info(user, old)["count"] == 0


def test_uploading_to_an_unknown_or_deleted_version_is_404(user):
    version = new_version(user)
    assert_error(put_session(user, "99", key()), 404, "M_NOT_FOUND")
    assert_error(put_session(user, "v1", key()), 404, "M_NOT_FOUND")
    user.delete(f"/room_keys/version/{version}")
    assert_error(put_session(user, version, key()), 404, "M_NOT_FOUND")


def test_uploading_with_no_backup_at_all_is_404(user):
    assert_error(put_session(user, "1", key()), 404, "M_NOT_FOUND")


# The m.megolm_backup.v1 rule ("Server-side key backups"): a verified key beats an unverified
# one; with equal is_verified the lower first_message_index wins; then the lower
# forwarded_count. (stored, uploaded, uploaded replaces stored?)
REPLACEMENT_RULES = [
    (key(5, 5, False), key(5, 5, True), True),     # verified beats unverified
    (key(0, 0, True), key(0, 0, False), False),    # unverified never beats verified ...
    (key(5, 5, True), key(0, 0, False), False),    # ... not even with a lower index
    (key(5, 0, False), key(4, 9, False), True),    # lower index wins
    (key(4, 0, False), key(5, 0, False), False),   # higher index loses
    (key(5, 0, True), key(4, 9, True), True),      # lower index wins among verified keys too
    (key(5, 3, False), key(5, 2, False), True),    # equal index: lower forwarded_count wins
    (key(5, 2, False), key(5, 3, False), False),   # equal index: higher forwarded_count loses
    (key(5, 9, False), key(6, 0, False), False),   # the index decides before the count
    (key(5, 2, False), key(5, 2, False), False),   # a tie keeps the stored key
]


@pytest.mark.parametrize("stored, uploaded, replaces", REPLACEMENT_RULES)
def test_a_key_replaces_the_stored_one_only_if_it_is_better(user, stored, uploaded, replaces):
    version = new_version(user)
    stored, uploaded = dict(stored, session_data={"v": "stored"}), dict(uploaded, session_data={"v": "uploaded"})
    first = put_session(user, version, stored).json()
    second = put_session(user, version, uploaded)
    assert second.status_code == 200, second.text
    assert get_session(user, version).json() == (uploaded if replaces else stored)
    assert second.json()["count"] == 1
    assert (second.json()["etag"] != first["etag"]) == replaces


def test_etag_and_count_change_with_the_keys(user):
    version = new_version(user)
    etag0 = version_info(user)["etag"]
    resp = user.put("/room_keys/keys", {"rooms": {ROOM: {"sessions": {"a": key(), "b": key()}}}},
                    params={"version": version})
    etag1, count = resp.json()["etag"], resp.json()["count"]
    assert count == 2 and etag1 != etag0
    assert version_info(user) == dict(version_info(user), etag=etag1, count=2)
    # An upload that changes nothing leaves the etag; one new session changes it.
    resp = user.put("/room_keys/keys", {"rooms": {ROOM: {"sessions": {"a": key()}}}}, params={"version": version})
    assert resp.json() == {"etag": etag1, "count": 2}
    resp = user.put("/room_keys/keys", {"rooms": {}}, params={"version": version})
    assert resp.json() == {"etag": etag1, "count": 2}
    etag2 = put_session(user, version, key(), session_id="c").json()["etag"]
    assert etag2 not in (etag0, etag1)
    resp = user.delete(f"/room_keys/keys/{q(ROOM)}/c", params={"version": version})
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, SESSION_KEY_PATH)
    etag3 = resp.json()["etag"]
    assert resp.json()["count"] == 2 and etag3 not in (etag0, etag1, etag2)
    assert version_info(user)["etag"] == etag3


def test_deleting_keys_at_each_level(user):
    version = new_version(user)
    rooms = {"!r1:x": {"sessions": {"a": key(), "b": key()}}, "!r2:x": {"sessions": {"c": key()}}}
    assert user.put("/room_keys/keys", {"rooms": rooms}, params={"version": version}).json()["count"] == 3
    resp = user.delete(f"/room_keys/keys/{q('!r1:x')}/a", params={"version": version})
    assert resp.json()["count"] == 2
    assert_error(get_session(user, version, "!r1:x", "a"), 404, "M_NOT_FOUND")
    resp = user.delete(f"/room_keys/keys/{q('!r1:x')}", params={"version": version})
    assert resp.status_code == 200 and resp.json()["count"] == 1
    assert_matches_spec(resp, ROOM_KEYS_PATH)
    assert user.get("/room_keys/keys", params={"version": version}).json() == {"rooms": {"!r2:x": rooms["!r2:x"]}}
    resp = user.delete("/room_keys/keys", params={"version": version})
    assert resp.status_code == 200 and resp.json()["count"] == 0
    assert_matches_spec(resp, KEYS_PATH)
    assert user.get("/room_keys/keys", params={"version": version}).json() == {"rooms": {}}
    # Deleting what is not there changes nothing.
    again = user.delete("/room_keys/keys", params={"version": version})
    assert again.json() == resp.json()
    assert_error(user.delete("/room_keys/keys", params={"version": "555"}), 404, "M_NOT_FOUND")


def test_keys_of_an_older_version_can_still_be_read_and_deleted(user):
    old = new_version(user)
    assert put_session(user, old, key()).status_code == 200
    new_version(user)
    assert get_session(user, old).json() == key()
    resp = user.delete(f"/room_keys/keys/{q(ROOM)}/{q(SESSION)}", params={"version": old})
    assert resp.status_code == 200 and resp.json()["count"] == 0


def test_room_ids_are_not_checked_against_membership(user):
    version = new_version(user)
    assert put_session(user, version, key(), room_id="!nowhere:elsewhere.example").status_code == 200
    assert get_session(user, version, room_id="!nowhere:elsewhere.example").json() == key()


BAD_KEYS = [
    {"first_message_index": 0, "forwarded_count": 0, "is_verified": False},
    dict(key(), session_data="not an object"),
    dict(key(), session_data=["list"]),
    dict(key(), first_message_index="1"),
    dict(key(), first_message_index=True),
    dict(key(), first_message_index=-1),
    dict(key(), first_message_index=1.5),
    dict(key(), forwarded_count=2 ** 64),
    dict(key(), forwarded_count=None),
    dict(key(), is_verified="true"),
    dict(key(), is_verified=1),
    dict(key(), session_data={"ciphertext": "a\u0000b"}),
    dict(key(), session_data={"a\u0000": "b"}),
]


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_a_malformed_key_is_refused_at_every_level_and_nothing_is_stored(user, bad):
    version = new_version(user)
    good = key()
    for resp in (put_session(user, version, bad),
                 user.put(f"/room_keys/keys/{q(ROOM)}", {"sessions": {"good": good, "bad": bad}},
                          params={"version": version}),
                 user.put("/room_keys/keys", {"rooms": {"!ok:x": {"sessions": {"good": good}},
                                                        ROOM: {"sessions": {"bad": bad}}}},
                          params={"version": version})):
        assert_error(resp, 400, "M_BAD_JSON")
    info = version_info(user)
    assert info["count"] == 0 and info["etag"] == "0"


@pytest.mark.parametrize("body", [
    {}, {"rooms": []}, {"rooms": "x"}, {"rooms": {ROOM: []}}, {"rooms": {ROOM: {}}},
    {"rooms": {ROOM: {"sessions": []}}}, {"rooms": {ROOM: {"sessions": {"s": "key"}}}},
])
def test_a_malformed_backup_body_is_refused(user, body):
    version = new_version(user)
    assert_error(user.put("/room_keys/keys", body, params={"version": version}), 400, "M_BAD_JSON")
    assert version_info(user)["count"] == 0


def test_ids_with_nul_or_too_long_are_refused(user):
    version = new_version(user)
    assert_error(put_session(user, version, key(), room_id="!a\u0000b:x"), 400, "M_INVALID_PARAM")
    assert_error(put_session(user, version, key(), session_id="s\u0000"), 400, "M_INVALID_PARAM")
    assert_error(put_session(user, version, key(), session_id="s" * 256), 400, "M_INVALID_PARAM")
    resp = user.put("/room_keys/keys", {"rooms": {"!a\u0000:x": {"sessions": {"s": key()}}}},
                    params={"version": version})
    assert_error(resp, 400, "M_INVALID_PARAM")
    assert_error(get_session(user, version, session_id="s\u0000"), 400, "M_INVALID_PARAM")
    assert version_info(user)["count"] == 0


def test_non_json_body_is_refused(user):
    version = new_version(user)
    resp = user.request("PUT", f"/room_keys/keys/{q(ROOM)}/{SESSION}", params={"version": version},
                        data=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "M_NOT_JSON")


def test_concurrent_uploads_of_one_session_keep_the_best_key(user):
    version = new_version(user)
    candidates = [key(first_message_index=i, tag=str(i)) for i in (7, 3, 9, 0, 5, 2, 8, 1, 6, 4)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(lambda k: put_session(user, version, k).status_code, candidates))
    assert statuses == [200] * 10
    assert get_session(user, version).json() == key(first_message_index=0, tag="0")
    assert version_info(user)["count"] == 1


def test_deactivating_the_account_deletes_its_backups(user, db_dsn):
    version = new_version(user)
    assert put_session(user, version, key()).status_code == 200
    session = start_uia(user, "POST", "/account/deactivate", {})
    resp = user.post("/account/deactivate", {"auth": password_auth(session, user.user_id)})
    assert resp.status_code == 200, resp.text
    assert query(db_dsn, "SELECT count(*) FROM e2e_room_keys WHERE user_id = %s", (user.user_id,)) == [(0,)]
    assert query(db_dsn, "SELECT bool_and(deleted) FROM e2e_room_keys_versions WHERE user_id = %s",
                 (user.user_id,)) == [(True,)]
