"""POST /register (UIA with m.login.dummy or m.login.registration_token, guests), the
username rules, /register/available and the registration-token validity endpoint.

Three servers share this module's database: the default one (open registration, dummy stage),
one that requires registration tokens and has a password policy and guest access, and one
with registration disabled.
"""

import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.harness import Client, query, running_homeserver

PASSWORD = "correct horse battery"
STRONG = "Str0ng!Passw0rd"
USER_ID_GRAMMAR = re.compile(r"@[a-z0-9._=\-/+]+:test\.local")
POLICY = {"enabled": True, "minimum_length": 10, "require_digit": True, "require_symbol": True,
          "require_lowercase": True, "require_uppercase": True}


@pytest.fixture(scope="module")
def token_server(db_dsn, homeserver):
    with running_homeserver(db_dsn, registration_requires_token=True, allow_guest_access=True,
                               password_config={"policy": POLICY}) as server:
        yield server


@pytest.fixture(scope="module")
def closed_server(db_dsn, homeserver):
    with running_homeserver(db_dsn, enable_registration=False) as server:
        yield server


def user_count(db_dsn) -> int:
    return query(db_dsn, "SELECT count(*) FROM users")[0][0]


def new_registration_token(db_dsn, uses_allowed=None, expiry_time=None) -> str:
    token = uuid.uuid4().hex[:16]
    query(db_dsn, "INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES (%s, %s, %s)",
          (token, uses_allowed, expiry_time))
    return token


def start_session(client, body) -> str:
    resp = client.post("/register", body)
    assert resp.status_code == 401, resp.text
    return resp.json()["session"]


def complete_dummy(client, body):
    session = start_session(client, body)
    return client.post("/register", {**body, "auth": {"type": "m.login.dummy", "session": session}})


def register_with_token(client, username, token, password=STRONG):
    body = {"username": username, "password": password}
    session = start_session(client, body)
    return client.post("/register", {**body, "auth": {"type": "m.login.registration_token", "token": token,
                                                      "session": session}})


# --- the UIA exchange ------------------------------------------------------------------------

def test_first_register_call_asks_for_the_dummy_stage(homeserver):
    resp = Client(homeserver).post("/register", {"username": "flows_user", "password": PASSWORD})
    assert resp.status_code == 401
    body = resp.json()
    assert body["flows"] == [{"stages": ["m.login.dummy"]}]
    assert body["params"] == {}
    assert isinstance(body["session"], str) and body["session"]
    assert "completed" not in body


def test_empty_body_is_answered_with_the_flows_so_clients_can_discover_them(homeserver):
    # Clients (Element among them) POST {} first just to learn the flows.
    resp = Client(homeserver).post("/register", {})
    assert resp.status_code == 401, resp.text
    assert resp.json()["flows"] == [{"stages": ["m.login.dummy"]}]


