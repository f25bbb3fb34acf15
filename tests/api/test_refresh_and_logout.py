"""Access tokens (header and query), their expiry, POST /refresh rotation, /logout and /logout/all.

The default server's refreshable access tokens live 5 minutes; a second server on this module's
database issues ones that live one second, for the expiry tests.
"""

import time
import uuid

import pytest

from tests.harness import Client, running_homeserver

PASSWORD = "correct horse battery"
SHORT_LIFETIME_MS = 1000


@pytest.fixture(scope="module")
def short_server(db_dsn, homeserver):
    with running_homeserver(db_dsn, refreshable_access_token_lifetime=SHORT_LIFETIME_MS) as server:
        yield server


def new_user(server, **extra) -> Client:
    return Client(server).register(f"tok_{uuid.uuid4().hex[:12]}", PASSWORD, **extra)


def refreshable_login(server, user_id) -> dict:
    resp = Client(server).post("/login", {"type": "m.login.password", "refresh_token": True, "password": PASSWORD,
                                          "identifier": {"type": "m.id.user", "user": user_id}})
    assert resp.status_code == 200, resp.text
    return resp.json()


def refresh(server, refresh_token):
    return Client(server).post("/refresh", {"refresh_token": refresh_token})


def whoami(server, token):
    return Client(server).get("/account/whoami", token=token)


def device_ids(client) -> set:
    return {d["device_id"] for d in client.get("/devices").json()["devices"]}


# --- presenting an access token ---------------------------------------------------------------

def test_access_token_in_the_authorization_header_is_accepted(homeserver):
    user = new_user(homeserver)
    resp = Client(homeserver).get("/account/whoami", headers={"Authorization": f"Bearer {user.access_token}"})
    assert resp.status_code == 200
    assert resp.json()["user_id"] == user.user_id


def test_access_token_in_the_query_string_is_accepted(homeserver):
    user = new_user(homeserver)
    resp = Client(homeserver).get("/account/whoami", params={"access_token": user.access_token})
    assert resp.status_code == 200
    assert resp.json()["user_id"] == user.user_id


def test_missing_access_token_is_missing_token(homeserver):
    resp = Client(homeserver).get("/account/whoami")
    assert resp.status_code == 401
    assert resp.json()["errcode"] == "M_MISSING_TOKEN"


