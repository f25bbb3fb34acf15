#!/usr/bin/env python
"""Does the cost of a send grow with the size of the room? And of a /messages page?

    python bench/room_size.py [--quick] [--members N] [--events M] [--samples S]

Starts its own homeserver (tests/harness.py's HomeserverProcess: gunicorn, one gevent worker)
on a fresh database in $TEST_PG_DSN's server, or else in an embedded PostgreSQL started in a
temporary directory (with fsync off, as the test suite runs it), and builds two rooms:

- the big room: 5,000 members and 50,000 messages (--quick: 500 and 5,000). 100 members talk;
  the others join while they do, spread evenly through the history, so the history holds a
  state change every 10 messages, as a real room's does;
- the "empty" room: the creator and 8 senders, and 1,000 events (the 20 pages read below)
  with a state change (a topic) every 10 of them: the rooms differ in the size of their state.

Then it measures, alternating between the rooms in rounds so machine noise hits both alike:

- message sends, one client in sequence: p50/p95 latency and events/s;
- message sends from 8 concurrent clients (the same 8 users in both rooms): events/s;
- state sends (m.room.topic) in sequence: p50/p95, mean and max (state groups write deltas,
  with a full snapshot of the room state every MAX_DELTA_DEPTH changes: the mean shows it);
- /messages pages (dir=b, limit=50), paging back 20 pages from the end: p50/p95 per page,
  once before the rounds (the first read, which loads state groups from the database) and
  then once per round (with whatever the server has cached by then).

It also reports how join and send latency moved while the big room was filled (first vs last
tenth), a cheap signal of per-event cost that grows with the room, and the worker's memory.

Members are created with SQL (users, profiles, devices and access tokens through the stores'
own *_txn helpers; registering 5,000 users over HTTP is minutes of argon2) and then join over
HTTP, 8 clients at a time. Everything started here (the homeserver, the embedded PostgreSQL,
the database) is stopped or dropped at the end, also on failure, Ctrl-C or SIGTERM.
"""

import argparse
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import psycopg2
import requests

from hs.storage.accounts import AccountStore
from hs.storage.devices import DeviceStore
from hs.storage.embedded import start_embedded_postgres, stop_embedded_postgres
from hs.storage.tokens import TokenStore
from tests.harness import HomeserverProcess
from tests.pg import admin_cursor, create_database, drop_database, make_dsn, unique_name

SERVER_NAME = "bench.local"
DEVICE_ID = "BENCH"
CONCURRENCY = 8
PAGE_LIMIT = 50
PAGES = 20
# Members of the big room who send its history; the others only join.
TALKERS = 100


def q(value: str) -> str:
    return quote(value, safe="")


class Api:
    """One keep-alive HTTP session per thread: connection setup should not be what we measure."""

    def __init__(self, base_url: str):
        self.base_url = base_url + "/_matrix/client/v3"
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def call(self, method: str, path: str, token: str, json=None, params=None, expect=200) -> tuple[dict, float]:
        """(response body, seconds taken)."""
        start = time.perf_counter()
        resp = self._session().request(method, self.base_url + path, json=json, params=params, timeout=120,
                                       headers={"Authorization": f"Bearer {token}"})
        elapsed = time.perf_counter() - start
        if resp.status_code != expect:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:500]}")
        return resp.json(), elapsed


# --- setup -------------------------------------------------------------------------------------

def create_users(dsn: str, localparts: list[str], server_name: str = SERVER_NAME) -> dict[str, str]:
    """user ID -> access token, written straight to the database (no password: nobody logs in)."""
    tokens = {}
    now = int(time.time() * 1000)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            for localpart in localparts:
                user_id = f"@{localpart}:{server_name}"
                token = "syt_bench_" + secrets.token_urlsafe(24)
                AccountStore.insert_user_txn(cur, user_id, None, now, displayname=localpart)
                DeviceStore.upsert_device_txn(cur, user_id, DEVICE_ID, None, now)
                TokenStore.insert_access_token_txn(cur, token, user_id, DEVICE_ID, now)
                tokens[user_id] = token
    finally:
        conn.close()
    return tokens


def run_concurrently(jobs: list, worker, concurrency: int = CONCURRENCY) -> list[float]:
    """Runs worker(job) -> seconds for every job on `concurrency` threads; the latencies in job order."""
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(worker, jobs))


def send_message(api: Api, token: str, room_id: str, body: str) -> float:
    txn = secrets.token_hex(8)
    return api.call("PUT", f"/rooms/{q(room_id)}/send/m.room.message/{txn}", token,
                    json={"msgtype": "m.text", "body": body})[1]


