"""Server keys, the notary API, request signing and the federation transport, with real parts:
two of our homeservers (A and B) with TLS federation listeners on loopback under a throw-away CA,
named 127.0.0.1:PORT.

Inbound X-Matrix authentication is checked in this process: no federation endpoint that needs a
signature is part of this change, so a FederationResource defined here runs in a real Falcon app
(build_app, the middleware every process uses) with a real Keyring and FederationClient, which
fetch A's key from the running A over TLS; requests are signed with A's own signing key. The
outbound side (FederationClient: TLS, CA trust, IP filtering) is exercised against A directly.
"""

import os
import socket
import time
from types import SimpleNamespace

import falcon.testing
import pytest
import requests
import signedjson.key
import signedjson.sign

from hs.api.app import build_app
from hs.api.federation.base import FederationAuthenticator, FederationResource
from hs.api.request import json_body
from hs.config import HomeServerConfig
from hs.events.canonical_json import unpadded_b64encode
from hs.events.event_signing import sign_event
from hs.events.room_versions import KNOWN_ROOM_VERSIONS
from hs.events.signing import generate_signing_key, read_signing_keys
from hs.federation.http_client import FederationClient, FederationDenied, FederationUnreachable
from hs.federation.keyring import EventSignatureError, Keyring
from hs.federation.request_auth import build_authorization_header
from hs.push.outbound import DEFAULT_IP_RANGE_BLACKLIST
from hs.storage.database import Database
from hs.storage.server_keys import ServerKeyStore
from tests.federation_fixture import FederatingHomeserver, TestCA
from tests.harness import free_port, q
from tests.pg import create_database, drop_database, make_dsn, unique_name

OLD_KEY = generate_signing_key("old1")
OLD_EXPIRED_TS = 1_600_000_000_000


@pytest.fixture(scope="module")
def ca():
    ca = TestCA()
    yield ca
    ca.remove()


def _database(pg_server_dsn, template_db):
    name = unique_name("hs_fedkeys")
    create_database(pg_server_dsn, name, template=template_db)
    return name, make_dsn(pg_server_dsn, name)


@pytest.fixture(scope="module")
def servers(pg_server_dsn, template_db, ca):
    """A (with an old key it publishes) and B, started side by side."""
    names, started = [], []
    try:
        name_a, dsn_a = _database(pg_server_dsn, template_db)
        names.append(name_a)
        name_b, dsn_b = _database(pg_server_dsn, template_db)
        names.append(name_b)
        a = FederatingHomeserver(dsn_a, ca, send_federation=False, old_signing_keys={
            OLD_KEY.key_id: {"key": OLD_KEY.verify_key_base64, "expired_ts": OLD_EXPIRED_TS}})
        b = FederatingHomeserver(dsn_b, ca, send_federation=False)
        started += [a, b]
        yield a.start(), b.start()
    finally:
        for server in started:
            server.stop()
        for name in names:
            drop_database(pg_server_dsn, name)


@pytest.fixture(scope="module")
def db(db_dsn):
    """This process's database, for the keyring of the in-process server."""
    database = Database(db_dsn, max_connections=4)
    yield database
    database.close()


def _signing_key(server):
    return read_signing_keys(server.config["signing_key_path"])[0]


def _client_config(**overrides):
    config = dict(server_name="127.0.0.1:1", federation_domain_whitelist=None, federation_client_timeout_ms=10_000,
                  federation_verify_certificates=True, federation_custom_ca_list=[],
                  federation_ip_range_blacklist=[], ip_range_whitelist=[], trusted_key_servers=[],
                  suppress_key_server_warning=True, old_signing_keys={}, key_refresh_interval_ms=86_400_000)
    config.update(overrides)
    return SimpleNamespace(**config)


def _verify(obj, server_name, key_id, key_b64):
    algorithm, version = key_id.split(":", 1)
    signedjson.sign.verify_signed_json(obj, server_name,
                                       signedjson.key.decode_verify_key_base64(algorithm, version, key_b64))


def _closed_port() -> str:
    port = free_port()  # nothing listens there once the probe socket is closed
    return f"127.0.0.1:{port}"


# --- our keys ---------------------------------------------------------------------------------

