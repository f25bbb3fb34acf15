"""Shared-secret registration, wire-compatible with Synapse's /_synapse/admin/v1/register (what
`register_new_matrix_user` speaks). The MAC is computed here independently, as Synapse documents
it: HMAC-SHA1 keyed with the secret over nonce NUL username NUL password NUL admin|notadmin
[NUL user_type], hex-encoded."""

import hashlib
import hmac
import uuid

import pytest

from tests.harness import Client, query, running_homeserver

SECRET = "test-shared-secret"  # the harness's registration_shared_secret
PATH = "/_synapse/admin/v1/register"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def no_secret_server(db_dsn, homeserver):
    with running_homeserver(db_dsn, registration_shared_secret=None) as server:
        yield server


@pytest.fixture(scope="module")
def closed_server(db_dsn, homeserver):
    with running_homeserver(db_dsn, enable_registration=False) as server:
        yield server


def mac_for(nonce, username, password, admin=False, user_type=None, secret=SECRET) -> str:
    parts = [nonce, username, password, "admin" if admin else "notadmin"] + ([user_type] if user_type else [])
    return hmac.new(secret.encode(), b"\x00".join(p.encode() for p in parts), hashlib.sha1).hexdigest()


def nonce(server) -> str:
    resp = Client(server).get(PATH)
    assert resp.status_code == 200, resp.text
    return resp.json()["nonce"]


def fresh_name() -> str:
    return f"admin_reg_{uuid.uuid4().hex[:10]}"


def shared_secret_register(server, username, password=PASSWORD, admin=False, user_type=None, **extra):
    n = nonce(server)
    body = {"nonce": n, "username": username, "password": password, "admin": admin,
            "mac": mac_for(n, username, password, admin, user_type), **extra}
    if user_type:
        body["user_type"] = user_type
    return Client(server).post(PATH, body)


def test_nonce_is_handed_out(homeserver):
    first, second = nonce(homeserver), nonce(homeserver)
    assert isinstance(first, str) and len(first) >= 16
    assert first != second


def test_correct_mac_registers_a_user_who_can_log_in(homeserver, db_dsn):
    name = fresh_name()
    resp = shared_secret_register(homeserver, name)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["user_id"] == f"@{name}:test.local"
    assert body["home_server"] == "test.local"
    assert Client(homeserver, body["access_token"]).get("/account/whoami").json()["device_id"] == body["device_id"]
    assert Client(homeserver).login(name, PASSWORD).user_id == body["user_id"]
    assert query(db_dsn, "SELECT admin, user_type FROM users WHERE user_id = %s", (body["user_id"],)) == [
        (False, None)]


def test_admin_flag_is_stored(homeserver, db_dsn):
    resp = shared_secret_register(homeserver, fresh_name(), admin=True)
    assert resp.status_code == 200, resp.text
    assert query(db_dsn, "SELECT admin FROM users WHERE user_id = %s", (resp.json()["user_id"],)) == [(True,)]


def test_user_type_is_covered_by_the_mac_and_stored(homeserver, db_dsn):
    resp = shared_secret_register(homeserver, fresh_name(), user_type="bot")
    assert resp.status_code == 200, resp.text
    assert query(db_dsn, "SELECT user_type FROM users WHERE user_id = %s", (resp.json()["user_id"],)) == [("bot",)]


def test_displayname_is_set_on_the_profile(homeserver):
    resp = shared_secret_register(homeserver, fresh_name(), displayname="Friendly Bot")
    user_id = resp.json()["user_id"]
    assert Client(homeserver).get(f"/profile/{user_id}/displayname").json() == {"displayname": "Friendly Bot"}


def test_works_while_public_registration_is_disabled(closed_server):
    resp = shared_secret_register(closed_server, fresh_name())
    assert resp.status_code == 200, resp.text


def test_wrong_mac_is_forbidden_and_creates_nobody(homeserver, db_dsn):
    name = fresh_name()
    n = nonce(homeserver)
    resp = Client(homeserver).post(PATH, {"nonce": n, "username": name, "password": PASSWORD, "admin": False,
                                          "mac": mac_for(n, name, PASSWORD, secret="not-the-secret")})
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_FORBIDDEN"
    assert query(db_dsn, "SELECT 1 FROM users WHERE user_id = %s", (f"@{name}:test.local",)) == []


def test_mac_for_notadmin_does_not_register_an_admin(homeserver, db_dsn):
    name = fresh_name()
    n = nonce(homeserver)
    resp = Client(homeserver).post(PATH, {"nonce": n, "username": name, "password": PASSWORD, "admin": True,
                                          "mac": mac_for(n, name, PASSWORD, admin=False)})
    assert resp.status_code == 403
    assert query(db_dsn, "SELECT 1 FROM users WHERE user_id = %s", (f"@{name}:test.local",)) == []


