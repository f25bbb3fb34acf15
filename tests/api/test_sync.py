"""GET /sync (client-server API "Syncing"): the initial snapshot and incremental deltas of joined,
invited, knocked and left rooms; timelines in stream order with `limited` and `prev_batch`; state
at the start of the timeline (full, or the delta since `since`); summaries; filters; lazy-loaded
members; token validation; and the number of queries a sync costs."""

import json
import threading
import uuid

import pytest

from tests.api.test_response_schemas import assert_matches_spec
from tests.harness import Client, assert_error, create, q

SYNC_PATH = "/_matrix/client/v3/sync"
SECTIONS = ("join", "invite", "leave", "knock")


def new_user(homeserver, prefix="s") -> Client:
    return Client(homeserver).register(f"{prefix}{uuid.uuid4().hex[:10]}")


def send(client, room_id, body="hello", event_type="m.room.message") -> str:
    content = {"msgtype": "m.text", "body": body} if event_type == "m.room.message" else body
    resp = client.put(f"/rooms/{q(room_id)}/send/{event_type}/{uuid.uuid4().hex}", content)
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"]


def set_state(client, room_id, event_type, content, state_key="") -> str:
    resp = client.put(f"/rooms/{q(room_id)}/state/{event_type}/{q(state_key)}", content)
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"]


def post(client, path, body=None):
    resp = client.post(path, body or {})
    assert resp.status_code == 200, resp.text
    return resp.json()


def sync(client, **params) -> dict:
    if isinstance(params.get("filter"), dict):
        params["filter"] = json.dumps(params["filter"])
    resp = client.get("/sync", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def timeline_ids(body, room_id, section="join") -> list[str]:
    return [e["event_id"] for e in body["rooms"][section][room_id]["timeline"]["events"]]


def state_of(body, room_id, section="join") -> dict:
    return {(e["type"], e["state_key"]): e for e in body["rooms"][section][room_id]["state"]["events"]}


def client_state(body, room_id, section="join") -> dict:
    """The room state a client holds after applying `state`, then the timeline's state events."""
    room = body["rooms"][section][room_id]
    state = {}
    for event in room["state"]["events"] + room["timeline"]["events"]:
        if "state_key" in event:
            state[(event["type"], event["state_key"])] = event
    return state


def limit_filter(limit: int, **room) -> dict:
    return {"room": {"timeline": {"limit": limit}, **room}}


# --- initial sync ----------------------------------------------------------------------------------

def test_initial_sync_matches_the_spec_and_holds_the_joined_room(homeserver):
    alice = new_user(homeserver)
    room_id = create(alice, name="Shape", topic="the topic")
    message = send(alice, room_id, "first words")
    resp = alice.get("/sync")
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, SYNC_PATH)
    body = resp.json()
    assert body["next_batch"].startswith("s")
    room = body["rooms"]["join"][room_id]
    assert timeline_ids(body, room_id)[-1] == message
    assert all("room_id" not in e for e in room["timeline"]["events"] + room["state"]["events"])
    assert room["ephemeral"] == {"events": []} and room["account_data"] == {"events": []}
    assert room["summary"] == {"m.joined_member_count": 1, "m.invited_member_count": 0}
    assert body["rooms"]["invite"] == {} and body["rooms"]["leave"] == {} and body["rooms"]["knock"] == {}
    assert [e["type"] for e in body["account_data"]["events"]] == ["m.push_rules"]
    assert body["to_device"] == {"events": []}
    assert body["device_lists"] == {"changed": [], "left": []}
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert body["device_unused_fallback_key_types"] == []


def test_initial_sync_state_is_the_state_at_the_start_of_the_timeline(homeserver):
    alice = new_user(homeserver)
    room_id = create(alice, name="Start")
    old_topic = set_state(alice, room_id, "m.room.topic", {"topic": "old"})
    for i in range(12):
        send(alice, room_id, f"m{i}")
    new_topic = set_state(alice, room_id, "m.room.topic", {"topic": "new"})
    last = [send(alice, room_id, f"after {i}") for i in range(2)]
    body = sync(alice)
    room = body["rooms"]["join"][room_id]
    ids = timeline_ids(body, room_id)
    assert len(ids) == 10 and ids[-3:] == [new_topic, *last]
    assert room["timeline"]["limited"] is True
    state = state_of(body, room_id)
    # The topic changed inside the timeline: the state holds the one before it.
    assert state[("m.room.topic", "")]["event_id"] == old_topic
    assert state[("m.room.topic", "")]["content"] == {"topic": "old"}
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.power_levels", ""),
            ("m.room.join_rules", ""), ("m.room.member", alice.user_id)} <= set(state)
    assert not set(ids) & {e["event_id"] for e in state.values()}


