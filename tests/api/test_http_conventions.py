"""Conventions every endpoint follows (client-server API "API standards"): JSON errors with an
errcode, 404/405 M_UNRECOGNIZED, CORS on everything, and the body parsing rules."""

import falcon
import falcon.testing
import pytest
import requests

from hs.api.app import Resource, build_app
from hs.config import HomeServerConfig
from tests.harness import Client, running_homeserver

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, Date",
}
BODY_LIMIT = 1024


@pytest.fixture(scope="module")
def alice(homeserver):
    return Client(homeserver).register("alice")


@pytest.fixture(scope="module")
def small_body_server(db_dsn):
    with running_homeserver(db_dsn, max_request_body_size="1K") as server:
        yield server


def assert_cors(resp):
    for name, value in CORS.items():
        assert resp.headers.get(name) == value, name


def assert_matrix_error(resp, status, errcode):
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert body["errcode"] == errcode
    assert isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in resp.text


def post_raw(server, path, data, **headers):
    return requests.post(server.url(path), data=data, headers=headers, timeout=30)


def login_body(padding: int = 0) -> bytes:
    # Login with an unknown user: the answer is 403 only if the body was read and parsed.
    body = ('{"type":"m.login.password","identifier":{"type":"m.id.user","user":"nobody"},'
            '"password":"x","pad":"' + "a" * padding + '"}')
    return body.encode()


# --- unknown paths and methods ---

@pytest.mark.parametrize("path", ["/_matrix/client/v3/no_such_endpoint", "/_matrix/client/v3/", "/nothing/here",
                                  "/_matrix/client/v3/account/whoami/extra"])
def test_unknown_path_is_404_unrecognized(homeserver, path):
    resp = requests.get(homeserver.url(path), timeout=10)
    assert_matrix_error(resp, 404, "M_UNRECOGNIZED")


def test_unknown_path_is_404_even_with_an_invalid_token(homeserver):
    resp = Client(homeserver, access_token="bogus").get("/no_such_endpoint")
    assert_matrix_error(resp, 404, "M_UNRECOGNIZED")


@pytest.mark.parametrize("method,path", [("DELETE", "/account/whoami"), ("POST", "/devices"),
                                         ("PUT", "/login"), ("POST", "/_matrix/client/versions"),
                                         ("PATCH", "/capabilities")])
def test_known_path_with_wrong_method_is_405_unrecognized_without_a_token(homeserver, method, path):
    resp = Client(homeserver).request(method, path)
    assert_matrix_error(resp, 405, "M_UNRECOGNIZED")
    assert_cors(resp)


def test_unknown_method_on_a_known_path_is_405_unrecognized(homeserver):
    resp = requests.request("FROBNICATE", homeserver.url("/_matrix/client/v3/account/whoami"), timeout=10)
    assert_matrix_error(resp, 405, "M_UNRECOGNIZED")
    assert "GET" in resp.headers["Allow"]


def test_unknown_method_on_an_unknown_path_is_404_unrecognized(homeserver):
    resp = requests.request("FROBNICATE", homeserver.url("/_matrix/client/v3/no_such_endpoint"), timeout=10)
    assert_matrix_error(resp, 404, "M_UNRECOGNIZED")


def test_wrong_method_is_405_with_a_valid_token_too(alice):
    resp = alice.delete("/account/whoami")
    assert_matrix_error(resp, 405, "M_UNRECOGNIZED")
    assert "GET" in resp.headers["Allow"]


def test_head_answers_like_get_without_a_body(homeserver):
    resp = requests.head(homeserver.url("/_matrix/client/versions"), timeout=10)
    assert resp.status_code == 200
    assert resp.content == b""
    assert resp.headers["Content-Type"].startswith("application/json")
    assert_cors(resp)


def test_head_needs_the_token_get_needs(homeserver):
    resp = requests.head(homeserver.url("/_matrix/client/v3/account/whoami"), timeout=10)
    assert resp.status_code == 401


def test_head_on_a_path_without_get_is_405(homeserver):
    resp = requests.head(homeserver.url("/_matrix/client/v3/logout"), timeout=10)
    assert resp.status_code == 405


# --- CORS ---

@pytest.mark.parametrize("path", ["/_matrix/client/v3/account/whoami", "/_matrix/client/v3/no_such_endpoint",
                                  "/_matrix/client/versions", "/.well-known/matrix/client", "/anything"])
def test_options_preflight_answers_200_with_cors_on_any_path(homeserver, path):
    resp = requests.options(homeserver.url(path), timeout=10,
                            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                                     "Access-Control-Request-Headers": "Authorization, Content-Type"})
    assert resp.status_code == 200
    assert_cors(resp)


def test_options_needs_no_token_even_on_authenticated_endpoints(homeserver):
    resp = requests.options(homeserver.url("/_matrix/client/v3/devices"), timeout=10,
                            headers={"Authorization": "Bearer nonsense"})
    assert resp.status_code == 200
    assert_cors(resp)


def test_successful_responses_carry_cors_headers(alice):
    resp = alice.get("/account/whoami")
    assert resp.status_code == 200
    assert_cors(resp)


