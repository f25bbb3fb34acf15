"""Real homeserver processes for API tests: gunicorn + apps.master on a free loopback port,
on a database cloned from the migrated template. A test that starts one stops it by pid."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from urllib.parse import quote

import psycopg2
import requests
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_LIMIT = {"per_second": 10000, "burst_count": 10000}


_ports_given: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before by this process: two asked for in a row (a
    server's client and federation listeners) can otherwise be the same one the kernel gave back."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def stop_process_group(proc: subprocess.Popen | None, grace: float) -> None:
    """SIGTERM to the group of `proc` (started with start_new_session), SIGKILL after `grace` s."""
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


class GunicornProcess:
    """One of our apps under gunicorn's gevent worker, as synctl runs it, in its own session so
    that it is stopped by its process group, never by name. Subclasses set `dir`, `log_path`,
    `base_url` and `proc` (None until launched)."""

    def launch(self, app_module: str, ports: list[int], env: dict, extra_args=()) -> None:
        binds = [arg for port in ports for arg in ("-b", f"127.0.0.1:{port}")]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                # Each parked /sync long-poll holds one of the worker's connections, and gunicorn's
                # default of 1,000 would leave the rest unaccepted.
                [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1", "--worker-connections", "10000",
                 "--no-control-socket", "--graceful-timeout", "2", *extra_args, *binds, f"{app_module}:app"],
                cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO, **env), stdout=log, stderr=log,
                start_new_session=True)

    def wait_until(self, ready, timeout: float):
        """Returns self once `ready()` holds; raises with the log's tail if the process exits or
        the time runs out (and then stops it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.log_path} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if ready():
                    return self
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or too busy starting to answer within the probe's timeout
            time.sleep(0.1)
        tail = self.log_tail()
        self.stop_process()
        raise RuntimeError(f"{self.log_path} did not start:\n{tail}")

    def stop_process(self) -> None:
        """Stops the process group by pid, keeping its directory (config, keys) to start again."""
        stop_process_group(self.proc, grace=15)

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def url(self, path: str) -> str:
        return self.base_url + path


class HomeserverProcess(GunicornProcess):
    def __init__(self, db_dsn: str, server_name: str = "test.local", **overrides):
        self.dir = tempfile.mkdtemp(prefix="hs-test-")
        self.port = free_port()
        self.server_name = server_name
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.config = {
            "server_name": server_name,
            "data_dir": self.dir,
            "pid_file": os.path.join(self.dir, "homeserver.pid"),
            "signing_key_path": os.path.join(self.dir, "signing.key"),
            "listeners": [{"port": self.port, "type": "http", "bind_addresses": ["127.0.0.1"],
                           "resources": [{"names": ["client", "federation"]}]}],
            "database": {"name": "psycopg2", "args": {"dsn": db_dsn, "cp_max": 5}},
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "registration_shared_secret": "test-shared-secret",
            "rc_message": NO_LIMIT, "rc_registration": NO_LIMIT,
            "rc_login": {"address": NO_LIMIT, "account": NO_LIMIT, "failed_attempts": NO_LIMIT},
        }
        self.config.update(overrides)
        self.config_path = os.path.join(self.dir, "homeserver.yaml")
        self.log_path = os.path.join(self.dir, "homeserver.log")
        self.proc = None

    def start(self, timeout: float = 60.0) -> "HomeserverProcess":
        with open(self.config_path, "w") as f:
            yaml.safe_dump(self.config, f)
        # The app binds `tls: true` listeners itself (hs/federation/tls_listener.py).
        binds = [lst["port"] for lst in self.config["listeners"]
                 if lst["type"] in ("http", "metrics") and not lst.get("tls")]
        self.launch("apps.master", binds, {"HS_CONFIG": self.config_path})
        return self.wait_until(lambda: requests.get(self.base_url + "/_matrix/client/versions", timeout=1
                                                    ).status_code == 200, timeout)

    def stop(self) -> None:
        """Stops the process group by pid and removes the server's directory."""
        self.stop_process()
        if not os.environ.get("HS_KEEP_TEST_DIRS"):
            shutil.rmtree(self.dir, ignore_errors=True)


class Client:
    """A thin HTTP client for our own API tests (matrix-nio covers a real client library)."""

    def __init__(self, server: HomeserverProcess, access_token: str | None = None):
        self.server = server
        self.access_token = access_token
        self.user_id = None
        self.device_id = None

    def request(self, method: str, path: str, json=None, token=None, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        token = token if token is not None else self.access_token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if not path.startswith("/_"):
            path = "/_matrix/client/v3" + path
        return requests.request(method, self.server.url(path), json=json, headers=headers, timeout=30, **kwargs)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.request("POST", path, json=json, **kw)

    def put(self, path, json=None, **kw):
        return self.request("PUT", path, json=json, **kw)

    def delete(self, path, json=None, **kw):
        return self.request("DELETE", path, json=json, **kw)

    def register(self, username: str, password: str = "correct horse battery", **extra) -> "Client":
        body = {"username": username, "password": password, **extra}
        first = self.post("/register", body)
        assert first.status_code == 401, first.text
        body["auth"] = {"type": "m.login.dummy", "session": first.json()["session"]}
        resp = self.post("/register", body)
        assert resp.status_code == 200, resp.text
        data = resp.json()
        self.access_token = data.get("access_token")
        self.user_id, self.device_id = data["user_id"], data.get("device_id")
        return self

    def login(self, username: str, password: str = "correct horse battery", **extra) -> "Client":
        resp = self.post("/login", {"type": "m.login.password",
                                    "identifier": {"type": "m.id.user", "user": username},
                                    "password": password, **extra})
        assert resp.status_code == 200, resp.text
        data = resp.json()
        self.access_token, self.user_id, self.device_id = data["access_token"], data["user_id"], data["device_id"]
        return self


def q(value: str) -> str:
    """One path segment, percent-encoded as clients send IDs ('/' and all)."""
    return quote(value, safe="")


def wait_for(check, what: str, timeout: float = 20.0, sleep=time.sleep, interval: float = 0.05):
    """The first truthy `check()`, polled every `interval` (with `sleep`: gevent.sleep where the
    homeserver runs in the test's own hub); fails naming `what` when `timeout` runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def assert_error(resp, status: int, errcode: str) -> dict:
    """The response is the spec's error: this status and this errcode. Returns the body."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["errcode"] == errcode, resp.text
    return body


def new_user(server: HomeserverProcess, prefix: str = "u") -> Client:
    return Client(server).register(f"{prefix}{uuid.uuid4().hex[:10]}")


def create(client: Client, **body) -> str:
    """A new room's ID (createRoom must succeed)."""
    resp = client.post("/createRoom", body)
    assert resp.status_code == 200, resp.text
    return resp.json()["room_id"]


@contextmanager
def running_homeserver(db_dsn: str, **overrides):
    """A master process with special config, stopped (by pid) however the test ends."""
    server = HomeserverProcess(db_dsn, **overrides)
    try:
        yield server.start()
    finally:
        server.stop()


def query(db_dsn: str, sql: str, params=()) -> list:
    """Rows of one SQL statement, straight from the database (to check what a request wrote)."""
    with psycopg2.connect(db_dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
    conn.close()
    return rows