def test_initial_sync_of_a_new_room_has_its_state_in_the_timeline(homeserver):
    alice = new_user(homeserver)
    room_id = create(alice)
    body = sync(alice, filter=limit_filter(50))
    room = body["rooms"]["join"][room_id]
    assert room["timeline"]["limited"] is False
    assert room["timeline"]["events"][0]["type"] == "m.room.create"
    assert room["state"]["events"] == []
    # No name: the summary names the room by its members, and there is no one but the user.
    assert room["summary"] == {"m.heroes": [], "m.joined_member_count": 1, "m.invited_member_count": 0}


@pytest.mark.parametrize("room_version", ["1", "11", "12"])
def test_sync_works_in_every_room_version(homeserver, room_version):
    alice, bob = new_user(homeserver), new_user(homeserver)
    room_id = create(alice, room_version=room_version, preset="public_chat", name=f"v{room_version}")
    post(bob, f"/rooms/{q(room_id)}/join")
    since = sync(bob)["next_batch"]
    sent = [send(alice, room_id, f"v{room_version} {i}") for i in range(3)]
    body = sync(bob, since=since)
    assert timeline_ids(body, room_id) == sent
    assert body["rooms"]["join"][room_id]["timeline"]["limited"] is False
    state = client_state(sync(bob), room_id)
    assert state[("m.room.member", bob.user_id)]["content"]["membership"] == "join"
    assert state[("m.room.name", "")]["content"] == {"name": f"v{room_version}"}
    create_event = state[("m.room.create", "")]
    assert create_event["content"].get("room_version", "1") == room_version


# --- incremental sync ------------------------------------------------------------------------------

def test_incremental_syncs_see_each_new_message_exactly_once(homeserver):
    alice, bob = new_user(homeserver), new_user(homeserver)
    room_id = create(alice, preset="public_chat")
    post(bob, f"/rooms/{q(room_id)}/join")
    since = sync(bob)["next_batch"]
    seen, sent = [], []
    for round_size in (1, 3, 0, 2):
        sent += [send(alice, room_id, f"round {len(sent) + i}") for i in range(round_size)]
        body = sync(bob, since=since)
        if round_size:
            seen += timeline_ids(body, room_id)
            assert body["rooms"]["join"][room_id]["timeline"]["limited"] is False
            assert body["rooms"]["join"][room_id]["state"]["events"] == []
        else:
            assert room_id not in body["rooms"]["join"]
        assert body["next_batch"] != since or not round_size
        since = body["next_batch"]
    assert seen == sent


def test_messages_sent_during_syncs_are_seen_once_and_none_is_missed(homeserver):
    alice, bob, carol = new_user(homeserver), new_user(homeserver), new_user(homeserver)
    room_id = create(alice, preset="public_chat")
    other_room = create(carol, preset="public_chat")
    for user in (bob, carol):
        post(user, f"/rooms/{q(room_id)}/join")
    post(bob, f"/rooms/{q(other_room)}/join")
    since = sync(bob)["next_batch"]
    sent = {}  # (sender, room) -> event IDs in the order they were sent

    def sender(client, target, count):
        mine = sent.setdefault((client.user_id, target), [])
        for i in range(count):
            mine.append(send(client, target, f"{client.user_id} {i}"))

    threads = [threading.Thread(target=sender, args=args) for args in
               ((alice, room_id, 20), (carol, room_id, 20), (carol, other_room, 20))]
    for t in threads:
        t.start()
    seen = {room_id: [], other_room: []}
    wide = limit_filter(100)
    while any(t.is_alive() for t in threads):
        body = sync(bob, since=since, filter=wide)
        for rid in seen:
            if rid in body["rooms"]["join"]:
                assert body["rooms"]["join"][rid]["timeline"]["limited"] is False
                seen[rid] += timeline_ids(body, rid)
        since = body["next_batch"]
    for t in threads:
        t.join()
    body = sync(bob, since=since, filter=wide)
    for rid in seen:
        if rid in body["rooms"]["join"]:
            seen[rid] += timeline_ids(body, rid)
    assert len(seen[room_id]) == len(set(seen[room_id])) == 40
    assert len(seen[other_room]) == len(set(seen[other_room])) == 20
    for (_user_id, rid), ids in sent.items():
        # Every message, once, in the order its sender sent it.
        assert [e for e in seen[rid] if e in set(ids)] == ids


