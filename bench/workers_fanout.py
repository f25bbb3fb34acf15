#!/usr/bin/env python
"""/sync fan-out across synchrotrons behind HAProxy, and what following replication costs a worker.

    python bench/workers_fanout.py [--members 500,2000] [--rounds 3] [--rate 50] [--seconds 30]

Starts a master with its replication listeners and two synchrotrons (tests/workers/cluster.py:
gunicorn, one gevent worker each) on a fresh database, in $TEST_PG_DSN's server or an embedded
PostgreSQL (as bench/room_size.py does), and two HAProxy processes from `hs.haproxy`'s config:
one routing /sync to the first synchrotron only, one balancing it over both (by access token).
Everything else (joins, sends) goes through HAProxy to the master.

1. Replication cost. With no client on the synchrotron, one user sends `--rate` messages a
   second for `--seconds` seconds into a room, straight to the master; the synchrotron's CPU
   time over that window (the first send until it has applied the last) is its cost of following
   the streams, as % of one core, beside its idle CPU over as long a window. Then again with
   `--idle-clients` clients parked on the synchrotron in another room, which the sends must not
   wake (their long-poll outlasts the window).
2. Fan-out. For each M, one room grows to M members; each parks on GET /sync?timeout=30000
   through HAProxy (one keep-alive connection each), once with one synchrotron and once with
   two, alternating, `--rounds` measured rounds after a warm-up each (bench/common.py's
   fan_out_round: every process idle, then one message from a further member). Latency = each
   client's arrival of the /sync response holding the event minus the send's own response.
   Reported per (M, synchrotrons): p50/p95/max over the rounds, the best round's p95, CPU time
   (utime + stime from /proc) of the master, each synchrotron and HAProxy from the send to the
   last arrival (median round), and their RSS after the fan-out.

The clients are greenlets in this process: they, PostgreSQL, HAProxy and every homeserver process
share the machine's cores. The open-files limit is raised to its hard limit and inherited.
"""

from gevent import monkey

monkey.patch_all()

import argparse
import json
import os
import signal
import sys
import time

import gevent
import gevent.pool

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.common import (
    HAProxy,
    LongPoll,
    cpu_seconds,
    fan_out_round,
    gunicorn_worker_pid,
    raise_open_files_limit,
    wait_idle,
)
from bench.room_size import SERVER_NAME, Api, Postgres, create_users, join_room, pct, send_message
from tests.workers.cluster import WorkerProcess, master_with_replication, wait_caught_up

JOIN_CONCURRENCY = 16
STEADY_SENDERS = 4  # greenlets sharing the steady rate, so one slow send does not delay the next
IDLE_POLL_MS = 120_000  # outlasts a replication window: an idle client is never answered during it


