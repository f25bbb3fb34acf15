"""Our responses against the response schemas of the spec's bundled OpenAPI documents
(/work/shared/spec/bundled, Matrix v1.19; every $ref is inlined there). Checked with
`jsonschema`, so the schema language is interpreted by code that is not ours."""

import functools
import json
import os
import re
from urllib.parse import quote

import jsonschema
import pytest
import requests

from tests.harness import Client

SPEC_DIR = os.environ.get("MATRIX_SPEC_BUNDLED", "/work/shared/spec/bundled")
PASSWORD = "correct horse battery"


@functools.cache
def _spec(api: str) -> dict:
    with open(os.path.join(SPEC_DIR, f"{api}-api.json"), encoding="utf-8") as f:
        return json.load(f)


def response_schema(path_template: str, method: str, status: int, api: str = "client-server") -> dict | None:
    """The JSON schema the spec gives for one response, e.g. ("/_matrix/client/v3/devices/{deviceId}",
    "get", 200); None when the spec documents that status without a JSON body. KeyError when the
    spec does not document the path, method or status at all: a test must not pass by accident."""
    operation = _spec(api)["paths"][path_template][method.lower()]
    response = operation["responses"][str(status)]
    content = response.get("content", {}).get("application/json")
    return content["schema"] if content else None


_FORMATS = jsonschema.FormatChecker()


@_FORMATS.checks("mx-user-id")
def _is_user_id(value) -> bool:
    return not isinstance(value, str) or re.fullmatch(r"@[^:]+:[^:]+(:\d+)?", value) is not None


@_FORMATS.checks("mx-mxc-uri")
def _is_mxc_uri(value) -> bool:
    return not isinstance(value, str) or re.fullmatch(r"mxc://[^/]+/[^/]+", value) is not None


@_FORMATS.checks("mx-server-name")
def _is_server_name(value) -> bool:
    return not isinstance(value, str) or re.fullmatch(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?",
                                                      value) is not None


@_FORMATS.checks("mx-unpadded-base64")
def _is_unpadded_base64(value) -> bool:
    return not isinstance(value, str) or re.fullmatch(r"[A-Za-z0-9+/]*", value) is not None


def assert_matches_spec(resp: requests.Response, path_template: str, api: str = "client-server") -> None:
    schema = response_schema(path_template, resp.request.method, resp.status_code, api)
    assert schema is not None, f"the spec documents no JSON body for {resp.status_code}"
    assert resp.headers["Content-Type"].startswith("application/json")
    jsonschema.validate(resp.json(), schema, cls=jsonschema.Draft202012Validator, format_checker=_FORMATS)


@pytest.fixture(scope="module")
def alice(homeserver):
    return Client(homeserver).register("alice", initial_device_display_name="Alice's phone")


# --- the helper itself ---

def test_helper_finds_the_schema_for_a_path_method_and_status():
    schema = response_schema("/_matrix/client/versions", "GET", 200)
    assert "versions" in schema["required"]


def test_helper_refuses_an_undocumented_status():
    with pytest.raises(KeyError):
        response_schema("/_matrix/client/versions", "GET", 418)


@pytest.mark.parametrize("path,body", [
    ("/_matrix/client/versions", {"versions": "v1.1"}),
    ("/_matrix/client/versions", {"unstable_features": {}}),
    ("/_matrix/client/v3/account/whoami", {"user_id": "alice"}),
    ("/_matrix/client/v3/devices", {"devices": [{"display_name": "no id"}]}),
])
def test_helper_rejects_documents_that_break_the_schema(path, body):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, response_schema(path, "GET", 200), cls=jsonschema.Draft202012Validator,
                            format_checker=_FORMATS)


# --- our responses ---

def test_versions_matches_spec(homeserver):
    assert_matches_spec(Client(homeserver).get("/_matrix/client/versions"), "/_matrix/client/versions")


def test_client_wellknown_matches_spec(homeserver):
    resp = requests.get(homeserver.url("/.well-known/matrix/client"), timeout=10)
    assert_matches_spec(resp, "/.well-known/matrix/client")


def test_login_flows_match_spec(homeserver):
    assert_matches_spec(Client(homeserver).get("/login"), "/_matrix/client/v3/login")


def test_login_success_matches_spec(alice):
    resp = Client(alice.server).post("/login", {"type": "m.login.password", "password": PASSWORD,
                                                "identifier": {"type": "m.id.user", "user": "alice"}})
    assert resp.status_code == 200
    assert_matches_spec(resp, "/_matrix/client/v3/login")


def test_login_failure_matches_spec(alice):
    resp = Client(alice.server).post("/login", {"type": "m.login.password", "password": "wrong",
                                                "identifier": {"type": "m.id.user", "user": "alice"}})
    assert resp.status_code == 403
    assert_matches_spec(resp, "/_matrix/client/v3/login")