def test_authorization_header_of_another_scheme_is_missing_token(homeserver):
    resp = Client(homeserver).get("/account/whoami", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert resp.status_code == 401
    assert resp.json()["errcode"] == "M_MISSING_TOKEN"


@pytest.mark.parametrize("where", ["header", "query"])
def test_unknown_access_token_is_a_hard_logout(homeserver, where):
    client = Client(homeserver)
    if where == "header":
        resp = client.get("/account/whoami", token="hsa_not_a_real_token")
    else:
        resp = client.get("/account/whoami", params={"access_token": "hsa_not_a_real_token"})
    assert resp.status_code == 401
    assert resp.json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert resp.json()["soft_logout"] is False


def test_expired_refreshable_access_token_is_a_soft_logout_and_refresh_recovers(short_server, homeserver):
    user = new_user(homeserver)
    session = refreshable_login(short_server, user.user_id)
    assert session["expires_in_ms"] == SHORT_LIFETIME_MS
    assert whoami(short_server, session["access_token"]).status_code == 200
    time.sleep(SHORT_LIFETIME_MS / 1000 + 0.2)

    expired = whoami(short_server, session["access_token"])
    assert expired.status_code == 401
    assert expired.json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert expired.json()["soft_logout"] is True

    renewed = refresh(short_server, session["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    assert whoami(short_server, renewed.json()["access_token"]).status_code == 200


# --- POST /refresh ----------------------------------------------------------------------------

def test_refresh_returns_new_tokens_for_the_same_device(homeserver):
    user = new_user(homeserver)
    session = refreshable_login(homeserver, user.user_id)
    resp = refresh(homeserver, session["refresh_token"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"access_token", "refresh_token", "expires_in_ms"}
    assert body["access_token"] != session["access_token"]
    assert body["refresh_token"] != session["refresh_token"]
    assert body["expires_in_ms"] == 5 * 60 * 1000
    me = whoami(homeserver, body["access_token"])
    assert me.status_code == 200
    assert me.json() == {"user_id": user.user_id, "device_id": session["device_id"], "is_guest": False}


def test_old_refresh_token_still_works_until_the_new_access_token_is_used(homeserver):
    # A client whose /refresh answer was lost may retry with the old refresh token.
    user = new_user(homeserver)
    session = refreshable_login(homeserver, user.user_id)
    lost = refresh(homeserver, session["refresh_token"]).json()
    retried = refresh(homeserver, session["refresh_token"])
    assert retried.status_code == 200, retried.text
    assert whoami(homeserver, retried.json()["access_token"]).status_code == 200
    # The answer that was lost gives no second live session for the device.
    gone = whoami(homeserver, lost["access_token"])
    assert gone.status_code == 401 and gone.json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert refresh(homeserver, lost["refresh_token"]).status_code == 401


def test_old_refresh_token_is_revoked_once_the_new_access_token_is_used(homeserver):
    user = new_user(homeserver)
    session = refreshable_login(homeserver, user.user_id)
    renewed = refresh(homeserver, session["refresh_token"]).json()
    assert whoami(homeserver, renewed["access_token"]).status_code == 200
    replay = refresh(homeserver, session["refresh_token"])
    assert replay.status_code == 401
    assert replay.json()["errcode"] == "M_UNKNOWN_TOKEN"
    # ...and the access token issued with it has gone too.
    assert whoami(homeserver, session["access_token"]).status_code == 401
    assert whoami(homeserver, renewed["access_token"]).status_code == 200


def test_old_refresh_token_is_revoked_once_the_new_refresh_token_is_used(homeserver):
    user = new_user(homeserver)
    session = refreshable_login(homeserver, user.user_id)
    second = refresh(homeserver, session["refresh_token"]).json()
    third = refresh(homeserver, second["refresh_token"])
    assert third.status_code == 200, third.text
    assert refresh(homeserver, session["refresh_token"]).status_code == 401
    assert whoami(homeserver, third.json()["access_token"]).status_code == 200


def test_refresh_tokens_rotate_along_a_chain(homeserver):
    user = new_user(homeserver)
    tokens = refreshable_login(homeserver, user.user_id)
    for _ in range(3):
        resp = refresh(homeserver, tokens["refresh_token"])
        assert resp.status_code == 200, resp.text
        tokens = resp.json()
        assert whoami(homeserver, tokens["access_token"]).status_code == 200


def test_registration_refresh_token_can_be_refreshed(homeserver):
    resp = Client(homeserver).post("/register", {"username": f"tok_{uuid.uuid4().hex[:12]}", "password": PASSWORD,
                                                 "refresh_token": True, "auth": {"type": "m.login.dummy"}})
    assert resp.status_code == 200, resp.text
    renewed = refresh(homeserver, resp.json()["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    assert whoami(homeserver, renewed.json()["access_token"]).json()["device_id"] == resp.json()["device_id"]


def test_unknown_refresh_token_is_unknown_token(homeserver):
    resp = refresh(homeserver, "hsr_not_a_real_token")
    assert resp.status_code == 401
    assert resp.json()["errcode"] == "M_UNKNOWN_TOKEN"


def test_access_token_is_not_a_refresh_token(homeserver):
    user = new_user(homeserver)
    assert refresh(homeserver, user.access_token).status_code == 401


@pytest.mark.parametrize("body,errcode", [({}, "M_MISSING_PARAM"), ({"refresh_token": 5}, "M_BAD_JSON")])
def test_refresh_without_a_string_token_is_a_bad_request(homeserver, body, errcode):
    resp = Client(homeserver).post("/refresh", body)
    assert resp.status_code == 400
    assert resp.json()["errcode"] == errcode


def test_non_refreshable_session_has_no_expiry(homeserver):
    user = new_user(homeserver)
    resp = Client(homeserver).post("/login", {"type": "m.login.password", "password": PASSWORD,
                                              "identifier": {"type": "m.id.user", "user": user.user_id}})
    assert "expires_in_ms" not in resp.json() and "refresh_token" not in resp.json()


# --- /logout and /logout/all ------------------------------------------------------------------

def test_logout_ends_that_session_and_deletes_its_device(homeserver):
    user = new_user(homeserver)
    other = Client(homeserver).login(user.user_id, PASSWORD)
    resp = other.post("/logout", {})
    assert resp.status_code == 200
    assert resp.json() == {}
    dead = other.get("/account/whoami")
    assert dead.status_code == 401
    assert dead.json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert device_ids(user) == {user.device_id}
    assert user.get("/account/whoami").status_code == 200


def test_logout_revokes_the_refresh_token_of_that_session(homeserver):
    user = new_user(homeserver)
    session = refreshable_login(homeserver, user.user_id)
    assert Client(homeserver, session["access_token"]).post("/logout", {}).status_code == 200
    resp = refresh(homeserver, session["refresh_token"])
    assert resp.status_code == 401
    assert resp.json()["errcode"] == "M_UNKNOWN_TOKEN"


def test_logout_requires_an_access_token(homeserver):
    resp = Client(homeserver).post("/logout", {})
    assert resp.status_code == 401
    assert resp.json()["errcode"] == "M_MISSING_TOKEN"


def test_logout_all_ends_every_session_of_the_user_only(homeserver):
    user = new_user(homeserver)
    second = Client(homeserver).login(user.user_id, PASSWORD)
    refreshable = refreshable_login(homeserver, user.user_id)
    bystander = new_user(homeserver)

    resp = second.post("/logout/all", {})
    assert resp.status_code == 200
    assert resp.json() == {}
    for token in (user.access_token, second.access_token, refreshable["access_token"]):
        dead = whoami(homeserver, token)
        assert dead.status_code == 401
        assert dead.json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert refresh(homeserver, refreshable["refresh_token"]).status_code == 401
    fresh = Client(homeserver).login(user.user_id, PASSWORD)
    assert device_ids(fresh) == {fresh.device_id}
    assert bystander.get("/account/whoami").status_code == 200