def median(values):
    return sorted(values)[len(values) // 2]


def sync_position(api: Api, token: str) -> str:
    """A sync token for where the streams are now (a small filtered sync)."""
    flt = {"room": {"timeline": {"limit": 1}, "state": {"lazy_load_members": True}}}
    return api.call("GET", "/sync", token, params={"filter": json.dumps(flt)})[0]["next_batch"]


# --- 1. replication cost -----------------------------------------------------------------------

def steady_sends(api: Api, token: str, room_id: str, rate: float, seconds: float) -> list[float]:
    """Sends rate * seconds messages on a fixed schedule; their latencies."""
    n = int(rate * seconds)
    start = time.perf_counter() + 0.05
    latencies = []

    def sender(k: int) -> None:
        for i in range(k, n, STEADY_SENDERS):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                gevent.sleep(delay)
            latencies.append(send_message(api, token, room_id, f"steady {i}"))

    gevent.joinall([gevent.spawn(sender, k) for k in range(STEADY_SENDERS)], raise_error=True)
    return latencies


def replication_window(master, synchrotron: WorkerProcess, pids: dict[str, int], api: Api, token: str,
                       room_id: str, rate: float, seconds: float, on_busy=None) -> dict:
    """CPU seconds per process over a steady-send window (until the synchrotron applied the last
    send), and over an idle window of the same length before it; `on_busy()` runs between them."""
    idle_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    gevent.sleep(seconds)
    idle = {name: cpu_seconds(pid) - idle_before[name] for name, pid in pids.items()}
    if on_busy is not None:
        on_busy()
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    latencies = steady_sends(api, token, room_id, rate, seconds)
    wait_caught_up(master, synchrotron)
    wall = time.perf_counter() - started
    busy = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    return {"idle": idle, "busy": busy, "wall": wall, "sends": len(latencies),
            "send_p50": pct(latencies, 50), "send_p95": pct(latencies, 95)}


class IdleClients:
    """Clients parked on /sync, each in a room of its own (sharing one, their presence would
    wake each other), until release() answers each with a message of its own."""

    def __init__(self, port: int, tokens: list[str], api: Api):
        self.api = api
        self.tokens = tokens
        pool = gevent.pool.Pool(JOIN_CONCURRENCY)
        self.rooms = pool.map(lambda token: api.call("POST", "/createRoom", token,
                                                     json={"preset": "private_chat"})[0]["room_id"], tokens)
        since = sync_position(api, tokens[0])
        self.answered = []  # bodies of the responses they got
        self._stopping = False
        self._greenlets = [gevent.spawn(self._park, LongPoll("127.0.0.1", port, token), since) for token in tokens]

    def _park(self, client: LongPoll, since: str) -> None:
        client.since = since
        try:
            while not self._stopping:
                body, _ = client.sync(IDLE_POLL_MS)
                client.since = json.loads(body)["next_batch"]
                self.answered.append(body)
        finally:
            client.close()

    def release(self) -> None:
        """Ends every long-poll on the server too, so none stays parked for what runs next."""
        self._stopping = True
        pool = gevent.pool.Pool(JOIN_CONCURRENCY)
        pool.map(lambda pair: send_message(self.api, *pair, "bye"), zip(self.tokens, self.rooms, strict=True))
        gevent.joinall(self._greenlets, timeout=30)
        gevent.killall(self._greenlets)


def replication_cost(args, master, synchrotron, pids, api_master, proxy, sender_token, idle_tokens) -> list:
    rows = []
    room_id = api_master.call("POST", "/createRoom", sender_token, json={"preset": "public_chat"})[0]["room_id"]
    for _ in range(args.replication_runs):
        rows.append(("no clients", replication_window(master, synchrotron, pids, api_master, sender_token,
                                                      room_id, args.rate, args.seconds)))
        print_replication(*rows[-1], args)
    if not idle_tokens:
        return rows
    idle = IdleClients(proxy.port, idle_tokens, Api(proxy.base_url))
    try:
        wait_idle(*pids.values())
        parked = synchrotron.metric("hs_notifier_parked_requests")
        for _ in range(args.replication_runs):
            row = replication_window(master, synchrotron, pids, api_master, sender_token, room_id,
                                     args.rate, args.seconds, on_busy=idle.answered.clear)
            row["woken"] = len(idle.answered)
            rows.append((f"{int(parked)} parked elsewhere", row))
            print_replication(*rows[-1], args)
    finally:
        idle.release()
    return rows


def print_replication(label: str, r: dict, args) -> None:
    core = lambda cpu: cpu / r["wall"] * 100  # noqa: E731
    parts = [f"{name} {core(r['busy'][name]):.1f}% (idle {r['idle'][name] / args.seconds * 100:.1f}%)"
             for name in r["busy"]]
    woken = f", idle clients answered while sending: {r['woken']}" if "woken" in r else ""
    print(f"  replication, {label}: {r['sends']} sends in {r['wall']:.1f} s (send p50 {r['send_p50'] * 1000:.0f}"
          f" p95 {r['send_p95'] * 1000:.0f} ms){woken}; CPU as % of a core: " + ", ".join(parts), flush=True)


# --- 2. fan-out --------------------------------------------------------------------------------

def fan_out(args, sizes, api, proxies, pids, sender_token, tokens, room_id, synchrotrons) -> list:
    results = []
    joined = 0
    for m in sizes:
        started = time.perf_counter()
        pool = gevent.pool.Pool(JOIN_CONCURRENCY)
        join_times = pool.map(lambda token: join_room(api, token, room_id), tokens[joined:m])
        print(f"M={m}: {m - joined} joins in {time.perf_counter() - started:.1f} s"
              f" (p50 {pct(join_times, 50) * 1000:.0f} ms)", flush=True)
        joined = m
        since = sync_position(api, sender_token)
        for _ in range(args.repeats):
            for n, proxy in enumerate(proxies, 1):
                # The bench's own clients share the cores too: its CPU is shown beside the servers'.
                measured_pids = {"master": pids["master"], **{f"sync{i}": pids[f"sync{i}"] for i in range(1, n + 1)},
                                 "haproxy": proxy.proc.pid, "bench": os.getpid()}
                clients = [LongPoll("127.0.0.1", proxy.port, t) for t in tokens[:m]]
                for c in clients:
                    c.since = since
                split = []

                def count_parked(synchrotrons=synchrotrons[:n], split=split):
                    split[:] = [int(s.metric("hs_notifier_parked_requests")) for s in synchrotrons]
                try:
                    rounds = [fan_out_round(api, list(measured_pids.values()), clients, sender_token, room_id,
                                            on_parked=count_parked) for _ in range(args.rounds + 1)]
                    since = clients[0].since
                finally:
                    for c in clients:
                        c.close()
                results.append(summarise(m, n, rounds[1:], measured_pids, split))
                print_fan_out(results[-1], flush=True)
    return results


def summarise(m: int, n: int, measured: list[dict], pids: dict[str, int], split: list[int]) -> dict:
    latencies = [lat for r in measured for lat in r["latencies"]]
    return {"m": m, "n": n, "p50": pct(latencies, 50), "p95": pct(latencies, 95), "max": max(latencies),
            "best_p95": min(pct(r["latencies"], 95) for r in measured),
            "fan_wall": median([r["fan_wall"] for r in measured]),
            "cpu": {name: median([r["fan_cpu"][pid] for r in measured]) for name, pid in pids.items()},
            "park_cpu": {name: median([r["park_cpu"][pid] for r in measured]) for name, pid in pids.items()},
            "rss": {name: max(r["rss"][pid] for r in measured) for name, pid in pids.items()},
            "repolls": sum(r["repolls"] for r in measured), "split": split}


def print_fan_out(r: dict, **kw) -> None:
    cpu = ", ".join(f"{name} {r['cpu'][name] * 1000:.0f}" for name in r["cpu"])
    park = ", ".join(f"{name} {r['park_cpu'][name] * 1000:.0f}" for name in r["park_cpu"])
    rss = ", ".join(f"{name} {r['rss'][name]:.0f}" for name in r["rss"])
    print(f"  M={r['m']} over {r['n']} synchrotron(s) (parked per synchrotron: {r['split']}):"
          f" p50 {r['p50'] * 1000:.0f} ms, p95 {r['p95'] * 1000:.0f} ms (best round {r['best_p95'] * 1000:.0f}),"
          f" max {r['max'] * 1000:.0f} ms, last arrival {r['fan_wall'] * 1000:.0f} ms; repolls {r['repolls']}\n"
          f"    CPU ms to deliver: {cpu}\n    CPU ms to park: {park}\n    RSS MB: {rss}", **kw)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", default="500,2000", help="comma-separated room sizes M, in increasing order")
    parser.add_argument("--rounds", type=int, default=3, help="measured fan-out rounds per configuration")
    parser.add_argument("--repeats", type=int, default=2, help="times each M alternates 1 and 2 synchrotrons")
    parser.add_argument("--rate", type=float, default=50.0, help="steady sends per second (replication cost)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of a replication window")
    parser.add_argument("--replication-runs", type=int, default=2, help="windows per replication line")
    parser.add_argument("--idle-clients", type=int, default=200, help="clients parked elsewhere, second line")
    parser.add_argument("--skip", choices=("replication", "fan-out"), help="leave one part out")
    parser.add_argument("--cp-max", type=int, default=5, help="each process's database pool size")
    parser.add_argument("--no-presence", action="store_true",
                        help="presence off (its updates wake every member of a shared room: see repolls)")
    args = parser.parse_args()
    sizes = sorted(int(m) for m in args.members.split(",")) if args.skip != "fan-out" else [0]
    raise_open_files_limit()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    postgres = Postgres()
    master = None
    started: list = []
    try:
        dsn = postgres.new_database()
        master = master_with_replication(dsn, server_name=SERVER_NAME,
                                         database={"name": "psycopg2", "args": {"dsn": dsn, "cp_max": args.cp_max}},
                                         presence={"enabled": not args.no_presence})
        master.start()
        synchrotrons = [WorkerProcess(master, "synchrotron", f"synchrotron{i}") for i in (1, 2)]
        for s in synchrotrons:
            started.append(s)
            s.start()
        proxies = [HAProxy(master, synchrotrons[:n], f"haproxy{n}") for n in (1, 2)]
        for p in proxies:
            started.append(p)
            p.start()
        pids = {"master": gunicorn_worker_pid(master.proc.pid),
                **{f"sync{i}": gunicorn_worker_pid(s.proc.pid) for i, s in enumerate(synchrotrons, 1)}}
        print(f"pids: {pids}, haproxy {[p.proc.pid for p in proxies]}; logs in {master.dir}", flush=True)

        users = create_users(dsn, ["sender"] + [f"c{i:05d}" for i in range(sizes[-1])]
                             + [f"idle{i:04d}" for i in range(args.idle_clients)])
        sender_token = users.pop(f"@sender:{SERVER_NAME}")
        tokens = [t for u, t in users.items() if u.startswith("@c")]
        idle_tokens = [t for u, t in users.items() if u.startswith("@idle")]

        if args.skip != "replication":
            print(f"Replication cost: {args.rate:g} sends/s for {args.seconds:g} s into a room on the master;"
                  " /sync through the one-synchrotron HAProxy", flush=True)
            replication_cost(args, master, synchrotrons[0], {"sync1": pids["sync1"], "master": pids["master"]},
                             Api(master.base_url), proxies[0], sender_token, idle_tokens)
        if args.skip != "fan-out":
            api = Api(proxies[0].base_url)
            room_id = api.call("POST", "/createRoom", sender_token, json={"preset": "public_chat"})[0]["room_id"]
            results = fan_out(args, sizes, api, proxies, pids, sender_token, tokens, room_id, synchrotrons)
            report(results, postgres.note + ("; presence off" if args.no_presence else ""))
        return 0
    finally:
        for process in reversed(started):
            process.stop()
        if master is not None:
            master.stop()
        postgres.stop()


def report(results: list[dict], pg_note: str) -> None:
    print()
    print(f"Fan-out through HAProxy; {pg_note}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'M':>6}{'sync':>5}{'p50 ms':>8}{'p95 ms':>8}{'best p95':>9}{'max ms':>8}"
          f"{'master':>8}{'sync1':>7}{'sync2':>7}{'haproxy':>8}{'bench':>7}   RSS MB master/sync1/sync2")
    for r in results:
        cpu = [r["cpu"].get(name) for name in ("master", "sync1", "sync2", "haproxy", "bench")]
        cells = "".join(f"{'-' if c is None else round(c * 1000):>{w}}" for c, w in zip(cpu, (8, 7, 7, 8, 7),
                                                                                         strict=True))
        rss = "/".join(f"{r['rss'][name]:.0f}" for name in ("master", "sync1", "sync2") if name in r["rss"])
        print(f"{r['m']:>6}{r['n']:>5}{r['p50'] * 1000:>8.0f}{r['p95'] * 1000:>8.0f}{r['best_p95'] * 1000:>9.0f}"
              f"{r['max'] * 1000:>8.0f}{cells}   {rss}")
    print("(CPU ms: user+system time from the send to the last arrival, median round)")


if __name__ == "__main__":
    sys.exit(main())
