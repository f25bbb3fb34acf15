"""The README's run path: `synctl generate/start/stop/restart` as an admin runs them, each a real
subprocess, over the embedded PostgreSQL (no `database` section).

Everything synctl starts is recorded by pid (gunicorn's arbiter and worker, the postmaster) and
stopped in the fixture's teardown whatever the test did: `synctl stop` first, then SIGKILL for
any recorded process still alive that is still ours (its command line names the test's directory).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import requests

from hs.config import ConfigError, load_config
from tests.harness import Client, free_port

SYNCTL = os.path.join(os.path.dirname(sys.executable), "synctl")


class Running:
    """What tests.harness.Client needs of a server: its base URL."""

    def __init__(self, base_url: str):
        self.base_url = base_url

    def url(self, path: str) -> str:
        return self.base_url + path


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """os.kill(pid, 0) succeeds: the process (or its unreaped zombie) exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _state(pid: int) -> str | None:
    """The process state letter (R, S, Z, ...), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def assert_exited(pid: int) -> None:
    """The process has exited: at most a zombie now, and gone (os.kill raises) once reaped.

    A process synctl stops is no child of the test's: its parent is init, which reaps it on its
    own schedule, so the pid may linger a moment as a zombie after `synctl stop` returns."""
    assert _state(pid) in (None, "Z", "X"), f"pid {pid} still running: {_cmdline(pid)}"
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == str(pid):
                        kids.append(int(entry))
            except (OSError, IndexError):
                pass
    return kids


class Synctl:
    def __init__(self):
        # Short: the embedded PostgreSQL puts its unix socket inside data_dir.
        self.dir = tempfile.mkdtemp(prefix="synctl-")
        self.configs: list[str] = []  # every config `start` may have run
        self.pids: set[int] = set()

    def run(self, *args, cwd=None, timeout=150) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "HS_CONFIG"}
        return subprocess.run([SYNCTL, *args], cwd=cwd or self.dir, env=env, capture_output=True, text=True,
                              timeout=timeout)

    def generate(self, name="cfg", port=None, server_name="localhost") -> str:
        path = os.path.join(self.dir, name, "homeserver.yaml")
        done = self.run("generate", "--server-name", server_name, "--config-path", path,
                        "--http-port", str(port or free_port()))
        assert done.returncode == 0, done.stdout + done.stderr
        return path

    def start(self, config_path: str, cwd=None) -> subprocess.CompletedProcess:
        self.configs.append(config_path)
        try:
            return self.run("start", config_path, cwd=cwd)
        finally:
            try:
                self.processes(config_path)  # record whatever came up, even on failure
            except ConfigError:
                pass

    def processes(self, config_path: str) -> dict:
        """The arbiter (from the pid file), its worker and the postmaster now running, recorded."""
        config = load_config(config_path)
        found = {}
        try:
            with open(config.pid_file) as f:
                found["arbiter"] = int(f.read())
            found["workers"] = _children(found["arbiter"])
        except (OSError, ValueError):
            pass
        try:
            # Line 1 of postmaster.pid is the postmaster's pid (see hs/storage/embedded.py).
            with open(os.path.join(config.data_dir, "postgres", "postmaster.pid")) as f:
                found["postmaster"] = int(f.readline())
        except (OSError, ValueError):
            pass
        self.pids.update(p for k, v in found.items() for p in (v if k == "workers" else [v]))
        return found

    def cleanup(self):
        for config_path in self.configs:
            try:
                self.run("stop", config_path, timeout=90)
            except (subprocess.TimeoutExpired, OSError):
                pass
        for pid in self.pids:
            if pid > 1 and _alive(pid) and self.dir in _cmdline(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def synctl():
    s = Synctl()
    try:
        yield s
    finally:
        s.cleanup()


def _base_url(config_path: str) -> str:
    return f"http://127.0.0.1:{load_config(config_path).listeners[0].port}"


def _versions(base_url: str) -> requests.Response:
    return requests.get(base_url + "/_matrix/client/versions", timeout=5)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_start_returns_once_the_server_answers_and_stop_leaves_no_process(synctl):
    config_path = synctl.generate()
    started = synctl.start(config_path)
    assert started.returncode == 0, started.stdout + started.stderr
    base_url = _base_url(config_path)
    assert "The homeserver is running (pid " in started.stdout
    assert started.stdout.rstrip().endswith(f"at {base_url}")
    # No retry: start has already waited for the server to answer.
    assert _versions(base_url).status_code == 200

    alice = Client(Running(base_url)).register("alice")
    assert alice.user_id == "@alice:localhost"
    assert alice.get("/account/whoami").json()["user_id"] == "@alice:localhost"

    procs = synctl.processes(config_path)
    arbiter, workers, postmaster = procs["arbiter"], procs["workers"], procs["postmaster"]
    assert f"(pid {arbiter})" in started.stdout
    assert "gunicorn" in _cmdline(arbiter) and len(workers) == 1 and "gunicorn" in _cmdline(workers[0])
    assert "postgres" in _cmdline(postmaster) and synctl.dir in _cmdline(postmaster)

    stopped = synctl.run("stop", config_path)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert stopped.stdout.splitlines() == [f"Stopping the homeserver (pid {arbiter})...", "Stopped."]
    for pid in (arbiter, *workers, postmaster):
        assert_exited(pid)
    assert not os.path.exists(load_config(config_path).pid_file)
    with pytest.raises(requests.ConnectionError):
        _versions(base_url)


def test_start_with_no_config_generates_one_for_localhost_and_serves_it(synctl):
    # The README's first command, in an empty directory: the generated config listens on 8008.
    if not _port_free(8008):
        pytest.skip("port 8008 is in use on this machine; the generated config needs it")
    config_path = os.path.join(synctl.dir, "homeserver.yaml")
    synctl.configs.append(config_path)
    started = synctl.run("start")
    if os.path.exists(config_path):
        synctl.processes(config_path)
    assert started.returncode == 0, started.stdout + started.stderr
    assert started.stdout.startswith("homeserver.yaml not found: generating a config for server name 'localhost'\n")
    config = load_config(config_path)
    assert (config.server_name, config.listeners[0].port) == ("localhost", 8008)
    assert config.data_dir == os.path.join(synctl.dir, "data")
    assert _versions("http://127.0.0.1:8008").status_code == 200

    stopped = synctl.run("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert stopped.stdout.endswith("Stopped.\n")
    assert len(synctl.pids) == 3  # arbiter, worker, postmaster
    for pid in synctl.pids:
        assert_exited(pid)
    with pytest.raises(requests.ConnectionError):
        _versions("http://127.0.0.1:8008")


def test_start_when_already_running_says_so_and_keeps_the_server(synctl):
    config_path = synctl.generate()
    assert synctl.start(config_path).returncode == 0
    arbiter = synctl.processes(config_path)["arbiter"]

    again = synctl.run("start", config_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout == f"The homeserver is already running (pid {arbiter}).\n"
    assert synctl.processes(config_path)["arbiter"] == arbiter
    assert _versions(_base_url(config_path)).status_code == 200


def test_restart_replaces_every_process_and_keeps_the_accounts(synctl):
    config_path = synctl.generate()
    assert synctl.start(config_path).returncode == 0
    base_url = _base_url(config_path)
    Client(Running(base_url)).register("bob", "bob's password")
    before = synctl.processes(config_path)

    restarted = synctl.run("restart", config_path)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    after = synctl.processes(config_path)
    for pid in (before["arbiter"], *before["workers"], before["postmaster"]):
        assert_exited(pid)
    assert after["arbiter"] != before["arbiter"] and _alive(after["arbiter"])
    assert _alive(after["postmaster"])
    bob = Client(Running(base_url)).login("bob", "bob's password")
    assert bob.user_id == "@bob:localhost"


def test_start_with_an_invalid_config_exits_non_zero_with_the_config_error(synctl):
    config_path = synctl.generate()
    with open(config_path, encoding="utf-8") as f:
        text = f.read()
    with open(config_path, "w", encoding="utf-8") as f:
        f.write(text.replace("bind_addresses: [\"127.0.0.1\"]", "bind_addresses: [\"localhost\"]"))
    done = synctl.start(config_path)
    assert done.returncode == 1
    assert done.stdout == (f"Config error: {config_path}: listeners[0].bind_addresses: expected IP addresses "
                           "such as 127.0.0.1 or ::1, got 'localhost'\n")
    assert synctl.pids == set()  # nothing was started


def test_start_refuses_a_port_another_process_listens_on(synctl):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config_path = synctl.generate(port=port)
        done = synctl.start(config_path)
    assert done.returncode == 1
    assert done.stdout == (f"Cannot start: cannot listen on 127.0.0.1:{port} (Address already in use). "
                           f"Stop what holds it, or change the port in {config_path} (listeners).\n")
    assert synctl.pids == set()
    assert not os.path.exists(load_config(config_path).pid_file)


def test_stop_leaves_alone_an_unrelated_process_a_stale_pid_file_names(synctl):
    config_path = synctl.generate()
    bystander = subprocess.Popen(["sleep", "120"])
    try:
        pid_file = load_config(config_path).pid_file
        with open(pid_file, "w") as f:
            f.write(f"{bystander.pid}\n")
        done = synctl.run("stop", config_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.splitlines()[0] == (f"The pid file {pid_file} names pid {bystander.pid}, which is not "
                                               "this homeserver; leaving that process alone.")
        assert bystander.poll() is None
        assert not os.path.exists(pid_file)
    finally:
        bystander.kill()
        bystander.wait()


def test_start_replaces_a_stale_pid_file_naming_an_unrelated_process(synctl):
    # gunicorn refuses to start while its pid file names any live process.
    config_path = synctl.generate()
    bystander = subprocess.Popen(["sleep", "120"])
    try:
        pid_file = load_config(config_path).pid_file
        with open(pid_file, "w") as f:
            f.write(f"{bystander.pid}\n")
        done = synctl.start(config_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.splitlines()[0] == (f"Removing stale pid file {pid_file} (pid {bystander.pid} is not "
                                               "this homeserver).")
        assert bystander.poll() is None
        assert synctl.processes(config_path)["arbiter"] != bystander.pid
        assert _versions(_base_url(config_path)).status_code == 200
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.parametrize("content", ["-1\n", "0\n", "", "12ab\n"])
def test_a_pid_file_without_a_positive_pid_names_no_process(tmp_path, content):
    # kill(-1, SIGTERM) signals every process the user may signal (as root: the whole machine),
    # kill(0, ...) synctl's own process group. Checked in-process with probes only (signal 0):
    # run through `synctl stop`, a regression here would take down everything around the test.
    import synctl as synctl_module
    pid_file = tmp_path / "homeserver.pid"
    pid_file.write_text(content)
    assert synctl_module._read_pid(str(pid_file)) is None


@pytest.mark.parametrize("pid", [-1, 0])
def test_no_process_group_address_counts_as_a_live_server(pid):
    import synctl as synctl_module
    assert synctl_module._pid_alive(pid) is False
    assert synctl_module._is_our_server(pid, "/nonexistent/homeserver.pid") is False


@pytest.mark.parametrize("content", ["not a pid\n", ""])
def test_stop_with_a_pid_file_holding_no_pid_signals_nothing(synctl, content):
    config_path = synctl.generate()
    pid_file = load_config(config_path).pid_file
    with open(pid_file, "w") as f:
        f.write(content)
    done = synctl.run("stop", config_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "The homeserver is not running.\nStopped.\n"


def test_stop_when_not_running_says_so(synctl):
    config_path = synctl.generate()
    done = synctl.run("stop", config_path)
    assert done.returncode == 0
    assert done.stdout == "The homeserver is not running.\nStopped.\n"


def test_generate_refuses_to_overwrite_a_config(synctl):
    config_path = synctl.generate()
    with open(config_path, encoding="utf-8") as f:
        before = f.read()
    done = synctl.run("generate", "--server-name", "other.example", "--config-path", config_path)
    assert done.returncode == 1
    assert done.stdout == f"{config_path} already exists; not overwriting it\n"
    with open(config_path, encoding="utf-8") as f:
        assert f.read() == before


def test_generate_refuses_a_bad_server_name_and_writes_nothing(synctl):
    config_path = os.path.join(synctl.dir, "bad", "homeserver.yaml")
    done = synctl.run("generate", "--server-name", "not a name", "--config-path", config_path)
    assert done.returncode == 1
    assert done.stdout == ("--server-name: expected a server name such as example.org or example.org:8448, "
                           "got 'not a name'\n")
    assert not os.path.exists(os.path.dirname(config_path))
