"""Device management (client-server API "Device management"): a user sees and changes only their
own devices, and deleting one takes user-interactive auth with their own password."""

import time
from urllib.parse import quote

import pytest

from tests.harness import Client, assert_error

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def bob(homeserver):
    return Client(homeserver).register("bob", initial_device_display_name="Bob's laptop")


def fresh_user(homeserver, name: str) -> Client:
    return Client(homeserver).register(name, initial_device_display_name=f"{name} first")


def second_login(user: Client, **extra) -> Client:
    return Client(user.server).login(user.user_id.split(":")[0][1:], **extra)


def password_auth(session, user, password=PASSWORD):
    return {"type": "m.login.password", "session": session,
            "identifier": {"type": "m.id.user", "user": user}, "password": password}


def start_uia(client: Client, method: str, path: str, body: dict | None = None) -> str:
    resp = client.request(method, path, json=body or {})
    assert resp.status_code == 401, resp.text
    return resp.json()["session"]


def delete_device(client: Client, device_id: str, password=PASSWORD, user=None):
    path = f"/devices/{quote(device_id, safe='')}"
    session = start_uia(client, "DELETE", path)
    return client.delete(path, {"auth": password_auth(session, user or client.user_id, password)})


# --- listing and reading ---

def test_devices_lists_every_device_of_the_user_with_last_seen(homeserver):
    first = fresh_user(homeserver, "lister")
    second = second_login(first, initial_device_display_name="lister phone")
    before = int(time.time() * 1000)
    assert second.get("/account/whoami").status_code == 200
    resp = first.get("/devices")
    assert resp.status_code == 200
    devices = {d["device_id"]: d for d in resp.json()["devices"]}
    assert set(devices) == {first.device_id, second.device_id}
    assert devices[first.device_id]["display_name"] == "lister first"
    assert devices[second.device_id]["display_name"] == "lister phone"
    for device in devices.values():
        assert device["last_seen_ip"] == "127.0.0.1"
        assert before - 60_000 <= device["last_seen_ts"] <= int(time.time() * 1000) + 1000


def test_unnamed_unused_device_has_null_name_and_last_seen(homeserver):
    # Null, not absent: what Synapse sends and what matrix-nio's schema insists on.
    user = fresh_user(homeserver, "nulls")
    quiet = second_login(user)
    device = {d["device_id"]: d for d in user.get("/devices").json()["devices"]}[quiet.device_id]
    assert device == {"device_id": quiet.device_id, "user_id": user.user_id, "display_name": None,
                      "last_seen_ip": None, "last_seen_ts": None}


def test_devices_never_lists_another_users_devices(homeserver, bob):
    carol = fresh_user(homeserver, "carol")
    ids = {d["device_id"] for d in carol.get("/devices").json()["devices"]}
    assert ids == {carol.device_id}


def test_get_own_device(bob):
    resp = bob.get(f"/devices/{bob.device_id}")
    assert resp.status_code == 200
    body = resp.json()
    assert body["device_id"] == bob.device_id
    assert body["display_name"] == "Bob's laptop"
    assert body["last_seen_ip"] == "127.0.0.1"
    assert isinstance(body["last_seen_ts"], int)


def test_get_another_users_device_is_404_not_found(homeserver, bob):
    eve = fresh_user(homeserver, "eve_get")
    assert_error(eve.get(f"/devices/{bob.device_id}"), 404, "M_NOT_FOUND")


def test_get_unknown_device_is_404_not_found(bob):
    assert_error(bob.get("/devices/NOSUCHDEVICE"), 404, "M_NOT_FOUND")


def test_devices_need_a_token(homeserver, bob):
    assert_error(Client(homeserver).get("/devices"), 401, "M_MISSING_TOKEN")
    assert_error(Client(homeserver).get(f"/devices/{bob.device_id}"), 401, "M_MISSING_TOKEN")


def test_same_device_id_for_two_users_are_separate_devices(homeserver):
    one = Client(homeserver).register("shared_one", device_id="SHARED", initial_device_display_name="one's")
    two = Client(homeserver).register("shared_two", device_id="SHARED", initial_device_display_name="two's")
    assert one.put("/devices/SHARED", {"display_name": "renamed by one"}).status_code == 200
    assert one.get("/devices/SHARED").json()["display_name"] == "renamed by one"
    assert two.get("/devices/SHARED").json()["display_name"] == "two's"


def test_device_id_with_a_slash_works_when_percent_encoded(homeserver):
    user = fresh_user(homeserver, "slashdev")
    other = second_login(user, device_id="dev/ice")
    resp = user.get("/devices/dev%2Fice")
    assert resp.status_code == 200, resp.text
    assert resp.json()["device_id"] == "dev/ice"
    assert user.put("/devices/dev%2Fice", {"display_name": "slashed"}).status_code == 200
    assert other.get("/devices/dev%2Fice").json()["display_name"] == "slashed"


