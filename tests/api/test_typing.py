"""Typing notifications (client-server API "Typing Notifications"): PUT
/rooms/{roomId}/typing/{userId}, and the m.typing event in /sync's rooms.join[room].ephemeral,
which changes with each start, stop and expiry and wakes the room's long-polls."""

import threading
import time

from tests.api.test_response_schemas import assert_matches_spec
from tests.api.test_sync import (
    SYNC_PATH,
    assert_error,
    create,
    new_user,
    post,
    q,
    send,
    sync,
)

TYPING = "/_matrix/client/v3/rooms/{roomId}/typing/{userId}"


def me(client) -> str:
    return client.get("/account/whoami").json()["user_id"]


def typing(client, room_id, body, user_id=None):
    return client.put(f"/rooms/{q(room_id)}/typing/{q(user_id or me(client))}", body)


def typing_events(body, room_id) -> list[dict]:
    room = body["rooms"]["join"].get(room_id)
    return [] if room is None else [e for e in room["ephemeral"]["events"] if e["type"] == "m.typing"]


def shared_room(homeserver):
    alice, bob = new_user(homeserver, "ty"), new_user(homeserver, "ty")
    room_id = create(alice, preset="public_chat")
    post(bob, f"/join/{q(room_id)}")
    return alice, bob, room_id


def test_typing_shows_in_other_members_sync_and_stopping_clears_it(homeserver):
    alice, bob, room_id = shared_room(homeserver)
    since = sync(bob)["next_batch"]
    resp = typing(alice, room_id, {"typing": True, "timeout": 30000})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert_matches_spec(resp, TYPING)
    resp = bob.get("/sync", params={"since": since, "timeout": 0})
    assert_matches_spec(resp, SYNC_PATH)
    body = resp.json()
    assert typing_events(body, room_id) == [{"type": "m.typing", "content": {"user_ids": [me(alice)]}}]
    assert typing(alice, room_id, {"typing": False}).status_code == 200
    body = sync(bob, since=body["next_batch"], timeout=0)
    assert typing_events(body, room_id) == [{"type": "m.typing", "content": {"user_ids": []}}]


def test_initial_sync_holds_the_current_typers(homeserver):
    alice, bob, room_id = shared_room(homeserver)
    assert typing(alice, room_id, {"typing": True, "timeout": 30000}).status_code == 200
    assert typing(bob, room_id, {"typing": True, "timeout": 30000}).status_code == 200
    events = typing_events(sync(bob), room_id)
    assert len(events) == 1
    assert sorted(events[0]["content"]["user_ids"]) == sorted([me(alice), me(bob)])


def test_incremental_sync_without_typing_change_has_no_typing_event(homeserver):
    alice, bob, room_id = shared_room(homeserver)
    assert typing(alice, room_id, {"typing": True, "timeout": 30000}).status_code == 200
    since = sync(bob)["next_batch"]
    # Typing again while already typing only renews the timeout: nothing new for others.
    assert typing(alice, room_id, {"typing": True, "timeout": 30000}).status_code == 200
    send(alice, room_id)
    body = sync(bob, since=since, timeout=0)
    assert room_id in body["rooms"]["join"]
    assert typing_events(body, room_id) == []


def test_typing_expires_after_its_timeout(homeserver):
    alice, bob, room_id = shared_room(homeserver)
    assert typing(alice, room_id, {"typing": True, "timeout": 300}).status_code == 200
    body = sync(bob)
    assert typing_events(body, room_id)[0]["content"]["user_ids"] == [me(alice)]
    time.sleep(0.8)
    body = sync(bob, since=body["next_batch"], timeout=0)
    assert typing_events(body, room_id) == [{"type": "m.typing", "content": {"user_ids": []}}]


def test_typing_wakes_a_parked_sync_of_another_member(homeserver):
    alice, bob, room_id = shared_room(homeserver)
    since = sync(bob)["next_batch"]
    result = {}

    def long_poll():
        started = time.monotonic()
        result["body"] = sync(bob, since=since, timeout=10000)
        result["elapsed"] = time.monotonic() - started

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.5)
    assert typing(alice, room_id, {"typing": True, "timeout": 30000}).status_code == 200
    poller.join(15)
    assert result["elapsed"] < 5
    assert typing_events(result["body"], room_id)[0]["content"]["user_ids"] == [me(alice)]


def test_setting_another_users_typing_is_forbidden(homeserver):
    alice, bob, room_id = shared_room(homeserver)
    assert_error(typing(alice, room_id, {"typing": True, "timeout": 1000}, user_id=me(bob)), 403, "M_FORBIDDEN")


def test_typing_in_a_room_one_is_not_joined_to_is_forbidden(homeserver):
    alice, bob = new_user(homeserver, "ty"), new_user(homeserver, "ty")
    room_id = create(alice, preset="public_chat")
    assert_error(typing(bob, room_id, {"typing": True, "timeout": 1000}), 403, "M_FORBIDDEN")


def test_typing_without_the_typing_field_is_bad_json(homeserver):
    alice, _, room_id = shared_room(homeserver)
    assert_error(typing(alice, room_id, {"timeout": 1000}), 400, "M_BAD_JSON")
    assert_error(typing(alice, room_id, {"typing": "yes"}), 400, "M_BAD_JSON")


def test_typing_without_a_timeout_uses_the_default(homeserver):
    alice, bob, room_id = shared_room(homeserver)
    assert typing(alice, room_id, {"typing": True}).status_code == 200
    assert typing_events(sync(bob), room_id)[0]["content"]["user_ids"] == [me(alice)]


def test_ephemeral_filter_can_leave_typing_out(homeserver):
    alice, bob, room_id = shared_room(homeserver)
    assert typing(alice, room_id, {"typing": True, "timeout": 30000}).status_code == 200
    assert typing_events(sync(bob, filter={"room": {"ephemeral": {"not_types": ["m.typing"]}}}), room_id) == []