def test_completing_the_dummy_stage_registers_and_logs_in(homeserver, db_dsn):
    client = Client(homeserver)
    resp = complete_dummy(client, {"username": "dummy_user", "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["user_id"] == "@dummy_user:test.local"
    assert body["home_server"] == "test.local"
    assert isinstance(body["device_id"], str) and body["device_id"]
    assert "refresh_token" not in body and "expires_in_ms" not in body
    whoami = client.get("/account/whoami", token=body["access_token"])
    assert whoami.status_code == 200
    assert whoami.json() == {"user_id": "@dummy_user:test.local", "device_id": body["device_id"], "is_guest": False}
    assert query(db_dsn, "SELECT is_guest, admin, deactivated FROM users WHERE user_id = %s",
                 ("@dummy_user:test.local",)) == [(False, False, False)]


def test_registered_password_logs_in(homeserver):
    Client(homeserver).register("pw_user", PASSWORD)
    assert Client(homeserver).login("pw_user", PASSWORD).user_id == "@pw_user:test.local"


def test_dummy_stage_in_the_first_request_registers_without_a_session(homeserver):
    resp = Client(homeserver).post("/register", {"username": "one_shot", "password": PASSWORD,
                                                 "auth": {"type": "m.login.dummy"}})
    assert resp.status_code == 200, resp.text
    assert resp.json()["user_id"] == "@one_shot:test.local"


def test_inhibit_login_registers_without_issuing_a_token(homeserver, db_dsn):
    resp = complete_dummy(Client(homeserver), {"username": "inhibited", "password": PASSWORD,
                                               "inhibit_login": True, "refresh_token": True})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["user_id"] == "@inhibited:test.local"
    for key in ("access_token", "device_id", "refresh_token", "expires_in_ms"):
        assert key not in body
    assert query(db_dsn, "SELECT count(*) FROM devices WHERE user_id = %s", ("@inhibited:test.local",)) == [(0,)]
    assert Client(homeserver).login("inhibited", PASSWORD).user_id == "@inhibited:test.local"


def test_initial_device_display_name_shows_in_the_device_list(homeserver):
    client = Client(homeserver).register("named_device", PASSWORD, initial_device_display_name="Jungle Phone")
    devices = client.get("/devices").json()["devices"]
    assert [(d["device_id"], d.get("display_name")) for d in devices] == [(client.device_id, "Jungle Phone")]


def test_requested_device_id_is_the_one_registered(homeserver):
    client = Client(homeserver).register("own_device_id", PASSWORD, device_id="MYPHONE")
    assert client.device_id == "MYPHONE"
    assert client.get("/account/whoami").json()["device_id"] == "MYPHONE"


def test_refresh_token_true_returns_a_refresh_token_and_the_access_token_lifetime(homeserver):
    resp = complete_dummy(Client(homeserver), {"username": "wants_refresh", "password": PASSWORD,
                                               "refresh_token": True})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert isinstance(body["refresh_token"], str) and body["refresh_token"] != body["access_token"]
    assert body["expires_in_ms"] == 5 * 60 * 1000  # refreshable_access_token_lifetime's default


def test_username_is_lowercased(homeserver):
    client = Client(homeserver).register("MixedCase", PASSWORD)
    assert client.user_id == "@mixedcase:test.local"


def test_registering_without_a_username_generates_a_valid_user_id(homeserver):
    client = Client(homeserver).register(None, PASSWORD)
    assert USER_ID_GRAMMAR.fullmatch(client.user_id), client.user_id
    assert not client.user_id[1:].split(":")[0].isdigit()
    assert client.get("/account/whoami").json()["user_id"] == client.user_id


# --- username rules: checked before UIA, so the first request already fails ------------------

LONGEST_LOCALPART = "a" * (255 - len("@:test.local"))


@pytest.mark.parametrize("username", [
    "with space", "@alice", "alice:test.local", "_underscore", "12345", "", "ünïcode", "alice\n", "tab\there",
    LONGEST_LOCALPART + "a",  # @…:test.local is 256 bytes
], ids=["space", "at-sign", "colon", "leading-underscore", "all-digits", "empty", "non-ascii", "trailing-newline",
        "tab", "256-bytes"])
def test_invalid_username_is_refused_before_authentication(homeserver, db_dsn, username):
    before = user_count(db_dsn)
    resp = Client(homeserver).post("/register", {"username": username, "password": PASSWORD})
    assert resp.status_code == 400, resp.text
    assert resp.json()["errcode"] == "M_INVALID_USERNAME"
    assert user_count(db_dsn) == before


def test_invalid_username_is_refused_even_with_auth_completed(homeserver):
    resp = Client(homeserver).post("/register", {"username": "bad name", "password": PASSWORD,
                                                 "auth": {"type": "m.login.dummy"}})
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_INVALID_USERNAME"


def test_user_id_of_exactly_255_bytes_is_accepted(homeserver):
    client = Client(homeserver).register(LONGEST_LOCALPART, PASSWORD)
    assert len(client.user_id.encode()) == 255


@pytest.mark.parametrize("second", ["taken", "TAKEN", "Taken"])
def test_taken_username_is_user_in_use_in_any_case(homeserver, db_dsn, second):
    if not query(db_dsn, "SELECT 1 FROM users WHERE user_id = '@taken:test.local'"):
        Client(homeserver).register("taken", PASSWORD)
    resp = Client(homeserver).post("/register", {"username": second, "password": PASSWORD})
    assert resp.status_code == 400, resp.text
    assert resp.json()["errcode"] == "M_USER_IN_USE"


def test_username_taken_while_authenticating_is_user_in_use_at_completion(homeserver, db_dsn):
    client = Client(homeserver)
    body = {"username": "racer", "password": PASSWORD}
    session = start_session(client, body)
    Client(homeserver).register("racer", PASSWORD)
    before = user_count(db_dsn)
    resp = client.post("/register", {**body, "auth": {"type": "m.login.dummy", "session": session}})
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_USER_IN_USE"
    assert user_count(db_dsn) == before


# --- malformed requests -----------------------------------------------------------------------

def test_attempting_a_stage_without_a_password_is_missing_param_and_creates_nobody(homeserver, db_dsn):
    before = user_count(db_dsn)
    resp = Client(homeserver).post("/register", {"username": "no_password", "auth": {"type": "m.login.dummy"}})
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_MISSING_PARAM"
    assert user_count(db_dsn) == before


@pytest.mark.parametrize("body", [
    {"username": 42, "password": PASSWORD},
    {"username": "typed", "password": 42},
    {"username": "typed", "password": PASSWORD, "inhibit_login": "yes"},
    {"username": "typed", "password": PASSWORD, "refresh_token": 1},
    {"username": "typed", "password": PASSWORD, "device_id": ""},
    {"username": "typed", "password": PASSWORD, "auth": "m.login.dummy"},
], ids=["username-int", "password-int", "inhibit-string", "refresh-int", "empty-device-id", "auth-string"])
def test_mistyped_fields_are_bad_json(homeserver, body):
    resp = Client(homeserver).post("/register", body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["errcode"] == "M_BAD_JSON"


@pytest.mark.parametrize("field", ["device_id", "initial_device_display_name"])
def test_device_fields_with_nul_are_invalid_param(homeserver, db_dsn, field):
    # PostgreSQL text cannot hold NUL: refused as the client's mistake, not a 500.
    before = user_count(db_dsn)
    resp = Client(homeserver).post("/register", {"username": "nul_device", "password": PASSWORD,
                                                 field: "PH\x00ONE", "auth": {"type": "m.login.dummy"}})
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_INVALID_PARAM"
    assert user_count(db_dsn) == before


def test_body_that_is_not_json_is_not_json(homeserver):
    resp = Client(homeserver).post("/register", data=b"{username", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_NOT_JSON"


def test_unknown_kind_is_refused(homeserver):
    resp = Client(homeserver).post("/register?kind=admin", {"username": "kind_admin", "password": PASSWORD})
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_INVALID_PARAM"


# --- guests -----------------------------------------------------------------------------------

def test_guest_registration_is_forbidden_by_default(homeserver, db_dsn):
    before = user_count(db_dsn)
    resp = Client(homeserver).post("/register?kind=guest", {})
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"
    assert user_count(db_dsn) == before


def test_guest_registration_with_guest_access_gives_a_numeric_guest(token_server, db_dsn):
    # No UIA for guests, even where user registration needs a token.
    client = Client(token_server)
    resp = client.post("/register?kind=guest", {"initial_device_display_name": "Guest Phone"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    localpart = body["user_id"][1:].split(":")[0]
    assert localpart.isdigit() and body["user_id"].endswith(":test.local")
    whoami = client.get("/account/whoami", token=body["access_token"]).json()
    assert whoami == {"user_id": body["user_id"], "device_id": body["device_id"], "is_guest": True}
    devices = client.get("/devices", token=body["access_token"]).json()["devices"]
    assert [d.get("display_name") for d in devices] == ["Guest Phone"]
    assert query(db_dsn, "SELECT is_guest, password_hash FROM users WHERE user_id = %s",
                 (body["user_id"],)) == [(True, None)]


def test_guest_registration_ignores_username_device_id_and_refresh_token(token_server):
    resp = Client(token_server).post("/register?kind=guest", {"username": "guestname", "device_id": "GUESTDEV",
                                                              "refresh_token": True, "password": 5})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["user_id"][1:].split(":")[0].isdigit()
    assert body["device_id"] != "GUESTDEV"
    assert "refresh_token" not in body


def test_each_guest_gets_a_new_user_id(token_server):
    first = Client(token_server).post("/register?kind=guest", {}).json()["user_id"]
    second = Client(token_server).post("/register?kind=guest", {}).json()["user_id"]
    assert first != second


# --- registration disabled --------------------------------------------------------------------

def test_registration_disabled_is_forbidden(closed_server, db_dsn):
    before = user_count(db_dsn)
    resp = Client(closed_server).post("/register", {"username": "closed_user", "password": PASSWORD,
                                                    "auth": {"type": "m.login.dummy"}})
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_FORBIDDEN"
    assert user_count(db_dsn) == before


def test_availability_with_registration_disabled_is_forbidden(closed_server):
    resp = Client(closed_server).get("/register/available?username=closed_probe")
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_FORBIDDEN"


def test_token_validity_with_registration_disabled_is_forbidden(closed_server, db_dsn):
    token = new_registration_token(db_dsn)
    resp = Client(closed_server).get(f"/_matrix/client/v1/register/m.login.registration_token/validity?token={token}")
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_FORBIDDEN"


# --- /register/available ----------------------------------------------------------------------

def test_free_username_is_available(homeserver):
    resp = Client(homeserver).get("/register/available?username=free_name")
    assert resp.status_code == 200
    assert resp.json() == {"available": True}


def test_taken_username_is_not_available_in_any_case(homeserver):
    Client(homeserver).register("avail_taken", PASSWORD)
    resp = Client(homeserver).get("/register/available?username=AVAIL_Taken")
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_USER_IN_USE"


def test_invalid_username_is_not_available(homeserver):
    resp = Client(homeserver).get("/register/available", params={"username": "_reserved"})
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_INVALID_USERNAME"


def test_availability_without_a_username_is_missing_param(homeserver):
    resp = Client(homeserver).get("/register/available")
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_MISSING_PARAM"


# --- registration tokens (m.login.registration_token) -----------------------------------------

VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"


def test_token_server_offers_only_the_registration_token_flow(token_server):
    resp = Client(token_server).post("/register", {"username": "needs_token", "password": STRONG})
    assert resp.status_code == 401
    assert resp.json()["flows"] == [{"stages": ["m.login.registration_token"]}]


def test_dummy_stage_is_refused_where_a_token_is_required(token_server, db_dsn):
    client = Client(token_server)
    body = {"username": "dummy_sneak", "password": STRONG}
    session = start_session(client, body)
    before = user_count(db_dsn)
    resp = client.post("/register", {**body, "auth": {"type": "m.login.dummy", "session": session}})
    assert resp.status_code == 401
    assert resp.json()["flows"] == [{"stages": ["m.login.registration_token"]}]
    assert resp.json()["session"] == session
    assert user_count(db_dsn) == before


def test_validity_of_an_unused_token_is_true(token_server, db_dsn):
    token = new_registration_token(db_dsn, uses_allowed=1)
    resp = Client(token_server).get(VALIDITY, params={"token": token})
    assert resp.status_code == 200
    assert resp.json() == {"valid": True}


def test_validity_of_an_unknown_token_is_false(token_server):
    resp = Client(token_server).get(VALIDITY, params={"token": "no-such-token"})
    assert resp.status_code == 200
    assert resp.json() == {"valid": False}


def test_validity_of_an_expired_token_is_false(token_server, db_dsn):
    token = new_registration_token(db_dsn, expiry_time=1000)
    assert Client(token_server).get(VALIDITY, params={"token": token}).json() == {"valid": False}


def test_validity_of_a_token_with_nul_is_false(token_server):
    resp = Client(token_server).get(VALIDITY, params={"token": "a\x00b"})
    assert resp.status_code == 200
    assert resp.json() == {"valid": False}


def test_registration_token_with_nul_is_unauthorized(token_server):
    resp = register_with_token(Client(token_server), "token_nul", "a\x00b")
    assert resp.status_code == 401
    assert resp.json()["errcode"] == "M_UNAUTHORIZED"


def test_validity_without_a_token_is_missing_param(token_server):
    resp = Client(token_server).get(VALIDITY)
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_MISSING_PARAM"


def test_single_use_token_admits_exactly_one_registration(token_server, db_dsn):
    token = new_registration_token(db_dsn, uses_allowed=1)
    first = register_with_token(Client(token_server), "token_first", token)
    assert first.status_code == 200, first.text
    assert first.json()["user_id"] == "@token_first:test.local"
    assert Client(token_server).get(VALIDITY, params={"token": token}).json() == {"valid": False}

    before = user_count(db_dsn)
    second = register_with_token(Client(token_server), "token_second", token)
    assert second.status_code == 401
    assert second.json()["errcode"] == "M_UNAUTHORIZED"
    assert user_count(db_dsn) == before
    assert query(db_dsn, "SELECT completed FROM registration_tokens WHERE token = %s", (token,)) == [(1,)]


def test_single_use_token_admits_one_of_many_concurrent_registrations(token_server, db_dsn):
    token = new_registration_token(db_dsn, uses_allowed=1)
    bodies = [{"username": f"token_race_{i}", "password": STRONG} for i in range(5)]
    sessions = [start_session(Client(token_server), body) for body in bodies]
    before = user_count(db_dsn)

    def complete(i):
        return Client(token_server).post("/register", {**bodies[i], "auth": {
            "type": "m.login.registration_token", "token": token, "session": sessions[i]}}).status_code
    with ThreadPoolExecutor(5) as pool:
        statuses = list(pool.map(complete, range(5)))
    assert sorted(statuses) == [200] + [401] * 4
    assert user_count(db_dsn) == before + 1
    assert query(db_dsn, "SELECT completed FROM registration_tokens WHERE token = %s", (token,)) == [(1,)]


def test_invalid_token_is_unauthorized_with_flows_and_the_client_may_retry(token_server, db_dsn):
    client = Client(token_server)
    body = {"username": "token_retry", "password": STRONG}
    session = start_session(client, body)
    bad = client.post("/register", {**body, "auth": {"type": "m.login.registration_token", "token": "wrong",
                                                     "session": session}})
    assert bad.status_code == 401
    assert bad.json()["errcode"] == "M_UNAUTHORIZED"
    assert bad.json()["flows"] == [{"stages": ["m.login.registration_token"]}]
    assert bad.json()["session"] == session

    token = new_registration_token(db_dsn, uses_allowed=1)
    good = client.post("/register", {**body, "auth": {"type": "m.login.registration_token", "token": token,
                                                      "session": session}})
    assert good.status_code == 200, good.text
    assert good.json()["user_id"] == "@token_retry:test.local"


def test_token_without_a_use_limit_admits_many_registrations(token_server, db_dsn):
    token = new_registration_token(db_dsn)
    for name in ("unlimited_a", "unlimited_b"):
        assert register_with_token(Client(token_server), name, token).status_code == 200
    assert query(db_dsn, "SELECT completed FROM registration_tokens WHERE token = %s", (token,)) == [(2,)]


def test_expired_token_is_unauthorized(token_server, db_dsn):
    token = new_registration_token(db_dsn, expiry_time=1000)
    resp = register_with_token(Client(token_server), "token_expired", token)
    assert resp.status_code == 401
    assert resp.json()["errcode"] == "M_UNAUTHORIZED"


# --- password policy --------------------------------------------------------------------------

@pytest.mark.parametrize("password", ["Sh0rt!pw", "NoDigits!here", "N0Symbols0here", "n0upper!case00",
                                      "N0LOWER!CASE00"],
                         ids=["too-short", "no-digit", "no-symbol", "no-uppercase", "no-lowercase"])
def test_password_against_the_policy_is_weak_password(token_server, db_dsn, password):
    before = user_count(db_dsn)
    resp = Client(token_server).post("/register", {"username": "weak_pw", "password": password})
    assert resp.status_code == 400, resp.text
    assert resp.json()["errcode"] == "M_WEAK_PASSWORD"
    assert user_count(db_dsn) == before


def test_password_meeting_the_policy_registers(token_server, db_dsn):
    token = new_registration_token(db_dsn, uses_allowed=1)
    assert register_with_token(Client(token_server), "strong_pw", token, password=STRONG).status_code == 200
