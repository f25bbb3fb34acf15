"""What a client or server learns before signing in: /versions, .well-known, /capabilities and
the server's signing keys (/_matrix/key/v2/server)."""

import time

import pytest
import requests
import signedjson.key
import signedjson.sign

from tests.harness import Client, running_homeserver


@pytest.fixture(scope="module")
def wellknown_server(db_dsn):
    """A second server on the same database that delegates federation and names a public URL."""
    with running_homeserver(db_dsn, server_name="example.test", serve_server_wellknown=True,
                               public_baseurl="https://matrix.example.test") as server:
        yield server


@pytest.fixture(scope="module")
def alice(homeserver):
    return Client(homeserver).register("alice")


# --- /_matrix/client/versions (client-server API, "GET /_matrix/client/versions") ---

def test_versions_lists_spec_versions_and_unstable_features_without_auth(homeserver):
    resp = Client(homeserver).get("/_matrix/client/versions")
    assert resp.status_code == 200
    body = resp.json()
    assert resp.headers["Content-Type"].startswith("application/json")
    assert isinstance(body["versions"], list) and body["versions"]
    assert all(isinstance(v, str) for v in body["versions"])
    assert {"r0.6.1", "v1.1", "v1.12"} <= set(body["versions"])
    assert body["unstable_features"] == {"org.matrix.msc3814": True}


def test_versions_ignores_an_invalid_access_token(homeserver):
    # Clients call /versions before they know whether their stored token still works.
    resp = Client(homeserver, access_token="not-a-token").get("/_matrix/client/versions")
    assert resp.status_code == 200
    assert "v1.1" in resp.json()["versions"]


# --- .well-known (client-server API "Well-known URIs"; server-server API "Resolving server names") ---
# Client() would put these under /_matrix/client/v3, so they go through requests directly.

def test_client_wellknown_names_the_listener_as_base_url(homeserver):
    resp = requests.get(homeserver.url("/.well-known/matrix/client"), timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"m.homeserver": {"base_url": f"http://127.0.0.1:{homeserver.port}/"}}


def test_client_wellknown_uses_public_baseurl_when_configured(wellknown_server):
    resp = requests.get(wellknown_server.url("/.well-known/matrix/client"), timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"m.homeserver": {"base_url": "https://matrix.example.test/"}}


def test_server_wellknown_is_not_served_by_default(homeserver):
    resp = requests.get(homeserver.url("/.well-known/matrix/server"), timeout=10)
    assert resp.status_code == 404
    assert resp.json()["errcode"] == "M_NOT_FOUND"


def test_server_wellknown_delegates_to_port_443_when_enabled(wellknown_server):
    resp = requests.get(wellknown_server.url("/.well-known/matrix/server"), timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"m.server": "example.test:443"}


# --- /capabilities (client-server API "Capabilities negotiation") ---

def test_capabilities_requires_an_access_token(homeserver):
    resp = Client(homeserver).get("/capabilities")
    assert resp.status_code == 401
    assert resp.json()["errcode"] == "M_MISSING_TOKEN"


def test_capabilities_rejects_an_unknown_access_token(homeserver):
    resp = Client(homeserver, access_token="hsa_unknown").get("/capabilities")
    assert resp.status_code == 401
    assert resp.json()["errcode"] == "M_UNKNOWN_TOKEN"


def test_capabilities_lists_room_versions_and_account_features(alice):
    resp = alice.get("/capabilities")
    assert resp.status_code == 200
    caps = resp.json()["capabilities"]
    assert caps["m.room_versions"]["default"] == "12"
    available = caps["m.room_versions"]["available"]
    assert set(available) == {str(v) for v in range(1, 13)}
    assert set(available.values()) == {"stable"}
    assert caps["m.change_password"] == {"enabled": True}
    assert caps["m.set_displayname"] == {"enabled": True}
    assert caps["m.set_avatar_url"] == {"enabled": True}
    assert caps["m.3pid_changes"] == {"enabled": False}


def test_capabilities_is_served_under_r0_too(alice):
    resp = alice.get("/_matrix/client/r0/capabilities")
    assert resp.status_code == 200
    assert resp.json()["capabilities"]["m.room_versions"]["default"] == "12"


# --- /_matrix/key/v2/server (server-server API "Publishing Keys") ---

def _server_keys(server):
    resp = Client(server).get("/_matrix/key/v2/server")
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_server_keys_are_self_signed_with_the_published_key(homeserver):
    # Checked with signedjson, an implementation independent of ours.
    body = _server_keys(homeserver)
    assert body["server_name"] == "test.local"
    assert body["old_verify_keys"] == {}
    assert len(body["verify_keys"]) == 1
    (key_id, key), = body["verify_keys"].items()
    algorithm, version = key_id.split(":", 1)
    assert algorithm == "ed25519"
    verify_key = signedjson.key.decode_verify_key_base64(algorithm, version, key["key"])
    assert set(body["signatures"]) == {"test.local"}
    assert set(body["signatures"]["test.local"]) == {key_id}
    signedjson.sign.verify_signed_json(body, "test.local", verify_key)


def test_server_keys_signature_does_not_verify_after_tampering(homeserver):
    body = _server_keys(homeserver)
    (key_id, key), = body["verify_keys"].items()
    verify_key = signedjson.key.decode_verify_key_base64("ed25519", key_id.split(":", 1)[1], key["key"])
    body["valid_until_ts"] += 1
    with pytest.raises(signedjson.sign.SignatureVerifyException):
        signedjson.sign.verify_signed_json(body, "test.local", verify_key)


def test_server_keys_are_valid_for_a_while_from_now(homeserver):
    body = _server_keys(homeserver)
    now_ms = int(time.time() * 1000)
    # key_refresh_interval defaults to a day; anything under an hour would make peers refetch constantly.
    assert now_ms + 3_600_000 < body["valid_until_ts"] <= now_ms + 86_400_000 + 60_000


def test_server_keys_are_the_same_key_on_every_request(homeserver):
    assert _server_keys(homeserver)["verify_keys"] == _server_keys(homeserver)["verify_keys"]


def test_server_keys_with_deprecated_key_id_path_returns_all_keys(homeserver):
    body = _server_keys(homeserver)
    (key_id, _), = body["verify_keys"].items()
    resp = Client(homeserver).get(f"/_matrix/key/v2/server/{key_id}")
    assert resp.status_code == 200
    assert resp.json()["verify_keys"] == body["verify_keys"]


def test_server_keys_name_the_configured_server(wellknown_server):
    body = _server_keys(wellknown_server)
    assert body["server_name"] == "example.test"
    (key_id, key), = body["verify_keys"].items()
    verify_key = signedjson.key.decode_verify_key_base64("ed25519", key_id.split(":", 1)[1], key["key"])
    signedjson.sign.verify_signed_json(body, "example.test", verify_key)
