"""Account data in /sync: global data at the top level and room data (tags included) in each
joined room, all of it in an initial sync, only what changed since in an incremental one, cut
down by the filter's account_data and room.account_data, and a parked sync woken by the user's
own change."""

import time

import pytest

from tests.api.test_account_data import global_path, room_path, tags_path
from tests.api.test_response_schemas import assert_matches_spec
from tests.api.test_sync import create, new_user, send, sync
from tests.api.test_sync_longpoll import Parked


def put(client, path, content):
    resp = client.put(path, content)
    assert resp.status_code == 200, resp.text


def global_data(body) -> dict:
    """The global account data, without the server's m.push_rules (tests/api/test_push_rules_api.py)."""
    return {e["type"]: e["content"] for e in body["account_data"]["events"] if e["type"] != "m.push_rules"}


def room_data(body, room_id) -> dict | None:
    room = body["rooms"]["join"].get(room_id)
    return None if room is None else {e["type"]: e["content"] for e in room["account_data"]["events"]}


def test_initial_sync_holds_all_global_and_room_account_data(homeserver):
    alice = new_user(homeserver, "sad")
    room_id = create(alice)
    put(alice, global_path(alice, "org.example.a"), {"a": 1})
    put(alice, global_path(alice, "m.ignored_user_list"), {"ignored_users": {}})
    put(alice, room_path(alice, room_id, "org.example.r"), {"r": 1})
    put(alice, tags_path(alice, room_id, "u.work"), {"order": 0.5})
    body = sync(alice)
    assert global_data(body) == {"org.example.a": {"a": 1}, "m.ignored_user_list": {"ignored_users": {}}}
    assert room_data(body, room_id) == {"org.example.r": {"r": 1}, "m.tag": {"tags": {"u.work": {"order": 0.5}}}}


def test_initial_sync_of_a_user_with_no_account_data_has_empty_sections(homeserver):
    alice = new_user(homeserver, "sad")
    room_id = create(alice)
    body = sync(alice)
    assert [e["type"] for e in body["account_data"]["events"]] == ["m.push_rules"]
    assert room_data(body, room_id) == {}


def test_incremental_sync_holds_only_what_changed_since(homeserver):
    alice = new_user(homeserver, "sad")
    room_id = create(alice)
    put(alice, global_path(alice, "org.example.old"), {"v": 1})
    since = sync(alice)["next_batch"]
    put(alice, global_path(alice, "org.example.new"), {"v": 2})
    body = sync(alice, since=since)
    assert global_data(body) == {"org.example.new": {"v": 2}}
    # Nothing happened in the room: it is not in the response.
    assert room_id not in body["rooms"]["join"]
    again = sync(alice, since=body["next_batch"])
    assert again["account_data"]["events"] == []


def test_room_account_data_change_alone_brings_the_room_into_an_incremental_sync(homeserver):
    alice = new_user(homeserver, "sad")
    room_id, other = create(alice), create(alice)
    since = sync(alice)["next_batch"]
    put(alice, tags_path(alice, room_id, "m.favourite"), {})
    body = sync(alice, since=since)
    assert room_data(body, room_id) == {"m.tag": {"tags": {"m.favourite": {}}}}
    assert body["rooms"]["join"][room_id]["timeline"]["events"] == []
    assert other not in body["rooms"]["join"]
    assert body["account_data"]["events"] == []


def test_removing_a_tag_syncs_the_remaining_tags(homeserver):
    alice = new_user(homeserver, "sad")
    room_id = create(alice)
    put(alice, tags_path(alice, room_id, "u.a"), {})
    put(alice, tags_path(alice, room_id, "u.b"), {})
    since = sync(alice)["next_batch"]
    resp = alice.delete(tags_path(alice, room_id, "u.a"))
    assert resp.status_code == 200, resp.text
    body = sync(alice, since=since)
    assert room_data(body, room_id) == {"m.tag": {"tags": {"u.b": {}}}}


def test_room_account_data_comes_with_the_room_when_it_has_news_too(homeserver):
    alice = new_user(homeserver, "sad")
    room_id = create(alice)
    since = sync(alice)["next_batch"]
    event_id = send(alice, room_id, "hi")
    put(alice, room_path(alice, room_id, "org.example.r"), {"r": 2})
    room = sync(alice, since=since)["rooms"]["join"][room_id]
    assert [e["event_id"] for e in room["timeline"]["events"]] == [event_id]
    assert room["account_data"]["events"] == [{"type": "org.example.r", "content": {"r": 2}}]


def test_account_data_of_other_users_is_never_synced(homeserver):
    alice, bob = new_user(homeserver, "sad"), new_user(homeserver, "sad")
    room_id = create(alice, preset="public_chat")
    assert bob.post(f"/join/{room_id}", {}).status_code == 200
    since = sync(bob)["next_batch"]
    put(alice, global_path(alice, "org.example.a"), {"a": 1})
    put(alice, room_path(alice, room_id, "org.example.r"), {"r": 1})
    body = sync(bob, since=since)
    assert body["account_data"]["events"] == []
    assert room_id not in body["rooms"]["join"]
    assert room_data(sync(bob), room_id) == {}


def test_room_account_data_of_a_room_the_user_is_not_in_is_not_synced(homeserver):
    alice = new_user(homeserver, "sad")
    put(alice, room_path(alice, "!nowhere:test.local", "org.example.r"), {"r": 1})
    body = sync(alice)
    assert "!nowhere:test.local" not in body["rooms"]["join"]