@pytest.mark.parametrize("method,path,status", [("GET", "/account/whoami", 401), ("GET", "/no_such_endpoint", 404),
                                                ("POST", "/login", 400)])
def test_error_responses_carry_cors_headers(homeserver, method, path, status):
    resp = Client(homeserver).request(method, path)
    assert resp.status_code == status
    assert_cors(resp)


# --- authentication header ---

def test_access_token_in_query_string_is_accepted(alice):
    resp = requests.get(alice.server.url("/_matrix/client/v3/account/whoami"),
                        params={"access_token": alice.access_token}, timeout=10)
    assert resp.status_code == 200
    assert resp.json()["user_id"] == alice.user_id


@pytest.mark.parametrize("header", ["Basic YWxpY2U6cGFzcw==", "Token abc", "Bearer", "Bearer   ", "bearerabc"])
def test_authorization_header_that_is_not_a_bearer_token_is_401(alice, header):
    resp = requests.get(alice.server.url("/_matrix/client/v3/account/whoami"),
                        headers={"Authorization": header}, timeout=10)
    assert_matrix_error(resp, 401, "M_MISSING_TOKEN")
    assert_cors(resp)


def test_non_bearer_header_is_not_rescued_by_a_query_token(alice):
    # A malformed header is an error in itself; the query token must not paper over it.
    resp = requests.get(alice.server.url("/_matrix/client/v3/account/whoami"),
                        params={"access_token": alice.access_token},
                        headers={"Authorization": f"Basic {alice.access_token}"}, timeout=10)
    assert_matrix_error(resp, 401, "M_MISSING_TOKEN")


def test_bearer_scheme_is_case_insensitive(alice):
    resp = requests.get(alice.server.url("/_matrix/client/v3/account/whoami"),
                        headers={"Authorization": f"bearer {alice.access_token}"}, timeout=10)
    assert resp.status_code == 200
    assert resp.json()["user_id"] == alice.user_id


def test_missing_token_on_an_authenticated_endpoint_is_401_missing_token(homeserver):
    assert_matrix_error(Client(homeserver).get("/devices"), 401, "M_MISSING_TOKEN")


def test_unknown_token_is_401_unknown_token_and_not_soft_logout(homeserver):
    resp = Client(homeserver, access_token="hsa_nope").get("/devices")
    assert_matrix_error(resp, 401, "M_UNKNOWN_TOKEN")
    assert resp.json()["soft_logout"] is False


# --- request bodies ---

@pytest.mark.parametrize("data", [b"{not json", b"", b"   ", b"{\"a\":1", b"<html></html>", b"{'a': 1}"])
def test_body_that_is_not_json_is_400_not_json(homeserver, data):
    resp = post_raw(homeserver, "/_matrix/client/v3/login", data, **{"Content-Type": "application/json"})
    assert_matrix_error(resp, 400, "M_NOT_JSON")
    assert_cors(resp)


@pytest.mark.parametrize("data", [b"[]", b'"x"', b"1", b"null", b"true", b'[{"type":"m.login.password"}]'])
def test_json_that_is_not_an_object_is_400_bad_json(homeserver, data):
    resp = post_raw(homeserver, "/_matrix/client/v3/login", data, **{"Content-Type": "application/json"})
    assert_matrix_error(resp, 400, "M_BAD_JSON")


