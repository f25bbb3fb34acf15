"""Presence (client-server API "Presence"): PUT/GET /presence/{userId}/status, who may see whom,
the m.presence events of /sync (initial, incremental, filtered, waking a parked sync), presence
set by syncing (set_presence) and its timeouts, and `presence: {enabled: false}`."""

import json
import time

import pytest

from tests.api.test_response_schemas import assert_matches_spec
from tests.api.test_sync import SYNC_PATH, assert_error, create, new_user, post, q, sync
from tests.api.test_sync_longpoll import Parked
from tests.harness import query, running_homeserver
from tests.pg import fresh_database

STATUS = "/_matrix/client/v3/presence/{userId}/status"
# Syncs of the observer that leave the observer's own presence alone (and out of the way).
QUIET = {"set_presence": "offline"}


def put_presence(client, body, user_id=None):
    return client.put(f"/presence/{q(user_id or client.user_id)}/status", body)


def get_presence(client, user_id):
    return client.get(f"/presence/{q(user_id)}/status")


def set_presence(client, presence, status_msg=None):
    body = {"presence": presence} if status_msg is None else {"presence": presence, "status_msg": status_msg}
    resp = put_presence(client, body)
    assert resp.status_code == 200, resp.text


def presence_events(body) -> dict:
    """sender -> content of the m.presence events of a sync (each sender at most once)."""
    events = body["presence"]["events"]
    assert all(e["type"] == "m.presence" for e in events), events
    senders = [e["sender"] for e in events]
    assert len(senders) == len(set(senders)), events
    return {e["sender"]: e["content"] for e in events}


def room_of(*clients) -> str:
    room_id = create(clients[0], preset="public_chat")
    for client in clients[1:]:
        post(client, f"/rooms/{q(room_id)}/join")
    return room_id


@pytest.fixture
def own_database(pg_server_dsn, template_db):
    """A database for a test's own server: two masters must not write one database."""
    with fresh_database(pg_server_dsn, "hs_test_presence", template=template_db) as dsn:
        yield dsn


# --- PUT and GET /presence/{userId}/status ---------------------------------------------------------

def test_own_presence_set_with_a_message_reads_back(homeserver):
    alice = new_user(homeserver, "pr")
    resp = put_presence(alice, {"presence": "online", "status_msg": "in the office"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert_matches_spec(resp, STATUS)
    resp = get_presence(alice, alice.user_id)
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, STATUS)
    body = resp.json()
    assert body["presence"] == "online"
    assert body["status_msg"] == "in the office"
    assert body["currently_active"] is True
    assert 0 <= body["last_active_ago"] < 5000


def test_setting_a_state_without_a_message_clears_the_message(homeserver):
    alice = new_user(homeserver, "pr")
    set_presence(alice, "online", "lunch")
    set_presence(alice, "unavailable")
    body = get_presence(alice, alice.user_id).json()
    assert body["presence"] == "unavailable"
    assert "status_msg" not in body
    assert body["currently_active"] is False


def test_a_user_who_never_set_presence_reads_as_offline(homeserver):
    alice = new_user(homeserver, "pr")
    resp = get_presence(alice, alice.user_id)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"presence": "offline", "currently_active": False}


def test_setting_another_users_presence_is_forbidden(homeserver):
    alice, bob = new_user(homeserver, "pr"), new_user(homeserver, "pr")
    room_of(alice, bob)
    assert_error(put_presence(alice, {"presence": "online"}, user_id=bob.user_id), 403, "M_FORBIDDEN")
    assert get_presence(bob, bob.user_id).json()["presence"] == "offline"


@pytest.mark.parametrize("body, errcode", [
    ({"presence": "busy"}, "M_INVALID_PARAM"),
    ({"presence": "ONLINE"}, "M_INVALID_PARAM"),
    ({}, "M_MISSING_PARAM"),
    ({"status_msg": "hi"}, "M_MISSING_PARAM"),
    ({"presence": 1}, "M_BAD_JSON"),
    ({"presence": None}, "M_BAD_JSON"),
    ({"presence": "online", "status_msg": 5}, "M_BAD_JSON"),
    ({"presence": "online", "status_msg": None}, "M_BAD_JSON"),
    ({"presence": "online", "status_msg": ["hi"]}, "M_BAD_JSON"),
])
def test_invalid_presence_bodies_are_refused_and_change_nothing(homeserver, body, errcode):
    alice = new_user(homeserver, "pr")
    assert_error(put_presence(alice, body), 400, errcode)
    assert get_presence(alice, alice.user_id).json()["presence"] == "offline"


