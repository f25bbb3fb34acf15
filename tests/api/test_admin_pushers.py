"""Synapse's admin API GET /_synapse/admin/v1/users/{user_id}/pushers: a user's pushers with
their delivery bookkeeping (last_success, failing_since), for server admins only."""

import time
import uuid

import pytest

from tests.api.test_admin_tokens import shared_secret_register
from tests.api.test_push_http import APP_ID, set_pusher, wait_received
from tests.api.test_sync import assert_error, send
from tests.api.test_unread_counts import group, me
from tests.harness import Client, HomeserverProcess, free_port, new_user, q
from tests.push_gateway import PushGateway

PREFIX = "/_synapse/admin/v1/users"


@pytest.fixture(scope="module")
def gateway():
    gateway = PushGateway().start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def server(db_dsn):
    server = HomeserverProcess(db_dsn, ip_range_whitelist=["127.0.0.1/32"])
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def admin(server):
    return shared_secret_register(server, f"root{uuid.uuid4().hex[:6]}", admin=True)


def admin_pushers(admin: Client, user_id: str) -> dict:
    resp = admin.get(f"{PREFIX}/{q(user_id)}/pushers")
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_for_pusher(admin: Client, user_id: str, predicate, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = admin_pushers(admin, user_id)
        if body["pushers"] and predicate(body["pushers"][0]) or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_delivered_pusher_shows_last_success_and_no_failure(server, gateway, admin):
    alice, bob, carol, room_id = group(server)
    before = int(time.time() * 1000)
    pushkey = set_pusher(bob, gateway.url, format="event_id_only")
    send(alice, room_id, "hi")
    wait_received(gateway, pushkey, 1)
    body = wait_for_pusher(admin, me(bob), lambda p: p["last_success"] is not None)
    assert body["total"] == 1
    [pusher] = body["pushers"]
    assert before <= pusher["last_success"] <= int(time.time() * 1000)
    assert before <= pusher["ts"] <= pusher["last_success"]
    assert isinstance(pusher["last_stream_ordering"], int)
    assert pusher["failing_since"] is None
    assert {k: pusher[k] for k in ("user_name", "kind", "app_id", "pushkey", "app_display_name",
                                   "device_display_name", "lang", "data", "profile_tag", "enabled")} == {
        "user_name": me(bob), "kind": "http", "app_id": APP_ID, "pushkey": pushkey, "app_display_name": "Example",
        "device_display_name": "Phone", "lang": "en", "data": {"url": gateway.url, "format": "event_id_only"},
        "profile_tag": "", "enabled": True}
    assert pusher["device_id"] == bob.get("/account/whoami").json()["device_id"]


def test_failing_pusher_shows_failing_since(server, admin):
    alice, bob, carol, room_id = group(server)
    closed = f"http://127.0.0.1:{free_port()}/_matrix/push/v1/notify"  # nothing listens
    set_pusher(bob, closed)
    before = int(time.time() * 1000)
    send(alice, room_id, "into the void")
    [pusher] = wait_for_pusher(admin, me(bob), lambda p: p["failing_since"] is not None)["pushers"]
    assert before <= pusher["failing_since"] <= int(time.time() * 1000)
    assert pusher["last_success"] is None
    assert server.proc.poll() is None


def test_user_without_pushers_has_an_empty_list(server, admin):
    assert admin_pushers(admin, me(new_user(server, "ap"))) == {"pushers": [], "total": 0}


def test_non_admin_is_forbidden(server):
    user = new_user(server, "ap")
    assert_error(user.get(f"{PREFIX}/{q(me(user))}/pushers"), 403, "M_FORBIDDEN")


def test_missing_token_is_refused(server):
    assert_error(Client(server).get(f"{PREFIX}/{q('@x:test.local')}/pushers"), 401, "M_MISSING_TOKEN")


def test_unknown_user_is_not_found(server, admin):
    assert_error(admin.get(f"{PREFIX}/{q('@nobody-here:test.local')}/pushers"), 404, "M_NOT_FOUND")


def test_remote_user_cannot_be_looked_up(server, admin):
    resp = admin.get(f"{PREFIX}/{q('@someone:elsewhere.example')}/pushers")
    assert_error(resp, 400, "M_UNKNOWN")
    assert resp.json()["error"] == "Can only look up local users"


def test_invalid_user_id_is_refused(server, admin):
    assert_error(admin.get(f"{PREFIX}/not-a-user-id/pushers"), 400, "M_INVALID_PARAM")