def test_reusing_an_old_since_returns_the_same_events_again(homeserver):
    alice = new_user(homeserver)
    room_id = create(alice)
    since = sync(alice)["next_batch"]
    sent = [send(alice, room_id, f"again {i}") for i in range(3)]
    first = sync(alice, since=since)
    second = sync(alice, since=since)
    assert timeline_ids(first, room_id) == timeline_ids(second, room_id) == sent
    assert first["next_batch"] == second["next_batch"]


def test_limited_timeline_prev_batch_pages_back_to_exactly_the_missing_events(homeserver):
    alice = new_user(homeserver)
    room_id = create(alice)
    before = send(alice, room_id, "already seen")
    since = sync(alice)["next_batch"]
    sent = [send(alice, room_id, f"gap {i}") for i in range(15)]
    body = sync(alice, since=since, filter=limit_filter(5))
    timeline = body["rooms"]["join"][room_id]["timeline"]
    assert timeline["limited"] is True
    assert timeline_ids(body, room_id) == sent[-5:]
    resp = alice.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "from": timeline["prev_batch"],
                                                               "limit": 11})
    assert resp.status_code == 200, resp.text
    chunk = [e["event_id"] for e in resp.json()["chunk"]]
    assert chunk == sent[:10][::-1] + [before]


def test_unlimited_incremental_sync_has_no_state_the_timeline_carries_the_changes(homeserver):
    alice = new_user(homeserver)
    room_id = create(alice)
    since = sync(alice)["next_batch"]
    topic = set_state(alice, room_id, "m.room.topic", {"topic": "changed"})
    message = send(alice, room_id)
    body = sync(alice, since=since)
    assert timeline_ids(body, room_id) == [topic, message]
    assert body["rooms"]["join"][room_id]["state"]["events"] == []
    # Nobody joined or left: the summary the client has still holds.
    assert body["rooms"]["join"][room_id]["summary"] == {}


def test_limited_incremental_sync_gives_the_state_that_changed_in_the_gap(homeserver):
    alice, bob = new_user(homeserver), new_user(homeserver)
    room_id = create(alice, preset="public_chat", name="Delta")
    since = sync(alice)["next_batch"]
    topic = set_state(alice, room_id, "m.room.topic", {"topic": "in the gap"})
    set_state(alice, room_id, "m.room.name", {"name": "Renamed in the gap"})
    renamed = set_state(alice, room_id, "m.room.name", {"name": "Renamed twice"})
    bob_join = post(bob, f"/rooms/{q(room_id)}/join") and \
        alice.get(f"/rooms/{q(room_id)}/state/m.room.member/{q(bob.user_id)}", params={"format": "event"}).json()
    sent = [send(alice, room_id, f"after the gap {i}") for i in range(6)]
    body = sync(alice, since=since, filter=limit_filter(3))
    room = body["rooms"]["join"][room_id]
    assert room["timeline"]["limited"] is True and timeline_ids(body, room_id) == sent[-3:]
    state = state_of(body, room_id)
    assert {e["event_id"] for e in state.values()} == {topic, renamed, bob_join["event_id"]}
    # Bob joined: fresh member counts.
    assert room["summary"] == {"m.joined_member_count": 2, "m.invited_member_count": 0}


def test_full_state_returns_all_state_with_the_timeline_since(homeserver):
    alice = new_user(homeserver)
    room_id = create(alice, name="Full")
    quiet_room = create(alice, name="Quiet")
    since = sync(alice)["next_batch"]
    message = send(alice, room_id)
    body = sync(alice, since=since, full_state="true", timeout=10000)
    assert timeline_ids(body, room_id) == [message]
    assert ("m.room.name", "") in state_of(body, room_id)
    assert timeline_ids(body, quiet_room) == []
    assert state_of(body, quiet_room)[("m.room.name", "")]["content"] == {"name": "Quiet"}
    assert body["rooms"]["join"][quiet_room]["timeline"]["prev_batch"].startswith("t")


