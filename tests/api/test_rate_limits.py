"""rc_login (address, account, failed_attempts) and rc_registration, against a real server.

Users are made on the module's unlimited default server; the limited server shares its database
(limits live in each process's memory). The limited server's listener trusts X-Forwarded-For,
so each test speaks from its own address and the per-address buckets do not mix.
"""

import ipaddress
import math
import uuid

import psycopg2
import pytest

from tests.harness import Client, HomeserverProcess

PASSWORD = "correct horse battery"
SLOW = 0.001  # tokens per second: no refill within a test
LIMITS = {
    "rc_login": {"address": {"per_second": SLOW, "burst_count": 2},
                 "account": {"per_second": SLOW, "burst_count": 5},
                 "failed_attempts": {"per_second": SLOW, "burst_count": 3}},
    "rc_registration": {"per_second": SLOW, "burst_count": 2},
}


REGISTRATION_TOKEN = "rate-limit-tests"


@pytest.fixture(scope="module")
def limited(db_dsn, homeserver):
    with psycopg2.connect(db_dsn) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO registration_tokens (token) VALUES (%s)", (REGISTRATION_TOKEN,))
    conn.close()
    server = HomeserverProcess(db_dsn, registration_requires_token=True, **LIMITS)
    server.config["listeners"][0]["x_forwarded"] = True
    try:
        yield server.start()
    finally:
        server.stop()


_addresses = iter(range(1, 1 << 24))


def new_address() -> dict:
    return {"X-Forwarded-For": str(ipaddress.ip_address("10.0.0.0") + next(_addresses))}


def new_user(homeserver) -> Client:
    return Client(homeserver).register(f"rl_{uuid.uuid4().hex[:12]}", PASSWORD)


def login(server, user_id, password=PASSWORD, headers=None):
    return Client(server).post("/login", {"type": "m.login.password", "password": password,
                                          "identifier": {"type": "m.id.user", "user": user_id}},
                               headers=headers if headers is not None else new_address())


def assert_limited(resp):
    assert resp.status_code == 429, resp.text
    body = resp.json()
    assert body["errcode"] == "M_LIMIT_EXCEEDED"
    retry_ms = body["retry_after_ms"]
    assert isinstance(retry_ms, int) and not isinstance(retry_ms, bool)
    # One token at 0.001/s is 1000 s away at most.
    assert 0 < retry_ms <= 1_000_000
    assert resp.headers["Retry-After"] == str(math.ceil(retry_ms / 1000))


# --- rc_login.address -------------------------------------------------------------------------

def test_third_login_from_one_address_is_rate_limited(limited, homeserver):
    users = [new_user(homeserver) for _ in range(3)]
    address = new_address()
    assert login(limited, users[0].user_id, headers=address).status_code == 200
    assert login(limited, users[1].user_id, headers=address).status_code == 200
    assert_limited(login(limited, users[2].user_id, headers=address))


def test_address_limit_counts_failed_logins_too(limited, homeserver):
    user = new_user(homeserver)
    address = new_address()
    assert login(limited, user.user_id, password="wrong", headers=address).status_code == 403
    assert login(limited, "@nobody:test.local", headers=address).status_code == 403
    assert_limited(login(limited, user.user_id, headers=address))


def test_address_limit_does_not_touch_other_addresses(limited, homeserver):
    user = new_user(homeserver)
    address = new_address()
    for _ in range(2):
        assert login(limited, user.user_id, headers=address).status_code == 200
    assert login(limited, user.user_id, headers=new_address()).status_code == 200


# --- rc_login.failed_attempts -----------------------------------------------------------------

def test_failed_attempts_lock_the_account_even_for_the_right_password(limited, homeserver):
    user = new_user(homeserver)
    for _ in range(3):
        wrong = login(limited, user.user_id, password="wrong password")
        assert wrong.status_code == 403
        assert wrong.json()["errcode"] == "M_FORBIDDEN"
    assert_limited(login(limited, user.user_id))
    # Any spelling of the same account shares the lock.
    assert_limited(login(limited, user.user_id[1:].split(":")[0].upper()))


