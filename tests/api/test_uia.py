"""User-interactive auth (client-server API, "User-Interactive Authentication API"): sessions
finish one operation only, stay bound to the request that opened them, and a failed stage
answers 401 with the flows so the client can retry."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.harness import Client, query

PASSWORD = "correct horse battery"
PASSWORD_FLOWS = [{"stages": ["m.login.password"]}]


def user_count(db_dsn) -> int:
    return query(db_dsn, "SELECT count(*) FROM users")[0][0]


def register_session(client, username) -> str:
    resp = client.post("/register", {"username": username, "password": PASSWORD})
    assert resp.status_code == 401, resp.text
    return resp.json()["session"]


def password_auth(user_id, session, password=PASSWORD) -> dict:
    return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
            "password": password, "session": session}


@pytest.fixture
def user(homeserver):
    """A fresh user with two devices: `user` (signed in) and the id of a second device."""
    name = f"uia_{uuid.uuid4().hex[:12]}"
    client = Client(homeserver).register(name, PASSWORD)
    client.other_device = Client(homeserver).login(name, PASSWORD).device_id
    return client


# --- sessions finish one operation ------------------------------------------------------------

def test_completed_registration_session_cannot_be_replayed(homeserver, db_dsn):
    client = Client(homeserver)
    session = register_session(client, "replay_first")
    done = client.post("/register", {"username": "replay_first", "password": PASSWORD,
                                     "auth": {"type": "m.login.dummy", "session": session}})
    assert done.status_code == 200, done.text

    before = user_count(db_dsn)
    replay = client.post("/register", {"username": "replay_second", "password": PASSWORD,
                                       "auth": {"type": "m.login.dummy", "session": session}})
    assert replay.status_code == 400
    assert replay.json()["errcode"] == "M_UNKNOWN"
    assert user_count(db_dsn) == before
    assert query(db_dsn, "SELECT 1 FROM users WHERE user_id = '@replay_second:test.local'") == []


def test_concurrent_completions_of_one_session_register_one_account(homeserver, db_dsn):
    client = Client(homeserver)
    session = register_session(client, "race_0")
    before = user_count(db_dsn)

    def complete(i):
        return client.post("/register", {"username": f"race_{i}", "password": PASSWORD,
                                         "auth": {"type": "m.login.dummy", "session": session}}).status_code
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(complete, range(6)))
    assert sorted(statuses) == [200] + [400] * 5, statuses
    assert user_count(db_dsn) == before + 1


def test_unknown_session_is_refused(homeserver, db_dsn):
    before = user_count(db_dsn)
    resp = Client(homeserver).post("/register", {"username": "unknown_session", "password": PASSWORD,
                                                 "auth": {"type": "m.login.dummy", "session": "no-such-session"}})
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_UNKNOWN"
    assert user_count(db_dsn) == before


def test_expired_session_is_refused(homeserver, db_dsn):
    client = Client(homeserver)
    session = register_session(client, "expired_session")
    query(db_dsn, "UPDATE ui_auth_sessions SET created_ts = 0 WHERE session_id = %s", (session,))
    resp = client.post("/register", {"username": "expired_session", "password": PASSWORD,
                                     "auth": {"type": "m.login.dummy", "session": session}})
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_UNKNOWN"
    assert query(db_dsn, "SELECT 1 FROM users WHERE user_id = '@expired_session:test.local'") == []


def test_session_id_with_nul_is_an_unknown_session(homeserver):
    resp = Client(homeserver).post("/register", {"username": "session_nul", "password": PASSWORD,
                                                 "auth": {"type": "m.login.dummy", "session": "a\x00b"}})
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_UNKNOWN"


def test_session_id_must_be_a_string(homeserver):
    resp = Client(homeserver).post("/register", {"username": "session_int", "password": PASSWORD,
                                                 "auth": {"type": "m.login.dummy", "session": 12}})
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_BAD_JSON"


# --- sessions are bound to the request that opened them ---------------------------------------

def test_registration_session_cannot_change_a_password(homeserver, user):
    session = register_session(Client(homeserver), "session_thief")
    resp = user.post("/account/password", {"new_password": "stolen password",
                                           "auth": {"type": "m.login.dummy", "session": session}})
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_FORBIDDEN"
    Client(homeserver).login(user.user_id, PASSWORD)  # the password is unchanged


def test_session_opened_for_one_device_cannot_delete_another(homeserver, user):
    first = user.delete(f"/devices/{user.other_device}", {})
    assert first.status_code == 401
    session = first.json()["session"]
    resp = user.delete(f"/devices/{user.device_id}", {"auth": password_auth(user.user_id, session)})
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_FORBIDDEN"
    devices = {d["device_id"] for d in user.get("/devices").json()["devices"]}
    assert devices == {user.device_id, user.other_device}


# --- stages -----------------------------------------------------------------------------------

def test_deleting_a_device_first_answers_with_the_password_flow(user):
    resp = user.delete(f"/devices/{user.other_device}", {})
    assert resp.status_code == 401
    body = resp.json()
    assert body["flows"] == PASSWORD_FLOWS
    assert body["params"] == {}
    assert isinstance(body["session"], str)
    assert user.other_device in {d["device_id"] for d in user.get("/devices").json()["devices"]}


def test_unknown_stage_type_is_answered_with_the_flows(homeserver, user):
    session = user.delete(f"/devices/{user.other_device}", {}).json()["session"]
    resp = user.delete(f"/devices/{user.other_device}", {"auth": {"type": "m.login.bogus", "session": session}})
    assert resp.status_code == 401
    body = resp.json()
    assert body["errcode"] == "M_UNRECOGNIZED"
    assert body["flows"] == PASSWORD_FLOWS
    assert body["session"] == session
    assert user.other_device in {d["device_id"] for d in user.get("/devices").json()["devices"]}


def test_stage_not_in_any_flow_is_answered_with_the_flows(user):
    # m.login.dummy exists, but this endpoint's only flow is [m.login.password].
    session = user.delete(f"/devices/{user.other_device}", {}).json()["session"]
    resp = user.delete(f"/devices/{user.other_device}", {"auth": {"type": "m.login.dummy", "session": session}})
    assert resp.status_code == 401
    assert resp.json()["flows"] == PASSWORD_FLOWS
    assert user.other_device in {d["device_id"] for d in user.get("/devices").json()["devices"]}


def test_wrong_password_stage_is_forbidden_with_flows_and_retry_succeeds(user):
    session = user.delete(f"/devices/{user.other_device}", {}).json()["session"]
    wrong = user.delete(f"/devices/{user.other_device}",
                        {"auth": password_auth(user.user_id, session, password="wrong password")})
    assert wrong.status_code == 401
    body = wrong.json()
    assert body["errcode"] == "M_FORBIDDEN"
    assert body["flows"] == PASSWORD_FLOWS
    assert body["session"] == session
    assert user.other_device in {d["device_id"] for d in user.get("/devices").json()["devices"]}

    right = user.delete(f"/devices/{user.other_device}", {"auth": password_auth(user.user_id, session)})
    assert right.status_code == 200, right.text
    assert {d["device_id"] for d in user.get("/devices").json()["devices"]} == {user.device_id}


def test_password_of_another_account_does_not_authenticate(homeserver, user):
    other = Client(homeserver).register("uia_other_account", "other password")
    session = user.delete(f"/devices/{user.other_device}", {}).json()["session"]
    resp = user.delete(f"/devices/{user.other_device}",
                       {"auth": password_auth(other.user_id, session, password="other password")})
    assert resp.status_code == 401
    assert resp.json()["errcode"] == "M_FORBIDDEN"
    assert user.other_device in {d["device_id"] for d in user.get("/devices").json()["devices"]}


@pytest.mark.parametrize("who", ["legacy_user", "no_identifier", "localpart_uppercase"])
def test_password_stage_accepts_legacy_user_and_missing_identifier(user, who):
    session = user.delete(f"/devices/{user.other_device}", {}).json()["session"]
    auth = {"type": "m.login.password", "password": PASSWORD, "session": session}
    if who == "legacy_user":
        auth["user"] = user.user_id
    elif who == "localpart_uppercase":
        auth["identifier"] = {"type": "m.id.user", "user": user.user_id[1:].split(":")[0].upper()}
    resp = user.delete(f"/devices/{user.other_device}", {"auth": auth})
    assert resp.status_code == 200, resp.text


def test_changing_the_password_under_uia_replaces_it_and_ends_other_sessions(homeserver, user):
    first = user.post("/account/password", {"new_password": "a brand new password"})
    assert first.status_code == 401
    assert first.json()["flows"] == PASSWORD_FLOWS
    done = user.post("/account/password", {"new_password": "a brand new password",
                                           "auth": password_auth(user.user_id, first.json()["session"])})
    assert done.status_code == 200, done.text
    assert Client(homeserver).post("/login", {"type": "m.login.password", "identifier": {
        "type": "m.id.user", "user": user.user_id}, "password": PASSWORD}).status_code == 403
    Client(homeserver).login(user.user_id, "a brand new password")
    assert user.get("/account/whoami").status_code == 200
    devices = {d["device_id"] for d in user.get("/devices").json()["devices"]}
    assert user.other_device not in devices and user.device_id in devices
