"""Synapse's registration-token admin API, and tokens made with it used on /register."""

import hashlib
import hmac

import pytest

from tests.harness import Client, running_homeserver

PREFIX = "/_synapse/admin/v1/registration_tokens"


def shared_secret_register(server, username, admin):
    client = Client(server)
    nonce = client.get("/_synapse/admin/v1/register").json()["nonce"]
    mac = hmac.new(b"test-shared-secret", digestmod=hashlib.sha1)
    mac.update(b"\x00".join([nonce.encode(), username.encode(), b"pw", b"admin" if admin else b"notadmin"]))
    resp = client.post("/_synapse/admin/v1/register", {"nonce": nonce, "username": username, "password": "pw",
                                                       "admin": admin, "mac": mac.hexdigest()})
    assert resp.status_code == 200, resp.text
    client.access_token, client.user_id = resp.json()["access_token"], resp.json()["user_id"]
    return client


@pytest.fixture(scope="module")
def server(db_dsn):
    with running_homeserver(db_dsn, registration_requires_token=True) as hs:
        yield hs


@pytest.fixture(scope="module")
def admin(server):
    return shared_secret_register(server, "root", admin=True)


def register_with_token(server, username, token):
    client = Client(server)
    body = {"username": username, "password": "pw"}
    session = client.post("/register", body).json()["session"]
    body["auth"] = {"type": "m.login.registration_token", "token": token, "session": session}
    return client.post("/register", body)


def test_non_admin_is_forbidden(server):
    user = shared_secret_register(server, "mortal", admin=False)
    resp = user.post(PREFIX + "/new", {})
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_FORBIDDEN"
    assert user.get(PREFIX).status_code == 403


def test_missing_token_is_refused(server):
    assert Client(server).get(PREFIX).json()["errcode"] == "M_MISSING_TOKEN"


def test_created_token_admits_exactly_its_uses(server, admin):
    created = admin.post(PREFIX + "/new", {"token": "once-only", "uses_allowed": 1}).json()
    assert created == {"token": "once-only", "uses_allowed": 1, "pending": 0, "completed": 0, "expiry_time": None}
    assert register_with_token(server, "first", "once-only").status_code == 200
    second = register_with_token(server, "second", "once-only")
    assert second.status_code == 401
    assert second.json()["errcode"] == "M_UNAUTHORIZED"
    assert admin.get(PREFIX + "/once-only").json()["completed"] == 1


def test_generated_token_has_requested_length(server, admin):
    token = admin.post(PREFIX + "/new", {"length": 40}).json()["token"]
    assert len(token) == 40
    assert register_with_token(server, "generated", token).status_code == 200


def test_duplicate_and_invalid_tokens_are_refused(server, admin):
    assert admin.post(PREFIX + "/new", {"token": "dup"}).status_code == 200
    assert admin.post(PREFIX + "/new", {"token": "dup"}).json()["errcode"] == "M_INVALID_PARAM"
    for body in ({"token": "has space"}, {"uses_allowed": -1}, {"expiry_time": 1}, {"length": 65},
                 {"uses_allowed": "3"}):
        resp = admin.post(PREFIX + "/new", body)
        assert resp.status_code == 400, body
        assert resp.json()["errcode"] == "M_INVALID_PARAM", body


def test_update_list_and_delete(server, admin):
    admin.post(PREFIX + "/new", {"token": "editable", "uses_allowed": 0})
    assert "editable" in [t["token"] for t in admin.get(PREFIX, params={"valid": "false"}).json()
                          ["registration_tokens"]]
    updated = admin.put(PREFIX + "/editable", {"uses_allowed": None}).json()
    assert updated["uses_allowed"] is None
    assert "editable" in [t["token"] for t in admin.get(PREFIX, params={"valid": "true"}).json()
                          ["registration_tokens"]]
    assert admin.delete(PREFIX + "/editable").json() == {}
    assert admin.get(PREFIX + "/editable").status_code == 404
    assert admin.delete(PREFIX + "/editable").json()["errcode"] == "M_NOT_FOUND"