def test_newly_joined_room_comes_with_full_state_and_recent_events(homeserver):
    alice, bob = new_user(homeserver), new_user(homeserver)
    room_id = create(alice, preset="public_chat", name="Joined later", topic="t")
    history = [send(alice, room_id, f"history {i}") for i in range(12)]
    since = sync(bob)["next_batch"]
    post(bob, f"/rooms/{q(room_id)}/join")
    body = sync(bob, since=since)
    room = body["rooms"]["join"][room_id]
    ids = timeline_ids(body, room_id)
    # Shared history: the recent events from before the join show too.
    assert len(ids) == 10 and ids[:9] == history[-9:]
    assert room["timeline"]["events"][-1]["state_key"] == bob.user_id
    assert room["timeline"]["limited"] is True
    state = state_of(body, room_id)
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.topic", ""), ("m.room.power_levels", ""),
            ("m.room.join_rules", ""), ("m.room.history_visibility", ""),
            ("m.room.member", alice.user_id)} <= set(state)
    assert room["summary"] == {"m.joined_member_count": 2, "m.invited_member_count": 0}


def test_newly_joined_room_with_joined_history_hides_what_came_before_the_join(homeserver):
    alice, bob = new_user(homeserver), new_user(homeserver)
    room_id = create(alice, preset="public_chat",
                     initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                                     "content": {"history_visibility": "joined"}}])
    hidden = [send(alice, room_id, f"before bob {i}") for i in range(10)]
    since = sync(bob)["next_batch"]
    post(bob, f"/rooms/{q(room_id)}/join")
    after = send(alice, room_id, "after bob")
    body = sync(bob, since=since)
    events = body["rooms"]["join"][room_id]["timeline"]["events"]
    assert not {e["event_id"] for e in events} & set(hidden)
    assert [(e["type"], e.get("state_key")) for e in events] == [("m.room.member", bob.user_id),
                                                                  ("m.room.message", None)]
    assert events[-1]["event_id"] == after
    assert body["rooms"]["join"][room_id]["timeline"]["limited"] is True


def test_own_messages_carry_the_transaction_id_only_for_the_sending_device(homeserver):
    alice = new_user(homeserver)
    other_device = Client(homeserver).login(alice.user_id.split(":")[0][1:])
    room_id = create(alice)
    since = sync(alice)["next_batch"]
    resp = alice.put(f"/rooms/{q(room_id)}/send/m.room.message/my-txn-1", {"msgtype": "m.text", "body": "t"})
    assert resp.status_code == 200, resp.text
    mine = sync(alice, since=since)["rooms"]["join"][room_id]["timeline"]["events"]
    assert mine[-1]["unsigned"]["transaction_id"] == "my-txn-1"
    theirs = sync(other_device, since=since)["rooms"]["join"][room_id]["timeline"]["events"]
    assert theirs[-1]["event_id"] == mine[-1]["event_id"]
    assert "transaction_id" not in theirs[-1]["unsigned"]


def test_redacted_event_in_the_timeline_shows_pruned_with_its_redaction(homeserver):
    alice = new_user(homeserver)
    room_id = create(alice)
    since = sync(alice)["next_batch"]
    message = send(alice, room_id, "regrettable")
    resp = alice.put(f"/rooms/{q(room_id)}/redact/{q(message)}/{uuid.uuid4().hex}", {"reason": "oops"})
    assert resp.status_code == 200, resp.text
    redaction = resp.json()["event_id"]
    events = sync(alice, since=since)["rooms"]["join"][room_id]["timeline"]["events"]
    assert [e["event_id"] for e in events] == [message, redaction]
    assert events[0]["content"] == {}
    because = events[0]["unsigned"]["redacted_because"]
    assert because["event_id"] == redaction and because["room_id"] == room_id
    assert events[1]["redacts"] == message

# --- invites, knocks, leaves -------------------------------------------------------------------------

def test_invite_appears_with_stripped_state_then_moves_to_join(homeserver):
    alice, bob = new_user(homeserver), new_user(homeserver)
    room_id = create(alice, preset="private_chat", name="Secret", topic="shh")
    since = sync(bob)["next_batch"]
    post(alice, f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id})
    resp = bob.get("/sync", params={"since": since})
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, SYNC_PATH)
    body = resp.json()
    assert room_id not in body["rooms"]["join"]
    events = body["rooms"]["invite"][room_id]["invite_state"]["events"]
    assert all(set(e) == {"type", "state_key", "content", "sender"} for e in events)
    by_key = {(e["type"], e["state_key"]): e for e in events}
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.topic", ""), ("m.room.join_rules", ""),
            ("m.room.member", alice.user_id), ("m.room.member", bob.user_id)} <= set(by_key)
    assert by_key[("m.room.name", "")]["content"] == {"name": "Secret"}
    invite = by_key[("m.room.member", bob.user_id)]
    assert invite["sender"] == alice.user_id and invite["content"]["membership"] == "invite"
    # An initial sync shows the pending invite too; the next incremental one does not repeat it.
    assert room_id in sync(bob)["rooms"]["invite"]
    since = body["next_batch"]
    assert room_id not in sync(bob, since=since)["rooms"]["invite"]
    post(bob, f"/rooms/{q(room_id)}/join")
    body = sync(bob, since=since)
    assert room_id not in body["rooms"]["invite"]
    assert body["rooms"]["join"][room_id]["timeline"]["events"][-1]["content"]["membership"] == "join"
    assert ("m.room.name", "") in client_state(body, room_id)


