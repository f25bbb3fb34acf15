"""What the benches share: long-poll clients on raw sockets, a process's CPU time and memory from
/proc, and HAProxy in front of workers. Import after gevent's monkey patching when using the
clients (they are greenlets)."""

import json
import os
import resource
import secrets
import socket
import subprocess
import time
from urllib.parse import quote, urlencode

import gevent
import requests

from hs.config import load_config
from hs.haproxy import haproxy_config
from hs.worker_config import load_worker_config
from tests.harness import free_port, stop_process_group

SYNC_TIMEOUT_MS = 30000
CLK_TCK = os.sysconf("SC_CLK_TCK")
HAPROXY = "/usr/sbin/haproxy"


class LongPoll:
    """One client's keep-alive connection for GET /sync. gunicorn closes a keep-alive connection
    idle for 2 s, so a request that finds it closed is sent again on a new one (GETs are safe)."""

    def __init__(self, host: str, port: int, token: str):
        self.address = (host, port)
        self.token = token
        self.since = None
        self.sock = None

    def _connect(self) -> None:
        self.sock = socket.create_connection(self.address)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def sync(self, timeout_ms: int) -> tuple[bytes, float]:
        """(response body, perf_counter when its last byte arrived)."""
        params = {"timeout": timeout_ms}
        if self.since is not None:
            params["since"] = self.since
        request = (f"GET /_matrix/client/v3/sync?{urlencode(params)} HTTP/1.1\r\nHost: bench\r\n"
                   f"Authorization: Bearer {self.token}\r\n\r\n").encode()
        for attempt in range(2):
            if self.sock is None:
                self._connect()
            try:
                self.sock.sendall(request)
                return self._read_response()
            except (ConnectionError, EOFError):
                self.sock.close()
                self.sock = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _read_response(self) -> tuple[bytes, float]:
        buf = self._read_until(b"", b"\r\n\r\n")
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":  # as Synapse (Twisted) answers
            body = self._read_chunked(rest)
        else:
            body = self._read_exactly(rest, int(headers[b"content-length"]))
        arrived = time.perf_counter()
        if status != 200:
            raise RuntimeError(f"/sync: {status} {body[:300]!r}")
        return body, arrived

    def _recv(self, at_least: int = 65536) -> bytes:
        chunk = self.sock.recv(max(65536, at_least))
        if not chunk:
            raise EOFError("connection closed")
        return chunk

    def _read_until(self, buf: bytes, marker: bytes) -> bytes:
        while marker not in buf:
            buf += self._recv()
        return buf

    def _read_exactly(self, buf: bytes, length: int) -> bytes:
        while len(buf) < length:
            buf += self._recv(length - len(buf))
        return buf

    def _read_chunked(self, buf: bytes) -> bytes:
        body = b""
        while True:
            buf = self._read_until(buf, b"\r\n")
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            buf = self._read_exactly(buf, size + 2)  # the chunk and its CRLF
            if size == 0:
                return body  # (no trailers: neither server sends them)
            body += buf[:size]
            buf = buf[size + 2:]


def gunicorn_worker_pid(arbiter_pid: int) -> int:
    """A one-worker gunicorn's worker: the one child of the arbiter."""
    with open(f"/proc/{arbiter_pid}/task/{arbiter_pid}/children") as f:
        children = [int(pid) for pid in f.read().split()]
    if len(children) != 1:
        raise RuntimeError(f"expected one gunicorn worker under {arbiter_pid}, found {children}")
    return children[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def rss_mb(pid: int, peak: bool = False) -> float:
    """Resident memory now, or its peak so far (VmHWM)."""
    field = "VmHWM:" if peak else "VmRSS:"
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def wait_idle(*pids: int, quiet_s: float = 0.3, limit_s: float = 120.0) -> float:
    """Waits until the processes spend (almost) no CPU for `quiet_s`: every parked request has
    computed its first answer. Returns the seconds waited."""
    started = time.perf_counter()
    last = sum(cpu_seconds(pid) for pid in pids)
    while time.perf_counter() - started < limit_s:
        gevent.sleep(quiet_s)
        now = sum(cpu_seconds(pid) for pid in pids)
        if now - last <= 0.02 * len(pids):
            return time.perf_counter() - started
        last = now
    raise RuntimeError(f"the homeserver processes {pids} did not go idle within {limit_s:.0f} s")


def fan_out_round(api, pids: list[int], clients: list[LongPoll], sender_token: str, room_id: str,
                  on_parked=None) -> dict:
    """Parks every client, sends one message through `api`, and times its arrival at each client;
    `on_parked()` runs once every client is parked, before the send. CPU times ("fan_cpu": from the
    send to the last arrival, "park_cpu": parking everyone) and RSS after the fan-out are per pid."""
    arrivals: dict[int, float] = {}
    sent = {}
    repolls = [0]

    def client_loop(i: int, client: LongPoll) -> None:
        while True:
            body, arrived = client.sync(SYNC_TIMEOUT_MS)
            event_id = sent.get("event_id")
            found = event_id is not None and event_id.encode() in body
            client.since = json.loads(body)["next_batch"]
            if found:
                arrivals[i] = arrived
                return
            repolls[0] += 1  # woken (or timed out) without the message: park again

    def cpu() -> dict[int, float]:
        return {pid: cpu_seconds(pid) for pid in pids}

    cpu_start = cpu()
    greenlets = [gevent.spawn(client_loop, i, c) for i, c in enumerate(clients)]
    waited = wait_idle(*pids)
    if on_parked is not None:
        on_parked()
    cpu_before = cpu()
    body, _ = api.call("PUT", f"/rooms/{quote(room_id, safe='')}/send/m.room.message/{secrets.token_hex(8)}",
                       sender_token, json={"msgtype": "m.text", "body": "fan-out"})
    send_done = time.perf_counter()
    sent["event_id"] = body["event_id"]
    gevent.joinall(greenlets, timeout=120, raise_error=True)
    if len(arrivals) != len(clients):
        raise RuntimeError(f"only {len(arrivals)} of {len(clients)} clients got the message")
    last = max(arrivals.values())
    cpu_after = cpu()
    return {"latencies": [t - send_done for t in arrivals.values()],
            "fan_cpu": {pid: cpu_after[pid] - cpu_before[pid] for pid in pids},
            "park_cpu": {pid: cpu_before[pid] - cpu_start[pid] for pid in pids},
            "rss": {pid: rss_mb(pid) for pid in pids},
            "fan_wall": last - send_done, "park_wall": waited, "repolls": repolls[0]}


def raise_open_files_limit() -> None:
    """To the hard limit: every parked client holds a socket here, and child processes inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class HAProxy:
    """An HAProxy in the foreground on a free port, with `hs.haproxy`'s config for `workers`."""

    def __init__(self, master, workers: list, name: str):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.config_path = os.path.join(master.dir, f"{name}.cfg")
        self.log_path = os.path.join(master.dir, f"{name}.log")
        main_config = load_config(master.config_path)
        text = haproxy_config(main_config, [load_worker_config(w.config_path, master.config_path, main_config)
                                            for w in workers], f"127.0.0.1:{self.port}")
        with open(self.config_path, "w") as f:
            f.write(text)
        self.proc = None

    def start(self, timeout: float = 20.0) -> "HAProxy":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([HAPROXY, "-f", self.config_path, "-db"], stdout=log, stderr=log,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}: see {self.log_path}")
            try:
                if requests.get(self.base_url + "/_matrix/client/versions", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"haproxy did not answer within {timeout:.0f} s: see {self.log_path}")

    def stop(self) -> None:
        stop_process_group(self.proc, grace=10)