def join_room(api: Api, token: str, room_id: str) -> float:
    return api.call("POST", f"/join/{q(room_id)}", token, json={})[1]


def set_topic(api: Api, token: str, room_id: str) -> float:
    return api.call("PUT", f"/rooms/{q(room_id)}/state/m.room.topic/", token,
                    json={"topic": f"topic {secrets.token_hex(4)}"})[1]


def fill_big_room(api: Api, room_id: str, members: dict[str, str], n_events: int) -> dict:
    """A few talkers join first; the others join while the talkers talk, spread evenly through
    the history, so that history holds state changes as a real room's does (a page of /messages
    then spans several state groups, each the state of the whole room)."""
    tokens = list(members.values())
    talkers, lurkers = tokens[:TALKERS], tokens[TALKERS:]
    started = time.perf_counter()
    join_latencies = run_concurrently(talkers, lambda token: join_room(api, token, room_id))
    jobs, joined = [], 0
    every = n_events / max(1, len(lurkers))
    for i in range(n_events):
        jobs.append(("send", talkers[i % len(talkers)], i))
        while joined < len(lurkers) and (joined + 1) * every <= i + 1:
            jobs.append(("join", lurkers[joined], joined))
            joined += 1
    jobs += [("join", token, j) for j, token in enumerate(lurkers[joined:], joined)]

    def run(job):
        kind, token, i = job
        return join_room(api, token, room_id) if kind == "join" else send_message(api, token, room_id, f"history {i}")
    latencies = run_concurrently(jobs, run)
    seconds = time.perf_counter() - started
    join_latencies += [lat for job, lat in zip(jobs, latencies, strict=True) if job[0] == "join"]
    send_latencies = [lat for job, lat in zip(jobs, latencies, strict=True) if job[0] == "send"]
    print(f"  {len(tokens)} joins and {n_events} messages in {seconds:.1f} s"
          f" ({(len(tokens) + n_events) / seconds:.0f} events/s)", flush=True)
    return {"joins": join_latencies, "sends": send_latencies, "events_per_s": (len(tokens) + n_events) / seconds}


def seed_empty_room(api: Api, token: str, room_id: str, state_every: int) -> None:
    """The 20 pages the paging measurement reads, with state changes (topics) as often as the
    big room's history has joins: the rooms then differ in the size of their state only."""
    def run(i):
        if i % state_every == state_every - 1:
            return set_topic(api, token, room_id)
        return send_message(api, token, room_id, f"seed {i}")
    run_concurrently(range(PAGES * PAGE_LIMIT), run)


