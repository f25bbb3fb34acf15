#!/usr/bin/env python
"""Joining a big room over federation, both ways with a real Synapse, and inbound PDUs per second.

    python bench/federation_join.py [--members 2000] [--events 20000]

Issue 11's benchmark. Starts, all on loopback over TLS with a throw-away CA (tests/federation_fixture.py):
our homeserver A, a real Synapse (installed into .synapse-venv by the test fixture on first use) and
a second homeserver of ours, B. Then:

1. A room on A with `--members` members (users written straight to A's database, joined over the
   client API) and `--events` messages, sent as bench/room_size.py fills its big room.
2. Synapse's join of that room hosted here: a Synapse user's POST /join, timed. Synapse joins with
   partial state (MSC3706) and fetches the rest in the background; the time until its state is
   complete is reported too (polled through its client API: the member list is whole).
3. Our join of the room hosted on Synapse: a user of B joins through Synapse only (`via` Synapse),
   so Synapse answers make_join/send_join with the room's full state and auth chain; timed. While it
   runs, another user of B sends messages into a room of its own every 50 ms: their worst latency
   shows whether the join stalls the server for everyone else.
4. Inbound PDUs per second: `--burst` messages sent on A at once (8 senders), until the last is in
   B's timeline (A's sending included); and B alone: a peer played by the bench (tests/federation/
   fake_peer.py) sends `--burst` pre-signed messages in transactions of 50, one after another.

Everything started is stopped by pid at the end, also on failure.
"""

import argparse
import os
import sys
import threading
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import requests

from bench.room_size import Api, Postgres, create_users, fill_big_room, pct, q, run_concurrently, send_message
from tests.federation.fake_peer import FakePeer
from tests.federation_fixture import FederatingHomeserver, SynapseProcess, TestCA, ok, register
from tests.harness import Client


def synapse_member_count(client: Client, room_id: str) -> int:
    resp = client.get(f"/rooms/{q(room_id)}/joined_members")
    return len(resp.json().get("joined", {})) if resp.status_code == 200 else 0


def join_timed(client: Client, room_id: str, via: str, timeout_s: float = 600) -> float:
    """Seconds for POST /join; retried while the resident answers that it cannot yet (Synapse, still
    completing its own partial-state join, refuses make_join)."""
    deadline = time.monotonic() + timeout_s
    while True:
        started = time.perf_counter()
        # Not Client.post: its 30 s timeout is shorter than a big join may take.
        resp = requests.post(client.server.url(f"/_matrix/client/v3/join/{q(room_id)}"), json={},
                             params={"via": via, "server_name": via}, timeout=timeout_s,
                             headers={"Authorization": f"Bearer {client.access_token}"})
        elapsed = time.perf_counter() - started
        if resp.status_code == 200:
            return elapsed
        if time.monotonic() > deadline:
            raise RuntimeError(f"join never succeeded: {resp.status_code} {resp.text}")
        time.sleep(1)


def latency_probe(client: Client, room_id: str, stop: threading.Event, out: list) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        ok(client.put(f"/rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}",
                      {"msgtype": "m.text", "body": "still here"}))
        out.append(time.perf_counter() - started)
        time.sleep(0.05)