def test_a_body_that_is_not_json_is_refused(homeserver):
    alice = new_user(homeserver, "pr")
    resp = alice.request("PUT", f"/presence/{q(alice.user_id)}/status", data=b"online",
                         headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "M_NOT_JSON")


def test_an_invalid_user_id_is_a_bad_parameter(homeserver):
    alice = new_user(homeserver, "pr")
    assert_error(get_presence(alice, "alice"), 400, "M_INVALID_PARAM")


def test_presence_needs_an_access_token(homeserver):
    alice = new_user(homeserver, "pr")
    resp = alice.get(f"/presence/{q(alice.user_id)}/status", token="not-a-token")
    assert_error(resp, 401, "M_UNKNOWN_TOKEN")


def test_only_room_mates_see_presence_and_only_while_they_share_a_room(homeserver):
    alice, bob = new_user(homeserver, "pr"), new_user(homeserver, "pr")
    set_presence(alice, "unavailable", "away")
    # Strangers and users that do not exist are answered alike, as Synapse does.
    assert_error(get_presence(bob, alice.user_id), 403, "M_FORBIDDEN")
    assert_error(get_presence(bob, f"@nobody{time.time_ns()}:{homeserver.server_name}"), 403, "M_FORBIDDEN")
    room_id = room_of(alice, bob)
    resp = get_presence(bob, alice.user_id)
    assert resp.status_code == 200, resp.text
    assert resp.json()["presence"] == "unavailable"
    assert resp.json()["status_msg"] == "away"
    post(bob, f"/rooms/{q(room_id)}/leave")
    assert_error(get_presence(bob, alice.user_id), 403, "M_FORBIDDEN")


def test_an_invited_user_does_not_yet_see_presence(homeserver):
    alice, bob = new_user(homeserver, "pr"), new_user(homeserver, "pr")
    room_id = create(alice)
    post(alice, f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id})
    assert_error(get_presence(bob, alice.user_id), 403, "M_FORBIDDEN")


# --- /sync -----------------------------------------------------------------------------------------

def test_initial_sync_has_the_presence_of_room_mates_not_of_strangers_nor_of_offline_users(homeserver):
    alice, bob, carol, dave = (new_user(homeserver, "pr") for _ in range(4))
    room_of(alice, bob, dave)
    set_presence(alice, "online", "hello")
    set_presence(carol, "online")  # a stranger to bob
    set_presence(dave, "unavailable")
    set_presence(dave, "offline")
    resp = bob.get("/sync", params=QUIET)
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, SYNC_PATH)
    events = presence_events(resp.json())
    assert set(events) == {alice.user_id}
    content = events[alice.user_id]
    assert content["presence"] == "online"
    assert content["status_msg"] == "hello"
    assert content["currently_active"] is True
    assert 0 <= content["last_active_ago"] < 5000


def test_incremental_sync_has_only_the_presence_changed_since(homeserver):
    alice, bob = new_user(homeserver, "pr"), new_user(homeserver, "pr")
    room_of(alice, bob)
    set_presence(alice, "online")
    since = sync(bob, **QUIET)["next_batch"]
    assert presence_events(sync(bob, since=since, **QUIET)) == {}
    set_presence(alice, "unavailable", "brb")
    body = sync(bob, since=since, **QUIET)
    events = presence_events(body)
    assert set(events) == {alice.user_id}
    assert events[alice.user_id]["presence"] == "unavailable"
    assert events[alice.user_id]["status_msg"] == "brb"
    assert presence_events(sync(bob, since=body["next_batch"], **QUIET)) == {}
    # full_state sends everyone's current presence again, as an initial sync does.
    assert set(presence_events(sync(bob, since=body["next_batch"], full_state="true", **QUIET))) == {alice.user_id}


