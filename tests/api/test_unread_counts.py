"""Unread notification counts in /sync (client-server API "Receiving notifications", "Push
Rules: Predefined rules", "Threaded read receipts"): each new event's push rules run for every
local member, and rooms.join[room].unread_notifications (and unread_thread_notifications when
the filter asks) count the notifying events after the user's read receipt."""

import threading
import time
import uuid

from tests.api.test_receipts import receipt
from tests.api.test_sync import create, new_user, post, q, send, sync
from tests.harness import query

THREADED = {"room": {"timeline": {"unread_thread_notifications": True}}}


def me(client) -> str:
    return client.get("/account/whoami").json()["user_id"]


def counts(body, room_id) -> dict:
    return body["rooms"]["join"][room_id]["unread_notifications"]


def one_to_one(homeserver):
    alice, bob = new_user(homeserver, "uc"), new_user(homeserver, "uc")
    room_id = create(alice, preset="public_chat")
    post(bob, f"/join/{q(room_id)}")
    return alice, bob, room_id


def group(homeserver):
    alice, bob, room_id = one_to_one(homeserver)
    carol = new_user(homeserver, "uc")
    post(carol, f"/join/{q(room_id)}")
    return alice, bob, carol, room_id


def send_content(client, room_id, content, event_type="m.room.message") -> str:
    resp = client.put(f"/rooms/{q(room_id)}/send/{event_type}/{uuid.uuid4().hex}", content)
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"]


def test_message_notifies_the_other_member_but_not_the_sender(homeserver):
    alice, bob, room_id = one_to_one(homeserver)
    send(alice, room_id, "hi there")
    assert counts(sync(bob), room_id) == {"notification_count": 1, "highlight_count": 0}
    assert counts(sync(alice), room_id) == {"notification_count": 0, "highlight_count": 0}


def test_every_joined_room_entry_carries_counts(homeserver):
    alice, bob, room_id = one_to_one(homeserver)
    quiet = create(bob)
    body = sync(bob)
    assert counts(body, quiet) == {"notification_count": 0, "highlight_count": 0}
    assert counts(body, room_id) == {"notification_count": 0, "highlight_count": 0}
    assert "unread_thread_notifications" not in body["rooms"]["join"][room_id]


def test_mention_of_the_user_highlights(homeserver):
    alice, bob, room_id = one_to_one(homeserver)
    send_content(alice, room_id, {"msgtype": "m.text", "body": "look", "m.mentions": {"user_ids": [me(bob)]}})
    send(alice, room_id, "no mention")
    assert counts(sync(bob), room_id) == {"notification_count": 2, "highlight_count": 1}


def test_display_name_in_the_body_highlights_in_a_group(homeserver):
    alice, bob, carol, room_id = group(homeserver)
    bob_name = me(bob)[1:].split(":")[0]
    send(alice, room_id, f"hey {bob_name}, lunch?")
    assert counts(sync(bob), room_id) == {"notification_count": 1, "highlight_count": 1}
    assert counts(sync(carol), room_id) == {"notification_count": 1, "highlight_count": 0}


def test_receipt_resets_the_counts(homeserver):
    alice, bob, room_id = one_to_one(homeserver)
    first = send(alice, room_id, "one")
    send(alice, room_id, "two")
    assert counts(sync(bob), room_id)["notification_count"] == 2
    assert receipt(bob, room_id, "m.read", first).status_code == 200
    assert counts(sync(bob), room_id)["notification_count"] == 1
    last = send(alice, room_id, "three")
    assert receipt(bob, room_id, "m.read.private", last).status_code == 200
    assert counts(sync(bob), room_id) == {"notification_count": 0, "highlight_count": 0}


def test_incremental_sync_carries_the_counts_a_receipt_reset(homeserver):
    alice, bob, room_id = one_to_one(homeserver)
    last = send(alice, room_id, "unread")
    since = sync(bob)["next_batch"]
    assert receipt(bob, room_id, "m.read", last).status_code == 200
    body = sync(bob, since=since, timeout=5000)
    assert counts(body, room_id) == {"notification_count": 0, "highlight_count": 0}


def test_parked_sync_wakes_with_the_counts_a_receipt_reset(homeserver):
    alice, bob, room_id = one_to_one(homeserver)
    last = send(alice, room_id, "unread")
    since = sync(bob)["next_batch"]
    result = {}

    def park():
        started = time.monotonic()
        result["body"] = sync(bob, since=since, timeout=20000)
        result["waited"] = time.monotonic() - started
    parked = threading.Thread(target=park)
    parked.start()
    time.sleep(0.5)
    assert receipt(bob, room_id, "m.read", last).status_code == 200
    parked.join(30)
    assert result["waited"] < 10
    assert counts(result["body"], room_id) == {"notification_count": 0, "highlight_count": 0}


def test_incremental_sync_with_a_new_message_counts_it(homeserver):
    alice, bob, room_id = one_to_one(homeserver)
    since = sync(bob)["next_batch"]
    send(alice, room_id, "new")
    body = sync(bob, since=since, timeout=5000)
    assert counts(body, room_id) == {"notification_count": 1, "highlight_count": 0}


def test_notices_are_suppressed(homeserver):
    # .m.rule.suppress_notices: content.msgtype m.notice -> no notification.
    alice, bob, room_id = one_to_one(homeserver)
    send_content(alice, room_id, {"msgtype": "m.notice", "body": "bot says hi"})
    assert counts(sync(bob), room_id) == {"notification_count": 0, "highlight_count": 0}