def test_the_key_server_answers_self_signed_keys_and_old_keys_over_tls(servers, ca):
    a, _ = servers
    key = _signing_key(a)
    body = requests.get(a.fed_url + "/_matrix/key/v2/server", verify=ca.cert_path, timeout=10).json()
    assert body["server_name"] == a.server_name
    assert body["verify_keys"] == {key.key_id: {"key": key.verify_key_base64}}
    assert body["old_verify_keys"] == {OLD_KEY.key_id: {"key": OLD_KEY.verify_key_base64,
                                                        "expired_ts": OLD_EXPIRED_TS}}
    assert body["valid_until_ts"] > time.time() * 1000
    _verify(body, a.server_name, key.key_id, key.verify_key_base64)


def test_the_federation_version_is_public(servers, ca):
    a, _ = servers
    resp = requests.get(a.fed_url + "/_matrix/federation/v1/version", verify=ca.cert_path, timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"server": {"name": "gevent-homeserver", "version": resp.json()["server"]["version"]}}


# --- the notary API ---------------------------------------------------------------------------

def test_a_notary_get_fetches_the_keys_and_co_signs_them(servers, ca):
    a, b = servers
    key_a, key_b = _signing_key(a), _signing_key(b)
    resp = requests.get(b.fed_url + "/_matrix/key/v2/query/" + q(a.server_name), verify=ca.cert_path, timeout=10)
    assert resp.status_code == 200
    [answer] = resp.json()["server_keys"]
    assert answer["server_name"] == a.server_name
    assert answer["verify_keys"] == {key_a.key_id: {"key": key_a.verify_key_base64}}
    _verify(answer, a.server_name, key_a.key_id, key_a.verify_key_base64)
    _verify(answer, b.server_name, key_b.key_id, key_b.verify_key_base64)


def test_a_notary_post_answers_known_servers_itself_included_and_skips_unreachable_ones(servers, ca):
    a, b = servers
    key_b = _signing_key(b)
    unreachable = _closed_port()
    query = {"server_keys": {a.server_name: {_signing_key(a).key_id: {"minimum_valid_until_ts": 0}},
                             b.server_name: {}, unreachable: {}, "not a server name": {}}}
    resp = requests.post(b.fed_url + "/_matrix/key/v2/query", json=query, verify=ca.cert_path, timeout=30)
    assert resp.status_code == 200
    answers = {answer["server_name"]: answer for answer in resp.json()["server_keys"]}
    assert set(answers) == {a.server_name, b.server_name}
    for answer in answers.values():
        _verify(answer, b.server_name, key_b.key_id, key_b.verify_key_base64)


def test_a_notary_query_with_no_servers_answers_an_empty_list(servers, ca):
    _, b = servers
    resp = requests.post(b.fed_url + "/_matrix/key/v2/query", json={"server_keys": {}}, verify=ca.cert_path,
                         timeout=10)
    assert resp.json() == {"server_keys": []}
    resp = requests.post(b.fed_url + "/_matrix/key/v2/query", json={"server_keys": []}, verify=ca.cert_path,
                         timeout=10)
    assert (resp.status_code, resp.json()["errcode"]) == (400, "M_BAD_JSON")


def test_the_tls_listener_routes_on_the_path_as_sent(servers, ca):
    # An encoded '/' stays inside one path segment only if the listener gives the app RAW_URI.
    _, b = servers
    resp = requests.get(b.fed_url + "/_matrix/key/v2/query/a%2Fb", verify=ca.cert_path, timeout=10)
    assert (resp.status_code, resp.json()) == (200, {"server_keys": []})


def test_the_federation_port_does_not_serve_the_client_api(servers, ca):
    a, _ = servers
    resp = requests.get(a.fed_url + "/_matrix/client/versions", verify=ca.cert_path, timeout=10)
    assert (resp.status_code, resp.json()["errcode"]) == (404, "M_UNRECOGNIZED")


# --- the outbound client: TLS trust, address filtering, whitelist ------------------------------