def test_filter_types_and_not_types_select_account_data(homeserver):
    alice = new_user(homeserver, "sad")
    room_id = create(alice)
    put(alice, global_path(alice, "org.example.keep"), {"k": 1})
    put(alice, global_path(alice, "org.example.drop"), {"d": 1})
    put(alice, room_path(alice, room_id, "org.example.keep"), {"k": 2})
    put(alice, tags_path(alice, room_id, "u.work"), {})
    body = sync(alice, filter={"account_data": {"types": ["org.example.keep"]},
                               "room": {"account_data": {"not_types": ["m.tag"]}}})
    assert global_data(body) == {"org.example.keep": {"k": 1}}
    assert room_data(body, room_id) == {"org.example.keep": {"k": 2}}


def test_filter_room_account_data_rooms_and_limit(homeserver):
    alice = new_user(homeserver, "sad")
    room_a, room_b = create(alice), create(alice)
    for i in range(3):
        put(alice, global_path(alice, f"org.example.g{i}"), {"i": i})
    put(alice, room_path(alice, room_a, "org.example.r"), {"a": 1})
    put(alice, room_path(alice, room_b, "org.example.r"), {"b": 1})
    body = sync(alice, filter={"account_data": {"limit": 2},
                               "room": {"account_data": {"not_rooms": [room_b]}}})
    # The limit keeps the most recently written.
    assert global_data(body) == {"org.example.g1": {"i": 1}, "org.example.g2": {"i": 2}}
    assert room_data(body, room_a) == {"org.example.r": {"a": 1}}
    assert room_data(body, room_b) == {}


def test_full_state_sync_resends_all_account_data(homeserver):
    alice = new_user(homeserver, "sad")
    room_id = create(alice)
    put(alice, global_path(alice, "org.example.a"), {"a": 1})
    put(alice, tags_path(alice, room_id, "u.t"), {})
    since = sync(alice)["next_batch"]
    body = sync(alice, since=since, full_state="true")
    assert global_data(body) == {"org.example.a": {"a": 1}}
    assert room_data(body, room_id) == {"m.tag": {"tags": {"u.t": {}}}}


def test_parked_sync_wakes_for_the_users_own_account_data(homeserver):
    alice = new_user(homeserver, "sad")
    create(alice)
    since = sync(alice)["next_batch"]
    parked = Parked(alice, since=since, timeout=10000)
    time.sleep(0.5)
    assert parked.thread.is_alive(), "returned before anything happened"
    put(alice, global_path(alice, "org.example.wake"), {"w": 1})
    body, elapsed = parked.result()
    assert global_data(body) == {"org.example.wake": {"w": 1}}
    assert elapsed < 5, elapsed


def test_parked_sync_wakes_for_a_new_tag(homeserver):
    alice = new_user(homeserver, "sad")
    room_id = create(alice)
    since = sync(alice)["next_batch"]
    parked = Parked(alice, since=since, timeout=10000)
    time.sleep(0.5)
    put(alice, tags_path(alice, room_id, "m.lowpriority"), {})
    body, elapsed = parked.result()
    assert room_data(body, room_id) == {"m.tag": {"tags": {"m.lowpriority": {}}}}
    assert elapsed < 5, elapsed


def test_parked_sync_is_not_woken_by_another_users_account_data(homeserver):
    alice, bob = new_user(homeserver, "sad"), new_user(homeserver, "sad")
    since = sync(bob)["next_batch"]
    parked = Parked(bob, since=since, timeout=1500)
    time.sleep(0.3)
    put(alice, global_path(alice, "org.example.a"), {"a": 1})
    body, elapsed = parked.result()
    assert body["account_data"]["events"] == []
    assert elapsed >= 1.4, elapsed


def test_sync_token_carries_the_account_data_position(homeserver):
    alice = new_user(homeserver, "sad")
    first = sync(alice)["next_batch"]
    put(alice, global_path(alice, "org.example.a"), {"a": 1})
    second = sync(alice, since=first)["next_batch"]
    def position(token):  # the account_data key
        return int(token[1:].split("_")[4])
    assert position(second) > position(first)


def test_sync_with_account_data_matches_the_spec(homeserver):
    alice = new_user(homeserver, "sad")
    room_id = create(alice)
    put(alice, global_path(alice, "org.example.a"), {"a": 1})
    put(alice, tags_path(alice, room_id, "u.t"), {"order": 0})
    resp = alice.get("/sync")
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, "/_matrix/client/v3/sync")
    since = resp.json()["next_batch"]
    put(alice, tags_path(alice, room_id, "u.u"), {})
    resp = alice.get("/sync", params={"since": since})
    assert_matches_spec(resp, "/_matrix/client/v3/sync")
    assert room_data(resp.json(), room_id) == {"m.tag": {"tags": {"u.t": {"order": 0}, "u.u": {}}}}


@pytest.mark.parametrize("room_version", ["1", "11", "12"])
def test_tags_sync_in_every_room_version(homeserver, room_version):
    alice = new_user(homeserver, "sad")
    room_id = create(alice, room_version=room_version)
    put(alice, tags_path(alice, room_id, "u.v"), {"order": 0.5})
    assert alice.get(tags_path(alice, room_id)).json() == {"tags": {"u.v": {"order": 0.5}}}
    assert room_data(sync(alice), room_id) == {"m.tag": {"tags": {"u.v": {"order": 0.5}}}}