# --- renaming ---

def test_rename_own_device(homeserver):
    user = fresh_user(homeserver, "renamer")
    resp = user.put(f"/devices/{user.device_id}", {"display_name": "New name"})
    assert resp.status_code == 200
    assert resp.json() == {}
    assert user.get(f"/devices/{user.device_id}").json()["display_name"] == "New name"


def test_rename_without_display_name_leaves_the_name(bob):
    resp = bob.put(f"/devices/{bob.device_id}", {})
    assert resp.status_code == 200
    assert bob.get(f"/devices/{bob.device_id}").json()["display_name"] == "Bob's laptop"


def test_rename_unknown_device_is_404_not_found(bob):
    assert_error(bob.put("/devices/NOSUCHDEVICE", {"display_name": "x"}), 404, "M_NOT_FOUND")


def test_rename_unknown_device_with_empty_body_is_404_not_found(bob):
    assert_error(bob.put("/devices/NOSUCHDEVICE", {}), 404, "M_NOT_FOUND")


def test_rename_another_users_device_is_404_and_changes_nothing(homeserver, bob):
    eve = fresh_user(homeserver, "eve_rename")
    assert_error(eve.put(f"/devices/{bob.device_id}", {"display_name": "pwned"}), 404, "M_NOT_FOUND")
    assert bob.get(f"/devices/{bob.device_id}").json()["display_name"] == "Bob's laptop"


@pytest.mark.parametrize("name", [42, ["x"], {"a": "b"}, True, "x" * 101])
def test_rename_with_invalid_display_name_is_400_bad_json(bob, name):
    assert_error(bob.put(f"/devices/{bob.device_id}", {"display_name": name}), 400, "M_BAD_JSON")
    assert bob.get(f"/devices/{bob.device_id}").json()["display_name"] == "Bob's laptop"


def test_rename_with_nul_in_display_name_is_400_invalid_param(bob):
    assert_error(bob.put(f"/devices/{bob.device_id}", {"display_name": "nul\u0000byte"}), 400, "M_INVALID_PARAM")
    assert bob.get(f"/devices/{bob.device_id}").json()["display_name"] == "Bob's laptop"


# --- deleting one device (UIA) ---

def test_delete_device_first_asks_for_a_password(homeserver):
    user = fresh_user(homeserver, "asked")
    other = second_login(user)
    resp = user.delete(f"/devices/{other.device_id}")
    assert resp.status_code == 401
    body = resp.json()
    assert body["flows"] == [{"stages": ["m.login.password"]}]
    assert isinstance(body["session"], str) and body["session"]
    assert body["params"] == {}
    assert "completed" not in body
    assert other.get("/account/whoami").status_code == 200


def test_delete_device_with_wrong_password_is_401_forbidden_and_keeps_the_device(homeserver):
    user = fresh_user(homeserver, "wrongpw")
    other = second_login(user)
    resp = delete_device(user, other.device_id, password="not my password")
    assert_error(resp, 401, "M_FORBIDDEN")
    assert resp.json()["flows"] == [{"stages": ["m.login.password"]}]
    assert resp.json()["session"]
    assert other.get("/account/whoami").status_code == 200


def test_delete_device_with_another_users_correct_password_is_refused(homeserver):
    victim = fresh_user(homeserver, "victim")
    victim_other = second_login(victim)
    attacker = fresh_user(homeserver, "attacker")
    # The attacker holds victim's token (say, stolen) but only knows their own password.
    thief = Client(homeserver, access_token=victim.access_token)
    thief.user_id = victim.user_id
    resp = delete_device(thief, victim_other.device_id, user=attacker.user_id)
    assert_error(resp, 401, "M_FORBIDDEN")
    assert victim_other.get("/account/whoami").status_code == 200
    assert victim_other.device_id in {d["device_id"] for d in victim.get("/devices").json()["devices"]}


def test_delete_device_with_another_users_localpart_and_password_is_refused(homeserver):
    victim = fresh_user(homeserver, "victim2")
    victim_other = second_login(victim)
    fresh_user(homeserver, "attacker2")
    thief = Client(homeserver, access_token=victim.access_token)
    resp = delete_device(thief, victim_other.device_id, user="attacker2")
    assert_error(resp, 401, "M_FORBIDDEN")
    assert victim_other.get("/account/whoami").status_code == 200


def test_delete_device_with_own_password_deletes_it_and_kills_its_token(homeserver):
    user = fresh_user(homeserver, "deleter")
    other = second_login(user)
    resp = delete_device(user, other.device_id)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert_error(other.get("/account/whoami"), 401, "M_UNKNOWN_TOKEN")
    assert_error(user.get(f"/devices/{other.device_id}"), 404, "M_NOT_FOUND")
    assert {d["device_id"] for d in user.get("/devices").json()["devices"]} == {user.device_id}
    assert user.get("/account/whoami").status_code == 200


