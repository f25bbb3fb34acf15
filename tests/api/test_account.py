"""The account itself (client-server API "Account registration and management"): whoami,
changing the password and deactivating, the last two under user-interactive auth."""

import pytest

from tests.harness import Client, assert_error

PASSWORD = "correct horse battery"
NEW_PASSWORD = "battery staple horse"


def localpart(user: Client) -> str:
    return user.user_id.split(":")[0][1:]


def login_attempt(server, username, password):
    return Client(server).post("/login", {"type": "m.login.password",
                                          "identifier": {"type": "m.id.user", "user": username},
                                          "password": password})


def password_auth(session, user_id, password=PASSWORD):
    return {"type": "m.login.password", "session": session,
            "identifier": {"type": "m.id.user", "user": user_id}, "password": password}


def with_uia(client: Client, path: str, body: dict, password=PASSWORD, auth_user=None):
    first = client.post(path, body)
    assert first.status_code == 401, first.text
    assert first.json()["flows"] == [{"stages": ["m.login.password"]}]
    auth = password_auth(first.json()["session"], auth_user or client.user_id, password)
    return client.post(path, {**body, "auth": auth})


# --- whoami ---

def test_whoami_names_the_user_and_device(homeserver):
    alice = Client(homeserver).register("alice")
    resp = alice.get("/account/whoami")
    assert resp.status_code == 200
    assert resp.json() == {"user_id": "@alice:test.local", "device_id": alice.device_id, "is_guest": False}


def test_whoami_for_a_second_login_names_that_device(homeserver):
    first = Client(homeserver).register("whoami2")
    second = Client(homeserver).login("whoami2")
    assert second.device_id != first.device_id
    assert second.get("/account/whoami").json()["device_id"] == second.device_id


def test_whoami_without_a_token_is_401_missing_token(homeserver):
    assert_error(Client(homeserver).get("/account/whoami"), 401, "M_MISSING_TOKEN")


# --- changing the password ---

def test_change_password_first_asks_for_the_current_password(homeserver):
    user = Client(homeserver).register("pw_ask")
    resp = user.post("/account/password", {"new_password": NEW_PASSWORD})
    assert resp.status_code == 401
    assert resp.json()["flows"] == [{"stages": ["m.login.password"]}]
    assert resp.json()["session"]
    assert login_attempt(homeserver, "pw_ask", PASSWORD).status_code == 200


def test_change_password_replaces_the_old_one(homeserver):
    user = Client(homeserver).register("pw_change")
    resp = with_uia(user, "/account/password", {"new_password": NEW_PASSWORD})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert_error(login_attempt(homeserver, "pw_change", PASSWORD), 403, "M_FORBIDDEN")
    assert login_attempt(homeserver, "pw_change", NEW_PASSWORD).status_code == 200


def test_change_password_with_wrong_current_password_is_401_forbidden(homeserver):
    user = Client(homeserver).register("pw_wrong")
    resp = with_uia(user, "/account/password", {"new_password": NEW_PASSWORD}, password="guess")
    assert_error(resp, 401, "M_FORBIDDEN")
    assert resp.json()["flows"] == [{"stages": ["m.login.password"]}]
    assert login_attempt(homeserver, "pw_wrong", PASSWORD).status_code == 200
    assert_error(login_attempt(homeserver, "pw_wrong", NEW_PASSWORD), 403, "M_FORBIDDEN")


def test_change_password_with_another_users_password_is_refused(homeserver):
    user = Client(homeserver).register("pw_victim")
    attacker = Client(homeserver).register("pw_attacker")
    resp = with_uia(user, "/account/password", {"new_password": NEW_PASSWORD}, auth_user=attacker.user_id)
    assert_error(resp, 401, "M_FORBIDDEN")
    assert login_attempt(homeserver, "pw_victim", PASSWORD).status_code == 200


def test_change_password_logs_out_other_devices_by_default(homeserver):
    user = Client(homeserver).register("pw_logout")
    other = Client(homeserver).login("pw_logout")
    assert with_uia(user, "/account/password", {"new_password": NEW_PASSWORD}).status_code == 200
    assert_error(other.get("/account/whoami"), 401, "M_UNKNOWN_TOKEN")
    assert user.get("/account/whoami").status_code == 200
    assert [d["device_id"] for d in user.get("/devices").json()["devices"]] == [user.device_id]


def test_change_password_with_logout_devices_false_keeps_other_devices(homeserver):
    user = Client(homeserver).register("pw_keep")
    other = Client(homeserver).login("pw_keep")
    resp = with_uia(user, "/account/password", {"new_password": NEW_PASSWORD, "logout_devices": False})
    assert resp.status_code == 200, resp.text
    assert other.get("/account/whoami").status_code == 200
    assert user.get("/account/whoami").status_code == 200
    assert login_attempt(homeserver, "pw_keep", NEW_PASSWORD).status_code == 200


def test_change_password_without_new_password_is_400_missing_param(homeserver):
    user = Client(homeserver).register("pw_missing")
    assert_error(user.post("/account/password", {}), 400, "M_MISSING_PARAM")


@pytest.fixture(scope="module")
def typo_user(homeserver):
    # Shared: a mistyped request is refused before any change, so the account stays as it was.
    return Client(homeserver).register("pw_typo")