def test_disabling_the_message_rule_stops_group_counts(homeserver):
    alice, bob, carol, room_id = group(homeserver)
    resp = bob.put("/pushrules/global/underride/.m.rule.message/enabled", {"enabled": False})
    assert resp.status_code == 200, resp.text
    send(alice, room_id, "chatter")
    assert counts(sync(bob), room_id) == {"notification_count": 0, "highlight_count": 0}
    assert counts(sync(carol), room_id) == {"notification_count": 1, "highlight_count": 0}


def test_a_room_rule_without_notify_silences_the_room(homeserver):
    alice, bob, room_id = one_to_one(homeserver)
    resp = bob.put(f"/pushrules/global/room/{q(room_id)}", {"actions": []})
    assert resp.status_code == 200, resp.text
    send(alice, room_id, "muted")
    assert counts(sync(bob), room_id) == {"notification_count": 0, "highlight_count": 0}


def test_one_to_one_and_group_rooms_match_different_rules(homeserver, db_dsn):
    # .m.rule.room_one_to_one (room_member_count == 2) plays a sound; .m.rule.message does not.
    alice, bob, room_id = one_to_one(homeserver)
    in_pair = send(alice, room_id, "just us")
    carol = new_user(homeserver, "uc")
    post(carol, f"/join/{q(room_id)}")
    in_group = send(alice, room_id, "all of us")
    rows = dict(query(db_dsn, "SELECT event_id, actions FROM event_push_actions WHERE user_id = %s",
                      (me(bob),)))
    assert rows[in_pair] == ["notify", {"set_tweak": "sound", "value": "default"}]
    assert rows[in_group] == ["notify"]


def test_threaded_counts_when_the_filter_asks(homeserver):
    alice, bob, room_id = one_to_one(homeserver)
    root = send(alice, room_id, "root")
    reply = send_content(alice, room_id, {"msgtype": "m.text", "body": "in thread",
                                          "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    send_content(alice, room_id, {"msgtype": "m.text", "body": "again",
                                  "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    # Without the filter flag everything counts in the room's total.
    assert counts(sync(bob), room_id) == {"notification_count": 3, "highlight_count": 0}
    room = sync(bob, filter=THREADED)["rooms"]["join"][room_id]
    assert room["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
    assert room["unread_thread_notifications"] == {root: {"notification_count": 2, "highlight_count": 0}}

    # A threaded receipt resets only its thread, up to its event.
    assert receipt(bob, room_id, "m.read", reply, {"thread_id": root}).status_code == 200
    room = sync(bob, filter=THREADED)["rooms"]["join"][room_id]
    assert room["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
    assert room["unread_thread_notifications"] == {root: {"notification_count": 1, "highlight_count": 0}}

    # A main-timeline receipt resets the main timeline only.
    assert receipt(bob, room_id, "m.read", root, {"thread_id": "main"}).status_code == 200
    room = sync(bob, filter=THREADED)["rooms"]["join"][room_id]
    assert room["unread_notifications"] == {"notification_count": 0, "highlight_count": 0}
    assert room["unread_thread_notifications"] == {root: {"notification_count": 1, "highlight_count": 0}}


def test_unthreaded_receipt_resets_every_thread_up_to_its_event(homeserver):
    alice, bob, room_id = one_to_one(homeserver)
    root = send(alice, room_id, "root")
    reply = send_content(alice, room_id, {"msgtype": "m.text", "body": "in thread",
                                          "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    after = send(alice, room_id, "after")
    assert receipt(bob, room_id, "m.read", reply).status_code == 200
    room = sync(bob, filter=THREADED)["rooms"]["join"][room_id]
    assert room["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
    assert room["unread_thread_notifications"] == {}
    assert receipt(bob, room_id, "m.read", after).status_code == 200
    assert counts(sync(bob), room_id) == {"notification_count": 0, "highlight_count": 0}


def test_invite_notifies_the_invitee(homeserver, db_dsn):
    alice, bob = new_user(homeserver, "uc"), new_user(homeserver, "uc")
    room_id = create(alice)
    post(alice, f"/rooms/{q(room_id)}/invite", {"user_id": me(bob)})
    rows = query(db_dsn, "SELECT user_id, actions FROM event_push_actions WHERE room_id = %s", (room_id,))
    # .m.rule.invite_for_me
    assert rows == [(me(bob), ["notify", {"set_tweak": "sound", "value": "default"}])]


def test_redacted_event_stops_counting(homeserver):
    alice, bob, room_id = one_to_one(homeserver)
    send(alice, room_id, "kept")
    gone = send(alice, room_id, "oops")
    assert counts(sync(bob), room_id)["notification_count"] == 2
    resp = alice.put(f"/rooms/{q(room_id)}/redact/{q(gone)}/{uuid.uuid4().hex}", {})
    assert resp.status_code == 200, resp.text
    assert counts(sync(bob), room_id) == {"notification_count": 1, "highlight_count": 0}


def test_event_redacted_by_a_moderator_stops_counting_for_the_moderator(homeserver):
    alice, bob, room_id = one_to_one(homeserver)
    gone = send(bob, room_id, "spam")
    assert counts(sync(alice), room_id)["notification_count"] == 1
    resp = alice.put(f"/rooms/{q(room_id)}/redact/{q(gone)}/{uuid.uuid4().hex}", {})
    assert resp.status_code == 200, resp.text
    assert counts(sync(alice), room_id) == {"notification_count": 0, "highlight_count": 0}