def test_going_offline_shows_in_an_incremental_sync(homeserver):
    alice, bob = new_user(homeserver, "pr"), new_user(homeserver, "pr")
    room_of(alice, bob)
    set_presence(alice, "online")
    since = sync(bob, **QUIET)["next_batch"]
    set_presence(alice, "offline")
    events = presence_events(sync(bob, since=since, **QUIET))
    assert events[alice.user_id]["presence"] == "offline"


def test_a_parked_sync_of_a_room_mate_wakes_when_presence_changes(homeserver):
    alice, bob = new_user(homeserver, "pr"), new_user(homeserver, "pr")
    room_of(alice, bob)
    since = sync(bob, **QUIET)["next_batch"]
    parked = Parked(bob, since=since, timeout=10000, **QUIET)
    time.sleep(0.5)
    assert parked.thread.is_alive(), "returned before anything happened"
    set_presence(alice, "online", "here")
    body, elapsed = parked.result()
    assert elapsed < 1.5, elapsed
    assert presence_events(body)[alice.user_id]["status_msg"] == "here"


def test_a_strangers_presence_change_does_not_wake_a_parked_sync(homeserver):
    bob, stranger = new_user(homeserver, "pr"), new_user(homeserver, "pr")
    since = sync(bob, **QUIET)["next_batch"]
    parked = Parked(bob, since=since, timeout=1500, **QUIET)
    time.sleep(0.3)
    set_presence(stranger, "online")
    body, elapsed = parked.result()
    assert elapsed >= 1.4, elapsed
    assert presence_events(body) == {}


def test_the_presence_filter_chooses_senders_and_types_and_limits(homeserver):
    alice, bob, carol = (new_user(homeserver, "pr") for _ in range(3))
    room_of(alice, bob, carol)
    set_presence(alice, "online")
    set_presence(carol, "online")

    def senders(presence_filter):
        return list(presence_events(sync(bob, filter=json.dumps({"presence": presence_filter}), **QUIET)))

    assert sorted(senders({})) == sorted([alice.user_id, carol.user_id])
    assert senders({"senders": [alice.user_id]}) == [alice.user_id]
    assert senders({"not_senders": [alice.user_id]}) == [carol.user_id]
    assert senders({"types": ["m.presence"], "limit": 1}) == [carol.user_id]  # the newest change
    assert senders({"not_types": ["m.*"]}) == []
    assert senders({"limit": 0}) == []


def test_syncing_marks_the_user_online_for_room_mates(homeserver):
    alice, bob = new_user(homeserver, "pr"), new_user(homeserver, "pr")
    room_of(alice, bob)
    body = sync(bob)
    # Syncing is what made bob online: his own initial sync already says so.
    assert presence_events(body)[bob.user_id]["presence"] == "online"
    seen = get_presence(alice, bob.user_id).json()
    assert seen["presence"] == "online"
    assert seen["currently_active"] is True
    events = presence_events(sync(alice, **QUIET))
    assert events[bob.user_id]["presence"] == "online"


def test_set_presence_chooses_the_state_a_sync_sets_and_offline_leaves_it_alone(homeserver):
    alice = new_user(homeserver, "pr")
    sync(alice, set_presence="unavailable")
    assert get_presence(alice, alice.user_id).json()["presence"] == "unavailable"
    sync(alice, set_presence="offline")
    assert get_presence(alice, alice.user_id).json()["presence"] == "unavailable"
    set_presence(alice, "online", "keep me")
    sync(alice)
    body = get_presence(alice, alice.user_id).json()
    assert body["presence"] == "online"
    assert body["status_msg"] == "keep me"  # a sync never changes the message


def test_an_unknown_set_presence_is_a_bad_parameter(homeserver):
    alice = new_user(homeserver, "pr")
    assert_error(alice.get("/sync", params={"set_presence": "busy"}), 400, "M_INVALID_PARAM")


def test_syncing_again_while_active_is_no_news_for_room_mates(homeserver):
    alice, bob = new_user(homeserver, "pr"), new_user(homeserver, "pr")
    room_of(alice, bob)
    sync(bob)
    since = sync(alice, **QUIET)["next_batch"]
    sync(bob)
    sync(bob)
    assert presence_events(sync(alice, since=since, **QUIET)) == {}


# --- timeouts (a server with short ones) -----------------------------------------------------------

IDLE_MS, SYNC_ONLINE_MS = 1000, 2500


