"""GET/POST /login (m.login.password with m.id.user or the legacy `user`, m.login.token) and
MSC3882 POST /_matrix/client/v1/login/get_token.

Servers on this module's database: the default one (login tokens off), one with
login_via_existing_session on without UIA (and guests allowed), one with it on behind UIA.
"""

import concurrent.futures
import hashlib
import uuid

import pytest

from tests.harness import Client, new_user, query, running_homeserver

PASSWORD = "correct horse battery"
GET_TOKEN = "/_matrix/client/v1/login/get_token"


@pytest.fixture(scope="module")
def token_server(db_dsn, homeserver):
    with running_homeserver(db_dsn, allow_guest_access=True,
                               login_via_existing_session={"enabled": True, "require_ui_auth": False}) as server:
        yield server


@pytest.fixture(scope="module")
def uia_token_server(db_dsn, homeserver):
    with running_homeserver(db_dsn, login_via_existing_session={"enabled": True, "require_ui_auth": True}) as server:
        yield server


@pytest.fixture
def alice(homeserver):
    """A fresh user (signed in once, by registering); `.localpart` is the name to log in with."""
    client = Client(homeserver).register(f"login_{uuid.uuid4().hex[:12]}", PASSWORD)
    client.localpart = client.user_id[1:].split(":")[0]
    return client


def password_login(server, user, password=PASSWORD, **extra):
    return Client(server).post("/login", {"type": "m.login.password",
                                          "identifier": {"type": "m.id.user", "user": user},
                                          "password": password, **extra})


# --- GET /login -------------------------------------------------------------------------------

def test_login_flows_offer_password(homeserver):
    resp = Client(homeserver).get("/login")
    assert resp.status_code == 200
    assert resp.json() == {"flows": [{"type": "m.login.password"}]}


def test_login_flows_offer_token_with_get_login_token_when_enabled(token_server):
    flows = Client(token_server).get("/login").json()["flows"]
    assert {"type": "m.login.token", "get_login_token": True} in flows
    assert {"type": "m.login.password"} in flows


# --- m.login.password -------------------------------------------------------------------------

def test_password_login_with_localpart_signs_in_a_new_device(homeserver, alice):
    resp = password_login(homeserver, alice.localpart)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["user_id"] == alice.user_id
    assert body["home_server"] == "test.local"
    assert body["well_known"] == {"m.homeserver": {"base_url": f"http://127.0.0.1:{homeserver.port}/"}}
    assert body["device_id"] != alice.device_id
    assert "refresh_token" not in body and "expires_in_ms" not in body
    whoami = Client(homeserver).get("/account/whoami", token=body["access_token"]).json()
    assert whoami == {"user_id": alice.user_id, "device_id": body["device_id"], "is_guest": False}


@pytest.mark.parametrize("form", ["mxid", "mxid_upper", "localpart_upper", "localpart_mixed"])
def test_password_login_accepts_full_user_id_and_any_case(homeserver, alice, form):
    user = {"mxid": alice.user_id, "mxid_upper": alice.user_id.upper(),
            "localpart_upper": alice.localpart.upper(), "localpart_mixed": alice.localpart.capitalize()}[form]
    resp = password_login(homeserver, user)
    assert resp.status_code == 200, resp.text
    assert resp.json()["user_id"] == alice.user_id


