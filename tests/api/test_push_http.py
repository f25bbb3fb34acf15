"""HTTP pushers delivering to a real push gateway on loopback (push gateway API,
push_notifier.yaml; client-server "Push Notifications"): what is sent for messages, mentions
and invites, the event_id_only format, retries in order, `rejected` pushkeys, badge updates
on receipts, master restarts, and refused addresses; and Synapse's admin API
GET /_synapse/admin/v1/users/{user_id}/pushers showing their delivery bookkeeping."""

import time
import uuid

import pytest
import requests

from tests.api.test_admin_tokens import shared_secret_register
from tests.api.test_receipts import receipt
from tests.api.test_sync import post, q, send
from tests.api.test_unread_counts import group, me, one_to_one, send_content
from tests.harness import Client, HomeserverProcess, assert_error, create, free_port, new_user
from tests.push_gateway import PushGateway

APP_ID = "org.example.push.ios"


@pytest.fixture(scope="module")
def gateway():
    gateway = PushGateway().start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def server(db_dsn):
    server = HomeserverProcess(db_dsn, ip_range_whitelist=["127.0.0.1/32"])
    try:
        yield server.start()
    finally:
        server.stop()


def set_pusher(client: Client, url: str, **data) -> str:
    pushkey = f"pk-{uuid.uuid4().hex}"
    resp = client.post("/pushers/set", {"kind": "http", "app_id": APP_ID, "pushkey": pushkey,
                                        "app_display_name": "Example", "device_display_name": "Phone",
                                        "lang": "en", "data": {"url": url, **data}})
    assert resp.status_code == 200, resp.text
    return pushkey


def received(gateway: PushGateway, pushkey: str) -> list[dict]:
    assert gateway.invalid == []
    return [n for n in gateway.notifications if n["devices"][0]["pushkey"] == pushkey]


def wait_received(gateway: PushGateway, pushkey: str, count: int, timeout: float = 20.0) -> list[dict]:
    return gateway.wait_for(lambda: len(received(gateway, pushkey)) >= count and received(gateway, pushkey),
                            timeout)


def test_message_sends_content_counts_and_device_with_low_priority(server, gateway):
    alice, bob, carol, room_id = group(server)
    assert alice.put(f"/profile/{q(me(alice))}/displayname", {"displayname": "Alice A"}).status_code == 200
    assert alice.put(f"/rooms/{q(room_id)}/state/m.room.name/", {"name": "Lunch"}).status_code == 200
    before = int(time.time())
    pushkey = set_pusher(bob, gateway.url, custom="kept")
    event_id = send(alice, room_id, "hello bob")
    [notification] = wait_received(gateway, pushkey, 1)
    assert notification["devices"][0].pop("pushkey_ts") in range(before - 1, int(time.time()) + 1)
    assert notification == {
        "event_id": event_id, "room_id": room_id, "type": "m.room.message", "sender": me(alice),
        "sender_display_name": "Alice A", "room_name": "Lunch", "prio": "low",
        "content": {"msgtype": "m.text", "body": "hello bob"}, "counts": {"unread": 1},
        # A group message's rule has no tweaks; data is the pusher's minus its url.
        "devices": [{"app_id": APP_ID, "pushkey": pushkey, "data": {"custom": "kept"}}],
    }


def test_mention_is_high_priority_with_highlight_and_sound(server, gateway):
    alice, bob, carol, room_id = group(server)
    pushkey = set_pusher(bob, gateway.url)
    event_id = send_content(alice, room_id, {"msgtype": "m.text", "body": "look",
                                             "m.mentions": {"user_ids": [me(bob)]}})
    [notification] = wait_received(gateway, pushkey, 1)
    assert notification["event_id"] == event_id
    assert notification["prio"] == "high"
    assert notification["devices"][0]["tweaks"] == {"sound": "default", "highlight": True}


def test_one_to_one_message_is_high_priority(server, gateway):
    alice, bob, room_id = one_to_one(server)
    pushkey = set_pusher(bob, gateway.url)
    send(alice, room_id, "just us")
    [notification] = wait_received(gateway, pushkey, 1)
    assert notification["prio"] == "high"
    assert notification["devices"][0]["tweaks"] == {"sound": "default"}


def test_invite_notifies_the_invitee_as_target(server, gateway):
    alice, bob = new_user(server, "ph"), new_user(server, "ph")
    pushkey = set_pusher(bob, gateway.url)
    room_id = create(alice)
    post(alice, f"/rooms/{q(room_id)}/invite", {"user_id": me(bob)})
    [notification] = wait_received(gateway, pushkey, 1)
    assert notification["type"] == "m.room.member"
    assert notification["room_id"] == room_id
    assert notification["sender"] == me(alice)
    assert notification["membership"] == "invite"
    assert notification["user_is_target"] is True
    assert notification["prio"] == "high"
    assert notification["counts"] == {"unread": 1}  # the pending invite
    assert notification["devices"][0]["tweaks"]["sound"] == "default"