@pytest.mark.parametrize("data", [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}'])
def test_nan_and_infinity_are_not_json(homeserver, data):
    resp = post_raw(homeserver, "/_matrix/client/v3/login", data)
    assert_matrix_error(resp, 400, "M_NOT_JSON")


@pytest.mark.parametrize("data", [b'{"type": "\xff"}', b'{"type": "\xc3\x28"}', b"\xfe\xff\x00{\x00}",
                                  b'{"type": "\xed\xa0\x80"}'])
def test_body_that_is_not_utf8_is_not_json(homeserver, data):
    resp = post_raw(homeserver, "/_matrix/client/v3/login", data)
    assert_matrix_error(resp, 400, "M_NOT_JSON")


@pytest.mark.parametrize("data", [b'{"type": "\\ud800"}', b'{"\\udfff": 1}', b'{"a": ["x\\uDBFFy"]}'])
def test_lone_surrogate_escape_is_not_json(homeserver, data):
    # JSON's grammar allows the escape, but the string it makes is not Unicode: no UTF-8 for it.
    resp = post_raw(homeserver, "/_matrix/client/v3/login", data)
    assert_matrix_error(resp, 400, "M_NOT_JSON")


def test_surrogate_pair_escape_is_an_ordinary_character(alice):
    resp = requests.put(alice.server.url(f"/_matrix/client/v3/profile/{alice.user_id}/displayname"),
                        data=b'{"displayname": "rabbit \\ud83d\\udc07"}',
                        headers={"Authorization": f"Bearer {alice.access_token}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert alice.get(f"/profile/{alice.user_id}/displayname").json() == {"displayname": "rabbit \U0001f407"}


@pytest.mark.parametrize("data", [b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000])
def test_absurdly_nested_json_is_400_bad_json(homeserver, data):
    resp = post_raw(homeserver, "/_matrix/client/v3/login", data)
    assert_matrix_error(resp, 400, "M_BAD_JSON")


def test_body_in_utf16_is_not_json(homeserver):
    # Python's json guesses UTF-16 from bytes; the spec says bodies are UTF-8.
    resp = post_raw(homeserver, "/_matrix/client/v3/login", '{"type": "m.login.password"}'.encode("utf-16"))
    assert_matrix_error(resp, 400, "M_NOT_JSON")


def test_body_under_the_limit_is_read(small_body_server):
    resp = post_raw(small_body_server, "/_matrix/client/v3/login", login_body(BODY_LIMIT - 200))
    assert_matrix_error(resp, 403, "M_FORBIDDEN")


def test_body_over_the_limit_is_413_too_large(small_body_server):
    resp = post_raw(small_body_server, "/_matrix/client/v3/login", login_body(BODY_LIMIT))
    assert_matrix_error(resp, 413, "M_TOO_LARGE")
    assert_cors(resp)


def test_body_of_exactly_the_limit_is_accepted(small_body_server):
    body = login_body(0)
    body = login_body(BODY_LIMIT - len(body))
    assert len(body) == BODY_LIMIT
    resp = post_raw(small_body_server, "/_matrix/client/v3/login", body)
    assert_matrix_error(resp, 403, "M_FORBIDDEN")


def _chunks(data: bytes, size: int = 100):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_chunked_body_under_the_limit_is_read(small_body_server):
    # requests sends a generator with Transfer-Encoding: chunked and no Content-Length.
    resp = requests.post(small_body_server.url("/_matrix/client/v3/login"),
                         data=_chunks(login_body(BODY_LIMIT - 200)), timeout=30)
    assert resp.request.headers.get("Transfer-Encoding") == "chunked"
    assert_matrix_error(resp, 403, "M_FORBIDDEN")


def test_chunked_body_over_the_limit_is_413_too_large(small_body_server):
    resp = requests.post(small_body_server.url("/_matrix/client/v3/login"),
                         data=_chunks(login_body(4 * BODY_LIMIT)), timeout=30)
    assert resp.request.headers.get("Transfer-Encoding") == "chunked"
    assert_matrix_error(resp, 413, "M_TOO_LARGE")


def test_chunked_body_on_an_authenticated_endpoint_is_read(homeserver):
    client = Client(homeserver).register("chunky")
    resp = requests.put(homeserver.url(f"/_matrix/client/v3/profile/{client.user_id}/displayname"),
                        data=_chunks(b'{"displayname": "Chunky Bacon"}', 7),
                        headers={"Authorization": f"Bearer {client.access_token}"}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert client.get(f"/profile/{client.user_id}/displayname").json() == {"displayname": "Chunky Bacon"}


def test_server_keeps_serving_after_an_oversized_body(small_body_server):
    requests.post(small_body_server.url("/_matrix/client/v3/login"), data=login_body(8 * BODY_LIMIT), timeout=30)
    assert requests.get(small_body_server.url("/_matrix/client/versions"), timeout=10).status_code == 200


# --- errors never leak internals ---

@pytest.mark.parametrize("method,path,body", [
    ("GET", "/profile/not-a-user-id", None),
    ("GET", "/profile/@nobody:test.local", None),
    ("POST", "/login", {"type": "m.login.nonsense"}),
    ("POST", "/login", {"type": "m.login.password", "identifier": "alice", "password": 1}),
    ("POST", "/register?kind=admin", {}),
    ("GET", "/devices/%00", None),
    ("PUT", "/devices/%00", {"display_name": "x"}),
    ("GET", "/profile/@%00:test.local", None),
])
def test_every_error_body_has_errcode_and_error(alice, method, path, body):
    resp = alice.request(method, path, json=body)
    assert 400 <= resp.status_code < 500, resp.text
    assert_matrix_error(resp, resp.status_code, resp.json()["errcode"])
    assert resp.json()["errcode"].startswith("M_")


class _Crashing(Resource):
    public = frozenset({"GET"})

    def on_get(self, req, resp):
        raise RuntimeError("secret internals: /etc/passwd line 42")


def _app_with_crashing_resource(tmp_path):
    config = HomeServerConfig(str(tmp_path / "homeserver.yaml"), {
        "server_name": "test.local",
        "listeners": [{"port": 8008, "type": "http", "resources": [{"names": ["client"]}]}],
    })
    app = build_app(auth=None, config=config)  # the resource is public: auth is never consulted
    app.add_route("/crash", _Crashing())
    return falcon.testing.TestClient(app)


def test_a_crashing_responder_answers_500_m_unknown_without_internals(tmp_path):
    # No endpoint crashes on purpose, so this runs the app in-process with one that does.
    resp = _app_with_crashing_resource(tmp_path).simulate_get("/crash")
    assert resp.status_code == 500
    assert resp.json == {"errcode": "M_UNKNOWN", "error": "Internal server error"}
    assert "secret" not in resp.text and "Traceback" not in resp.text
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