def test_register_uia_challenge_matches_spec(homeserver):
    resp = Client(homeserver).post("/register", {"username": "schema_reg", "password": PASSWORD})
    assert resp.status_code == 401
    assert_matches_spec(resp, "/_matrix/client/v3/register")


def test_register_success_matches_spec(homeserver):
    client = Client(homeserver)
    session = client.post("/register", {"username": "schema_ok", "password": PASSWORD}).json()["session"]
    resp = client.post("/register", {"username": "schema_ok", "password": PASSWORD,
                                     "auth": {"type": "m.login.dummy", "session": session}})
    assert resp.status_code == 200
    assert_matches_spec(resp, "/_matrix/client/v3/register")


def test_register_taken_username_matches_spec(alice):
    resp = Client(alice.server).post("/register", {"username": "alice", "password": PASSWORD})
    assert resp.status_code == 400
    assert_matches_spec(resp, "/_matrix/client/v3/register")


def test_whoami_matches_spec(alice):
    assert_matches_spec(alice.get("/account/whoami"), "/_matrix/client/v3/account/whoami")


def test_whoami_without_token_matches_spec(homeserver):
    resp = Client(homeserver).get("/account/whoami")
    assert resp.status_code == 401
    assert_matches_spec(resp, "/_matrix/client/v3/account/whoami")


def test_devices_matches_spec(homeserver):
    # Every device named and used: a null name or last_seen (see test_devices.py) is a deliberate
    # difference from the spec's schema, which has them absent instead.
    user = Client(homeserver).register("lister", initial_device_display_name="first")
    second = Client(homeserver).login("lister", initial_device_display_name="second")
    assert second.get("/account/whoami").status_code == 200
    resp = user.get("/devices")
    assert len(resp.json()["devices"]) == 2
    assert_matches_spec(resp, "/_matrix/client/v3/devices")


def test_device_matches_spec(alice):
    assert_matches_spec(alice.get(f"/devices/{alice.device_id}"), "/_matrix/client/v3/devices/{deviceId}")


def test_delete_device_uia_challenge_matches_spec(alice):
    resp = alice.delete(f"/devices/{alice.device_id}", {})
    assert resp.status_code == 401
    assert_matches_spec(resp, "/_matrix/client/v3/devices/{deviceId}")


def test_delete_device_wrong_password_matches_spec(alice):
    session = alice.delete(f"/devices/{alice.device_id}", {}).json()["session"]
    resp = alice.delete(f"/devices/{alice.device_id}", {"auth": {
        "type": "m.login.password", "session": session, "password": "wrong",
        "identifier": {"type": "m.id.user", "user": alice.user_id}}})
    assert resp.status_code == 401
    assert resp.json()["errcode"] == "M_FORBIDDEN"
    assert_matches_spec(resp, "/_matrix/client/v3/devices/{deviceId}")


def test_password_change_uia_challenge_matches_spec(alice):
    resp = alice.post("/account/password", {"new_password": "another password"})
    assert resp.status_code == 401
    assert_matches_spec(resp, "/_matrix/client/v3/account/password")


def test_profile_matches_spec(alice):
    alice.put(f"/profile/{alice.user_id}/avatar_url", {"avatar_url": "mxc://test.local/avatar"})
    resp = Client(alice.server).get(f"/profile/{quote(alice.user_id)}")
    assert set(resp.json()) == {"displayname", "avatar_url"}
    assert_matches_spec(resp, "/_matrix/client/v3/profile/{userId}")


def test_profile_of_unknown_user_matches_spec(homeserver):
    resp = Client(homeserver).get("/profile/@nobody:test.local")
    assert resp.status_code == 404
    assert_matches_spec(resp, "/_matrix/client/v3/profile/{userId}")


def test_profile_field_matches_spec(alice):
    resp = Client(alice.server).get(f"/profile/{alice.user_id}/displayname")
    assert_matches_spec(resp, "/_matrix/client/v3/profile/{userId}/{keyName}")


def test_profile_put_matches_spec(alice):
    resp = alice.put(f"/profile/{alice.user_id}/displayname", {"displayname": "Alice"})
    assert_matches_spec(resp, "/_matrix/client/v3/profile/{userId}/{keyName}")


def test_profile_put_forbidden_matches_spec(alice):
    resp = alice.put("/profile/@someone_else:test.local/displayname", {"displayname": "x"})
    assert resp.status_code == 403
    assert_matches_spec(resp, "/_matrix/client/v3/profile/{userId}/{keyName}")


def test_capabilities_matches_spec(alice):
    assert_matches_spec(alice.get("/capabilities"), "/_matrix/client/v3/capabilities")


def test_server_keys_match_spec(homeserver):
    resp = Client(homeserver).get("/_matrix/key/v2/server")
    assert_matches_spec(resp, "/_matrix/key/v2/server", api="server-server")