def test_event_id_only_format_sends_no_event_details(server, gateway):
    alice, bob, carol, room_id = group(server)
    pushkey = set_pusher(bob, gateway.url, format="event_id_only")
    event_id = send(alice, room_id, "secret plans")
    [notification] = wait_received(gateway, pushkey, 1)
    notification["devices"][0].pop("pushkey_ts")
    assert notification == {"event_id": event_id, "room_id": room_id, "prio": "low", "counts": {"unread": 1},
                            "devices": [{"app_id": APP_ID, "pushkey": pushkey,
                                         "data": {"format": "event_id_only"}}]}


def test_failing_gateway_gets_every_notification_once_in_order_after_recovering(server, gateway):
    alice, bob, carol, room_id = group(server)
    pushkey = set_pusher(bob, gateway.url)
    gateway.fail_next(2, status=503)
    sent = [send(alice, room_id, f"message {i}") for i in range(3)]
    notifications = wait_received(gateway, pushkey, 3, timeout=30)
    time.sleep(1)  # nothing more arrives
    assert [n["event_id"] for n in received(gateway, pushkey)] == sent
    assert [n["counts"]["unread"] for n in notifications] == [1, 1, 1]  # one room with unread
    assert [n["event_id"] for n in gateway.failed[-2:]] == [sent[0], sent[0]]


def test_client_error_is_retried_like_synapse(server, gateway):
    alice, bob, carol, room_id = group(server)
    pushkey = set_pusher(bob, gateway.url)
    gateway.fail_next(1, status=400)
    event_id = send(alice, room_id, "after a 400")
    [notification] = wait_received(gateway, pushkey, 1)
    assert notification["event_id"] == event_id