def test_failed_attempts_lock_only_that_account(limited, homeserver):
    locked, other = new_user(homeserver), new_user(homeserver)
    for _ in range(3):
        login(limited, locked.user_id, password="wrong password")
    assert login(limited, other.user_id).status_code == 200


def test_successful_logins_do_not_count_as_failed_attempts(limited, homeserver):
    user = new_user(homeserver)
    for _ in range(3):
        assert login(limited, user.user_id).status_code == 200
    wrong = login(limited, user.user_id, password="wrong password")
    assert wrong.status_code == 403
    assert wrong.json()["errcode"] == "M_FORBIDDEN"


def test_failed_password_stages_count_toward_the_login_lock(limited, homeserver):
    user = new_user(homeserver)
    device = Client(homeserver).login(user.user_id, PASSWORD).device_id
    client = Client(limited, user.access_token)
    session = client.delete(f"/devices/{device}", {}).json()["session"]
    for _ in range(3):
        resp = client.delete(f"/devices/{device}", {"auth": {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": "wrong password", "session": session}})
        assert resp.status_code == 401
        assert resp.json()["errcode"] == "M_FORBIDDEN"
    assert_limited(login(limited, user.user_id))


# --- rc_login.account -------------------------------------------------------------------------

def test_account_limit_applies_across_addresses(limited, homeserver):
    user = new_user(homeserver)
    for _ in range(5):
        assert login(limited, user.user_id).status_code == 200
    assert_limited(login(limited, user.user_id))


# --- rc_registration (the limited server requires a registration token) -----------------------

def register(server, headers, token=REGISTRATION_TOKEN):
    body = {"username": f"rl_reg_{uuid.uuid4().hex[:10]}", "password": PASSWORD}
    first = Client(server).post("/register", body, headers=headers)
    if first.status_code != 401:
        return first
    body["auth"] = {"type": "m.login.registration_token", "token": token, "session": first.json()["session"]}
    return Client(server).post("/register", body, headers=headers)


def test_registration_limit_counts_registrations_not_requests(limited):
    # Two registrations take four requests; with burst_count 2 both must get through.
    address = new_address()
    assert register(limited, address).status_code == 200
    assert register(limited, address).status_code == 200
    assert_limited(register(limited, address))


def test_registration_limit_refuses_before_creating_anyone(limited, db_dsn):
    address = new_address()
    for _ in range(2):
        assert register(limited, address).status_code == 200
    name = f"rl_reg_{uuid.uuid4().hex[:10]}"
    assert_limited(Client(limited).post("/register", {"username": name, "password": PASSWORD, "auth": {
        "type": "m.login.registration_token", "token": REGISTRATION_TOKEN}}, headers=address))
    with psycopg2.connect(db_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM users WHERE user_id = %s", (f"@{name}:test.local",))
        assert cur.fetchall() == []
    conn.close()


def test_registration_limit_is_per_address(limited):
    address = new_address()
    for _ in range(2):
        assert register(limited, address).status_code == 200
    assert register(limited, new_address()).status_code == 200


def test_wrong_registration_token_guesses_use_up_the_registration_limit(limited):
    address = new_address()
    body = {"username": f"rl_reg_{uuid.uuid4().hex[:10]}", "password": PASSWORD}
    session = Client(limited).post("/register", body, headers=address).json()["session"]
    for guess in ("guess-1", "guess-2"):
        wrong = Client(limited).post("/register", {**body, "auth": {
            "type": "m.login.registration_token", "token": guess, "session": session}}, headers=address)
        assert wrong.status_code == 401
        assert wrong.json()["errcode"] == "M_UNAUTHORIZED"
    assert_limited(Client(limited).post("/register", {**body, "auth": {
        "type": "m.login.registration_token", "token": REGISTRATION_TOKEN, "session": session}}, headers=address))


def test_token_validity_checks_use_up_the_registration_limit(limited):
    address = new_address()
    validity = "/_matrix/client/v1/register/m.login.registration_token/validity"
    for guess in ("guess-1", "guess-2"):
        assert Client(limited).get(validity, params={"token": guess}, headers=address).json() == {"valid": False}
    assert_limited(Client(limited).get(validity, params={"token": REGISTRATION_TOKEN}, headers=address))
