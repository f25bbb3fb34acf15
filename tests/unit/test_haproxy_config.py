"""`synctl haproxy-config` (hs/haproxy.py over hs/worker_routes.py): the printed config passes
`haproxy -c`, and a real HAProxy run from it routes each path to the process type that serves it.

The routing test puts small HTTP servers where the master and workers would listen: each answers
with its own name, so the test reads where HAProxy sent a request (the homeserver is not under test).
"""

import contextlib
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import requests
import yaml

from hs.config import ConfigError, load_config
from hs.haproxy import LONG_POLL_TIMEOUT_S, haproxy_config
from hs.worker_config import load_worker_dir
from hs.worker_routes import ROUTES, serves
from tests.harness import free_port
from tests.workers.synctl_cluster import require_haproxy

HAPROXY = "/usr/sbin/haproxy"
SYNCTL = os.path.join(os.path.dirname(sys.executable), "synctl")


def needs_haproxy(test):
    """Fails (never skips) without HAProxy: CI installs it."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        require_haproxy()
        return test(*args, **kwargs)
    return run


def write(path, data) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def make_layout(tmp_path, workers: dict[str, str]) -> tuple[str, str, dict[str, int]]:
    """A main homeserver.yaml and one worker file per ``{name: type}``; returns the paths and ports."""
    ports = {name: free_port() for name in ["master", *workers]}
    (tmp_path / "workers").mkdir()
    main = write(tmp_path / "homeserver.yaml", {
        "server_name": "example.org", "enable_media_repo": False,
        "listeners": [{"port": free_port(), "type": "http", "resources": [{"names": ["replication"]}]},
                      {"port": ports["master"], "type": "http", "x_forwarded": True,
                       "resources": [{"names": ["client", "federation"]}]},
                      {"port": free_port(), "type": "replication"}]})
    for name, kind in workers.items():
        write(tmp_path / "workers" / f"{name}.yaml", {
            "worker_app": f"apps.{kind}", "worker_replication_port": 9092, "worker_replication_http_port": 9093,
            "worker_pid_file": f"{name}.pid",
            "worker_listeners": [{"type": "http", "port": ports[name], "x_forwarded": True,
                                  "resources": [{"names": ["client", "federation", "media"]}]}]})
    return main, str(tmp_path / "workers"), ports


LAYOUT = {"sync1": "synchrotron", "sync2": "synchrotron", "reader": "client_reader", "fed": "federation_reader",
          "media": "media_repository"}


def generated(tmp_path, workers=LAYOUT, bind="127.0.0.1:8080"):
    main, directory, ports = make_layout(tmp_path, workers)
    text = haproxy_config(load_config(main), load_worker_dir(directory, main)[1], bind)
    return text, ports


@needs_haproxy
def test_the_generated_config_passes_haproxy_check(tmp_path):
    text, _ = generated(tmp_path)
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    done = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ALERT" not in done.stdout + done.stderr and "WARNING" not in done.stdout + done.stderr


@needs_haproxy
def test_a_master_alone_gets_a_config_that_passes_haproxy_check(tmp_path):
    text, ports = generated(tmp_path, workers={})
    assert "use_backend" not in text and f"server master 127.0.0.1:{ports['master']} check" in text
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    done = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_timeouts_outlast_the_longest_sync_long_poll_and_forwardfor_is_on(tmp_path):
    text, _ = generated(tmp_path)
    assert LONG_POLL_TIMEOUT_S >= 35 * 60
    assert "    timeout server 35m\n" in text and "    timeout client 35m\n" in text
    assert "    option forwardfor\n" in text
    assert "x_forwarded: true" in text  # the note for the admin


def test_one_backend_per_worker_type_with_its_instances_and_the_master_by_default(tmp_path):
    text, ports = generated(tmp_path)
    backends = [line.split()[1] for line in text.splitlines() if line.startswith("backend ")]
    assert backends == ["master", "synchrotron", "client_reader", "federation_reader", "federation_send",
                        "media_repository"]
    assert f"    server sync1 127.0.0.1:{ports['sync1']} check\n    server sync2 127.0.0.1:{ports['sync2']} check\n" \
        in text
    assert "    default_backend master\n" in text


def test_synctl_prints_the_config_and_notes_a_worker_without_x_forwarded(tmp_path):
    main, directory, _ = make_layout(tmp_path, {"sync1": "synchrotron"})
    data = yaml.safe_load(open(os.path.join(directory, "sync1.yaml")))
    data["worker_listeners"][0]["x_forwarded"] = False
    write(tmp_path / "workers" / "sync1.yaml", data)
    done = subprocess.run([SYNCTL, "haproxy-config", "-a", directory, "--bind", "127.0.0.1:9443", main],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == haproxy_config(load_config(main), load_worker_dir(directory, main)[1], "127.0.0.1:9443",
                                         source=directory)
    assert "    bind 127.0.0.1:9443\n" in done.stdout
    assert done.stderr == (f"Note: {os.path.join(directory, 'sync1.yaml')}: worker_listeners port "
                           f"{data['worker_listeners'][0]['port']} has no `x_forwarded: true`; behind HAProxy "
                           "the worker would see every client as HAProxy's address.\n")


def test_synctl_haproxy_config_refuses_a_bind_without_a_port(tmp_path):
    main, directory, _ = make_layout(tmp_path, {})
    done = subprocess.run([SYNCTL, "haproxy-config", "-a", directory, "--bind", "127.0.0.1", main],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stdout == "Config error: --bind: expected ADDR:PORT such as 127.0.0.1:8080, got '127.0.0.1'\n"


@pytest.mark.parametrize("kind,method,path,expected", [
    ("synchrotron", "GET", "/_matrix/client/v3/sync", True),
    ("synchrotron", "GET", "/_matrix/client/r0/rooms/!a:b/initialSync", True),
    ("synchrotron", "GET", "/_matrix/client/v3/sync/extra", False),
    ("client_reader", "GET", "/_matrix/client/v3/rooms/!a:b/state/m.room.name/", True),
    ("client_reader", "PUT", "/_matrix/client/v3/rooms/!a:b/state/m.room.name/", False),
    ("client_reader", "GET", "/_matrix/client/v1/rooms/!a:b/relations/$e/m.annotation/m.reaction", True),
    ("client_reader", "GET", "/_matrix/client/v3/login", True),
    ("client_reader", "POST", "/_matrix/client/v3/login", False),
    ("client_reader", "GET", "/_matrix/client/versions", True),
    ("client_reader", "GET", "/_matrix/client/v3/rooms/!a:b/messagesx", False),
    ("federation_reader", "PUT", "/_matrix/federation/v1/send/1", True),
    ("federation_reader", "GET", "/_matrix/key/v2/server", False),
    ("media_repository", "GET", "/_matrix/client/v1/media/download/a/b", True),
    ("media_repository", "GET", "/_matrix/client/v3/media/download/a/b", False),
    ("media_repository", "POST", "/_synapse/admin/v1/media/quarantine/a/b", True),
    ("media_repository", "DELETE", "/_synapse/admin/v2/users/%40a%3Ab/media", True),
    ("media_repository", "POST", "/_synapse/admin/v1/user/%40a%3Ab/media/quarantine", True),
    ("media_repository", "POST", "/_synapse/admin/v1/purge_media_cache", True),
    ("media_repository", "GET", "/_synapse/admin/v1/registration_tokens", False),
    ("media_repository", "GET", "/_synapse/admin/v1/room/%21r%3Ab/media", True),
    ("media_repository", "POST", "/_synapse/admin/v1/room/%21r%3Ab/media/quarantine", True),
    ("media_repository", "POST", "/_synapse/admin/v1/quarantine_media/%21r%3Ab", True),
    ("media_repository", "GET", "/_synapse/admin/v1/rooms/%21r%3Ab/members", False),
])
def test_the_route_table_says_which_type_serves_a_request(kind, method, path, expected):
    assert serves(kind, method, path) is expected


def test_pusher_and_appservice_serve_no_public_path():
    assert ROUTES["pusher"] == [] and ROUTES["appservice"] == []


class _Stub(http.server.BaseHTTPRequestHandler):
    """Answers every request with the process name it stands for and the X-Forwarded-For it saw."""

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"name": self.server.name, "xff": self.headers.get("X-Forwarded-For")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args):
        pass


class _StubServer(http.server.ThreadingHTTPServer):
    # HAProxy keeps idle connections to its servers open: closing must not wait for their threads.
    daemon_threads = True
    block_on_close = False


@contextlib.contextmanager
def haproxy_over_stubs(config_text: str, ports: dict, config_path, base: str, probe: str, verify=True):
    """HAProxy run from `config_text` in front of a stub per process ({name: port}); yields
    where(method, path, **requests_kwargs) -> the stub's answer, asked at `base`."""
    stubs = []
    for name, stub_port in ports.items():
        server = _StubServer(("127.0.0.1", stub_port), _Stub)
        server.name = name
        threading.Thread(target=server.serve_forever, daemon=True).start()
        stubs.append(server)
    config_path.write_text(config_text)
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(config_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                requests.get(base + probe, timeout=2, verify=verify)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "HAProxy did not listen"
                time.sleep(0.1)

        def where(method, path, **kwargs) -> dict:
            answer = requests.request(method, base + path, timeout=5, verify=verify, **kwargs)
            assert answer.status_code == 200, answer.text
            return answer.json()
        yield where
    finally:
        proc.terminate()
        proc.wait(10)
        for server in stubs:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """HAProxy run from the generated config, in front of a stub per process."""
    tmp_path = tmp_path_factory.mktemp("haproxy")
    port = free_port()
    text, ports = generated(tmp_path, bind=f"127.0.0.1:{port}")
    with haproxy_over_stubs(text, ports, tmp_path / "haproxy.cfg", f"http://127.0.0.1:{port}",
                            "/_matrix/client/versions") as where:
        yield where


@needs_haproxy
@pytest.mark.parametrize("method,path,expected", [
    ("GET", "/_matrix/client/v3/sync?since=s1&timeout=30000", "sync"),
    ("GET", "/_matrix/client/r0/events", "sync"),
    ("GET", "/_matrix/client/v3/rooms/%21room%3Aexample.org/messages?dir=b", "reader"),
    ("GET", "/_matrix/client/v3/rooms/!room:example.org/state/m.room.name/", "reader"),
    ("PUT", "/_matrix/client/v3/rooms/!room:example.org/state/m.room.name/", "master"),
    ("GET", "/_matrix/client/v3/login", "reader"),
    ("POST", "/_matrix/client/v3/login", "master"),
    ("POST", "/_matrix/client/v3/createRoom", "master"),
    ("GET", "/_matrix/federation/v1/version", "fed"),
    ("PUT", "/_matrix/federation/v1/send/txn1", "fed"),
    ("GET", "/_matrix/key/v2/server", "master"),
    ("GET", "/_matrix/media/v3/download/example.org/abc", "media"),
    ("GET", "/_matrix/client/v1/media/thumbnail/example.org/abc?width=32&height=32", "media"),
    ("DELETE", "/_synapse/admin/v1/media/example.org/abc", "media"),
    ("GET", "/_synapse/admin/v1/users/%40a%3Aexample.org/media?limit=2", "media"),
    ("GET", "/_synapse/admin/v1/registration_tokens", "master"),
    ("POST", "/_synapse/admin/v1/room/%21r%3Aexample.org/media/quarantine", "media"),
    ("GET", "/_synapse/admin/v1/rooms/%21r%3Aexample.org/members", "master"),
])
def test_haproxy_routes_each_path_to_the_type_that_serves_it(proxied, method, path, expected):
    assert proxied(method, path)["name"].startswith(expected)


@needs_haproxy
def test_haproxy_keeps_one_access_tokens_sync_on_one_synchrotron_and_spreads_tokens(proxied):
    seen = set()
    for i in range(24):
        by_header = {proxied("GET", "/_matrix/client/v3/sync", headers={"Authorization": f"Bearer tok{i}"})["name"]
                     for _ in range(4)}
        by_param = {proxied("GET", f"/_matrix/client/v3/sync?access_token=tok{i}&since=s2")["name"]
                    for _ in range(4)}
        assert len(by_header) == 1 and len(by_param) == 1
        seen |= by_header | by_param
    assert seen == {"sync1", "sync2"}


@needs_haproxy
def test_haproxy_tells_the_worker_the_clients_address(proxied):
    assert proxied("GET", "/_matrix/client/v3/sync")["xff"] == "127.0.0.1"


@needs_haproxy
def test_initial_syncs_go_to_the_initial_sync_pool_and_long_polls_to_the_other_synchrotrons(tmp_path):
    main, directory, ports = make_layout(tmp_path, {"sync1": "synchrotron", "sync2": "synchrotron"})
    with open(os.path.join(directory, "sync2.yaml")) as f:
        data = yaml.safe_load(f)
    write(tmp_path / "workers" / "sync2.yaml", dict(data, worker_initial_sync_pool=True))
    text = haproxy_config(load_config(main), load_worker_dir(directory, main)[1], "127.0.0.1:8080")
    assert "backend synchrotron_initial" in text
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    check = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    initial_backend = text.split("\nbackend synchrotron_initial\n", 1)[1]
    assert "server sync2 " in initial_backend and "server sync1 " not in initial_backend
    incremental_backend = text.split("\nbackend synchrotron\n", 1)[1].split("\nbackend ", 1)[0]
    assert "server sync1 " in incremental_backend and "server sync2 " not in incremental_backend


def test_only_a_synchrotron_may_be_in_the_initial_sync_pool(tmp_path):
    main, directory, _ = make_layout(tmp_path, {"reader": "client_reader"})
    with open(os.path.join(directory, "reader.yaml")) as f:
        data = yaml.safe_load(f)
    write(tmp_path / "workers" / "reader.yaml", dict(data, worker_initial_sync_pool=True))
    with pytest.raises(ConfigError, match="worker_initial_sync_pool"):
        load_worker_dir(directory, main)


# --- the federation frontend: TLS ends at HAProxy, /send sticky per origin ------------------------------

FEDERATION_LAYOUT = {"fed1": "federation_reader", "fed2": "federation_reader", "fed3": "federation_reader"}


def federation_generated(tmp_path, fed_port: int):
    """The config for FEDERATION_LAYOUT with a federation frontend on `fed_port`; returns it, the
    stub ports and the test CA whose leaf (for 127.0.0.1) is in the PEM."""
    from tests.federation_fixture import TestCA
    ca = TestCA()
    cert, key = ca.issue(str(tmp_path))
    pem = tmp_path / "federation.pem"
    pem.write_text(open(cert).read() + open(key).read())
    main, directory, ports = make_layout(tmp_path, FEDERATION_LAYOUT)
    text = haproxy_config(load_config(main), load_worker_dir(directory, main)[1], f"127.0.0.1:{free_port()}",
                          federation_bind=f"127.0.0.1:{fed_port}", federation_pem=str(pem))
    return text, ports, ca


def x_matrix(origin: str, quoted: bool = True, first: bool = True) -> str:
    value = f'"{origin}"' if quoted else origin
    params = [f"origin={value}", 'destination="example.org"', 'key="ed25519:a"', 'sig="c2lnb3JpZ2luPXg"']
    return "X-Matrix " + ",".join(params if first else params[::-1])


@needs_haproxy
def test_the_federation_frontend_passes_haproxy_check(tmp_path):
    text, _, ca = federation_generated(tmp_path, free_port())
    try:
        assert "frontend federation" in text and " ssl crt " in text
        path = tmp_path / "haproxy.cfg"
        path.write_text(text)
        done = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "ALERT" not in done.stdout + done.stderr and "WARNING" not in done.stdout + done.stderr
    finally:
        ca.remove()


def test_the_federation_frontend_needs_its_pem_and_a_plain_master_federation_listener(tmp_path):
    main, directory, _ = make_layout(tmp_path, FEDERATION_LAYOUT)
    master, workers = load_config(main), load_worker_dir(directory, main)[1]
    with pytest.raises(ValueError, match="--federation-pem"):
        haproxy_config(master, workers, federation_bind="127.0.0.1:8448")
    with pytest.raises(ValueError, match="--federation-bind: expected ADDR:PORT"):
        haproxy_config(master, workers, federation_bind="8448", federation_pem="x.pem")
    data = yaml.safe_load(open(main))
    data["listeners"][1]["resources"] = [{"names": ["client"]}]
    write(tmp_path / "homeserver.yaml", data)
    with pytest.raises(ValueError, match="federation resource"):
        haproxy_config(load_config(main), workers, federation_bind="127.0.0.1:8448", federation_pem="x.pem")


@pytest.fixture(scope="module")
def federation_proxied(tmp_path_factory):
    """HAProxy with a TLS federation frontend in front of a stub per process, asked over HTTPS."""
    tmp_path = tmp_path_factory.mktemp("haproxy_fed")
    fed_port = free_port()
    text, ports, ca = federation_generated(tmp_path, fed_port)
    try:
        with haproxy_over_stubs(text, ports, tmp_path / "haproxy.cfg", f"https://127.0.0.1:{fed_port}",
                                "/_matrix/federation/v1/version", verify=ca.cert_path) as where:
            yield where
    finally:
        ca.remove()


@needs_haproxy
@pytest.mark.parametrize("method,path,expected", [
    ("GET", "/_matrix/federation/v1/event/%24abc", "fed"),
    ("GET", "/_matrix/federation/v1/state_ids/%21r%3Aexample.org?event_id=%24abc", "fed"),
    ("PUT", "/_matrix/federation/v2/send_join/%21r%3Aexample.org/%24abc", "fed"),
    ("PUT", "/_matrix/federation/v1/send/txn1", "fed"),
    ("POST", "/_matrix/key/v2/query", "fed"),
    ("GET", "/_matrix/key/v2/server", "master"),
    ("GET", "/_matrix/client/versions", "master"),
])
def test_the_federation_frontend_routes_by_path(federation_proxied, method, path, expected):
    assert federation_proxied(method, path)["name"].startswith(expected)


@needs_haproxy
def test_one_origins_transactions_reach_one_federation_reader_and_origins_spread(federation_proxied):
    """Whatever the position of `origin` in the header and whether it is quoted; and the
    signature, which differs on every request, does not move it."""
    seen = set()
    for i in range(24):
        origin = f"server{i}.example.org:8448" if i % 3 else f"[2001:db8::{i}]:8448"
        landed = {federation_proxied("PUT", f"/_matrix/federation/v1/send/t{n}",
                                     headers={"Authorization": x_matrix(origin, quoted=n % 2 == 0, first=n < 2)
                                              .replace("c2lnb3JpZ2luPXg", f"sig{n}")})["name"]
                  for n in range(4)}
        assert len(landed) == 1, (origin, landed)
        seen |= landed
    assert seen == {"fed1", "fed2", "fed3"}