def wait_for_state(client, user_id, state, timeout_s) -> float:
    """Seconds until `user_id` reads as `state` (fails after `timeout_s`)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if get_presence(client, user_id).json()["presence"] == state:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{user_id} not {state} after {timeout_s} s: {get_presence(client, user_id).json()}")


def test_a_user_who_stops_syncing_goes_unavailable_then_offline(own_database):
    presence = {"idle_timeout": IDLE_MS, "sync_online_timeout": SYNC_ONLINE_MS}
    with running_homeserver(own_database, presence=presence) as server:
        alice, bob = new_user(server, "pr"), new_user(server, "pr")
        room_of(alice, bob)
        since = sync(bob, **QUIET)["next_batch"]
        sync(alice, timeout=0)
        synced = time.monotonic()
        assert get_presence(bob, alice.user_id).json()["presence"] == "online"
        wait_for_state(bob, alice.user_id, "unavailable", 5)
        assert time.monotonic() - synced >= IDLE_MS / 1000 - 0.1
        wait_for_state(bob, alice.user_id, "offline", 5)
        assert time.monotonic() - synced >= SYNC_ONLINE_MS / 1000 - 0.1
        # The room-mate heard both: the state now is offline.
        assert presence_events(sync(bob, since=since, **QUIET))[alice.user_id]["presence"] == "offline"


def test_a_sync_in_progress_keeps_the_user_from_going_offline(own_database):
    presence = {"idle_timeout": IDLE_MS, "sync_online_timeout": SYNC_ONLINE_MS}
    with running_homeserver(own_database, presence=presence) as server:
        alice, bob = new_user(server, "pr"), new_user(server, "pr")
        room_of(alice, bob)
        # Alice's filter keeps presence (her own going idle) from ending her long-poll early.
        no_presence = json.dumps({"presence": {"types": []}})
        since = sync(alice, filter=no_presence)["next_batch"]
        parked = Parked(alice, since=since, timeout=5000, filter=no_presence)
        time.sleep((SYNC_ONLINE_MS + 1500) / 1000)
        assert parked.thread.is_alive()
        # Idle by now, but still syncing: not offline.
        assert get_presence(bob, alice.user_id).json()["presence"] == "unavailable"
        parked.result()
        ended = time.monotonic()
        wait_for_state(bob, alice.user_id, "offline", 6)
        assert time.monotonic() - ended >= SYNC_ONLINE_MS / 1000 - 0.5


def test_a_parked_sync_wakes_when_a_room_mate_times_out(own_database):
    presence = {"idle_timeout": IDLE_MS, "sync_online_timeout": SYNC_ONLINE_MS}
    with running_homeserver(own_database, presence=presence) as server:
        alice, bob = new_user(server, "pr"), new_user(server, "pr")
        room_of(alice, bob)
        sync(alice, timeout=0)
        since = sync(bob, **QUIET)["next_batch"]
        body, elapsed = Parked(bob, since=since, timeout=10000, **QUIET).result()
        assert elapsed < 3, elapsed
        assert presence_events(body)[alice.user_id]["presence"] == "unavailable"


# --- presence switched off -------------------------------------------------------------------------

def test_with_presence_disabled_nothing_is_stored_or_synced(own_database):
    with running_homeserver(own_database, presence={"enabled": False}) as server:
        alice, bob, stranger = new_user(server, "pr"), new_user(server, "pr"), new_user(server, "pr")
        room_of(alice, bob)
        resp = put_presence(alice, {"presence": "online", "status_msg": "hi"})
        assert resp.status_code == 200, resp.text
        assert resp.json() == {}
        # Bodies are still checked.
        assert_error(put_presence(alice, {"presence": "busy"}), 400, "M_INVALID_PARAM")
        assert_error(put_presence(alice, {"presence": "online"}, user_id=bob.user_id), 403, "M_FORBIDDEN")
        # As Synapse: everyone reads as offline, to anyone.
        for reader in (alice, bob, stranger):
            resp = get_presence(reader, alice.user_id)
            assert resp.status_code == 200, resp.text
            assert resp.json() == {"presence": "offline"}
        since = sync(bob)["next_batch"]
        assert sync(alice)["presence"] == {"events": []}
        assert sync(bob, since=since)["presence"] == {"events": []}
        assert query(own_database, "SELECT count(*) FROM presence") == [(0,)]