def test_invite_state_shows_a_redacted_name_redacted(homeserver):
    alice, bob = new_user(homeserver), new_user(homeserver)
    room_id = create(alice, preset="private_chat")
    name = set_state(alice, room_id, "m.room.name", {"name": "better unsaid"})
    resp = alice.put(f"/rooms/{q(room_id)}/redact/{q(name)}/{uuid.uuid4().hex}", {})
    assert resp.status_code == 200, resp.text
    post(alice, f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id})
    events = sync(bob)["rooms"]["invite"][room_id]["invite_state"]["events"]
    by_key = {(e["type"], e["state_key"]): e for e in events}
    assert by_key[("m.room.name", "")]["content"] == {}


def test_rejected_invite_moves_to_leave_with_only_the_rejection(homeserver):
    alice, bob = new_user(homeserver), new_user(homeserver)
    room_id = create(alice, preset="private_chat",
                     initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                                     "content": {"history_visibility": "joined"}}])
    send(alice, room_id, "not for bob")
    post(alice, f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id})
    since = sync(bob)["next_batch"]
    post(bob, f"/rooms/{q(room_id)}/leave")
    body = sync(bob, since=since)
    left = body["rooms"]["leave"][room_id]
    assert [(e["type"], e["state_key"], e["content"]["membership"]) for e in left["timeline"]["events"]] == \
        [("m.room.member", bob.user_id, "leave")]
    assert left["state"]["events"] == []
    assert room_id not in body["rooms"]["invite"]


def test_knock_appears_in_knock_with_stripped_state(homeserver):
    alice, bob = new_user(homeserver), new_user(homeserver)
    room_id = create(alice, room_version="11", name="Knock here",
                     initial_state=[{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}])
    since = sync(bob)["next_batch"]
    post(bob, f"/knock/{q(room_id)}", {"reason": "let me in"})
    body = sync(bob, since=since)
    events = body["rooms"]["knock"][room_id]["knock_state"]["events"]
    by_key = {(e["type"], e["state_key"]): e for e in events}
    assert by_key[("m.room.join_rules", "")]["content"] == {"join_rule": "knock"}
    assert by_key[("m.room.name", "")]["content"] == {"name": "Knock here"}
    assert by_key[("m.room.member", bob.user_id)]["content"]["membership"] == "knock"
    assert room_id not in body["rooms"]["join"] and room_id not in body["rooms"]["invite"]


def test_leave_section_holds_the_timeline_up_to_and_including_the_leave(homeserver):
    alice, bob = new_user(homeserver), new_user(homeserver)
    room_id = create(alice, preset="public_chat")
    post(bob, f"/rooms/{q(room_id)}/join")
    since = sync(bob)["next_batch"]
    before = send(alice, room_id, "before the leave")
    post(bob, f"/rooms/{q(room_id)}/leave")
    send(alice, room_id, "after the leave")
    body = sync(bob, since=since)
    assert room_id not in body["rooms"]["join"]
    left = body["rooms"]["leave"][room_id]
    events = left["timeline"]["events"]
    assert events[0]["event_id"] == before
    assert (events[-1]["type"], events[-1]["state_key"], events[-1]["content"]["membership"]) == \
        ("m.room.member", bob.user_id, "leave")
    assert len(events) == 2 and left["timeline"]["limited"] is False
    assert left["state"]["events"] == []
    assert_matches_spec(bob.get("/sync", params={"since": since}), SYNC_PATH)
    # Once: the next sync does not show it again.
    again = sync(bob, since=body["next_batch"])
    assert room_id not in again["rooms"]["leave"] and room_id not in again["rooms"]["join"]