def test_mac_without_the_user_type_does_not_register_with_one(homeserver):
    name = fresh_name()
    n = nonce(homeserver)
    resp = Client(homeserver).post(PATH, {"nonce": n, "username": name, "password": PASSWORD, "user_type": "bot",
                                          "mac": mac_for(n, name, PASSWORD)})
    assert resp.status_code == 403


def test_non_ascii_mac_is_forbidden_not_a_server_error(homeserver):
    n = nonce(homeserver)
    resp = Client(homeserver).post(PATH, {"nonce": n, "username": fresh_name(), "password": PASSWORD,
                                          "mac": "é" * 40})
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_FORBIDDEN"


def test_nonce_cannot_be_reused_after_success(homeserver):
    name = fresh_name()
    n = nonce(homeserver)
    body = {"nonce": n, "username": name, "password": PASSWORD, "mac": mac_for(n, name, PASSWORD)}
    assert Client(homeserver).post(PATH, body).status_code == 200
    other = fresh_name()
    replay = Client(homeserver).post(PATH, {**body, "username": other, "mac": mac_for(n, other, PASSWORD)})
    assert replay.status_code == 400
    assert replay.json()["errcode"] == "M_UNKNOWN"


def test_nonce_is_spent_by_a_wrong_mac(homeserver):
    name = fresh_name()
    n = nonce(homeserver)
    assert Client(homeserver).post(PATH, {"nonce": n, "username": name, "password": PASSWORD,
                                          "mac": "0" * 40}).status_code == 403
    retry = Client(homeserver).post(PATH, {"nonce": n, "username": name, "password": PASSWORD,
                                           "mac": mac_for(n, name, PASSWORD)})
    assert retry.status_code == 400


def test_unknown_nonce_is_refused(homeserver):
    name = fresh_name()
    resp = Client(homeserver).post(PATH, {"nonce": "made-up", "username": name, "password": PASSWORD,
                                          "mac": mac_for("made-up", name, PASSWORD)})
    assert resp.status_code == 400


def test_taken_username_is_user_in_use(homeserver):
    name = fresh_name()
    assert shared_secret_register(homeserver, name).status_code == 200
    resp = shared_secret_register(homeserver, name.upper())
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_USER_IN_USE"


def test_invalid_username_is_invalid_username(homeserver):
    resp = shared_secret_register(homeserver, "_bad name")
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_INVALID_USERNAME"


def test_nul_in_the_password_is_refused(homeserver, db_dsn):
    # NUL separates the MAC's fields: it must not be able to shift bytes between them.
    name = fresh_name()
    resp = shared_secret_register(homeserver, name, password="pass\x00word")
    assert resp.status_code == 400
    assert query(db_dsn, "SELECT 1 FROM users WHERE user_id = %s", (f"@{name}:test.local",)) == []


def test_nul_in_the_displayname_is_refused(homeserver, db_dsn):
    name = fresh_name()
    resp = shared_secret_register(homeserver, name, displayname="Bot\x00")
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_INVALID_PARAM"
    assert query(db_dsn, "SELECT 1 FROM users WHERE user_id = %s", (f"@{name}:test.local",)) == []


def test_unknown_user_type_is_refused(homeserver):
    resp = shared_secret_register(homeserver, fresh_name(), user_type="overlord")
    assert resp.status_code == 400


@pytest.mark.parametrize("missing", ["nonce", "username", "password", "mac"])
def test_missing_field_is_missing_param(homeserver, missing):
    name = fresh_name()
    n = nonce(homeserver)
    body = {"nonce": n, "username": name, "password": PASSWORD, "mac": mac_for(n, name, PASSWORD)}
    del body[missing]
    resp = Client(homeserver).post(PATH, body)
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_MISSING_PARAM"


def test_nonce_without_a_shared_secret_is_refused(no_secret_server):
    resp = Client(no_secret_server).get(PATH)
    assert resp.status_code == 400


def test_registration_without_a_shared_secret_is_refused(no_secret_server, db_dsn):
    name = fresh_name()
    resp = Client(no_secret_server).post(PATH, {"nonce": "x", "username": name, "password": PASSWORD,
                                                "mac": mac_for("x", name, PASSWORD, secret="")})
    assert resp.status_code == 400
    assert query(db_dsn, "SELECT 1 FROM users WHERE user_id = %s", (f"@{name}:test.local",)) == []
