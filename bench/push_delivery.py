#!/usr/bin/env python
"""Push delivery: notifications per second to a local push gateway with 1,000 pushers in one busy
room, and the delay from a send to the gateway.

    python bench/push_delivery.py [--pushers 1000] [--messages 20] [--interval 0.5] [--worker]

Starts its own homeserver (tests/harness.py: gunicorn, one gevent worker; ip_range_whitelist
allows loopback) on a fresh database ($TEST_PG_DSN's server or an embedded PostgreSQL, as
bench/room_size.py does). --pushers users join one public room and each sets an HTTP pusher to a
gateway in this process (a threaded HTTP/1.1 server answering {"rejected": []} at once, recording
when each event ID arrived). One more user sends --messages messages, one every --interval s.
Reported: for each message the delay from the send's answer to its first, median and last
notification at the gateway (p50/p95 over messages), and the notifications per second over the
whole run (all of them, divided by first send to last arrival). --worker: the master runs with
start_pushers: false and a pusher worker (tests/workers/cluster.py) delivers. Keep --interval under 2 s:
gunicorn closes a keep-alive connection idle for 2 s, and the sender's next PUT may race that.
"""

import argparse
import json
import os
import signal
import statistics
import sys
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
)
from tests.harness import HomeserverProcess
from tests.workers.cluster import WorkerProcess, master_with_replication


class Gateway:
    def __init__(self):
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                now = time.perf_counter()
                event_id = body["notification"].get("event_id")
                if event_id:
                    with gateway.lock:
                        gateway.arrivals[event_id].append(now)
                answer = b'{"rejected":[]}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/_matrix/push/v1/notify"

    def count(self, event_id: str) -> int:
        with self.lock:
            return len(self.arrivals.get(event_id, ()))

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between sends")
    parser.add_argument("--worker", action="store_true", help="deliver from a pusher worker")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    postgres = Postgres()
    server = worker = gateway = None
    try:
        dsn = postgres.new_database()
        config = {"server_name": SERVER_NAME, "ip_range_whitelist": ["127.0.0.1/32"],
                  "rc_message": {"per_second": 1000, "burst_count": 1000}}
        server = master_with_replication(dsn, start_pushers=False, **config) if args.worker \
            else HomeserverProcess(dsn, **config)
        server.start()
        print(f"homeserver pid {server.proc.pid} on {server.base_url}; log {server.log_path}", flush=True)
        if args.worker:
            worker = WorkerProcess(server, "pusher", "pusher1").start()
            print(f"pusher worker pid {worker.proc.pid}; log {worker.log_path}", flush=True)
        gateway = Gateway()
        api = Api(server.base_url)
        users = create_users(dsn, ["sender"] + [f"reader{i:04d}" for i in range(args.pushers)])
        sender = users.pop(f"@sender:{SERVER_NAME}")
        readers = list(users.values())
        room_id = api.call("POST", "/createRoom", sender, json={"preset": "public_chat"})[0]["room_id"]
        started = time.perf_counter()
        run_concurrently(readers, lambda token: join_room(api, token, room_id))
        run_concurrently(readers, lambda token: api.call("POST", "/pushers/set", token, json={
            "kind": "http", "app_id": "bench.app", "pushkey": token[-24:], "app_display_name": "bench",
            "device_display_name": "bench", "lang": "en", "data": {"url": gateway.url}})[1])
        print(f"{args.pushers} readers joined and set pushers in {time.perf_counter() - started:.1f} s", flush=True)
        time.sleep(2)  # the pool starts each new pusher

        sends = []
        for i in range(args.messages):
            before = time.perf_counter()
            body, _ = api.call("PUT", f"/rooms/{room_id}/send/m.room.message/bench{i}", sender,
                               json={"msgtype": "m.text", "body": f"message {i}"})
            sends.append((body["event_id"], before, time.perf_counter()))
            time.sleep(args.interval)
        deadline = time.monotonic() + 300
        while any(gateway.count(e) < args.pushers for e, _, _ in sends) and time.monotonic() < deadline:
            time.sleep(0.2)
        missing = sum(max(0, args.pushers - gateway.count(e)) for e, _, _ in sends)

        first, median, last = [], [], []
        for event_id, _, answered in sends:
            arrivals = sorted(gateway.arrivals[event_id])
            first.append(arrivals[0] - answered)
            median.append(statistics.median(arrivals) - answered)
            last.append(arrivals[-1] - answered)
        total = sum(gateway.count(e) for e, _, _ in sends)
        span = max(a for e, _, _ in sends for a in gateway.arrivals[e]) - sends[0][1]
        print()
        where = " via the pusher worker" if args.worker else ""
        print(f"Push delivery{where}: {args.pushers} pushers in one room, {args.messages} messages every"
              f" {args.interval} s; {postgres.note}; load average {os.getloadavg()[0]:.1f}")
        print(f"notifications: {total} delivered, {missing} missing; {total / span:.0f}/s over the run")
        print(f"{'send -> gateway':<22}{'p50 ms':>9}{'p95 ms':>9}")
        for name, values in (("first notification", first), ("median notification", median),
                             ("last notification", last)):
            print(f"{name:<22}{pct(values, 50) * 1000:>9.0f}{pct(values, 95) * 1000:>9.0f}")
        return 0 if missing == 0 else 1
    finally:
        if gateway is not None:
            gateway.stop()
        if worker is not None:
            worker.stop()
        if server is not None:
            server.stop()
        postgres.stop()


if __name__ == "__main__":
    sys.exit(main())
