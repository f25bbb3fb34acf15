"""The pusher worker (a master with start_pushers: false) delivers to a real push gateway:
messages, mentions and invites with their counts and priorities; killed with SIGKILL while the
gateway fails and started again, it delivers every notification exactly once, in order; a pushkey
the gateway rejects is removed through the master; email pushers (email.enable_notifs) mail from it."""

import time

import pytest
import requests

from tests.api.test_push_email import DELAY, SMTP_AUTH, notifications_to, shared_room, subscribe
from tests.api.test_push_http import received, set_pusher, wait_received
from tests.api.test_sync import post, send
from tests.api.test_unread_counts import group, me, send_content
from tests.harness import create, new_user, q
from tests.push_gateway import PushGateway
from tests.smtp_server import SmtpServer, text_part
from tests.workers.cluster import WorkerProcess, master_with_replication


@pytest.fixture(scope="module")
def smtp():
    with SmtpServer(auth=SMTP_AUTH) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(db_dsn, smtp):
    gateway = PushGateway().start()
    email = {"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_user": SMTP_AUTH[0], "smtp_pass": SMTP_AUTH[1],
             "enable_tls": False, "notif_from": "Test HS <noreply@test.local>", "app_name": "TestHS",
             "enable_notifs": True, "notif_delay_before_mail": int(DELAY * 1000)}
    master = master_with_replication(db_dsn, start_pushers=False, ip_range_whitelist=["127.0.0.1/32"], email=email)
    worker = WorkerProcess(master, "pusher", "pusher1")
    try:
        master.start()
        worker.start()
        yield master, worker, gateway
    finally:
        worker.stop()
        master.stop()
        gateway.stop()


def test_worker_sends_messages_mentions_and_invites_with_counts_and_priorities(cluster):
    master, _, gateway = cluster
    alice, bob, carol, room_id = group(master)
    pushkey = set_pusher(bob, gateway.url)
    plain = send(alice, room_id, "hello")
    mention = send_content(alice, room_id, {"msgtype": "m.text", "body": "look", "m.mentions": {"user_ids": [me(bob)]}})
    first, second = wait_received(gateway, pushkey, 2, timeout=30)
    assert (first["event_id"], first["prio"], first["counts"]) == (plain, "low", {"unread": 1})
    assert (second["event_id"], second["prio"]) == (mention, "high")
    assert second["devices"][0]["tweaks"] == {"sound": "default", "highlight": True}

    dave = new_user(master, "pw")
    dave_key = set_pusher(dave, gateway.url)
    other_room = create(alice)
    post(alice, f"/rooms/{q(other_room)}/invite", {"user_id": me(dave)})
    [invite] = wait_received(gateway, dave_key, 1, timeout=30)
    assert (invite["type"], invite["user_is_target"], invite["counts"]) == ("m.room.member", True, {"unread": 1})


def test_killed_worker_restarted_delivers_every_notification_once_in_order(cluster):
    master, worker, gateway = cluster
    alice, bob, carol, room_id = group(master)
    pushkey = set_pusher(bob, gateway.url)
    settled = send(alice, room_id, "settled")
    wait_received(gateway, pushkey, 1, timeout=30)
    gateway.fail_next(1000)
    try:
        failing = send(alice, room_id, "while the gateway fails")
        gateway.wait_for(lambda: any(n["event_id"] == failing for n in gateway.failed), timeout=30)
        worker.kill()
        while_down = [send(alice, room_id, f"while the worker is down {i}") for i in range(3)]
    finally:
        gateway.recover()
    worker.start()
    after = send(alice, room_id, "after the restart")
    wait_received(gateway, pushkey, 6, timeout=60)
    time.sleep(1)  # nothing more arrives
    assert [n["event_id"] for n in received(gateway, pushkey)] == [settled, failing, *while_down, after]


def test_rejected_pushkey_is_removed_through_the_master(cluster):
    master, _, gateway = cluster
    alice, bob, carol, room_id = group(master)
    pushkey = set_pusher(bob, gateway.url)
    gateway.rejected.add(pushkey)
    send(alice, room_id, "to a dead phone")
    wait_received(gateway, pushkey, 1, timeout=30)
    deadline = time.monotonic() + 20
    while bob.get("/pushers").json()["pushers"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert bob.get("/pushers").json() == {"pushers": []}
    send(alice, room_id, "not sent")
    time.sleep(1)
    assert len(received(gateway, pushkey)) == 1


def test_status_reports_the_pushers_the_worker_runs_and_how_long_one_has_failed(cluster):
    master, worker, gateway = cluster
    alice, bob, carol, room_id = group(master)
    set_pusher(bob, gateway.url)

    def pushers() -> dict:
        return requests.get(worker.base_url + "/_hs/status", timeout=10).json()["details"]["pushers"]
    deadline = time.monotonic() + 20
    while pushers()["running"] < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pushers()["failing"] == 0 and pushers()["failing_for_s"] is None
    gateway.fail_next(1000)
    try:
        failing = send(alice, room_id, "into a failing gateway")
        gateway.wait_for(lambda: any(n["event_id"] == failing for n in gateway.failed), timeout=30)
        deadline = time.monotonic() + 20
        while pushers()["failing"] < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        status = pushers()
        assert status["failing"] == 1 and status["failing_for_s"] >= 0
        assert "pushers" not in requests.get(master.url("/_hs/status"), timeout=10).json()["details"]
    finally:
        gateway.recover()


def test_worker_mails_an_email_pushers_notification(cluster, smtp, db_dsn):
    master, _, _ = cluster
    alice = new_user(master, "wm")
    room_id, bob = shared_room(alice)
    address = subscribe(alice, smtp, db_dsn)  # the worker started the pusher: it wrote its state
    send(bob, room_id, "mailed by the pusher worker")
    msg = smtp.wait_for_message(lambda m: m["To"] == address and "unread" in m["Subject"], timeout=60)
    assert msg["Subject"] == "[TestHS] 1 unread message in Garden Club"
    assert "Bob Builder: mailed by the pusher worker" in text_part(msg)
    time.sleep(DELAY + 0.5)
    assert len(notifications_to(smtp, address)) == 1