@pytest.mark.parametrize("form", ["localpart", "mxid"])
def test_password_login_accepts_the_legacy_user_field(homeserver, alice, form):
    user = alice.localpart if form == "localpart" else alice.user_id
    resp = Client(homeserver).post("/login", {"type": "m.login.password", "user": user, "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    assert resp.json()["user_id"] == alice.user_id


def test_wrong_password_is_forbidden(homeserver, alice, db_dsn):
    before = query(db_dsn, "SELECT count(*) FROM access_tokens WHERE user_id = %s", (alice.user_id,))
    resp = password_login(homeserver, alice.localpart, password="not my password")
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_FORBIDDEN"
    assert "access_token" not in resp.json()
    assert query(db_dsn, "SELECT count(*) FROM access_tokens WHERE user_id = %s", (alice.user_id,)) == before


def test_unknown_user_is_forbidden_like_a_wrong_password(homeserver):
    resp = password_login(homeserver, "nobody_here")
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_FORBIDDEN"


def test_user_of_another_server_is_forbidden(homeserver, alice):
    resp = password_login(homeserver, f"@{alice.localpart}:elsewhere.example")
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_FORBIDDEN"


def test_password_login_refresh_token_true_returns_refresh_token(homeserver, alice):
    resp = password_login(homeserver, alice.localpart, refresh_token=True)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert isinstance(body["refresh_token"], str)
    assert body["expires_in_ms"] == 5 * 60 * 1000


def test_initial_device_display_name_names_the_new_device(homeserver, alice):
    resp = password_login(homeserver, alice.localpart, initial_device_display_name="Laptop")
    device_id = resp.json()["device_id"]
    assert alice.get(f"/devices/{device_id}").json()["display_name"] == "Laptop"


def test_login_with_an_existing_device_id_reuses_that_device(homeserver, alice):
    first = password_login(homeserver, alice.localpart, device_id="REUSED", initial_device_display_name="Phone")
    second = password_login(homeserver, alice.localpart, device_id="REUSED")
    assert first.status_code == second.status_code == 200
    assert first.json()["device_id"] == second.json()["device_id"] == "REUSED"
    assert first.json()["access_token"] != second.json()["access_token"]
    devices = [d for d in alice.get("/devices").json()["devices"] if d["device_id"] == "REUSED"]
    assert [d.get("display_name") for d in devices] == ["Phone"]
    assert Client(homeserver, second.json()["access_token"]).get("/account/whoami").json()["device_id"] == "REUSED"


def test_deactivated_user_cannot_log_in(homeserver, alice):
    first = alice.post("/account/deactivate", {})
    assert first.status_code == 401
    assert first.json()["flows"] == [{"stages": ["m.login.password"]}]
    done = alice.post("/account/deactivate", {"auth": {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
        "password": PASSWORD, "session": first.json()["session"]}})
    assert done.status_code == 200, done.text
    resp = password_login(homeserver, alice.localpart)
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_USER_DEACTIVATED"
    assert alice.get("/account/whoami").status_code == 401


# --- malformed requests -----------------------------------------------------------------------

@pytest.mark.parametrize("body", [{"type": "m.login.magic", "user": "x", "password": "y"}, {"password": "y"}],
                         ids=["unknown-type", "missing-type"])
def test_unknown_login_type_is_a_bad_request(homeserver, body):
    resp = Client(homeserver).post("/login", body)
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_UNKNOWN"


def test_unsupported_identifier_type_is_a_bad_request(homeserver):
    resp = Client(homeserver).post("/login", {"type": "m.login.password", "password": PASSWORD, "identifier": {
        "type": "m.id.thirdparty", "medium": "email", "address": "a@example.org"}})
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_UNKNOWN"


def test_password_login_without_identifier_is_missing_param(homeserver):
    resp = Client(homeserver).post("/login", {"type": "m.login.password", "password": PASSWORD})
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_MISSING_PARAM"


@pytest.mark.parametrize("data", [b"not json", b"", b"{\"type\": "], ids=["text", "empty", "truncated"])
def test_body_that_is_not_json_is_not_json(homeserver, data):
    resp = Client(homeserver).post("/login", data=data, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_NOT_JSON"


@pytest.mark.parametrize("body", [
    ["m.login.password"],
    {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "x"}, "password": 7},
    {"type": "m.login.password", "identifier": "x", "password": PASSWORD},
    {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": 7}, "password": PASSWORD},
    {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "x"}, "password": PASSWORD,
     "device_id": 7},
    {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "x"}, "password": PASSWORD,
     "refresh_token": "yes"},
    {"type": "m.login.token", "token": 7},
], ids=["array", "password-int", "identifier-string", "user-int", "device-id-int", "refresh-string", "token-int"])
def test_mistyped_body_is_bad_json(homeserver, body):
    resp = Client(homeserver).post("/login", body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["errcode"] == "M_BAD_JSON"


# --- m.login.token and /login/get_token (MSC3882) ---------------------------------------------

def test_get_token_is_unrecognized_when_disabled(homeserver, alice):
    resp = alice.post(GET_TOKEN, {})
    assert resp.status_code == 404
    assert resp.json()["errcode"] == "M_UNRECOGNIZED"


def test_get_token_requires_an_access_token(token_server):
    resp = Client(token_server).post(GET_TOKEN, {})
    assert resp.status_code == 401
    assert resp.json()["errcode"] == "M_MISSING_TOKEN"


def test_login_token_signs_in_a_new_device_once(token_server, alice):
    resp = Client(token_server, alice.access_token).post(GET_TOKEN, {})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert isinstance(body["login_token"], str)
    assert body["expires_in_ms"] == 5 * 60 * 1000

    login = Client(token_server).post("/login", {"type": "m.login.token", "token": body["login_token"]})
    assert login.status_code == 200, login.text
    assert login.json()["user_id"] == alice.user_id
    assert login.json()["device_id"] != alice.device_id
    whoami = Client(token_server, login.json()["access_token"]).get("/account/whoami").json()
    assert whoami["user_id"] == alice.user_id

    again = Client(token_server).post("/login", {"type": "m.login.token", "token": body["login_token"]})
    assert again.status_code == 403
    assert again.json()["errcode"] == "M_FORBIDDEN"


def test_unknown_login_token_is_forbidden(token_server):
    resp = Client(token_server).post("/login", {"type": "m.login.token", "token": "hsl_made_up"})
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_FORBIDDEN"


def test_expired_login_token_is_forbidden(token_server, alice, db_dsn):
    token = f"hsl_{uuid.uuid4().hex}"
    query(db_dsn, "INSERT INTO login_tokens (token_hash, user_id, expiry_ts) VALUES (%s, %s, %s)",
          (hashlib.sha256(token.encode()).digest(), alice.user_id, 1000))
    resp = Client(token_server).post("/login", {"type": "m.login.token", "token": token})
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_FORBIDDEN"


def test_malformed_login_request_does_not_spend_the_login_token(token_server, alice):
    token = Client(token_server, alice.access_token).post(GET_TOKEN, {}).json()["login_token"]
    bad = Client(token_server).post("/login", {"type": "m.login.token", "token": token, "device_id": ["x"]})
    assert bad.status_code == 400
    assert bad.json()["errcode"] == "M_BAD_JSON"
    good = Client(token_server).post("/login", {"type": "m.login.token", "token": token})
    assert good.status_code == 200, good.text


def test_guest_cannot_mint_a_login_token(token_server):
    guest = Client(token_server).post("/register?kind=guest", {}).json()
    resp = Client(token_server, guest["access_token"]).post(GET_TOKEN, {})
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"


def test_get_token_behind_uia_asks_for_the_password_first(uia_token_server, alice):
    client = Client(uia_token_server, alice.access_token)
    first = client.post(GET_TOKEN, {})
    assert first.status_code == 401
    assert first.json()["flows"] == [{"stages": ["m.login.password"]}]
    done = client.post(GET_TOKEN, {"auth": {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
        "password": PASSWORD, "session": first.json()["session"]}})
    assert done.status_code == 200, done.text
    login = Client(uia_token_server).post("/login", {"type": "m.login.token", "token": done.json()["login_token"]})
    assert login.status_code == 200
    assert login.json()["user_id"] == alice.user_id


# --- NUL: PostgreSQL text cannot hold it, so it must be refused before any query ---------------

@pytest.mark.parametrize("user", ["ali\x00ce", "@ali\x00ce:test.local"])
def test_user_with_nul_is_invalid_param(homeserver, user):
    resp = Client(homeserver).post("/login", {"type": "m.login.password", "password": PASSWORD,
                                              "identifier": {"type": "m.id.user", "user": user}})
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_INVALID_PARAM"


@pytest.mark.parametrize("field", ["device_id", "initial_device_display_name"])
def test_device_fields_with_nul_are_invalid_param(homeserver, alice, field):
    resp = password_login(homeserver, alice.localpart, **{field: "PH\x00ONE"})
    assert resp.status_code == 400
    assert resp.json()["errcode"] == "M_INVALID_PARAM"


def test_concurrent_requests_with_different_tokens_each_get_their_own_user(homeserver):
    # Token lookups that arrive together share a query: no answer may go to the wrong request.
    users = [new_user(homeserver, "whoami") for _ in range(6)]
    requests_ = [(u.access_token, u.user_id) for u in users] * 4 + [("syt_not_a_token", None)] * 4
    with concurrent.futures.ThreadPoolExecutor(len(requests_)) as pool:
        answers = list(pool.map(lambda r: Client(homeserver, r[0]).get("/account/whoami"), requests_))
    for (_, user_id), resp in zip(requests_, answers, strict=True):
        if user_id is None:
            assert resp.status_code == 401 and resp.json()["errcode"] == "M_UNKNOWN_TOKEN"
        else:
            assert resp.status_code == 200 and resp.json()["user_id"] == user_id