def test_certificates_are_verified_against_the_custom_ca_list(servers, ca):
    a, _ = servers
    key = generate_signing_key("k")
    untrusting = FederationClient(_client_config(), key)  # the system's CAs only
    with pytest.raises(FederationUnreachable, match="certificate verify failed"):
        untrusting.get_json_unsigned(a.server_name, "/_matrix/key/v2/server")
    trusting = FederationClient(_client_config(federation_custom_ca_list=[ca.cert_path]), key)
    assert trusting.get_json_unsigned(a.server_name, "/_matrix/key/v2/server")["server_name"] == a.server_name
    unverifying = FederationClient(_client_config(federation_verify_certificates=False), key)
    assert unverifying.get_json_unsigned(a.server_name, "/_matrix/key/v2/server")["server_name"] == a.server_name


def test_the_default_ip_blacklist_refuses_loopback_even_if_whitelisted(servers, ca):
    a, _ = servers
    client = FederationClient(_client_config(federation_custom_ca_list=[ca.cert_path],
                                             federation_ip_range_blacklist=DEFAULT_IP_RANGE_BLACKLIST,
                                             ip_range_whitelist=["127.0.0.0/8"]), generate_signing_key("k"))
    # As Synapse: ip_range_whitelist exempts addresses of DNS names, never an IP-literal server name.
    with pytest.raises(FederationUnreachable, match="blacklist"):
        client.get_json_unsigned(a.server_name, "/_matrix/key/v2/server")


def test_requests_outside_the_domain_whitelist_or_to_ourselves_are_not_sent(servers, ca):
    a, _ = servers
    config = _client_config(server_name=a.server_name, federation_domain_whitelist=frozenset({"elsewhere.org"}))
    client = FederationClient(config, generate_signing_key("k"))
    with pytest.raises(FederationDenied):
        client.get_json("127.0.0.1:9", "/_matrix/federation/v1/version")
    with pytest.raises(FederationDenied):
        FederationClient(_client_config(server_name=a.server_name), generate_signing_key("k")).get_json(
            a.server_name, "/_matrix/federation/v1/version")


def test_a_signed_request_reaches_the_tls_listener(servers, ca):
    a, b = servers
    client = FederationClient(_client_config(server_name=a.server_name, federation_custom_ca_list=[ca.cert_path]),
                              _signing_key(a))
    assert client.get_json(b.server_name, "/_matrix/federation/v1/version")["server"]["name"] == "gevent-homeserver"


# --- the keyring --------------------------------------------------------------------------------

def test_the_keyring_fetches_caches_and_honours_old_key_expiry(servers, ca, db):
    a, _ = servers
    key = _signing_key(a)
    config = _client_config(federation_custom_ca_list=[ca.cert_path])
    keyring = Keyring(config, ServerKeyStore(db), FederationClient(config, generate_signing_key("k")),
                      [generate_signing_key("k")])
    found = keyring.get_verify_keys(a.server_name, [key.key_id, OLD_KEY.key_id], 0)
    assert {k: unpadded_b64encode(bytes(v)) for k, v in found.items()} == {
        key.key_id: key.verify_key_base64, OLD_KEY.key_id: OLD_KEY.verify_key_base64}
    # The old key checks only what was signed before it expired.
    assert OLD_KEY.key_id not in keyring.get_verify_keys(a.server_name, [OLD_KEY.key_id], OLD_EXPIRED_TS + 1)
    # From the database, with A unreachable for this client (a client that trusts no CA).
    offline = Keyring(config, ServerKeyStore(db), FederationClient(_client_config(), generate_signing_key("k")),
                      [generate_signing_key("k")])
    assert key.key_id in offline.get_verify_keys(a.server_name, [key.key_id], int(time.time() * 1000))
    rows = db.execute("t", "SELECT from_server, valid_until_ts FROM server_signing_keys WHERE server_name = %s"
                           " AND key_id = %s", (a.server_name, key.key_id))
    # Capped at 7 days after the fetch.
    assert rows[0][0] == a.server_name and rows[0][1] <= time.time() * 1000 + 7 * 86_400_000


