"""A master and its workers run the way an admin runs them: `synctl -a DIR` over a generated
homeserver.yaml with replication listeners and a directory of worker files, and HAProxy in front
with the config `synctl haproxy-config` prints.

Every pid synctl starts is recorded (from the pid files, with the arbiters' children and the
postmaster) and stopped when `running_cluster` exits whatever the test did: `synctl -a DIR stop`
first, then SIGKILL for any recorded process still alive whose command line names the cluster's
directory (tests/smoke/test_synctl.py's Synctl does that part). HAProxy runs in the foreground
(`-db`) as the test's child and is stopped by its pid.
"""

import contextlib
import os
import subprocess
import time

import pytest
import requests
import yaml

from tests.harness import free_port
from tests.smoke.test_synctl import Synctl, _children

HAPROXY = "/usr/sbin/haproxy"


class Cluster:
    """A main homeserver.yaml with replication listeners, and a directory of worker files.

    ``main_config`` holds top-level keys for homeserver.yaml (a `database` section, duty switches)."""

    def __init__(self, synctl: Synctl, **main_config):
        self.synctl = synctl
        self.main = synctl.generate()
        with open(self.main, encoding="utf-8") as f:
            config = yaml.safe_load(f)
        self.replication_port, self.internal_port = free_port(), free_port()
        config["listeners"] += [
            {"port": self.replication_port, "type": "replication", "bind_addresses": ["127.0.0.1"]},
            {"port": self.internal_port, "type": "http", "bind_addresses": ["127.0.0.1"],
             "resources": [{"names": ["replication"]}]},
        ]
        config["rc_registration"] = {"per_second": 100, "burst_count": 100}
        config.update(main_config)
        with open(self.main, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f)
        self.master_url = f"http://127.0.0.1:{config['listeners'][0]['port']}"
        self.dir = os.path.join(os.path.dirname(self.main), "workers")
        os.makedirs(self.dir)
        self.ports: dict[str, int] = {}
        self.metrics_ports: dict[str, int] = {}

    def add_worker(self, name: str, app: str, resources=("client",), metrics: bool = False, **extra) -> str:
        """Writes DIR/<name>.yaml; ``metrics`` adds a `type: metrics` listener (see metrics_url)."""
        self.ports[name] = free_port()
        listeners = [{"type": "http", "port": self.ports[name], "bind_addresses": ["127.0.0.1"],
                      "x_forwarded": True, "resources": [{"names": list(resources)}]}]
        if metrics:
            self.metrics_ports[name] = free_port()
            listeners.append({"type": "metrics", "port": self.metrics_ports[name], "bind_addresses": ["127.0.0.1"]})
        data = {"worker_app": app, "worker_replication_port": self.replication_port,
                "worker_replication_http_port": self.internal_port,
                "worker_pid_file": f"{name}.pid", "worker_log_file": f"{name}.log",
                "worker_listeners": listeners}
        data.update(extra)
        path = self.worker_file(name)
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(data, f)
        return path

    def worker_file(self, name: str) -> str:
        return os.path.join(self.dir, f"{name}.yaml")

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def metrics_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"

    def worker_pid(self, name: str) -> int | None:
        try:
            with open(os.path.join(self.dir, f"{name}.pid")) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def record(self) -> dict[str, int]:
        """Every arbiter now running (by pid file), recorded with its children for the teardown."""
        arbiters = {name: self.worker_pid(name) for name in self.ports}
        arbiters["master"] = self.synctl.processes(self.main).get("arbiter")
        for pid in arbiters.values():
            if pid:
                self.synctl.pids.update([pid, *_children(pid)])
        return arbiters

    def run(self, *args, timeout=200):
        done = self.synctl.run(*args, timeout=timeout)
        self.record()
        return done


@contextlib.contextmanager
def running_cluster(**main_config):
    """A Cluster whose every process is stopped on exit (see the module's docstring)."""
    synctl = Synctl()
    c = None
    try:
        c = Cluster(synctl, **main_config)
        yield c
    finally:
        if c is not None:
            try:
                synctl.run("-a", c.dir, "stop", c.main, timeout=120)
            except (subprocess.SubprocessError, OSError):
                pass  # the SIGKILL of recorded pids below still runs
        synctl.cleanup()


def require_haproxy() -> None:
    if not os.access(HAPROXY, os.X_OK):
        pytest.fail(f"HAProxy is not installed at {HAPROXY}: these tests need Debian's package "
                    "(apt-get install haproxy; .ci/run installs it)")


@contextlib.contextmanager
def running_haproxy(cluster: Cluster, *options: str):
    """HAProxy on a free loopback port with the config `synctl haproxy-config -a DIR` prints for
    the cluster (given `options` too, such as --federation-bind), serving once this yields its
    base URL; stopped by its pid on exit."""
    require_haproxy()
    port = free_port()
    generated = cluster.synctl.run("haproxy-config", "-a", cluster.dir, "--bind", f"127.0.0.1:{port}", *options,
                                   cluster.main)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    cfg = os.path.join(cluster.synctl.dir, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(generated.stdout)
    haproxy = subprocess.Popen([HAPROXY, "-db", "-f", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                if requests.get(base + "/_matrix/client/versions", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and haproxy.poll() is None, "HAProxy did not serve"
            time.sleep(0.2)
        yield base
    finally:
        haproxy.terminate()
        try:
            haproxy.wait(10)
        except subprocess.TimeoutExpired:
            haproxy.kill()
            haproxy.wait()
