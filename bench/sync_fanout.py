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
import signal
import sys
import time

import gevent
import gevent.pool

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.common import LongPoll, fan_out_round, gunicorn_worker_pid, raise_open_files_limit
from bench.room_size import SERVER_NAME, Api, Postgres, create_users, join_room, pct
from tests.harness import HomeserverProcess

JOIN_CONCURRENCY = 16


def median(values):
    return sorted(values)[len(values) // 2]


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
    server = None
    try:
        dsn = postgres.new_database()
        server = HomeserverProcess(dsn, server_name=SERVER_NAME,
                                   database={"name": "psycopg2", "args": {"dsn": dsn, "cp_max": args.cp_max}})
        server.start()
        pid = gunicorn_worker_pid(server.proc.pid)
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
            rounds = [fan_out_round(api, [pid], clients, sender_token, room_id) for _ in range(args.rounds + 1)]
            measured = rounds[1:]
            latencies = [lat for r in measured for lat in r["latencies"]]
            result = {
                "m": m, "p50": pct(latencies, 50), "p95": pct(latencies, 95), "max": max(latencies),
                "best_p95": min(pct(r["latencies"], 95) for r in measured),
                "fan_cpu": median([r["fan_cpu"][pid] for r in measured]),
                "fan_wall": median([r["fan_wall"] for r in measured]),
                "park_cpu": median([r["park_cpu"][pid] for r in measured]),
                "repolls": sum(r["repolls"] for r in measured), "rss": measured[-1]["rss"][pid],
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
