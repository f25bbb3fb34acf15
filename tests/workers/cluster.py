"""A master with its replication listeners and real worker processes beside it, on one test
database; every process is stopped by pid, whatever the test did."""

import os
import signal
import socket
import threading
import time

import requests
import yaml

from tests.harness import Client, GunicornProcess, HomeserverProcess, free_port


class WorkerProcess(GunicornProcess):
    def __init__(self, master: HomeserverProcess, worker_type: str, name: str, **overrides):
        self.master = master
        self.worker_type = worker_type
        self.name = name
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.config = {
            "worker_app": f"apps.{worker_type}",
            "worker_name": name,
            "worker_replication_host": "127.0.0.1",
            "worker_replication_port": master.replication_port,
            "worker_replication_http_port": master.replication_http_port,
            "worker_listeners": [{"type": "http", "port": self.port, "bind_addresses": ["127.0.0.1"],
                                  "resources": [{"names": ["client", "federation", "media", "metrics"]}]}],
        }
        self.config.update(overrides)
        self.config_path = os.path.join(master.dir, f"{name}.yaml")
        self.log_path = os.path.join(master.dir, f"{name}.log")
        self.proc = None

    def start(self, timeout: float = 60.0) -> "WorkerProcess":
        with open(self.config_path, "w") as f:
            yaml.safe_dump(self.config, f)
        self.launch(f"apps.{self.worker_type}", [self.port],
                    {"HS_CONFIG": self.master.config_path, "HS_WORKER_CONFIG": self.config_path},
                    extra_args=("--timeout", "300"))  # a paused worker is not a hung one
        return self.wait_until(lambda: self.status()["following"], timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would: the master sees the connection drop."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def pause(self) -> None:
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def metric(self, name: str) -> float:
        """The value of an unlabelled metric from the worker's /metrics."""
        for line in requests.get(self.base_url + "/metrics", timeout=5).text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{name} not in /metrics")

    def stop(self) -> None:
        self.stop_process()

    def status(self) -> dict:
        return requests.get(self.base_url + "/_hs/status", timeout=5).json()


def master_with_replication(db_dsn: str, **overrides) -> HomeserverProcess:
    """A master (not started) with a replication listener and the internal HTTP API."""
    master = HomeserverProcess(db_dsn, **overrides)
    master.replication_port = free_port()
    master.replication_http_port = free_port()
    master.config["listeners"] += [
        {"type": "replication", "port": master.replication_port, "bind_addresses": ["127.0.0.1"]},
        {"type": "http", "port": master.replication_http_port, "bind_addresses": ["127.0.0.1"],
         "resources": [{"names": ["replication"]}]},
    ]
    return master


def wait_caught_up(master: HomeserverProcess, *workers: WorkerProcess, timeout: float = 10.0) -> None:
    """Until every worker has applied every stream up to where the master is now."""
    target = requests.get(master.url("/_hs/status"), timeout=5).json()["streams"]
    deadline = time.monotonic() + timeout
    for worker in workers:
        while True:
            streams = worker.status()["streams"]
            if all(streams.get(name, 0) >= position for name, position in target.items() if name != "typing"):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{worker.name} is behind: {streams} < {target}")
            time.sleep(0.02)


class TcpProxy:
    """A TCP forwarder on a free loopback port (a thread per direction), so that a test can cut
    a worker's replication connection the way a network fault would."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> int:
        """Closes every connection through the proxy; returns how many there were."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        return len(pairs)

    def close(self) -> None:
        self._listener.close()
        self.cut()


def on(worker, client: Client) -> Client:
    """The same user and device, talking to a worker."""
    other = Client(worker, client.access_token)
    other.user_id, other.device_id = client.user_id, client.device_id
    return other


def sync(client: Client, **params) -> dict:
    # Presence is left alone unless a test is about it: a user's own presence change is news
    # that would end a parked sync before the event it waits for.
    params.setdefault("set_presence", "offline")
    resp = client.get("/sync", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def park_sync(client: Client, since: str, timeout_ms: int = 20000) -> tuple:
    """A /sync parked on a thread: (thread, result), where result gets "body" and "at" (the
    monotonic time its answer arrived). Checks that it is still parked half a second later."""
    result = {}

    def parked():
        result["body"] = sync(client, since=since, timeout=timeout_ms)
        result["at"] = time.monotonic()

    thread = threading.Thread(target=parked)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive(), "the sync returned before anything happened"
    return thread, result