def inbound_rate(peer, server, local: Client, count: int) -> float:
    """PDUs per second `server` takes in: a chain of `count` pre-signed messages from a user of
    `peer`, in a room of `local`'s, sent as transactions of 50, each after the last is answered."""
    room_id = ok(local.post("/createRoom", {"preset": "public_chat"}))["room_id"]
    version, join, _ = peer.join(server, room_id, "pusher")
    user = join["sender"]
    auth = peer.auth_for_message(local, room_id, version, user)
    prev, pdus = peer.event_id(version, join), []
    for i in range(count):
        pdu = peer.message(version, room_id, user, [prev], auth, join["depth"] + 1 + i, f"inbound {i}")
        prev = peer.event_id(version, pdu)
        pdus.append(pdu)
    started = time.perf_counter()
    for start in range(0, count, 50):
        answer = ok(peer.send(server, uuid.uuid4().hex, pdus[start:start + 50]))
        if any("error" in result for result in answer["pdus"].values()):
            raise RuntimeError(f"PDUs refused: {answer}")
    return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--burst", type=int, default=1000)
    args = parser.parse_args()

    pg, ca = Postgres(), TestCA()
    started: list = []
    try:
        host = FederatingHomeserver(pg.new_database(), ca)
        started.append(host)
        host.start()
        synapse = SynapseProcess(ca)
        started.append(synapse)
        synapse.start()
        ours = FederatingHomeserver(pg.new_database(), ca)
        started.append(ours)
        ours.start()
        print(f"A {host.server_name}, Synapse {synapse.server_name}, B {ours.server_name}; {pg.note}", flush=True)

        api = Api(host.base_url)
        members = create_users(host.config["database"]["args"]["dsn"],
                               [f"m{i}" for i in range(args.members)], host.server_name)
        creator = next(iter(members.values()))
        room_id = api.call("POST", "/createRoom", creator, json={"preset": "public_chat"})[0]["room_id"]
        print(f"filling {room_id}: {args.members} members, {args.events} messages", flush=True)
        fill_big_room(api, room_id, dict(list(members.items())[1:]), args.events)

        remote = register(synapse, "joiner")
        synapse_join_s = join_timed(remote, room_id, host.server_name)
        started_full = time.perf_counter()
        while synapse_member_count(remote, room_id) < args.members + 1:
            time.sleep(0.5)
        synapse_full_s = synapse_join_s + time.perf_counter() - started_full
        print(f"Synapse joined the room hosted here in {synapse_join_s:.2f} s "
              f"(partial state); its member list was whole after {synapse_full_s:.1f} s", flush=True)

        ours_user, bystander = register(ours, "joiner"), register(ours, "bystander")
        own_room = ok(bystander.post("/createRoom", {"preset": "private_chat"}))["room_id"]
        stop, latencies = threading.Event(), []
        probe = threading.Thread(target=latency_probe, args=(bystander, own_room, stop, latencies), daemon=True)
        probe.start()
        ours_join_s = join_timed(ours_user, room_id, synapse.server_name)
        stop.set()
        probe.join()
        members_seen = len(ok(ours_user.get(f"/rooms/{q(room_id)}/joined_members"))["joined"])
        print(f"We joined the room hosted on Synapse in {ours_join_s:.2f} s (full state: {members_seen} members); "
              f"a local user's sends meanwhile: p50 {pct(latencies, 50) * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms over {len(latencies)}", flush=True)

        senders = list(members.values())[1:9]
        first_sent = time.perf_counter()
        run_concurrently(list(range(args.burst)),
                         lambda i: send_message(api, senders[i % len(senders)], room_id, f"burst {i}"))
        sent_s = time.perf_counter() - first_sent
        last = f"burst marker {uuid.uuid4().hex}"
        send_message(api, senders[0], room_id, last)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            chunk = ok(ours_user.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": "5"}))["chunk"]
            if any(e["content"].get("body") == last for e in chunk):
                break
            time.sleep(0.2)
        received_s = time.perf_counter() - first_sent
        print(f"A to B: {args.burst + 1} messages sent on A in {sent_s:.1f} s, all in B's timeline after "
              f"{received_s:.1f} s ({(args.burst + 1) / received_s:.0f}/s, A's sending included)", flush=True)

        peer = FakePeer(ca)
        started.append(peer)
        print(f"B's inbound PDUs/s: {inbound_rate(peer, ours, bystander, args.burst):.0f} "
              f"({args.burst} messages in transactions of 50 from a peer that signs them in advance)", flush=True)
        return 0
    finally:
        for server in reversed(started):
            server.stop()
        ca.remove()
        pg.stop()


if __name__ == "__main__":
    sys.exit(main())
