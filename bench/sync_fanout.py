#!/usr/bin/env python
"""How fast does one message reach M clients parked on /sync in its room?

    python bench/sync_fanout.py [--members 50,200,500,2000] [--rounds 5]

Starts its own homeserver (tests/harness.py: gunicorn, one gevent worker) on a fresh database,
in $TEST_PG_DSN's server or an embedded PostgreSQL (as bench/room_size.py does), and one room.
For each M, the room grows to M members (users created with SQL, joins over HTTP), then:

- every member parks on GET /sync?since=<token>&timeout=30000, one connection each;
- once the homeserver's worker is idle (its CPU time stops moving: every request has computed
  its empty first answer and parked), a further user sends one message;
- each client notes when its response holding that event arrived. Latency = arrival minus the
  arrival of the send's own HTTP response (negative when a sync answer beats the send's).

A warm-up round, then `--rounds` measured ones; each round parks every client again with the
token its last response gave. Reported per M: p50/p95/max latency over all rounds, the worker's
CPU time (user + system, /proc/<pid>/stat) for the fan-out (send to last arrival) and for parking
every client, and its RSS at the end.

The clients are greenlets in this process on raw sockets (HTTP/1.1 keep-alive, a few
microseconds of client CPU per response, no JSON parsing before the arrival time is taken), so
2,000 long-polls cost the bench little; they share the machine's cores with the server. The open
files limit is raised to its hard limit here, and the homeserver inherits it.
"""

from gevent import monkey

monkey.patch_all()

import argparse
import json
import os
import resource
import secrets
import signal
import socket
import sys
import time
from urllib.parse import quote, urlencode

import gevent
import gevent.pool
import psycopg2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.room_size import SERVER_NAME, Api, Postgres, create_users, join_room, pct
from tests.harness import HomeserverProcess
from tests.pg import create_database, drop_database, make_dsn, unique_name

JOIN_CONCURRENCY = 16
SYNC_TIMEOUT_MS = 30000
CLK_TCK = os.sysconf("SC_CLK_TCK")


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

    def _read_response(self) -> tuple[bytes, float]:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = next(int(v) for k, _, v in (line.partition(b":") for line in lines[1:])
                      if k.strip().lower() == b"content-length")
        while len(body) < length:
            chunk = self.sock.recv(max(65536, length - len(body)))
            if not chunk:
                raise EOFError("connection closed mid-body")
            body += chunk
        arrived = time.perf_counter()
        if status != 200:
            raise RuntimeError(f"/sync: {status} {body[:300]!r}")
        return body, arrived