def test_keys_come_through_a_trusted_notary_checked_with_its_configured_key(servers, ca, db, pg_server_dsn,
                                                                            template_db):
    a, b = servers
    key_b = _signing_key(b)
    name, dsn = _database(pg_server_dsn, template_db)
    fresh = Database(dsn, max_connections=2)
    try:
        for notary_key, expected_source in [(key_b.verify_key_base64, b.server_name),
                                            (generate_signing_key("x").verify_key_base64, a.server_name)]:
            fresh.execute("t", "DELETE FROM server_signing_keys")
            config = _client_config(federation_custom_ca_list=[ca.cert_path], trusted_key_servers=[
                {"server_name": b.server_name, "verify_keys": {key_b.key_id: notary_key}}])
            keyring = Keyring(config, ServerKeyStore(fresh), FederationClient(config, generate_signing_key("k")),
                              [generate_signing_key("k")])
            assert _signing_key(a).key_id in keyring.get_verify_keys(a.server_name, [_signing_key(a).key_id])
            # A notary answer not signed with the configured key is dropped: A itself is asked.
            [(source,)] = fresh.execute("t", "SELECT from_server FROM server_signing_keys WHERE server_name = %s"
                                             " AND key_id = %s", (a.server_name, _signing_key(a).key_id))
            assert source == expected_source
    finally:
        fresh.close()
        drop_database(pg_server_dsn, name)


def test_events_are_verified_with_the_keys_of_the_servers_that_must_sign_them(servers, ca, db):
    a, _ = servers
    version = KNOWN_ROOM_VERSIONS["10"]
    config = _client_config(federation_custom_ca_list=[ca.cert_path])
    keyring = Keyring(config, ServerKeyStore(db), FederationClient(config, generate_signing_key("k")),
                      [generate_signing_key("k")])
    pdu = {"type": "m.room.message", "room_id": "!r:" + a.server_name, "sender": f"@u:{a.server_name}",
           "content": {"body": "hi"}, "origin_server_ts": int(time.time() * 1000), "depth": 3, "prev_events": [],
           "auth_events": []}
    keyring.verify_event(version, sign_event(version, pdu, a.server_name, _signing_key(a)))
    with pytest.raises(EventSignatureError):
        keyring.verify_event(version, pdu)  # not signed at all
    forged = sign_event(version, pdu, a.server_name, type(_signing_key(a))(_signing_key(a).version,
                                                                              generate_signing_key().key))
    with pytest.raises(EventSignatureError):
        keyring.verify_event(version, forged)
    # Room versions 5+ enforce key validity: A's old key expired before this event was made.
    with pytest.raises(EventSignatureError):
        keyring.verify_event(version, sign_event(version, pdu, a.server_name, OLD_KEY))
    keyring.verify_event(version, sign_event(version, {**pdu, "origin_server_ts": OLD_EXPIRED_TS - 1},
                                             a.server_name, OLD_KEY))


# --- inbound X-Matrix authentication (FederationResource) ---------------------------------------

class _Echo(FederationResource):
    """A federation endpoint for this test: answers who called and what they sent."""

    def on_get(self, req, resp, thing):
        resp.media = {"origin": req.context.origin, "thing": thing}

    def on_put(self, req, resp, thing):
        resp.media = {"origin": req.context.origin, "thing": thing, "body": json_body(req)}


class _Sender:
    def __init__(self):
        self.woken = []

    def wake_destination(self, destination):
        self.woken.append(destination)


OUR_NAME = "127.0.0.1:1"


@pytest.fixture(scope="module")
def inbound(servers, ca, db, tmp_path_factory):
    """A Falcon app with the middleware every process runs, serving _Echo as the server OUR_NAME,
    whose keyring fetches keys over TLS (trusting the test CA)."""
    _, b = servers

    def make(**overrides):
        directory = tmp_path_factory.mktemp("inbound")
        config = HomeServerConfig(str(directory / "homeserver.yaml"), {
            "server_name": OUR_NAME, "listeners": [{"port": 8008, "type": "http",
                                                     "resources": [{"names": ["federation"]}]}],
            "federation_ip_range_blacklist": [], "federation_custom_ca_list": [ca.cert_path],
            "trusted_key_servers": [], **overrides})
        client = FederationClient(config, generate_signing_key("k"))
        sender = _Sender()
        hs = SimpleNamespace(config=config, federation_sender=sender, wake_destination=sender.wake_destination,
                             keyring=Keyring(config, ServerKeyStore(db), client, [generate_signing_key("k")]))
        app = build_app(SimpleNamespace(servers=FederationAuthenticator(hs)), config)
        app.add_route("/_matrix/federation/v1/echo/{thing}", _Echo())
        return falcon.testing.TestClient(app), hs

    return make


