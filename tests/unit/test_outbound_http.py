"""Outbound requests to push gateways (hs/push/outbound.py) against real servers on loopback:
Synapse's ip_range_blacklist / ip_range_whitelist, redirects, timeouts; and the config keys."""

import ipaddress
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hs.push.outbound import DEFAULT_IP_RANGE_BLACKLIST, IpFilter, OutboundError, OutboundHttp
from tests.push_gateway import PushGateway
from tests.unit.test_config import MINIMAL, load, refusal

BODY = {"notification": {"devices": [{"app_id": "a", "pushkey": "k"}]}}


@pytest.fixture
def gateway():
    gateway = PushGateway().start()
    yield gateway
    gateway.stop()


def test_loopback_url_is_refused_by_default(gateway):
    with pytest.raises(OutboundError) as e:
        OutboundHttp(DEFAULT_IP_RANGE_BLACKLIST, []).post_json(gateway.url, BODY)
    assert "refused by ip_range_blacklist" in str(e.value)
    assert e.value.status is None
    assert gateway.notifications == [] and gateway.failed == []


def test_loopback_url_is_allowed_by_the_whitelist(gateway):
    http = OutboundHttp(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.1/32"])
    assert http.post_json(gateway.url, BODY) == {"rejected": []}
    assert gateway.notifications == [BODY["notification"]]


def test_hostname_resolving_to_loopback_is_refused(gateway):
    addresses = {info[4][0] for info in socket.getaddrinfo("localhost", None)}
    assert "127.0.0.1" in addresses
    with pytest.raises(OutboundError) as e:
        OutboundHttp(DEFAULT_IP_RANGE_BLACKLIST, []).post_json(gateway.url.replace("127.0.0.1", "localhost"), BODY)
    assert "refused by ip_range_blacklist" in str(e.value)
    assert gateway.notifications == []


def test_whitelist_covers_only_its_range():
    refused = PushGateway(host="127.0.0.2").start()
    try:
        with pytest.raises(OutboundError):
            OutboundHttp(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.1/32"]).post_json(refused.url, BODY)
        assert refused.notifications == []
    finally:
        refused.stop()


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "224.0.0.1", "0.0.0.0", "::1", "fe80::1%eth0", "fd00::1",
                                     "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::"])
def test_default_blacklist_refuses_private_loopback_link_local_and_multicast(address):
    assert not IpFilter(DEFAULT_IP_RANGE_BLACKLIST, []).allows(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_default_blacklist_allows_public_addresses(address):
    assert IpFilter(DEFAULT_IP_RANGE_BLACKLIST, []).allows(address)


class _Server:
    """A loopback server whose handler is `respond(handler)`."""

    def __init__(self, respond):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                respond(self)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/_matrix/push/v1/notify"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_redirect_is_not_followed(gateway):
    def redirect(handler):
        handler.send_response(307)
        handler.send_header("Location", gateway.url)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    server = _Server(redirect)
    try:
        with pytest.raises(OutboundError) as e:
            OutboundHttp(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.1/32"]).post_json(server.url, BODY)
        assert e.value.status == 307
        assert gateway.notifications == []
    finally:
        server.close()


def test_error_status_and_non_object_answers_fail():
    def answer(handler):
        status, payload = (502, b"{}") if "fail" in handler.path else (200, b"[1]")
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    server = _Server(answer)
    http = OutboundHttp([], [])
    try:
        with pytest.raises(OutboundError) as e:
            http.post_json(server.url + "?fail", BODY)
        assert e.value.status == 502
        with pytest.raises(OutboundError) as e:
            http.post_json(server.url, BODY)
        assert "not an object" in str(e.value)
    finally:
        server.close()


def test_silent_gateway_times_out():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts connections, never answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/_matrix/push/v1/notify"
        started = time.monotonic()
        with pytest.raises(OutboundError):
            OutboundHttp([], []).post_json(url, BODY, timeout=(1, 0.5))
        assert time.monotonic() - started < 5
    finally:
        listener.close()


def test_push_config_defaults(tmp_path):
    config = load(tmp_path, MINIMAL)
    assert config.ip_range_blacklist == [ipaddress.ip_network(n) for n in DEFAULT_IP_RANGE_BLACKLIST]
    assert config.ip_range_whitelist == []
    assert config.push_include_content is True
    assert config.push_group_unread_count_by_room is True


def test_push_config_reads_synapses_keys(tmp_path):
    config = load(tmp_path, {**MINIMAL, "ip_range_blacklist": ["10.0.0.0/8", "fd00::/8"],
                             "ip_range_whitelist": ["10.1.0.0/16", "192.168.1.5"],
                             "push": {"include_content": False, "group_unread_count_by_room": False}})
    assert config.ip_range_blacklist == [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
    assert config.ip_range_whitelist == [ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("192.168.1.5/32")]
    assert config.push_include_content is False
    assert config.push_group_unread_count_by_room is False


@pytest.mark.parametrize("key,value,message", [
    ("ip_range_blacklist", ["10.0.0.0/33"], "ip_range_blacklist[0]: expected an IP address or CIDR range"),
    ("ip_range_whitelist", ["127.0.0.1", "nope"], "ip_range_whitelist[1]: expected an IP address or CIDR range"),
    ("ip_range_whitelist", "127.0.0.1", "ip_range_whitelist: expected a list"),
    ("push", {"include_content": "yes"}, "push.include_content: expected true or false"),
])
def test_bad_push_config_is_refused_naming_the_key(tmp_path, key, value, message):
    assert refusal(tmp_path, {**MINIMAL, key: value}).startswith(message)