def test_rejected_pushkey_removes_the_pusher(server, gateway):
    alice, bob, carol, room_id = group(server)
    pushkey = set_pusher(bob, gateway.url)
    gateway.rejected.add(pushkey)
    send(alice, room_id, "to a dead phone")
    wait_received(gateway, pushkey, 1)
    deadline = time.monotonic() + 10
    while bob.get("/pushers").json()["pushers"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert bob.get("/pushers").json() == {"pushers": []}
    send(alice, room_id, "not sent")
    time.sleep(1)
    assert len(received(gateway, pushkey)) == 1


def test_reading_sends_a_badge_update_with_lower_unread(server, gateway):
    alice, bob, carol, room_id = group(server)
    pushkey = set_pusher(bob, gateway.url)
    send(alice, room_id, "one")
    last = send(alice, room_id, "two")
    notifications = wait_received(gateway, pushkey, 2)
    assert notifications[-1]["counts"] == {"unread": 1}
    assert receipt(bob, room_id, "m.read", last).status_code == 200
    badge = wait_received(gateway, pushkey, 3)[2]
    assert "event_id" not in badge
    assert badge["counts"] == {"unread": 0}
    assert [d["pushkey"] for d in badge["devices"]] == [pushkey]


def test_group_unread_count_by_room_off_counts_notifications(db_dsn, gateway, server):
    other = HomeserverProcess(db_dsn, ip_range_whitelist=["127.0.0.1/32"],
                              push={"group_unread_count_by_room": False})
    # The module's server pushes for this database too: stop it while this one runs.
    server.stop_process()
    try:
        other.start()
        alice, bob, carol, room_id = group(other)
        pushkey = set_pusher(bob, gateway.url)
        send(alice, room_id, "one")
        send(alice, room_id, "two")
        assert [n["counts"] for n in wait_received(gateway, pushkey, 2)] == [{"unread": 1}, {"unread": 2}]
    finally:
        other.stop()
        server.start()


def test_master_restart_neither_resends_nor_skips(server, gateway):
    alice, bob, carol, room_id = group(server)
    pushkey = set_pusher(bob, gateway.url)
    first = send(alice, room_id, "before")
    wait_received(gateway, pushkey, 1)
    gateway.fail_next(1000)
    pending = send(alice, room_id, "while failing")
    gateway.wait_for(lambda: any(n["event_id"] == pending for n in gateway.failed))
    server.stop_process()
    gateway.recover()
    server.start()
    after = send(alice, room_id, "after")
    wait_received(gateway, pushkey, 3, timeout=30)
    time.sleep(1)
    assert [n["event_id"] for n in received(gateway, pushkey)] == [first, pending, after]


def test_pusher_at_a_blacklisted_address_gets_nothing_and_others_still_do(server, gateway):
    refused = PushGateway(host="127.0.0.2").start()  # loopback, but not in ip_range_whitelist
    try:
        alice, bob, carol, room_id = group(server)
        bad = set_pusher(bob, refused.url)
        good = set_pusher(carol, gateway.url)
        send(alice, room_id, "hello")
        wait_received(gateway, good, 1)
        time.sleep(1)
        assert refused.notifications == [] and refused.failed == []
        assert requests.get(server.base_url + "/_matrix/client/versions", timeout=5).status_code == 200
        assert [p["pushkey"] for p in bob.get("/pushers").json()["pushers"]] == [bad]
    finally:
        refused.stop()


# --- the admin view: GET /_synapse/admin/v1/users/{user_id}/pushers ---

PREFIX = "/_synapse/admin/v1/users"


@pytest.fixture(scope="module")
def admin(server):
    return shared_secret_register(server, f"root{uuid.uuid4().hex[:6]}", admin=True)


def admin_pushers(admin: Client, user_id: str) -> dict:
    resp = admin.get(f"{PREFIX}/{q(user_id)}/pushers")
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_for_pusher(admin: Client, user_id: str, predicate, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = admin_pushers(admin, user_id)
        if body["pushers"] and predicate(body["pushers"][0]) or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_delivered_pusher_shows_last_success_and_no_failure(server, gateway, admin):
    alice, bob, carol, room_id = group(server)
    before = int(time.time() * 1000)
    pushkey = set_pusher(bob, gateway.url, format="event_id_only")
    send(alice, room_id, "hi")
    wait_received(gateway, pushkey, 1)
    body = wait_for_pusher(admin, me(bob), lambda p: p["last_success"] is not None)
    assert body["total"] == 1
    [pusher] = body["pushers"]
    assert before <= pusher["last_success"] <= int(time.time() * 1000)
    assert before <= pusher["ts"] <= pusher["last_success"]
    assert isinstance(pusher["last_stream_ordering"], int)
    assert pusher["failing_since"] is None
    assert {k: pusher[k] for k in ("user_name", "kind", "app_id", "pushkey", "app_display_name",
                                   "device_display_name", "lang", "data", "profile_tag", "enabled")} == {
        "user_name": me(bob), "kind": "http", "app_id": APP_ID, "pushkey": pushkey, "app_display_name": "Example",
        "device_display_name": "Phone", "lang": "en", "data": {"url": gateway.url, "format": "event_id_only"},
        "profile_tag": "", "enabled": True}
    assert pusher["device_id"] == bob.get("/account/whoami").json()["device_id"]


def test_failing_pusher_shows_failing_since(server, admin):
    alice, bob, carol, room_id = group(server)
    closed = f"http://127.0.0.1:{free_port()}/_matrix/push/v1/notify"  # nothing listens
    set_pusher(bob, closed)
    before = int(time.time() * 1000)
    send(alice, room_id, "into the void")
    [pusher] = wait_for_pusher(admin, me(bob), lambda p: p["failing_since"] is not None)["pushers"]
    assert before <= pusher["failing_since"] <= int(time.time() * 1000)
    assert pusher["last_success"] is None
    assert server.proc.poll() is None


def test_user_without_pushers_has_an_empty_list(server, admin):
    assert admin_pushers(admin, me(new_user(server, "ap"))) == {"pushers": [], "total": 0}


def test_non_admin_is_forbidden(server):
    user = new_user(server, "ap")
    assert_error(user.get(f"{PREFIX}/{q(me(user))}/pushers"), 403, "M_FORBIDDEN")


def test_missing_token_is_refused(server):
    assert_error(Client(server).get(f"{PREFIX}/{q('@x:test.local')}/pushers"), 401, "M_MISSING_TOKEN")


def test_unknown_user_is_not_found(server, admin):
    assert_error(admin.get(f"{PREFIX}/{q('@nobody-here:test.local')}/pushers"), 404, "M_NOT_FOUND")


def test_remote_user_cannot_be_looked_up(server, admin):
    resp = admin.get(f"{PREFIX}/{q('@someone:elsewhere.example')}/pushers")
    assert_error(resp, 400, "M_UNKNOWN")
    assert resp.json()["error"] == "Can only look up local users"


def test_invalid_user_id_is_refused(server, admin):
    assert_error(admin.get(f"{PREFIX}/not-a-user-id/pushers"), 400, "M_INVALID_PARAM")
