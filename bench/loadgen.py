#!/usr/bin/env python
"""The client workload of `bench/compare`, run in a process of its own against one homeserver.

    python bench/loadgen.py --url URL --users USERS.json --pids PID,... --profile quick|full --out OUT.json

Everything goes over the client-server API at URL, so the same run measures any homeserver.
USERS.json maps localparts to {"user_id", "token"} (made by the caller: registration is not
compared). PIDs are the server's processes, whose CPU time each phase reports and whose going
idle marks every /sync client as parked.

Phases, in order (each checks what it receives and raises, failing the run, on a lost, doubled or
reordered event):
1. sends: 8 senders, each sending its messages one after another, into one room, then each into
   a room of its own; events/s over the phase and each send's latency. A watcher syncing in
   every one of those rooms must receive every event exactly once, each sender's in order.
2. messages: /messages pages (dir=b, limit 50) from the end of the one room back to its start,
   `runs` times; each pass must hold every sent event once, newest first.
3. initial sync: a user in 50 rooms x 20 events (5 members each, 3 of them talking), GET /sync
   with no since, plain and with lazy-loaded members, alternating, after one warm-up of each;
   each with a filter no earlier request used (see initial_sync_filter).
4. fan-out: for each M, M clients parked on GET /sync?timeout=30000 in one room (raw keep-alive
   sockets, bench/common.py); one message from another member; each client's latency from the
   send's response to its own response holding the event, which must hold it once and which no
   earlier response may have held.
"""

from gevent import monkey

monkey.patch_all()

import argparse
import json
import os
import secrets
import sys
import time

import gevent
import gevent.event
import gevent.pool
import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.common import SYNC_TIMEOUT_MS, LongPoll, cpu_seconds, raise_open_files_limit, wait_idle
from bench.compare_workload import ISYNC_MEMBERS, PAGE_LIMIT, PROFILES, SENDERS
from bench.room_size import Api, q

JOIN_CONCURRENCY = 16
ISYNC_TALKERS = 3
# The watcher's timeline limit is above anything a phase sends between two of its syncs, so a
# `limited` timeline means the server dropped events from it.
WATCH_FILTER = json.dumps({"room": {"timeline": {"limit": 5000}, "state": {"lazy_load_members": True}},
                           "presence": {"not_types": ["*"]}})
POSITION_FILTER = json.dumps({"room": {"rooms": []}, "presence": {"not_types": ["*"]}})


class WorkloadError(Exception):
    """What the server answered is not what a correct homeserver answers."""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary_ms(values: list[float]) -> dict:
    return {"n": len(values), "p50": pct(values, 50) * 1000, "p95": pct(values, 95) * 1000,
            "max": max(values) * 1000}


class RetryingApi(Api):
    """A keep-alive connection the server closed just as a request went out fails without an
    answer; a GET, or a PUT with its transaction ID, is sent again (they are idempotent)."""

    def call(self, method: str, path: str, token: str, **kw):
        try:
            return super().call(method, path, token, **kw)
        except requests.ConnectionError:
            if method not in ("GET", "PUT"):
                raise
            return super().call(method, path, token, **kw)