@pytest.mark.parametrize("action", ["kick", "ban"])
def test_kicked_or_banned_user_gets_the_room_in_leave(homeserver, action):
    alice, bob = new_user(homeserver), new_user(homeserver)
    room_id = create(alice, preset="public_chat")
    post(bob, f"/rooms/{q(room_id)}/join")
    since = sync(bob)["next_batch"]
    post(alice, f"/rooms/{q(room_id)}/{action}", {"user_id": bob.user_id, "reason": "enough"})
    body = sync(bob, since=since)
    last = body["rooms"]["leave"][room_id]["timeline"]["events"][-1]
    assert last["sender"] == alice.user_id and last["state_key"] == bob.user_id
    assert last["content"]["membership"] == ("leave" if action == "kick" else "ban")
    assert last["content"]["reason"] == "enough"
    assert room_id not in body["rooms"]["join"]


def test_initial_sync_shows_left_rooms_only_with_include_leave_and_never_forgotten_ones(homeserver):
    alice, bob = new_user(homeserver), new_user(homeserver)
    kept = create(alice, preset="public_chat", name="Left, kept")
    forgotten = create(alice, preset="public_chat", name="Left, forgotten")
    for room_id in (kept, forgotten):
        post(bob, f"/rooms/{q(room_id)}/join")
        send(bob, room_id, "bye")
    since = sync(bob)["next_batch"]
    for room_id in (kept, forgotten):
        post(bob, f"/rooms/{q(room_id)}/leave")
    post(bob, f"/rooms/{q(forgotten)}/forget")
    assert sync(bob)["rooms"]["leave"] == {}
    body = sync(bob, filter={"room": {"include_leave": True}})
    assert set(body["rooms"]["leave"]) == {kept}
    left = body["rooms"]["leave"][kept]
    assert left["timeline"]["events"][-1]["content"]["membership"] == "leave"
    assert client_state(body, kept, "leave")[("m.room.name", "")]["content"] == {"name": "Left, kept"}
    assert set(sync(bob, since=since)["rooms"]["leave"]) == {kept}


# --- filters ---------------------------------------------------------------------------------------

def test_room_filters_choose_rooms_and_timeline_events(homeserver):
    alice = new_user(homeserver)
    wanted, unwanted = create(alice), create(alice)
    since = sync(alice)["next_batch"]
    message = send(alice, wanted, "keep")
    notice = send(alice, wanted, {"msgtype": "m.notice", "body": "x"}, "org.example.custom")
    send(alice, unwanted, "drop")
    body = sync(alice, since=since, filter={"room": {"rooms": [wanted], "timeline": {"types": ["m.room.message"]}}})
    assert set(body["rooms"]["join"]) == {wanted}
    assert timeline_ids(body, wanted) == [message]
    body = sync(alice, since=since, filter={"room": {"not_rooms": [wanted]}})
    assert set(body["rooms"]["join"]) == {unwanted}
    body = sync(alice, since=since, filter={"room": {"timeline": {"not_types": ["m.room.message"]}}})
    assert timeline_ids(body, wanted) == [notice]
    assert unwanted not in body["rooms"]["join"]


def test_filtered_out_state_change_still_reaches_the_client_as_state(homeserver):
    alice = new_user(homeserver)
    room_id = create(alice, name="Before")
    since = sync(alice)["next_batch"]
    renamed = set_state(alice, room_id, "m.room.name", {"name": "After"})
    body = sync(alice, since=since, filter={"room": {"timeline": {"types": ["m.room.message"]}}})
    assert timeline_ids(body, room_id) == []
    assert [e["event_id"] for e in body["rooms"]["join"][room_id]["state"]["events"]] == [renamed]


def test_state_filter_and_event_fields(homeserver):
    alice = new_user(homeserver)
    room_id = create(alice, name="Fields", topic="kept out")
    send(alice, room_id, "body text")
    body = sync(alice, filter={"event_fields": ["type", "content.body", "event_id"],
                               "room": {"state": {"not_types": ["m.room.topic"]}, "timeline": {"limit": 1}}})
    room = body["rooms"]["join"][room_id]
    assert room["timeline"]["events"] == [{"type": "m.room.message", "content": {"body": "body text"},
                                           "event_id": room["timeline"]["events"][0]["event_id"]}]
    types = {e["type"] for e in room["state"]["events"]}
    assert "m.room.topic" not in types and "m.room.name" in types
    assert all(set(e) <= {"type", "content", "event_id"} for e in room["state"]["events"])


