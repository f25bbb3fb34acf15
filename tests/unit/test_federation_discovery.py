"""Resolving server names (/server-server-api#resolving-server-names) over the real protocols: a
DNS server on a loopback UDP port answers the SRV queries (dnspython's own message code builds
its answers), and an HTTPS server with a certificate from a throw-away CA serves
.well-known/matrix/server, fetched by the federation HTTP client."""

import http.server
import json
import socket
import ssl
import threading
from types import SimpleNamespace

import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest

from hs.events.signing import generate_signing_key
from hs.federation.discovery import DEFAULT_PORT, Endpoint, ServerDiscovery, cache_period
from hs.federation.http_client import FederationClient
from tests.federation_fixture import TestCA


class DnsServer:
    """Answers SRV queries from `records` ({name: [(priority, weight, port, target)]}), NXDOMAIN
    otherwise; remembers what it was asked."""

    def __init__(self):
        self.records = {}
        self.queries = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True)
            self.queries.append((name, dns.rdatatype.to_text(question.rdtype)))
            response = dns.message.make_response(query)
            records = self.records.get(name)
            if records and question.rdtype == dns.rdatatype.SRV:
                response.answer.append(dns.rrset.from_text(
                    question.name, 300, "IN", "SRV", *(f"{p} {w} {port} {target}" for p, w, port, target in records)))
            else:
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)

    def resolver(self) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        return resolver

    def close(self):
        self.sock.close()


class WellKnownServer:
    """HTTPS on a loopback port for `localhost`: answers each path from `answers` ({path: (status,
    headers, body)}), 404 otherwise; counts requests."""

    def __init__(self, ca: TestCA, directory: str):
        self.answers = {}
        self.requests = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Host")))
                status, headers, body = owner.answers.get(self.path, (404, {}, b"{}"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*ca.issue(directory, "wellknown"))
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def serve(self, m_server=None, status=200, headers=None, path="/.well-known/matrix/server", body=None):
        if body is None:
            body = json.dumps({"m.server": m_server}).encode()
        self.answers[path] = (status, headers or {}, body)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def ca():
    ca = TestCA()
    yield ca
    ca.remove()


@pytest.fixture
def dns_server():
    server = DnsServer()
    yield server
    server.close()


@pytest.fixture
def well_known(ca, tmp_path):
    server = WellKnownServer(ca, str(tmp_path))
    yield server
    server.close()


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def discovery(ca, dns_server, well_known, clock):
    config = SimpleNamespace(server_name="us.test", federation_domain_whitelist=None,
                             federation_client_timeout_ms=5000, federation_verify_certificates=True,
                             federation_custom_ca_list=[ca.cert_path], federation_ip_range_blacklist=[],
                             ip_range_whitelist=[])
    client = FederationClient(config, generate_signing_key("k"))
    return ServerDiscovery(client._https_get, dns_server.resolver(), well_known_port=well_known.port, clock=clock)


def test_ip_literals_and_explicit_ports_are_dialled_directly_without_lookups(discovery, dns_server, well_known):
    assert discovery.resolve("127.0.0.1:8449") == [Endpoint("127.0.0.1", 8449, "127.0.0.1", "127.0.0.1:8449")]
    assert discovery.resolve("[::1]") == [Endpoint("::1", DEFAULT_PORT, "::1", "[::1]")]
    assert discovery.resolve("localhost:9000") == [Endpoint("localhost", 9000, "localhost", "localhost:9000")]
    assert dns_server.queries == [] and well_known.requests == []


def test_well_known_delegation_with_a_port_is_used_as_is(discovery, dns_server, well_known):
    well_known.serve("delegated.test:1234")
    assert discovery.resolve("localhost") == [Endpoint("delegated.test", 1234, "delegated.test", "delegated.test:1234")]
    assert well_known.requests == [("/.well-known/matrix/server", f"localhost:{well_known.port}")]
    assert dns_server.queries == []


def test_well_known_delegation_without_a_port_looks_up_srv_of_the_delegated_name(discovery, dns_server,
                                                                                   well_known):
    well_known.serve("delegated.test")
    dns_server.records["_matrix-fed._tcp.delegated.test"] = [(10, 0, 4443, "b.test."), (5, 0, 4444, "a.test.")]
    # Lower priority first; the Host header and certificate name stay the delegated name.
    assert discovery.resolve("localhost") == [Endpoint("a.test", 4444, "delegated.test", "delegated.test"),
                                              Endpoint("b.test", 4443, "delegated.test", "delegated.test")]


def test_without_well_known_the_deprecated_srv_service_is_the_fallback(discovery, dns_server, well_known):
    dns_server.records["_matrix._tcp.localhost"] = [(0, 0, 5555, "target.test.")]
    assert discovery.resolve("localhost") == [Endpoint("target.test", 5555, "localhost", "localhost")]
    assert dns_server.queries == [("_matrix-fed._tcp.localhost", "SRV"), ("_matrix._tcp.localhost", "SRV")]


def test_with_nothing_published_the_default_port_is_used(discovery, well_known):
    well_known.serve(status=404, body=b"not found")
    assert discovery.resolve("localhost") == [Endpoint("localhost", DEFAULT_PORT, "localhost", "localhost")]


def test_a_delegated_ip_literal_skips_srv(discovery, dns_server, well_known):
    well_known.serve("[::1]")
    assert discovery.resolve("localhost") == [Endpoint("::1", DEFAULT_PORT, "::1", "[::1]")]
    assert dns_server.queries == []


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"m.server": 5}', b'{"m.server": "bad name!"}'])
def test_an_invalid_well_known_falls_back_to_srv_and_is_cached_for_an_hour(discovery, dns_server, well_known,
                                                                           clock, body):
    well_known.serve(body=body)
    dns_server.records["_matrix-fed._tcp.localhost"] = [(0, 0, 7777, "fed.test.")]
    assert discovery.resolve("localhost") == [Endpoint("fed.test", 7777, "localhost", "localhost")]
    clock.now += 3599
    discovery.resolve("localhost")
    assert len(well_known.requests) == 1
    clock.now += 2
    discovery.resolve("localhost")
    assert len(well_known.requests) == 2


