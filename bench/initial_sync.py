#!/usr/bin/env python
"""How long does an initial /sync take for a user in 50 rooms, with and without lazy loading?

    python bench/initial_sync.py [--rooms 50] [--events 20] [--members 10] [--runs 30]

Starts its own homeserver (tests/harness.py: gunicorn, one gevent worker) on a fresh database,
in $TEST_PG_DSN's server or an embedded PostgreSQL (as bench/room_size.py does). The user
creates `--rooms` rooms; `--members` - 1 others join each, and `--events` messages are sent in
each, by three of its members in turn. Then it times GET /sync with no `since` (the default filter:
timeline limit 10, full state), `--runs` times plain and `--runs` times with
{"room":{"state":{"lazy_load_members":true}}}, alternating, after one warm-up of each (the
first read loads events and state groups into the caches; later ones are what a client
reconnecting or a second device sees). Reported: p50/p95/min per kind, and the response size.
"""

import argparse
import json
import os
import signal
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.room_size import (
    SERVER_NAME,
    Api,
    Postgres,
    create_users,
    join_room,
    pct,
    run_concurrently,
    send_message,
)
from tests.harness import HomeserverProcess

TALKERS = 3
LAZY = json.dumps({"room": {"state": {"lazy_load_members": True}}})


def build(api: Api, me: str, others: list[str], n_rooms: int, n_events: int) -> list[str]:
    rooms = [api.call("POST", "/createRoom", me, json={"preset": "public_chat", "name": f"room {i}"})[0]["room_id"]
             for i in range(n_rooms)]
    run_concurrently([(t, r) for r in rooms for t in others], lambda job: join_room(api, job[0], job[1]))
    # A few talk, the rest only read, as in most rooms: lazy loading then leaves the readers out.
    senders = [me, *others][:TALKERS]
    run_concurrently([(r, i) for r in rooms for i in range(n_events)],
                     lambda job: send_message(api, senders[job[1] % len(senders)], job[0], f"message {job[1]}"))
    return rooms


def initial_sync(api: Api, token: str, lazy: bool) -> tuple[float, int, dict]:
    params = {"filter": LAZY} if lazy else None
    started = time.perf_counter()
    resp = api._session().get(api.base_url + "/sync", params=params, timeout=120,
                              headers={"Authorization": f"Bearer {token}"})
    elapsed = time.perf_counter() - started
    if resp.status_code != 200:
        raise RuntimeError(f"/sync: {resp.status_code} {resp.text[:300]}")
    return elapsed, len(resp.content), resp.json()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--events", type=int, default=20, help="messages per room")
    parser.add_argument("--members", type=int, default=10, help="members per room, the user included")
    parser.add_argument("--runs", type=int, default=30, help="timed initial syncs of each kind")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    postgres = Postgres()
    server = None
    try:
        dsn = postgres.new_database()
        server = HomeserverProcess(dsn, server_name=SERVER_NAME)
        server.start()
        print(f"homeserver pid {server.proc.pid} on {server.base_url}; log {server.log_path}", flush=True)
        api = Api(server.base_url)
        users = create_users(dsn, ["me"] + [f"other{i:03d}" for i in range(args.members - 1)])
        me = users.pop(f"@me:{SERVER_NAME}")
        started = time.perf_counter()
        rooms = build(api, me, list(users.values()), args.rooms, args.events)
        print(f"{len(rooms)} rooms x ({args.members} members, {args.events} messages) in"
              f" {time.perf_counter() - started:.1f} s", flush=True)

        times = {False: [], True: []}
        sizes = {}
        for lazy in (False, True):
            first, sizes[lazy], body = initial_sync(api, me, lazy)  # warm-up
            joined = body["rooms"]["join"]
            assert len(joined) == args.rooms, len(joined)
            members = sum(1 for r in joined.values() for e in r["state"]["events"] if e["type"] == "m.room.member")
            print(f"  {'lazy' if lazy else 'plain'}: {members} member events in state, {sizes[lazy]} bytes;"
                  f" first (cold) sync {first * 1000:.0f} ms", flush=True)
        for _ in range(args.runs):
            for lazy in (False, True):
                times[lazy].append(initial_sync(api, me, lazy)[0])
        print()
        print(f"Initial /sync: {args.rooms} rooms x ({args.members} members, {args.events} messages);"
              f" {args.runs} runs each; {postgres.note}; load average {os.getloadavg()[0]:.1f}")
        print(f"{'':<22}{'p50 ms':>9}{'p95 ms':>9}{'min ms':>9}{'mean ms':>9}{'bytes':>9}")
        for lazy in (False, True):
            t = times[lazy]
            print(f"{'lazy_load_members' if lazy else 'default filter':<22}{pct(t, 50) * 1000:>9.1f}"
                  f"{pct(t, 95) * 1000:>9.1f}{min(t) * 1000:>9.1f}{statistics.fmean(t) * 1000:>9.1f}"
                  f"{sizes[lazy]:>9}")
        print(f"lazy/default p50: {pct(times[True], 50) / pct(times[False], 50):.2f}")
        return 0
    finally:
        if server is not None:
            server.stop()
        postgres.stop()


if __name__ == "__main__":
    sys.exit(main())
