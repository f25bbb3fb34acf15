"""Who may call what: guests, expired tokens, listeners' resources, UIA sessions' owners."""

import time

import pytest
import requests

from tests.harness import Client, HomeserverProcess, free_port, running_homeserver


@pytest.fixture(scope="module")
def server(db_dsn):
    with running_homeserver(db_dsn, allow_guest_access=True, refreshable_access_token_lifetime=1000) as hs:
        yield hs


def register_guest(server):
    resp = Client(server).post("/register?kind=guest", {})
    assert resp.status_code == 200, resp.text
    return Client(server, resp.json()["access_token"])


def test_guest_may_use_what_guests_are_allowed(server):
    guest = register_guest(server)
    assert guest.get("/account/whoami").json()["is_guest"] is True
    assert guest.get("/devices").status_code == 200
    assert guest.get("/capabilities").status_code == 200
    assert guest.put(f"/profile/{guest.get('/account/whoami').json()['user_id']}/displayname",
                     {"displayname": "Visitor"}).status_code == 200


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/account/password", {"new_password": "x"}),
    ("POST", "/account/deactivate", {}),
    ("POST", "/delete_devices", {"devices": []}),
])
def test_guest_is_refused_elsewhere(server, method, path, body):
    resp = register_guest(server).request(method, path, json=body)
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"


def test_guest_may_log_out(server):
    guest = register_guest(server)
    assert guest.post("/logout", {}).status_code == 200
    assert guest.get("/account/whoami").json()["errcode"] == "M_UNKNOWN_TOKEN"


def test_expired_access_token_is_soft_logged_out_but_may_log_out(server):
    client = Client(server).register("expiring", refresh_token=True)
    time.sleep(1.3)
    expired = client.get("/account/whoami")
    assert expired.status_code == 401
    assert expired.json() == {"errcode": "M_UNKNOWN_TOKEN", "error": expired.json()["error"], "soft_logout": True}
    assert client.post("/logout", {}).status_code == 200
    # The session is gone, not just the token: logging out ended the device.
    assert Client(server).post("/refresh", {"refresh_token": "whatever"}).status_code == 401


def test_uia_session_cannot_be_continued_by_another_user(server):
    alice = Client(server).register("uia_alice")
    bob = Client(server).register("uia_bob")
    session = alice.delete(f"/devices/{alice.device_id}", json={}).json()["session"]
    resp = bob.delete(f"/devices/{alice.device_id}", json={"auth": {
        "type": "m.login.password", "session": session, "password": "correct horse battery",
        "identifier": {"type": "m.id.user", "user": "uia_bob"}}})
    assert resp.status_code == 403
    assert resp.json()["errcode"] == "M_FORBIDDEN"
    assert alice.get("/account/whoami").status_code == 200


def test_password_change_refused_when_passwords_are_disabled(db_dsn):
    hs = HomeserverProcess(db_dsn, password_config={"enabled": False})
    try:
        hs.start()
        client = Client(hs)
        first = client.post("/register", {"username": "nopassword"})
        resp = client.post("/register", {"username": "nopassword",
                                          "auth": {"type": "m.login.dummy", "session": first.json()["session"]}})
        client.access_token = resp.json()["access_token"]
        refused = client.post("/account/password", {"new_password": "something"})
        assert refused.status_code == 403
        assert refused.json()["errcode"] == "M_FORBIDDEN"
    finally:
        hs.stop()


def test_each_listener_serves_only_its_resources(db_dsn):
    client_port, federation_port = free_port(), free_port()
    hs = HomeserverProcess(db_dsn, listeners=[
        {"port": client_port, "type": "http", "bind_addresses": ["127.0.0.1"], "resources": [{"names": ["client"]}]},
        {"port": federation_port, "type": "http", "bind_addresses": ["127.0.0.1"],
         "resources": [{"names": ["federation"]}]},
    ])
    hs.port, hs.base_url = client_port, f"http://127.0.0.1:{client_port}"
    try:
        hs.start()
        client_url, federation_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{federation_port}"
        assert requests.get(client_url + "/_matrix/client/versions").status_code == 200
        assert requests.get(federation_url + "/_matrix/key/v2/server").status_code == 200
        for url in (federation_url + "/_matrix/client/versions", client_url + "/_matrix/key/v2/server"):
            resp = requests.get(url)
            assert resp.status_code == 404, url
            assert resp.json()["errcode"] == "M_UNRECOGNIZED"
    finally:
        hs.stop()