def test_stored_filter_by_id_applies(homeserver):
    alice = new_user(homeserver)
    room_id = create(alice)
    sent = [send(alice, room_id, f"{i}") for i in range(4)]
    resp = alice.post(f"/user/{q(alice.user_id)}/filter", limit_filter(2))
    assert resp.status_code == 200, resp.text
    body = sync(alice, filter=resp.json()["filter_id"])
    assert timeline_ids(body, room_id) == sent[-2:]


def test_lazy_load_members_sends_only_the_senders_and_the_user(homeserver):
    alice = new_user(homeserver)
    others = [new_user(homeserver) for _ in range(3)]
    room_id = create(alice, preset="public_chat", name="Lazy")
    for user in others:
        post(user, f"/rooms/{q(room_id)}/join")
    talker = others[1]
    sent = [send(talker, room_id, f"talk {i}") for i in range(4)]
    lazy = {"room": {"timeline": {"limit": 4}, "state": {"lazy_load_members": True}}}
    body = sync(alice, filter=lazy)
    assert timeline_ids(body, room_id) == sent
    members = {k[1] for k in state_of(body, room_id) if k[0] == "m.room.member"}
    assert members == {alice.user_id, talker.user_id}
    assert ("m.room.name", "") in state_of(body, room_id)
    # Without lazy loading, every member.
    full = sync(alice, filter=limit_filter(4))
    assert {k[1] for k in state_of(full, room_id) if k[0] == "m.room.member"} == \
        {alice.user_id, *(u.user_id for u in others)}
    # Incremental: the new sender's member event comes with their message.
    since = body["next_batch"]
    quiet = others[2]
    spoke = send(quiet, room_id, "finally")
    inc = sync(alice, since=since, filter=lazy)
    assert timeline_ids(inc, room_id) == [spoke]
    assert {k[1] for k in state_of(inc, room_id) if k[0] == "m.room.member"} == {quiet.user_id}


def test_lazy_load_members_includes_the_heroes_of_an_unnamed_room(homeserver):
    alice, bob, carol = new_user(homeserver), new_user(homeserver), new_user(homeserver)
    room_id = create(alice, preset="public_chat")
    for user in (bob, carol):
        post(user, f"/rooms/{q(room_id)}/join")
    sent = [send(alice, room_id, f"alone {i}") for i in range(3)]
    body = sync(alice, filter={"room": {"timeline": {"limit": 3}, "state": {"lazy_load_members": True}}})
    assert timeline_ids(body, room_id) == sent
    assert body["rooms"]["join"][room_id]["summary"]["m.heroes"] == [bob.user_id, carol.user_id]
    members = {k[1] for k in state_of(body, room_id) if k[0] == "m.room.member"}
    assert members == {alice.user_id, bob.user_id, carol.user_id}


def test_heroes_name_an_unnamed_room(homeserver):
    alice = new_user(homeserver)
    others = [new_user(homeserver) for _ in range(6)]
    room_id = create(alice, preset="public_chat")
    for user in others:
        post(user, f"/rooms/{q(room_id)}/join")
    post(alice, f"/rooms/{q(room_id)}/invite", {"user_id": new_user(homeserver).user_id})
    post(others[0], f"/rooms/{q(room_id)}/leave")
    summary = sync(alice)["rooms"]["join"][room_id]["summary"]
    assert summary["m.joined_member_count"] == 6 and summary["m.invited_member_count"] == 1
    # The first five joined or invited members other than the user, in the order they came.
    assert summary["m.heroes"] == [u.user_id for u in others[1:6]]


# --- parameters ----------------------------------------------------------------------------------

@pytest.mark.parametrize("params", [
    {"since": "not-a-token"}, {"since": "s1_x"}, {"since": "t1-2"}, {"since": "s" + "_1" * 20},
    {"timeout": "soon"}, {"timeout": "-1"}, {"full_state": "maybe"}, {"set_presence": "busy"},
    {"filter": '{"room": '}, {"filter": '{"room": {"timeline": {"limit": -1}}}'}, {"filter": "no-such-filter"},
])
def test_invalid_parameters_are_invalid_param(homeserver, params):
    alice = new_user(homeserver)
    assert_error(alice.get("/sync", params=params), 400, "M_INVALID_PARAM")


def test_set_presence_values_are_accepted(homeserver):
    alice = new_user(homeserver)
    for value in ("online", "offline", "unavailable"):
        assert alice.get("/sync", params={"set_presence": value}).status_code == 200