class Workload:
    def __init__(self, url: str, users: dict, pids: list[int], profile: dict):
        self.api = RetryingApi(url)
        self.host, self.port = url.split("//", 1)[1].rsplit(":", 1)
        self.port = int(self.port)
        self.users = users
        self.pids = pids
        self.profile = profile

    def token(self, localpart: str) -> str:
        return self.users[localpart]["token"]

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def create_room(self, creator: str, **extra) -> str:
        return self.api.call("POST", "/createRoom", self.token(creator), json={"preset": "public_chat", **extra}
                             )[0]["room_id"]

    def join_all(self, localparts: list[str], room_id: str) -> None:
        pool = gevent.pool.Pool(JOIN_CONCURRENCY)
        pool.map(lambda lp: self.api.call("POST", f"/join/{q(room_id)}", self.token(lp), json={}), localparts)

    def send(self, localpart: str, room_id: str, body: str) -> tuple[str, float]:
        out, elapsed = self.api.call("PUT", f"/rooms/{q(room_id)}/send/m.room.message/{secrets.token_hex(8)}",
                                     self.token(localpart), json={"msgtype": "m.text", "body": body})
        return out["event_id"], elapsed

    def position(self, localpart: str) -> str:
        return self.api.call("GET", "/sync", self.token(localpart), params={"filter": POSITION_FILTER})[0]["next_batch"]

    # --- 1. sends, watched ------------------------------------------------------------------

    def sends(self) -> dict:
        senders = [f"s{i}" for i in range(SENDERS)]
        one_room = self.create_room("creator", name="one room")
        own_rooms = [self.create_room("creator", name=f"room of {s}") for s in senders]
        for room_id in [one_room, *own_rooms]:
            self.join_all(senders + ["watcher"], room_id)
        results = {}
        for label, rooms, per_sender in (("one_room", [one_room] * SENDERS, self.profile["sends_one_room"]),
                                         ("own_rooms", own_rooms, self.profile["sends_own_room"])):
            watcher = Watcher(self.api, self.token("watcher"), set(rooms), self.position("watcher"))
            watching = gevent.spawn(watcher.run)
            sent: dict[str, list[str]] = {s: [] for s in senders}
            latencies: list[float] = []
            cpu_before, started = self.cpu(), time.perf_counter()
            gevent.joinall([gevent.spawn(self._send_in_turn, s, room_id, per_sender, sent[s], latencies)
                            for s, room_id in zip(senders, rooms, strict=True)], raise_error=True)
            wall, cpu = time.perf_counter() - started, self.cpu() - cpu_before
            watcher.expect(sent)
            watching.join(timeout=60)
            if not watching.successful():
                watching.kill()
                raise WorkloadError(f"sends ({label}): {watching.exception or 'the watcher timed out'}")
            total = SENDERS * per_sender
            results[label] = {"events": total, "events_per_s": total / wall, "latency": summary_ms(latencies),
                              "server_cpu_s": cpu, "delivered_s": watcher.done_at - started}
            log(f"sends into {label}: {total / wall:.0f} events/s, p50 {pct(latencies, 50) * 1000:.0f} ms,"
                f" server CPU {cpu:.1f} s; all {total} delivered once, in order")
            if label == "one_room":
                self.one_room, self.one_room_sent = one_room, sent
        return results

    def _send_in_turn(self, sender: str, room_id: str, n: int, sent: list[str], latencies: list[float]) -> None:
        for i in range(n):
            event_id, elapsed = self.send(sender, room_id, f"{sender} {i}")
            sent.append(event_id)
            latencies.append(elapsed)

    # --- 2. /messages -------------------------------------------------------------------------

    def messages(self, sent: dict[str, list[str]]) -> dict:
        """Pages back through the one room, which must give every one of `sent` (sender -> event
        IDs in the order sent) once, each sender's newest first. (Concurrent senders' events
        can come in another order than /sync's: /messages follows the room's graph.)"""
        expected = {e: sender for sender, ids in sent.items() for e in ids}
        latencies = []
        token = self.token("watcher")
        for _ in range(self.profile["page_runs"]):
            seen = []
            params = {"dir": "b", "limit": PAGE_LIMIT}  # no `from`: from the end of the room
            while True:
                page, elapsed = self.api.call("GET", f"/rooms/{q(self.one_room)}/messages", token, params=params)
                latencies.append(elapsed)
                seen += [e["event_id"] for e in page["chunk"] if e["type"] == "m.room.message"]
                if not page["chunk"] or "end" not in page:
                    break
                params["from"] = page["end"]
            if len(seen) != len(set(seen)) or set(seen) != set(expected):
                raise WorkloadError(f"/messages paged back {len(seen)} messages ({len(set(seen))} different);"
                                    f" {len(expected)} were sent, {len(set(expected) - set(seen))} of them missing")
            for sender, ids in sent.items():
                if [e for e in seen if expected[e] == sender] != ids[::-1]:
                    raise WorkloadError(f"/messages gave {sender}'s messages out of the order sent")
        log(f"/messages: {len(latencies)} pages, p50 {pct(latencies, 50) * 1000:.1f} ms")
        return {"pages": summary_ms(latencies)}

    # --- 3. initial sync ----------------------------------------------------------------------

    def initial_sync(self) -> dict:
        me, others = "isync", [f"t{i}" for i in range(ISYNC_MEMBERS - 1)]
        pool = gevent.pool.Pool(SENDERS)
        rooms = pool.map(lambda i: self.create_room(me, name=f"isync {i}"), range(self.profile["isync_rooms"]))
        pool.map(lambda job: self.api.call("POST", f"/join/{q(job[1])}", self.token(job[0]), json={}),
                 [(o, r) for r in rooms for o in others])
        talkers = [me, *others][:ISYNC_TALKERS]
        pool.map(lambda job: self.send(talkers[job[1] % ISYNC_TALKERS], job[0], f"message {job[1]}"),
                 [(r, i) for r in rooms for i in range(self.profile["isync_events"])])
        times = {"plain": [], "lazy": []}
        cpu_before = self.cpu()
        for run in range(self.profile["isync_runs"] + 1):
            for kind in times:
                params = {"filter": initial_sync_filter(kind == "lazy", run)}
                body, elapsed = self.api.call("GET", "/sync", self.token(me), params=params)
                joined = body.get("rooms", {}).get("join", {})
                if set(joined) != set(rooms) or any(
                        sum(e["type"] == "m.room.message" for e in joined[r]["timeline"]["events"]) == 0
                        for r in rooms):
                    raise WorkloadError(f"initial sync ({kind}): {len(joined)} joined rooms of {len(rooms)},"
                                        " or a room without its messages")
                if run:  # the first of each warms the caches
                    times[kind].append(elapsed)
        cpu = self.cpu() - cpu_before
        log(f"initial sync: p50 {pct(times['plain'], 50) * 1000:.0f} ms, lazy {pct(times['lazy'], 50) * 1000:.0f} ms")
        return {kind: summary_ms(values) for kind, values in times.items()} | {"server_cpu_s": cpu}

    # --- 4. fan-out -----------------------------------------------------------------------------

    def fan_out(self, results: list[dict]) -> list[dict]:
        """Appends each M's results to `results` as it is measured."""
        room_id = self.create_room("fanout", name="fan-out")
        clients_lp = [f"c{i:05d}" for i in range(max(self.profile["fanout"]))]
        clients: list[FanOutClient] = []
        for m in self.profile["fanout"]:
            started = time.perf_counter()
            new = clients_lp[len(clients):m]
            self.join_all(new, room_id)
            # Each new client starts from a position of its own (Synapse answers an identical
            # /sync from a cache for two minutes, so a shared one could be stale); the others
            # carry on from where they are.
            positions = gevent.pool.Pool(JOIN_CONCURRENCY).map(self.position, new)
            for lp, since in zip(new, positions, strict=True):
                clients.append(FanOutClient(LongPoll(self.host, self.port, self.token(lp))))
                clients[-1].poll.since = since
            log(f"fan-out M={m}: joined in {time.perf_counter() - started:.1f} s")
            rounds = [self.fan_out_round(clients, room_id) for _ in range(self.profile["fanout_rounds"] + 1)][1:]
            latencies = [x for r in rounds for x in r["latencies"]]
            results.append({"m": m, **summary_ms(latencies),
                            "best_round_p95": min(pct(r["latencies"], 95) for r in rounds) * 1000,
                            "server_cpu_s": sorted(r["cpu"] for r in rounds)[len(rounds) // 2],
                            "repolls": sum(r["repolls"] for r in rounds)})
            log(f"  p50 {results[-1]['p50']:.0f} ms, p95 {results[-1]['p95']:.0f} ms, max {results[-1]['max']:.0f} ms")
        for c in clients:
            c.poll.close()
        return results

    def fan_out_round(self, clients: list["FanOutClient"], room_id: str) -> dict:
        sent = {}
        repolls = [0]

        failed = gevent.event.AsyncResult()

        def client_loop(client: FanOutClient) -> None:
            try:
                while True:
                    body, arrived = client.poll.sync(SYNC_TIMEOUT_MS)
                    event_id = sent.get("event_id")
                    if event_id is not None and event_id.encode() in body:
                        # Checked once every client has its answer: parsing here would delay
                        # reading the next client's, and be counted as the server's latency.
                        client.arrived, client.body = arrived, body
                        return
                    client.saw(body, event_id, room_id)
                    repolls[0] += 1
            except Exception as e:  # the first one ends the round (and the run), not one per client
                failed.set_exception(e)

        greenlets = [gevent.spawn(client_loop, c) for c in clients]
        waiter = gevent.spawn(gevent.joinall, greenlets)
        try:
            wait_idle(*self.pids)
            cpu_before = self.cpu()
            event_id, _ = self.send("fanout", room_id, "fan-out")
            send_done = time.perf_counter()
            sent["event_id"] = event_id
            gevent.wait([waiter, failed], timeout=120, count=1)
            if failed.ready():
                failed.get()
        finally:
            gevent.killall(greenlets)
        unanswered = [c for c in clients if c.arrived is None]
        if unanswered:
            raise WorkloadError(f"fan-out at M = {len(clients)}: {len(unanswered)} clients had not received"
                                f" the message 120 s after it was sent")
        wrong = [c for c in clients if not c.saw(c.body, event_id, room_id)]
        if wrong:
            raise WorkloadError(f"fan-out at M = {len(clients)}: {len(wrong)} clients got {event_id} outside"
                                " the room's timeline")
        latencies = [c.arrived - send_done for c in clients]
        for c in clients:
            c.arrived = None
        return {"latencies": latencies, "cpu": self.cpu() - cpu_before, "repolls": repolls[0]}


def initial_sync_filter(lazy: bool, run: int) -> str:
    """The default filter, or lazy-loaded members, and a type of account data no one has, new on
    every run: Synapse answers a repeated /sync from a cache for two minutes, and what is measured
    is a sync that no cache answered, as a new device's is."""
    room = {"state": {"lazy_load_members": True}} if lazy else {}
    return json.dumps({"room": room, "account_data": {"not_types": [f"bench.run.{run}"]}})


class FanOutClient:
    def __init__(self, poll: LongPoll):
        self.poll = poll
        self.seen: set[str] = set()
        self.arrived = None
        self.body = None

    def saw(self, body: bytes, event_id: str | None, room_id: str) -> bool:
        """Records this response's events in the room; whether it holds `event_id` (exactly once)."""
        data = json.loads(body)
        since, self.poll.since = self.poll.since, data["next_batch"]
        room = data.get("rooms", {}).get("join", {}).get(room_id)
        events = room["timeline"]["events"] if room else []
        ids = [e["event_id"] for e in events]
        doubled = [(e["type"], e.get("state_key"), e["event_id"]) for e in events
                   if e["event_id"] in self.seen or ids.count(e["event_id"]) > 1]
        if doubled:
            raise WorkloadError(f"fan-out: /sync since {since} delivered {doubled[:3]} again"
                                f" (limited: {room['timeline'].get('limited')}, next_batch {data['next_batch']})")
        self.seen.update(ids)
        return event_id is not None and event_id in ids


class Watcher:
    """Syncs one user in `rooms` until every expected event has arrived; checks each arrived once,
    and each sender's in the order they were sent."""

    def __init__(self, api: Api, token: str, rooms: set[str], since: str):
        self.api, self.token, self.rooms, self.since = api, token, rooms, since
        self.received: list[tuple[str, str]] = []  # (sender's body prefix, event ID), in arrival order
        self.expected = None
        self.done_at = None

    def expect(self, sent: dict[str, list[str]]) -> None:
        self.expected = sent

    def run(self) -> None:
        seen = set()
        while True:
            body = self.api.call("GET", "/sync", self.token,
                                 params={"since": self.since, "timeout": 5000, "filter": WATCH_FILTER})[0]
            self.since = body["next_batch"]
            for room_id, room in body.get("rooms", {}).get("join", {}).items():
                if room_id not in self.rooms:
                    continue
                if room["timeline"].get("limited"):
                    raise WorkloadError(f"the watcher's timeline in {room_id} was limited: events were left out")
                for event in room["timeline"]["events"]:
                    if event["type"] != "m.room.message":
                        continue
                    if event["event_id"] in seen:
                        raise WorkloadError(f"{event['event_id']} delivered twice")
                    seen.add(event["event_id"])
                    self.received.append((event["content"]["body"].split(" ")[0], event["event_id"]))
            if self.expected is not None and seen >= {e for ids in self.expected.values() for e in ids}:
                self.done_at = time.perf_counter()
                break
        for sender, ids in self.expected.items():
            order = [event_id for who, event_id in self.received if who == sender]
            if order != ids:
                raise WorkloadError(f"{sender}'s events arrived as {len(order)}, out of the order sent")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--users", required=True, help="a JSON file: localpart -> {user_id, token}")
    parser.add_argument("--pids", required=True, help="the server's process IDs, comma-separated")
    parser.add_argument("--profile", choices=PROFILES, default="quick")
    parser.add_argument("--fanout", help="comma-separated M to measure instead of the profile's")
    parser.add_argument("--phases", default="sends,messages,initial_sync,fan_out")
    parser.add_argument("--out", required=True, help="where the results go, as JSON")
    args = parser.parse_args()
    raise_open_files_limit()
    profile = dict(PROFILES[args.profile])
    if args.fanout:
        profile["fanout"] = sorted(int(m) for m in args.fanout.split(","))
    with open(args.users) as f:
        users = json.load(f)
    work = Workload(args.url, users, [int(p) for p in args.pids.split(",")], profile)
    phases = args.phases.split(",")
    if "messages" in phases and "sends" not in phases:
        parser.error("the messages phase pages through the room the sends phase fills")
    results = {}
    try:
        if "sends" in phases:
            results["sends"] = work.sends()
        if "messages" in phases:
            results["messages"] = work.messages(work.one_room_sent)
        if "initial_sync" in phases:
            results["initial_sync"] = work.initial_sync()
        if "fan_out" in phases:
            results["fan_out"] = work.fan_out(results.setdefault("fan_out", []))
    except WorkloadError as e:
        # What the server got wrong is a result too: the phases measured so far are kept with it.
        results["error"] = str(e)
        log(f"FAILED: {e}")
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    return 1 if "error" in results else 0


if __name__ == "__main__":
    sys.exit(main())