def _signed(origin, key, method, uri, content=None, destination=OUR_NAME):
    return {"Authorization": build_authorization_header(origin, destination, key, method, uri, content)}


def test_a_request_signed_by_a_real_server_is_accepted(servers, inbound):
    a, _ = servers
    client, hs = inbound()
    uri = "/_matrix/federation/v1/echo/x%2Fy?ver=1&ver=12"
    resp = client.simulate_get("/_matrix/federation/v1/echo/x%2Fy", query_string="ver=1&ver=12",
                               headers=_signed(a.server_name, _signing_key(a), "GET", uri),
                               extras={"RAW_URI": uri})
    assert resp.status_code == 200, resp.text
    assert resp.json == {"origin": a.server_name, "thing": "x/y"}
    assert hs.federation_sender.woken == [a.server_name]


def test_the_signature_covers_the_body_which_the_responder_still_reads(servers, inbound):
    a, _ = servers
    client, _ = inbound()
    uri, body = "/_matrix/federation/v1/echo/t", {"pdus": [], "n": 1}
    resp = client.simulate_put(uri, json=body, headers=_signed(a.server_name, _signing_key(a), "PUT", uri, body))
    assert (resp.status_code, resp.json) == (200, {"origin": a.server_name, "thing": "t", "body": body})
    tampered = client.simulate_put(uri, json={**body, "n": 2},
                                   headers=_signed(a.server_name, _signing_key(a), "PUT", uri, body))
    assert (tampered.status_code, tampered.json["errcode"]) == (401, "M_UNAUTHORIZED")


@pytest.mark.parametrize("case", ["unsigned", "bearer", "forged", "wrong_destination", "other_uri", "bad_header",
                                  "unknown_key", "unreachable_origin"])
def test_requests_without_a_valid_signature_are_401(servers, inbound, case):
    a, _ = servers
    client, hs = inbound()
    uri = "/_matrix/federation/v1/echo/x"
    key = _signing_key(a)
    headers = {
        "unsigned": {},
        "bearer": {"Authorization": "Bearer abc"},
        # A key that is not A's, under A's key ID.
        "forged": _signed(a.server_name, type(key)(key.version, generate_signing_key().key), "GET", uri),
        "wrong_destination": _signed(a.server_name, key, "GET", uri, destination="127.0.0.1:2"),
        "other_uri": _signed(a.server_name, key, "GET", uri + "?a=1"),
        "bad_header": {"Authorization": 'X-Matrix origin="a.org'},
        "unknown_key": _signed(a.server_name, generate_signing_key("nope"), "GET", uri),
        "unreachable_origin": _signed(_closed_port(), key, "GET", uri),
    }[case]
    resp = client.simulate_get(uri, headers=headers)
    assert (resp.status_code, resp.json["errcode"]) == (401, "M_UNAUTHORIZED")
    assert hs.federation_sender.woken == []


def test_an_origin_outside_the_domain_whitelist_is_403(servers, inbound):
    a, _ = servers
    client, _ = inbound(federation_domain_whitelist=["only.example.org"])
    uri = "/_matrix/federation/v1/echo/x"
    resp = client.simulate_get(uri, headers=_signed(a.server_name, _signing_key(a), "GET", uri))
    assert (resp.status_code, resp.json["errcode"]) == (403, "M_FORBIDDEN")
    allowed, _ = inbound(federation_domain_whitelist=[a.server_name])
    assert allowed.simulate_get(uri, headers=_signed(a.server_name, _signing_key(a), "GET", uri)).status_code == 200


def test_a_listener_port_that_is_taken_stops_the_start(pg_server_dsn, template_db, ca):
    name, dsn = _database(pg_server_dsn, template_db)
    server = FederatingHomeserver(dsn, ca, send_federation=False)
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", server.fed_port))
        holder.listen()
        with pytest.raises(RuntimeError, match="Address already in use"):
            server.start(timeout=30)
    finally:
        holder.close()
        server.stop()
        drop_database(pg_server_dsn, name)
    assert not os.path.exists(server.dir)