def test_since_from_the_future_reads_as_now(homeserver):
    alice = new_user(homeserver)
    room_id = create(alice)
    body = sync(alice, since="s999999999")
    assert body["rooms"]["join"] == {}
    message = send(alice, room_id)
    assert timeline_ids(sync(alice, since=body["next_batch"]), room_id) == [message]


def test_sync_requires_an_access_token(homeserver):
    assert_error(Client(homeserver).get("/sync"), 401, "M_MISSING_TOKEN")


def test_r0_prefix_serves_sync_too(homeserver):
    alice = new_user(homeserver)
    resp = alice.get("/_matrix/client/r0/sync")
    assert resp.status_code == 200 and "next_batch" in resp.json()


# --- cost ----------------------------------------------------------------------------------------

class CountingDatabase:
    """The real Database, counting the transactions (each store call is one)."""

    def __init__(self, dsn):
        from hs.storage.database import Database
        self.db = Database(dsn, max_connections=2)
        self.count = 0

    def run_txn(self, desc, func, *args, **kwargs):
        self.count += 1
        return self.db.run_txn(desc, func, *args, **kwargs)

    def execute(self, desc, sql, params=()):
        self.count += 1
        return self.db.execute(desc, sql, params)


@pytest.fixture(scope="module")
def counted(db_dsn):
    """A RoomSync in this process over the server's database, with cold caches."""
    from hs.handlers.auth import Requester
    from hs.handlers.relations import RelationHandler
    from hs.handlers.room_reads import RoomReadHandler
    from hs.handlers.sync_rooms import RoomSync
    from hs.storage.events import EventStore
    from hs.storage.relations import RelationStore
    from hs.storage.rooms import RoomStore
    from hs.storage.state import StateStore
    from hs.storage.sync import SyncStore
    db = CountingDatabase(db_dsn)
    state = StateStore(db)
    events = EventStore(db, state)
    reads = RoomReadHandler(RoomStore(db), events, state)
    reads.bundled_aggregations = RelationHandler(RelationStore(db), events, reads).bundled_aggregations
    room_sync = RoomSync(SyncStore(db), events, state, reads)

    def build(client, since, now, full_state=False, sync_filter=None):
        from hs.filtering import DEFAULT_FILTER
        requester = Requester(client.user_id, client.device_id, False, 0)
        db.count = 0
        rooms, _, _ = room_sync.build(requester, since, now, full_state, sync_filter or DEFAULT_FILTER)
        return rooms, db.count

    yield build
    db.db.close()


def _position(token: str) -> int:
    return int(token[1:].split("_")[0])


def _user_in_rooms(homeserver, count):
    user, friend = new_user(homeserver, "many"), new_user(homeserver, "friend")
    for i in range(count):
        room_id = create(user, preset="public_chat", name=f"room {i}")
        post(friend, f"/rooms/{q(room_id)}/join")
        send(friend, room_id, f"hello {i}")
        set_state(user, room_id, "m.room.topic", {"topic": f"topic {i}"})
    return user, friend


def test_initial_sync_costs_a_bounded_number_of_queries_per_room(homeserver, counted):
    small, _ = _user_in_rooms(homeserver, 10)
    large, large_friend = _user_in_rooms(homeserver, 50)
    now = _position(sync(large)["next_batch"])
    small_rooms, small_cost = counted(small, None, now)
    large_rooms, large_cost = counted(large, None, now)
    assert len(small_rooms["join"]) == 10 and len(large_rooms["join"]) == 50
    assert (large_cost - small_cost) / 40 <= 5, (small_cost, large_cost)
    assert large_cost <= 5 * 50, large_cost
    # Incremental with nothing new: nothing beyond the memberships when the stream stood still,
    # and one more read when it moved in rooms the user is not in.
    rooms, cost = counted(large, now, now)
    assert cost == 1 and not any(rooms.values())
    elsewhere = create(new_user(homeserver))
    assert elsewhere
    later = _position(sync(large)["next_batch"])
    rooms, cost = counted(large, now, later)
    assert cost <= 2 and not any(rooms.values()), cost
    # A message in one of the 50 rooms: a fixed number of queries, not one per room.
    room_id = next(iter(large_rooms["join"]))
    send(large_friend, room_id, "news")
    rooms, cost = counted(large, later, _position(sync(large)["next_batch"]))
    assert list(rooms["join"]) == [room_id]
    assert cost <= 10, cost