def worker_pid(server: HomeserverProcess) -> int:
    """The gunicorn worker: the one child of the arbiter."""
    with open(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children") as f:
        children = [int(pid) for pid in f.read().split()]
    if len(children) != 1:
        raise RuntimeError(f"expected one gunicorn worker, found {children}")
    return children[0]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def wait_idle(pid: int, quiet_s: float = 0.3, limit_s: float = 120.0) -> float:
    """Waits until the worker spends (almost) no CPU for `quiet_s`: every parked request has
    computed its first answer. Returns the seconds waited."""
    started = time.perf_counter()
    last = cpu_seconds(pid)
    while time.perf_counter() - started < limit_s:
        gevent.sleep(quiet_s)
        now = cpu_seconds(pid)
        if now - last <= 0.02:
            return time.perf_counter() - started
        last = now
    raise RuntimeError(f"the homeserver worker did not go idle within {limit_s:.0f} s")


def fan_out_round(api: Api, pid: int, clients: list[LongPoll], sender_token: str, room_id: str) -> dict:
    """Parks every client, sends one message, and times its arrival at each client."""
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

    cpu_start = cpu_seconds(pid)
    greenlets = [gevent.spawn(client_loop, i, c) for i, c in enumerate(clients)]
    waited = wait_idle(pid)
    park_cpu = cpu_seconds(pid) - cpu_start
    cpu_before = cpu_seconds(pid)
    body, _ = api.call("PUT", f"/rooms/{quote(room_id, safe='')}/send/m.room.message/{secrets.token_hex(8)}",
                       sender_token, json={"msgtype": "m.text", "body": "fan-out"})
    send_done = time.perf_counter()
    sent["event_id"] = body["event_id"]
    gevent.joinall(greenlets, timeout=120, raise_error=True)
    if len(arrivals) != len(clients):
        raise RuntimeError(f"only {len(arrivals)} of {len(clients)} clients got the message")
    last = max(arrivals.values())
    fan_cpu = cpu_seconds(pid) - cpu_before
    return {"latencies": [t - send_done for t in arrivals.values()], "fan_cpu": fan_cpu,
            "fan_wall": last - send_done, "park_cpu": park_cpu, "park_wall": waited, "repolls": repolls[0]}


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", default="50,200,500,2000",
                        help="comma-separated room sizes M, measured in increasing order")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per M (after one warm-up)")
    parser.add_argument("--cp-max", type=int, default=5, help="the homeserver's database pool size")
    args = parser.parse_args()
    sizes = sorted(int(m) for m in args.members.split(","))
    raise_open_files_limit()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    postgres = Postgres()
    server = db_name = None
    try:
        base_dsn = postgres.start()
        db_name = unique_name("hs_bench")
        create_database(base_dsn, db_name)
        dsn = make_dsn(base_dsn, db_name)
        server = HomeserverProcess(dsn, server_name=SERVER_NAME,
                                   database={"name": "psycopg2", "args": {"dsn": dsn, "cp_max": args.cp_max}})
        server.start()
        pid = worker_pid(server)
        print(f"homeserver worker pid {pid} on {server.base_url}; log {server.log_path}", flush=True)
        api = Api(server.base_url)
        started = time.perf_counter()
        members = create_users(dsn, ["sender"] + [f"c{i:05d}" for i in range(sizes[-1])])
        sender_token = members.pop(f"@sender:{SERVER_NAME}")
        tokens = list(members.values())
        room_id = api.call("POST", "/createRoom", sender_token, json={"preset": "public_chat"})[0]["room_id"]
        print(f"{len(tokens) + 1} users in {time.perf_counter() - started:.1f} s", flush=True)

        clients: list[LongPoll] = []
        results = []
        for m in sizes:
            new = tokens[len(clients):m]
            started = time.perf_counter()
            pool = gevent.pool.Pool(JOIN_CONCURRENCY)
            join_times = pool.map(lambda token: join_room(api, token, room_id), new)
            join_s = time.perf_counter() - started
            # Everyone starts from the same position: a sync token is a position of the streams.
            token = api.call("GET", "/sync", sender_token,
                             params={"filter": json.dumps({"room": {"timeline": {"limit": 1},
                                                                    "state": {"lazy_load_members": True}}})})[0]
            clients += [LongPoll("127.0.0.1", server.port, t) for t in new]
            for c in clients:
                c.since = token["next_batch"]
            print(f"M={m}: {len(new)} joins in {join_s:.1f} s (p50 {pct(join_times, 50) * 1000:.0f} ms);"
                  f" measuring", flush=True)
            rounds = [fan_out_round(api, pid, clients, sender_token, room_id) for _ in range(args.rounds + 1)]
            measured = rounds[1:]
            latencies = [lat for r in measured for lat in r["latencies"]]
            result = {
                "m": m, "p50": pct(latencies, 50), "p95": pct(latencies, 95), "max": max(latencies),
                "best_p95": min(pct(r["latencies"], 95) for r in measured),
                "fan_cpu": sorted(r["fan_cpu"] for r in measured)[len(measured) // 2],
                "fan_wall": sorted(r["fan_wall"] for r in measured)[len(measured) // 2],
                "park_cpu": sorted(r["park_cpu"] for r in measured)[len(measured) // 2],
                "repolls": sum(r["repolls"] for r in measured), "rss": rss_mb(pid),
            }
            results.append(result)
            print(f"  p50 {result['p50'] * 1000:.0f} ms, p95 {result['p95'] * 1000:.0f} ms"
                  f" (best round {result['best_p95'] * 1000:.0f}), max {result['max'] * 1000:.0f} ms;"
                  f" worker CPU {result['fan_cpu'] * 1000:.0f} ms to deliver"
                  f" ({result['fan_cpu'] / m * 1000:.2f} ms/client), {result['park_cpu'] * 1000:.0f} ms to park;"
                  f" RSS {result['rss']:.0f} MB", flush=True)
        report(results, args, postgres.note)
        return 0
    finally:
        if server is not None:
            server.stop()
        if db_name is not None and postgres.base_dsn:
            try:
                drop_database(postgres.base_dsn, db_name)
            except psycopg2.Error as e:
                print(f"could not drop {db_name}: {e}", file=sys.stderr)
        postgres.stop()


def report(results: list[dict], args, pg_note: str) -> None:
    print()
    print(f"/sync fan-out: one message to M parked clients; {args.rounds} rounds per M after a warm-up;"
          f" {pg_note}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'M':>6}{'p50 ms':>9}{'p95 ms':>9}{'best p95':>10}{'max ms':>9}{'CPU ms':>9}{'CPU/client':>12}"
          f"{'park CPU':>10}{'RSS MB':>8}{'repolls':>9}")
    for r in results:
        print(f"{r['m']:>6}{r['p50'] * 1000:>9.0f}{r['p95'] * 1000:>9.0f}{r['best_p95'] * 1000:>10.0f}"
              f"{r['max'] * 1000:>9.0f}{r['fan_cpu'] * 1000:>9.0f}{r['fan_cpu'] / r['m'] * 1000:>12.2f}"
              f"{r['park_cpu'] * 1000:>10.0f}{r['rss']:>8.0f}{r['repolls']:>9}")
    print("(CPU: the homeserver worker's user+system time, median round; 'CPU' from the send to the last"
          " arrival, 'park' for parking every client again)")


if __name__ == "__main__":
    sys.exit(main())