def test_delete_device_accepts_the_legacy_user_field(homeserver):
    user = fresh_user(homeserver, "legacy")
    other = second_login(user)
    session = start_uia(user, "DELETE", f"/devices/{other.device_id}")
    resp = user.delete(f"/devices/{other.device_id}",
                       {"auth": {"type": "m.login.password", "session": session, "user": "legacy",
                                 "password": PASSWORD}})
    assert resp.status_code == 200, resp.text
    assert_error(other.get("/account/whoami"), 401, "M_UNKNOWN_TOKEN")


def test_delete_own_current_device_logs_it_out(homeserver):
    user = fresh_user(homeserver, "selfdelete")
    assert delete_device(user, user.device_id).status_code == 200
    assert_error(user.get("/account/whoami"), 401, "M_UNKNOWN_TOKEN")


def test_delete_another_users_device_id_leaves_their_device_alone(homeserver):
    target = fresh_user(homeserver, "target")
    eve = fresh_user(homeserver, "eve_delete")
    resp = delete_device(eve, target.device_id)
    # The spec answers 200 for a device that "had been removed previously": eve has none by that ID.
    assert resp.status_code == 200, resp.text
    assert target.get("/account/whoami").status_code == 200
    assert target.get(f"/devices/{target.device_id}").status_code == 200


def test_uia_session_for_one_device_cannot_delete_another(homeserver):
    user = fresh_user(homeserver, "sessionbound")
    a = second_login(user)
    b = second_login(user)
    session = start_uia(user, "DELETE", f"/devices/{a.device_id}")
    resp = user.delete(f"/devices/{b.device_id}", {"auth": password_auth(session, user.user_id)})
    assert_error(resp, 403, "M_FORBIDDEN")
    assert b.get("/account/whoami").status_code == 200


def test_delete_device_needs_a_token(homeserver, bob):
    assert_error(Client(homeserver).delete(f"/devices/{bob.device_id}", {}), 401, "M_MISSING_TOKEN")


# --- deleting several devices (UIA) ---

def test_delete_devices_deletes_the_listed_ones(homeserver):
    user = fresh_user(homeserver, "bulk")
    a, b, keep = second_login(user), second_login(user), second_login(user)
    body = {"devices": [a.device_id, b.device_id, "NOSUCHDEVICE"]}
    session = start_uia(user, "POST", "/delete_devices", body)
    resp = user.post("/delete_devices", {**body, "auth": password_auth(session, user.user_id)})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert_error(a.get("/account/whoami"), 401, "M_UNKNOWN_TOKEN")
    assert_error(b.get("/account/whoami"), 401, "M_UNKNOWN_TOKEN")
    assert keep.get("/account/whoami").status_code == 200
    assert {d["device_id"] for d in user.get("/devices").json()["devices"]} == {user.device_id, keep.device_id}


def test_delete_devices_with_wrong_password_deletes_nothing(homeserver):
    user = fresh_user(homeserver, "bulkwrong")
    a = second_login(user)
    body = {"devices": [a.device_id]}
    session = start_uia(user, "POST", "/delete_devices", body)
    resp = user.post("/delete_devices", {**body, "auth": password_auth(session, user.user_id, "nope")})
    assert_error(resp, 401, "M_FORBIDDEN")
    assert a.get("/account/whoami").status_code == 200


def test_delete_devices_with_another_users_password_deletes_nothing(homeserver):
    user = fresh_user(homeserver, "bulkvictim")
    a = second_login(user)
    attacker = fresh_user(homeserver, "bulkattacker")
    body = {"devices": [a.device_id]}
    session = start_uia(user, "POST", "/delete_devices", body)
    resp = user.post("/delete_devices", {**body, "auth": password_auth(session, attacker.user_id)})
    assert_error(resp, 401, "M_FORBIDDEN")
    assert a.get("/account/whoami").status_code == 200


def test_delete_devices_cannot_reach_another_users_devices(homeserver):
    target = fresh_user(homeserver, "bulktarget")
    eve = fresh_user(homeserver, "bulkeve")
    body = {"devices": [target.device_id]}
    session = start_uia(eve, "POST", "/delete_devices", body)
    assert eve.post("/delete_devices", {**body, "auth": password_auth(session, eve.user_id)}).status_code == 200
    assert target.get("/account/whoami").status_code == 200


def test_delete_devices_without_devices_is_400_missing_param(bob):
    assert_error(bob.post("/delete_devices", {}), 400, "M_MISSING_PARAM")


@pytest.mark.parametrize("devices", ["ABC", {"ABC": True}, [1, 2], ["ABC", None]])
def test_delete_devices_with_malformed_list_is_400_bad_json(bob, devices):
    assert_error(bob.post("/delete_devices", {"devices": devices}), 400, "M_BAD_JSON")