def test_well_known_is_cached_as_cache_control_says(discovery, well_known, clock):
    well_known.serve("delegated.test:1", headers={"Cache-Control": "public, max-age=600"})
    discovery.resolve("localhost")
    clock.now += 599
    discovery.resolve("localhost")
    assert len(well_known.requests) == 1
    clock.now += 2
    well_known.serve("moved.test:2", headers={"Cache-Control": "max-age=600"})
    assert discovery.resolve("localhost")[0].host == "moved.test"
    assert len(well_known.requests) == 2


def test_well_known_redirects_are_followed(discovery, well_known):
    well_known.serve(status=302, headers={"Location": "/elsewhere"})
    well_known.serve("delegated.test:8", path="/elsewhere")
    assert discovery.resolve("localhost")[0] == Endpoint("delegated.test", 8, "delegated.test", "delegated.test:8")
    assert [path for path, _host in well_known.requests] == ["/.well-known/matrix/server", "/elsewhere"]


def test_a_redirect_loop_ends_in_the_fallback(discovery, well_known):
    well_known.serve(status=301, headers={"Location": "/.well-known/matrix/server"})
    assert discovery.resolve("localhost") == [Endpoint("localhost", DEFAULT_PORT, "localhost", "localhost")]


def test_a_well_known_under_an_untrusted_certificate_is_ignored(ca, dns_server, well_known, clock):
    config = SimpleNamespace(server_name="us.test", federation_domain_whitelist=None,
                             federation_client_timeout_ms=5000, federation_verify_certificates=True,
                             federation_custom_ca_list=[], federation_ip_range_blacklist=[], ip_range_whitelist=[])
    discovery = ServerDiscovery(FederationClient(config, generate_signing_key("k"))._https_get,
                                dns_server.resolver(), well_known_port=well_known.port, clock=clock)
    well_known.serve("delegated.test:1")
    assert discovery.resolve("localhost") == [Endpoint("localhost", DEFAULT_PORT, "localhost", "localhost")]


@pytest.mark.parametrize("headers, seconds", [
    ({}, 24 * 3600), ({"cache-control": "max-age=3600"}, 3600), ({"cache-control": "max-age=10"}, 300),
    ({"cache-control": "max-age=999999"}, 48 * 3600), ({"cache-control": "no-store"}, 300),
    ({"expires": "Thu, 01 Jan 1970 00:00:00 GMT"}, 300), ({"expires": "garbage"}, 300),
])
def test_cache_periods_follow_synapse_bounds(headers, seconds):
    assert cache_period(headers) == seconds