def worker_rss_mb(server: HomeserverProcess) -> float | None:
    """Resident memory of the gunicorn worker (the master's child), from /proc."""
    try:
        with open(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children") as f:
            children = [int(pid) for pid in f.read().split()]
        total = 0
        for pid in children:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return total / 1024
    except (OSError, StopIteration, ValueError):
        return None


# --- measuring ---------------------------------------------------------------------------------

def sequential_sends(api: Api, token: str, room_id: str, n: int, label: str) -> tuple[list[float], float]:
    started = time.perf_counter()
    latencies = [send_message(api, token, room_id, f"{label} {i}") for i in range(n)]
    return latencies, time.perf_counter() - started


def concurrent_sends(api: Api, tokens: list[str], room_id: str, n: int) -> float:
    started = time.perf_counter()
    run_concurrently(range(n), lambda i: send_message(api, tokens[i % len(tokens)], room_id, f"burst {i}"))
    return time.perf_counter() - started


def state_sends(api: Api, token: str, room_id: str, n: int) -> list[float]:
    return [set_topic(api, token, room_id) for _ in range(n)]


def page_back(api: Api, token: str, room_id: str) -> tuple[list[float], int]:
    """Latency of each of PAGES pages back from the end, and how many events they held."""
    latencies, seen, token_from = [], 0, None
    for _ in range(PAGES):
        params = {"dir": "b", "limit": PAGE_LIMIT}
        if token_from is not None:
            params["from"] = token_from
        body, elapsed = api.call("GET", f"/rooms/{q(room_id)}/messages", token, params=params)
        latencies.append(elapsed)
        seen += len(body["chunk"])
        token_from = body.get("end")
        if token_from is None:
            break
    return latencies, seen


def pct(values: list[float], p: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def measure(api: Api, creator_token: str, burst_tokens: list[str], rooms: dict[str, str], args) -> dict:
    """Alternates rooms round by round (and which goes first), so drift hits both alike."""
    results = {name: {"send": [], "send_s": 0.0, "send_n": 0, "burst_s": 0.0, "burst_n": 0,
                      "state": [], "pages": [], "page_events": 0} for name in rooms}
    rounds = args.rounds
    per_round = max(1, args.samples // rounds)
    burst_per_round = max(CONCURRENCY, args.burst // rounds)
    state_per_round = max(1, args.state_samples // rounds)
    for r in range(rounds):
        order = list(rooms) if r % 2 == 0 else list(rooms)[::-1]
        for name in order:
            room_id = rooms[name]
            res = results[name]
            lat, secs = sequential_sends(api, creator_token, room_id, per_round, f"round {r}")
            res["send"] += lat
            res["send_s"] += secs
            res["send_n"] += per_round
            res["burst_s"] += concurrent_sends(api, burst_tokens, room_id, burst_per_round)
            res["burst_n"] += burst_per_round
            res["state"] += state_sends(api, creator_token, room_id, state_per_round)
        for name in order:
            lat, seen = page_back(api, creator_token, rooms[name])
            results[name]["pages"] += lat
            results[name]["page_events"] = seen
        print(f"  round {r + 1}/{rounds} done", flush=True)
    return results


def report(results: dict, cold: dict, fill: dict, args, pg_note: str, rss_mb: float | None) -> None:
    empty, big = results["empty"], results["big"]
    ms = 1000.0

    def row(label, e, b, fmt="{:.1f}"):
        ratio = b / e if e else float("nan")
        print(f"{label:<34}{fmt.format(e):>12}{fmt.format(b):>12}{ratio:>10.2f}")

    print()
    print(f"Room size benchmark: big room = {args.members} members, {args.events} events "
          f"({'quick' if args.quick else 'full'} mode); {pg_note}")
    print(f"{'':<34}{'empty':>12}{'big':>12}{'big/empty':>10}")
    row(f"send p50 (ms, {empty['send_n']} in sequence)", pct(empty["send"], 50) * ms, pct(big["send"], 50) * ms)
    row("send p95 (ms)", pct(empty["send"], 95) * ms, pct(big["send"], 95) * ms)
    row("send p99 (ms)", pct(empty["send"], 99) * ms, pct(big["send"], 99) * ms)
    row("send events/s (1 client)", empty["send_n"] / empty["send_s"], big["send_n"] / big["send_s"], "{:.0f}")
    row(f"send events/s ({CONCURRENCY} clients)", empty["burst_n"] / empty["burst_s"],
        big["burst_n"] / big["burst_s"], "{:.0f}")
    row(f"state send p50 (ms, {len(empty['state'])})", pct(empty["state"], 50) * ms, pct(big["state"], 50) * ms)
    row("state send p95 (ms)", pct(empty["state"], 95) * ms, pct(big["state"], 95) * ms)
    row("state send mean (ms)", statistics.fmean(empty["state"]) * ms, statistics.fmean(big["state"]) * ms)
    row("state send max (ms)", max(empty["state"]) * ms, max(big["state"]) * ms)
    row(f"/messages first read p50 (ms, {len(cold['empty'])})", pct(cold["empty"], 50) * ms,
        pct(cold["big"], 50) * ms)
    row("/messages first read p95 (ms)", pct(cold["empty"], 95) * ms, pct(cold["big"], 95) * ms)
    row(f"/messages page p50 (ms, {len(empty['pages'])})", pct(empty["pages"], 50) * ms,
        pct(big["pages"], 50) * ms)
    row("/messages page p95 (ms)", pct(empty["pages"], 95) * ms, pct(big["pages"], 95) * ms)
    print(f"(last paging run read {empty['page_events']} events in the empty room, {big['page_events']} in the big;"
          f" homeserver worker RSS at the end: {f'{rss_mb:.0f} MB' if rss_mb is not None else 'unknown'})")

    def tenths(label, values):
        k = max(1, len(values) // 10)
        first, last = values[:k], values[-k:]
        parts = []
        for name, fn in (("p50", lambda v: pct(v, 50)), ("p99", lambda v: pct(v, 99)), ("mean", statistics.fmean)):
            a, b = fn(first) * ms, fn(last) * ms
            parts.append(f"{name} {a:.1f} -> {b:.1f} ms (x{b / a:.2f})")
        print(f"  {label:<5} " + ", ".join(parts))

    print()
    print("While filling the big room (8 concurrent clients, so latencies include waiting for the room;"
          " first tenth -> last tenth):")
    tenths("join", fill["joins"])
    tenths("send", fill["sends"])
    print(f"  {fill['events_per_s']:.0f} events/s overall")


# --- the PostgreSQL server and the homeserver --------------------------------------------------

class Postgres:
    """$TEST_PG_DSN's server, or an embedded one in a temporary directory that stop() stops."""

    def __init__(self):
        self.base_dsn = os.environ.get("TEST_PG_DSN")
        self.data_dir = None
        self.databases: list[str] = []
        self.note = "PostgreSQL from TEST_PG_DSN (its own settings)"

    def start(self) -> str:
        if self.base_dsn:
            return self.base_dsn
        # Short path under /tmp: the unix socket lives in it (see hs/storage/embedded.py).
        self.data_dir = tempfile.mkdtemp(prefix="hs-bench-pg-")
        self.base_dsn = start_embedded_postgres(self.data_dir)
        with admin_cursor(self.base_dsn) as cur:
            # A throwaway server: commits need not wait for the disk, or the disk is what we measure.
            cur.execute("ALTER SYSTEM SET fsync = off")
            cur.execute("ALTER SYSTEM SET synchronous_commit = off")
            cur.execute("SELECT pg_reload_conf()")
        self.note = "embedded PostgreSQL, fsync off"
        return self.base_dsn

    def new_database(self) -> str:
        """The DSN of a new, empty database for this run (starting the server first if needed);
        stop() drops it."""
        base_dsn = self.start()
        name = unique_name("hs_bench")
        create_database(base_dsn, name)
        self.databases.append(name)
        return make_dsn(base_dsn, name)

    def stop(self) -> None:
        """Drops the run's databases, then stops the embedded server if this started one."""
        for name in self.databases:
            try:
                drop_database(self.base_dsn, name)
            except psycopg2.Error as e:
                print(f"could not drop {name}: {e}", file=sys.stderr)
        self.databases = []
        if self.data_dir is not None:
            stop_embedded_postgres(self.data_dir)  # pg_ctl stop on the postmaster of this directory
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 members and 5,000 events")
    parser.add_argument("--members", type=int, help="members of the big room (default 5000, quick 500)")
    parser.add_argument("--events", type=int, help="events in the big room (default 50000, quick 5000)")
    parser.add_argument("--samples", type=int, default=500, help="sequential sends measured per room")
    parser.add_argument("--burst", type=int, default=800, help="concurrent sends measured per room")
    parser.add_argument("--state-samples", type=int, default=100, help="state sends measured per room")
    parser.add_argument("--rounds", type=int, default=10, help="rounds the measurements are split into")
    args = parser.parse_args()
    args.members = max(CONCURRENCY, args.members or (500 if args.quick else 5000))
    args.events = args.events or (5000 if args.quick else 50000)

    # SIGTERM unwinds like Ctrl-C, so the finally blocks below stop what was started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    postgres = Postgres()
    server = None
    try:
        dsn = postgres.new_database()
        server = HomeserverProcess(dsn, server_name=SERVER_NAME)
        server.start()  # migrates the new database
        print(f"homeserver pid {server.proc.pid} on {server.base_url}; log {server.log_path}", flush=True)
        api = Api(server.base_url)

        creator_id = f"@creator:{SERVER_NAME}"
        members = create_users(dsn, ["creator"] + [f"member{i:05d}" for i in range(args.members)])
        creator_token = members.pop(creator_id)
        rooms = {}
        for name in ("empty", "big"):
            body, _ = api.call("POST", "/createRoom", creator_token, json={"preset": "public_chat", "name": name})
            rooms[name] = body["room_id"]
        # The concurrent senders are the same users in both rooms: only the room differs.
        burst_tokens = [members[f"@member{i:05d}:{SERVER_NAME}"] for i in range(CONCURRENCY)]
        for token in burst_tokens:
            join_room(api, token, rooms["empty"])
        seed_empty_room(api, creator_token, rooms["empty"], state_every=max(1, args.events // args.members))
        print(f"filling the big room with {args.members} members and {args.events} events", flush=True)
        fill = fill_big_room(api, rooms["big"], members, args.events)
        joined, _ = api.call("GET", f"/rooms/{q(rooms['big'])}/joined_members", creator_token)
        assert len(joined["joined"]) == args.members + 1, len(joined["joined"])

        print("measuring", flush=True)
        # The first read of each page loads the state groups of its events from the database;
        # later reads find them cached. Both are measured: a user paging far back sees the first.
        cold = {name: page_back(api, creator_token, rooms[name])[0] for name in rooms}
        results = measure(api, creator_token, burst_tokens, rooms, args)
        report(results, cold, fill, args, postgres.note, worker_rss_mb(server))
        return 0
    finally:
        if server is not None:
            server.stop()  # SIGTERM to its process group, by pid
        postgres.stop()


if __name__ == "__main__":
    sys.exit(main())
