"""POST /register with type m.login.application_service (client-server API "Account
registration", Application Service API "Server admin style permissions") and the exclusive user
namespaces every other way of registering must stay out of (M_EXCLUSIVE)."""

import tempfile
import uuid

import pytest

from tests.api.test_admin_register import PATH as ADMIN_REGISTER
from tests.api.test_admin_register import mac_for, nonce
from tests.appservice_fixture import AppServiceServer
from tests.harness import Client, assert_error, running_homeserver

SERVER = "test.local"
BRIDGE_TOKEN = "as-token-bridge"
OTHER_TOKEN = "as-token-other"
AS_TYPE = "m.login.application_service"


@pytest.fixture(scope="module")
def server(db_dsn):
    service = AppServiceServer("hs-token").start()
    directory = tempfile.mkdtemp(prefix="as-reg-")
    try:
        paths = [
            service.write_registration(directory, id="bridge", as_token=BRIDGE_TOKEN, sender_localpart="bridgebot",
                                       namespaces={"users": [{"regex": "@_?bridge_.*:test\\.local",
                                                              "exclusive": True}]}),
            # Non-exclusive, and overlapping the bridge's exclusive namespace on @bridge_shared*.
            service.write_registration(directory, id="other", as_token=OTHER_TOKEN, sender_localpart="otherbot",
                                       namespaces={"users": [{"regex": "@other_.*", "exclusive": False},
                                                             {"regex": "@bridge_shared.*", "exclusive": False}]}),
        ]
        with running_homeserver(db_dsn, app_service_config_files=paths) as hs:
            yield hs
    finally:
        service.stop()


def name(prefix="bridge_") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def as_register(server, body, token=BRIDGE_TOKEN):
    return Client(server, token).post("/register", {"type": AS_TYPE, **body})


def test_registers_a_namespace_user_without_uia_and_with_inhibit_login_no_session(server):
    localpart = name()
    resp = as_register(server, {"username": localpart, "inhibit_login": True})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"user_id": f"@{localpart}:{SERVER}", "home_server": SERVER}


def test_registers_with_a_session_when_login_is_not_inhibited(server):
    localpart = name()
    resp = as_register(server, {"username": localpart, "device_id": "BRIDGEDEV",
                                "initial_device_display_name": "bridge"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["user_id"] == f"@{localpart}:{SERVER}" and body["device_id"] == "BRIDGEDEV"
    whoami = Client(server, body["access_token"]).get("/account/whoami")
    assert whoami.status_code == 200, whoami.text
    assert whoami.json()["user_id"] == body["user_id"] and whoami.json()["device_id"] == "BRIDGEDEV"


def test_service_may_register_underscore_and_numeric_looking_localparts_of_its_namespace(server):
    resp = as_register(server, {"username": "_" + name(), "inhibit_login": True})
    assert resp.status_code == 200, resp.text


def test_username_outside_the_services_namespace_is_exclusive(server):
    assert_error(as_register(server, {"username": name("someone_"), "inhibit_login": True}), 400, "M_EXCLUSIVE")


def test_username_in_own_namespace_but_another_services_exclusive_one_is_exclusive(server):
    resp = as_register(server, {"username": name("bridge_shared"), "inhibit_login": True}, token=OTHER_TOKEN)
    assert_error(resp, 400, "M_EXCLUSIVE")


def test_non_exclusive_namespace_user_registers(server):
    resp = as_register(server, {"username": name("other_"), "inhibit_login": True}, token=OTHER_TOKEN)
    assert resp.status_code == 200, resp.text


def test_taken_username_is_user_in_use(server):
    localpart = name()
    assert as_register(server, {"username": localpart, "inhibit_login": True}).status_code == 200
    assert_error(as_register(server, {"username": localpart, "inhibit_login": True}), 400, "M_USER_IN_USE")


def test_the_sender_already_exists_so_registering_it_is_user_in_use(server):
    # Its namespace does not hold it, but a service may always act as its own sender.
    assert_error(as_register(server, {"username": "bridgebot", "inhibit_login": True}), 400, "M_USER_IN_USE")


@pytest.mark.parametrize("username", ["Bridge_UPPER", "bridge_a:b", "bridge_ space", "bridge_" + "x" * 250])
def test_invalid_username_is_invalid_username(server, username):
    assert_error(as_register(server, {"username": username, "inhibit_login": True}), 400, "M_INVALID_USERNAME")


def test_missing_username_is_missing_param(server):
    assert_error(as_register(server, {"inhibit_login": True}), 400, "M_MISSING_PARAM")


def test_mistyped_fields_are_bad_json(server):
    assert_error(as_register(server, {"username": name(), "inhibit_login": "yes"}), 400, "M_BAD_JSON")


def test_without_a_token_is_missing_token(server):
    resp = Client(server).post("/register", {"type": AS_TYPE, "username": name()})
    assert_error(resp, 401, "M_MISSING_TOKEN")


def test_with_an_ordinary_access_token_is_unknown_token(server):
    user = Client(server).register(name("plain"))
    assert_error(as_register(server, {"username": name()}, token=user.access_token), 401, "M_UNKNOWN_TOKEN")


def test_ordinary_registration_in_an_exclusive_namespace_is_exclusive(server):
    client = Client(server)
    first = client.post("/register", {"username": name(), "password": "correct horse battery"})
    assert_error(first, 400, "M_EXCLUSIVE")


def test_ordinary_registration_in_a_non_exclusive_namespace_works(server):
    client = Client(server).register(name("other_"))
    assert client.user_id.startswith("@other_")


def test_username_availability_says_exclusive_for_a_reserved_name(server):
    resp = Client(server).get("/register/available", params={"username": name()})
    assert_error(resp, 400, "M_EXCLUSIVE")
    free = Client(server).get("/register/available", params={"username": name("other_")})
    assert free.status_code == 200, free.text
    assert free.json() == {"available": True}


def test_shared_secret_registration_in_an_exclusive_namespace_is_exclusive(server):
    username, password = name(), "correct horse battery"
    n = nonce(server)
    resp = Client(server).post(ADMIN_REGISTER, {"nonce": n, "username": username, "password": password,
                                                "mac": mac_for(n, username, password)})
    assert_error(resp, 400, "M_EXCLUSIVE")


def test_services_register_even_with_registration_disabled(db_dsn, server):
    service = AppServiceServer("hs-token").start()
    try:
        path = service.write_registration(tempfile.mkdtemp(prefix="as-reg-"), id="bridge", as_token=BRIDGE_TOKEN,
                                          sender_localpart="bridgebot",
                                          namespaces={"users": [{"regex": "@bridge_.*", "exclusive": True}]})
        with running_homeserver(db_dsn, app_service_config_files=[path], enable_registration=False) as closed:
            resp = as_register(closed, {"username": name(), "inhibit_login": True})
            assert resp.status_code == 200, resp.text
            assert_error(Client(closed).post("/register", {"username": name("plain")}), 403, "M_FORBIDDEN")
    finally:
        service.stop()