@pytest.mark.parametrize("body", [{"new_password": 12345678}, {"new_password": ["x"]},
                                  {"new_password": NEW_PASSWORD, "logout_devices": "yes"}])
def test_change_password_with_mistyped_fields_is_400_bad_json(homeserver, typo_user, body):
    assert_error(typo_user.post("/account/password", body), 400, "M_BAD_JSON")
    assert login_attempt(homeserver, "pw_typo", PASSWORD).status_code == 200


def test_change_password_needs_a_token(homeserver):
    assert_error(Client(homeserver).post("/account/password", {"new_password": NEW_PASSWORD}),
                 401, "M_MISSING_TOKEN")


def test_uia_session_cannot_be_replayed_to_change_the_password_again(homeserver):
    user = Client(homeserver).register("pw_replay")
    first = user.post("/account/password", {"new_password": NEW_PASSWORD, "logout_devices": False})
    auth = password_auth(first.json()["session"], user.user_id)
    assert user.post("/account/password", {"new_password": NEW_PASSWORD, "logout_devices": False,
                                           "auth": auth}).status_code == 200
    replay = user.post("/account/password", {"new_password": "third password here", "auth": auth})
    assert_error(replay, 400, "M_UNKNOWN")
    assert login_attempt(homeserver, "pw_replay", NEW_PASSWORD).status_code == 200


# --- deactivation ---

def test_deactivate_first_asks_for_the_password(homeserver):
    user = Client(homeserver).register("deact_ask")
    resp = user.post("/account/deactivate", {})
    assert resp.status_code == 401
    assert resp.json()["flows"] == [{"stages": ["m.login.password"]}]
    assert user.get("/account/whoami").status_code == 200


def test_deactivate_with_wrong_password_is_401_forbidden_and_keeps_the_account(homeserver):
    user = Client(homeserver).register("deact_wrong")
    assert_error(with_uia(user, "/account/deactivate", {}, password="guess"), 401, "M_FORBIDDEN")
    assert user.get("/account/whoami").status_code == 200
    assert login_attempt(homeserver, "deact_wrong", PASSWORD).status_code == 200


def test_deactivate_with_another_users_password_is_refused(homeserver):
    user = Client(homeserver).register("deact_victim")
    attacker = Client(homeserver).register("deact_attacker")
    resp = with_uia(user, "/account/deactivate", {}, auth_user=attacker.user_id)
    assert_error(resp, 401, "M_FORBIDDEN")
    assert user.get("/account/whoami").status_code == 200


def test_deactivate_returns_the_unbind_result(homeserver):
    user = Client(homeserver).register("deact_ok")
    resp = with_uia(user, "/account/deactivate", {})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"id_server_unbind_result": "no-support"}


def test_deactivate_kills_every_token_of_the_user(homeserver):
    user = Client(homeserver).register("deact_tokens")
    other = Client(homeserver).login("deact_tokens")
    assert with_uia(user, "/account/deactivate", {}).status_code == 200
    assert_error(user.get("/account/whoami"), 401, "M_UNKNOWN_TOKEN")
    assert_error(other.get("/account/whoami"), 401, "M_UNKNOWN_TOKEN")


def test_deactivated_user_cannot_log_in(homeserver):
    user = Client(homeserver).register("deact_login")
    assert with_uia(user, "/account/deactivate", {}).status_code == 200
    assert_error(login_attempt(homeserver, "deact_login", PASSWORD), 403, "M_USER_DEACTIVATED")


def test_deactivated_user_profile_is_404(homeserver):
    user = Client(homeserver).register("deact_profile")
    user.put(f"/profile/{user.user_id}/avatar_url", {"avatar_url": "mxc://test.local/face"})
    assert with_uia(user, "/account/deactivate", {}).status_code == 200
    assert_error(Client(homeserver).get(f"/profile/{user.user_id}"), 404, "M_NOT_FOUND")
    assert_error(Client(homeserver).get(f"/profile/{user.user_id}/displayname"), 404, "M_NOT_FOUND")


def test_deactivated_user_id_cannot_be_registered_again(homeserver):
    user = Client(homeserver).register("deact_reuse")
    assert with_uia(user, "/account/deactivate", {}).status_code == 200
    resp = Client(homeserver).post("/register", {"username": "deact_reuse", "password": PASSWORD})
    assert_error(resp, 400, "M_USER_IN_USE")


def test_deactivate_with_erase_true_succeeds(homeserver):
    user = Client(homeserver).register("deact_erase")
    resp = with_uia(user, "/account/deactivate", {"erase": True})
    assert resp.status_code == 200, resp.text
    assert_error(user.get("/account/whoami"), 401, "M_UNKNOWN_TOKEN")


def test_deactivate_with_mistyped_erase_is_400_bad_json(homeserver):
    user = Client(homeserver).register("deact_badtype")
    assert_error(user.post("/account/deactivate", {"erase": "yes"}), 400, "M_BAD_JSON")
    assert user.get("/account/whoami").status_code == 200


def test_deactivate_needs_a_token(homeserver):
    assert_error(Client(homeserver).post("/account/deactivate", {}), 401, "M_MISSING_TOKEN")
