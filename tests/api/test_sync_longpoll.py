"""Long-polling /sync: a parked request returns soon after something for the user happens (a
message in one of their rooms, an invite, a kick), waits out its timeout otherwise, is not ended
by activity elsewhere, holds no database connection while parked, and misses nothing that lands
while it parks. Latencies are asserted against the timeout, never tightly."""

import random
import threading
import time

from tests.api.test_sync import create, new_user, post, q, send, sync, timeline_ids


class Parked:
    """A /sync running in a thread; .result() waits for it and gives (body, seconds taken)."""

    def __init__(self, client, **params):
        self.body = None
        self.error = None
        self.started = time.monotonic()
        self.elapsed = None
        self.thread = threading.Thread(target=self._run, args=(client, params), daemon=True)
        self.thread.start()

    def _run(self, client, params):
        try:
            self.body = sync(client, **params)
        except Exception as e:  # noqa: BLE001 - re-raised by result(), in the test's thread
            self.error = e
        self.elapsed = time.monotonic() - self.started

    def result(self, timeout=30):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the sync never returned"
        if self.error is not None:
            raise self.error
        return self.body, self.elapsed


def two_in_a_room(homeserver):
    alice, bob = new_user(homeserver, "lp"), new_user(homeserver, "lp")
    room_id = create(alice, preset="public_chat")
    post(bob, f"/rooms/{q(room_id)}/join")
    return alice, bob, room_id


def test_parked_sync_returns_soon_after_a_message_in_a_shared_room(homeserver):
    alice, bob, room_id = two_in_a_room(homeserver)
    since = sync(bob)["next_batch"]
    parked = Parked(bob, since=since, timeout=10000)
    time.sleep(0.5)
    assert parked.thread.is_alive(), "returned before anything happened"
    message = send(alice, room_id, "wake up")
    body, elapsed = parked.result()
    assert timeline_ids(body, room_id) == [message]
    assert elapsed < 5, elapsed


def test_parked_sync_waits_out_its_timeout_when_nothing_happens(homeserver):
    _, bob, _ = two_in_a_room(homeserver)
    since = sync(bob)["next_batch"]
    body, elapsed = Parked(bob, since=since, timeout=500).result()
    assert elapsed >= 0.45, elapsed
    assert body["rooms"] == {"join": {}, "invite": {}, "leave": {}, "knock": {}}
    assert body["next_batch"] == since


def test_activity_in_another_room_does_not_end_a_parked_sync(homeserver):
    alice, bob, room_id = two_in_a_room(homeserver)
    carol = new_user(homeserver, "lp")
    elsewhere = create(carol)
    since = sync(bob)["next_batch"]
    parked = Parked(bob, since=since, timeout=1500)
    time.sleep(0.3)
    for i in range(3):
        send(carol, elsewhere, f"not for bob {i}")
    body, elapsed = parked.result()
    assert elapsed >= 1.4, elapsed
    assert body["rooms"]["join"] == {}
    # The stream moved on in the other room: the next sync starts from there.
    assert body["next_batch"] != since
    message = send(alice, room_id, "for bob")
    assert timeline_ids(sync(bob, since=body["next_batch"]), room_id) == [message]


def test_invite_wakes_the_invitees_parked_sync(homeserver):
    alice, bob = new_user(homeserver, "lp"), new_user(homeserver, "lp")
    room_id = create(alice, preset="private_chat", name="Invite only")
    since = sync(bob)["next_batch"]
    parked = Parked(bob, since=since, timeout=10000)
    time.sleep(0.5)
    post(alice, f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id})
    body, elapsed = parked.result()
    assert room_id in body["rooms"]["invite"]
    assert elapsed < 5, elapsed


def test_kick_wakes_the_kicked_users_parked_sync(homeserver):
    alice, bob, room_id = two_in_a_room(homeserver)
    since = sync(bob)["next_batch"]
    parked = Parked(bob, since=since, timeout=10000)
    time.sleep(0.5)
    post(alice, f"/rooms/{q(room_id)}/kick", {"user_id": bob.user_id})
    body, elapsed = parked.result()
    assert body["rooms"]["leave"][room_id]["timeline"]["events"][-1]["content"]["membership"] == "leave"
    assert elapsed < 5, elapsed


def test_joining_wakes_the_joiners_parked_sync(homeserver):
    alice, bob = new_user(homeserver, "lp"), new_user(homeserver, "lp")
    room_id = create(alice, preset="public_chat")
    other_device = bob.__class__(homeserver).login(bob.user_id.split(":")[0][1:])
    since = sync(bob)["next_batch"]
    parked = Parked(bob, since=since, timeout=10000)
    time.sleep(0.5)
    post(other_device, f"/rooms/{q(room_id)}/join")
    body, elapsed = parked.result()
    assert room_id in body["rooms"]["join"]
    assert elapsed < 5, elapsed


def test_initial_sync_returns_at_once_whatever_the_timeout(homeserver):
    alice = new_user(homeserver, "lp")
    started = time.monotonic()
    sync(alice, timeout=10000)
    assert time.monotonic() - started < 5


def test_parked_syncs_hold_no_database_connection(homeserver):
    # The server's pool has 5 connections (cp_max in tests/harness.py); 12 parked syncs holding
    # one each would stall the send below until they timed out.
    alice, bob, room_id = two_in_a_room(homeserver)
    since = sync(bob)["next_batch"]
    parked = [Parked(bob, since=since, timeout=8000) for _ in range(12)]
    time.sleep(1)
    assert all(p.thread.is_alive() for p in parked)
    started = time.monotonic()
    message = send(alice, room_id, "everyone wake up")
    assert time.monotonic() - started < 4
    for p in parked:
        body, elapsed = p.result()
        assert timeline_ids(body, room_id) == [message]
        assert elapsed < 7, elapsed


def test_long_polling_misses_nothing_sent_while_it_parks(homeserver):
    alice, bob, room_id = two_in_a_room(homeserver)
    since = sync(bob)["next_batch"]
    sent = []

    def sender():
        for i in range(20):
            time.sleep(random.uniform(0, 0.08))
            sent.append(send(alice, room_id, f"burst {i}"))

    thread = threading.Thread(target=sender)
    started = time.monotonic()
    thread.start()
    seen = []
    while len(seen) < 20 and time.monotonic() - started < 25:
        body = sync(bob, since=since, timeout=10000, filter='{"room": {"timeline": {"limit": 50}}}')
        if room_id in body["rooms"]["join"]:
            seen += timeline_ids(body, room_id)
        since = body["next_batch"]
    thread.join()
    assert seen == sent
    # A wake-up lost between a read and parking would have cost a whole 10 s timeout.
    assert time.monotonic() - started < 9


def test_more_parked_syncs_than_are_built_at_once_all_get_the_message(homeserver):
    # SyncHandler builds COMPUTE_CONCURRENCY responses at a time; the rest wait their turn.
    from hs.handlers.sync import COMPUTE_CONCURRENCY
    alice, bob, room_id = two_in_a_room(homeserver)
    since = sync(bob)["next_batch"]
    parked = [Parked(bob, since=since, timeout=20000) for _ in range(3 * COMPUTE_CONCURRENCY)]
    time.sleep(1)
    assert all(p.thread.is_alive() for p in parked)
    message = send(alice, room_id, "everyone wake up")
    for p in parked:
        body, elapsed = p.result()
        assert timeline_ids(body, room_id) == [message]
        assert elapsed < 15, elapsed
