"""What other servers may read from us (server-server API: /event, /state, /state_ids,
/event_auth, /backfill, /get_missing_events, /timestamp_to_event, the profile and directory
queries), asked by a peer played by the test with signed requests over TLS to our real
homeserver: who may read what, server ACLs, history visibility, and the shapes answered."""

import uuid

import pytest
import requests

from tests.federation.fake_peer import FakePeer
from tests.federation_fixture import SyncWatcher, create_room, ok, register, send_text
from tests.harness import assert_error, free_port, q

V1 = "/_matrix/federation/v1"


@pytest.fixture(scope="module")
def outsider(test_ca):
    """A server in none of the rooms."""
    fake = FakePeer(test_ca)
    try:
        yield fake
    finally:
        fake.stop()


class Room:
    """A room on our server with a user of the peer joined."""

    def __init__(self, ours, peer, **create):
        self.ours, self.peer = ours, peer
        self.local = register(ours, "o")
        self.room_id = create_room(self.local, **({"preset": "public_chat"} | create))
        self.before_join = [send_text(self.local, self.room_id, f"before {i}") for i in range(2)]
        localpart = "p" + uuid.uuid4().hex[:8]
        self.version, self.join, _ = peer.join(ours, self.room_id, localpart)
        self.join_id = peer.event_id(self.version, self.join)
        SyncWatcher(self.local).wait_for_membership(self.room_id, peer.user(localpart), "join")

    def get(self, path: str, params=None, server=None):
        return (server or self.peer).request(self.ours, "GET", V1 + path, params=params)

    def event(self, event_id: str, server=None):
        return self.get(f"/event/{q(event_id)}", server=server)

    def pdu_id(self, pdu: dict) -> str:
        return self.peer.event_id(self.version, pdu)


@pytest.fixture(scope="module")
def room(ours, peer):
    return Room(ours, peer)


def _state_ids(local, room_id) -> set[str]:
    return {e["event_id"] for e in ok(local.get(f"/rooms/{q(room_id)}/state"))}


# --- /event ---------------------------------------------------------------------------------------

def test_event_is_served_as_the_stored_pdu(room):
    event_id = send_text(room.local, room.room_id, "served")
    body = ok(room.event(event_id))
    assert body["origin"] == room.ours.server_name and isinstance(body["origin_server_ts"], int)
    [pdu] = body["pdus"]
    assert room.pdu_id(pdu) == event_id  # byte-for-byte what was signed, so the ID recomputes
    assert pdu["content"] == {"msgtype": "m.text", "body": "served"}
    assert "unsigned" not in pdu
    assert room.ours.server_name in pdu["signatures"]


def test_unknown_event_is_not_found(room):
    assert_error(room.event("$nosuchevent"), 404, "M_NOT_FOUND")


def test_a_server_with_no_user_in_the_room_may_not_read_it(room, outsider):
    event_id = send_text(room.local, room.room_id, "private to members")
    assert_error(room.event(event_id, server=outsider), 403, "M_FORBIDDEN")
    for path, params in ((f"/state_ids/{q(room.room_id)}", {"event_id": event_id}),
                         (f"/state/{q(room.room_id)}", {"event_id": event_id}),
                         (f"/event_auth/{q(room.room_id)}/{q(event_id)}", None),
                         (f"/backfill/{q(room.room_id)}", {"v": event_id, "limit": 5})):
        assert_error(room.get(path, params, server=outsider), 403, "M_FORBIDDEN")
    missing = outsider.request(room.ours, "POST", f"{V1}/get_missing_events/{q(room.room_id)}",
                               {"earliest_events": [], "latest_events": [event_id]})
    assert_error(missing, 403, "M_FORBIDDEN")


def test_unsigned_requests_are_refused(room):
    resp = requests.get(f"{room.ours.fed_url}{V1}/state_ids/{q(room.room_id)}", params={"event_id": room.join_id},
                        verify=room.peer.ca.cert_path, timeout=10)
    assert_error(resp, 401, "M_UNAUTHORIZED")


# --- history visibility ------------------------------------------------------------------------------

def test_joined_history_from_before_the_servers_join_is_served_redacted(ours, peer):
    """Under `joined` the peer's users saw nothing before their join: those events come
    redacted (the graph stays whole), the join and what follows in full."""
    hidden = Room(ours, peer, initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                                              "content": {"history_visibility": "joined"}}])
    after = send_text(hidden.local, hidden.room_id, "after the join")
    [before_pdu] = ok(hidden.event(hidden.before_join[0]))["pdus"]
    assert before_pdu["content"] == {}
    assert hidden.pdu_id(before_pdu) == hidden.before_join[0]  # redaction keeps the hashes
    [after_pdu] = ok(hidden.event(after))["pdus"]
    assert after_pdu["content"]["body"] == "after the join"

    pdus = ok(hidden.get(f"/backfill/{q(hidden.room_id)}", {"v": after, "limit": 100}))["pdus"]
    by_id = {hidden.pdu_id(p): p for p in pdus}
    assert by_id[after]["content"]["body"] == "after the join"
    assert all(by_id[e]["content"] == {} for e in hidden.before_join)
    assert by_id[hidden.join_id]["content"]["membership"] == "join"


def test_shared_history_is_served_in_full(room):
    [pdu] = ok(room.event(room.before_join[0]))["pdus"]
    assert pdu["content"]["body"] == "before 0"


# --- state --------------------------------------------------------------------------------------------

def test_state_ids_at_a_message_is_the_rooms_state_then(room):
    event_id = send_text(room.local, room.room_id, "state here")
    body = ok(room.get(f"/state_ids/{q(room.room_id)}", {"event_id": event_id}))
    assert set(body["pdu_ids"]) == _state_ids(room.local, room.room_id)


def test_state_ids_at_a_state_event_is_the_state_before_it(room):
    """The asker checks the event against this state, so it must not contain the event."""
    body = ok(room.get(f"/state_ids/{q(room.room_id)}", {"event_id": room.join_id}))
    assert room.join_id not in body["pdu_ids"]
    assert _state_ids(room.local, room.room_id) - set(body["pdu_ids"]) >= {room.join_id}


def test_state_serves_the_same_events_as_state_ids(room):
    event_id = send_text(room.local, room.room_id, "full state")
    ids = ok(room.get(f"/state_ids/{q(room.room_id)}", {"event_id": event_id}))
    full = ok(room.get(f"/state/{q(room.room_id)}", {"event_id": event_id}))
    assert {room.pdu_id(p) for p in full["pdus"]} == set(ids["pdu_ids"])
    assert {room.pdu_id(p) for p in full["auth_chain"]} == set(ids["auth_chain_ids"])
    # The auth chain closes the state: everything a state event cites is served too.
    cited = {a for p in full["pdus"] + full["auth_chain"] for a in p["auth_events"]}
    assert cited and cited <= set(ids["pdu_ids"]) | set(ids["auth_chain_ids"])


def test_state_needs_an_event_id_of_the_room(room):
    assert_error(room.get(f"/state_ids/{q(room.room_id)}"), 400, "M_MISSING_PARAM")
    assert_error(room.get(f"/state_ids/{q(room.room_id)}", {"event_id": "$nosuchevent"}), 404, "M_NOT_FOUND")


def test_event_auth_is_the_events_auth_chain(room):
    event_id = send_text(room.local, room.room_id, "authorised")
    [pdu] = ok(room.event(event_id))["pdus"]
    chain = ok(room.get(f"/event_auth/{q(room.room_id)}/{q(event_id)}"))["auth_chain"]
    chain_ids = {room.pdu_id(p) for p in chain}
    assert set(pdu["auth_events"]) <= chain_ids
    assert event_id not in chain_ids
    assert {p["type"] for p in chain} >= {"m.room.create", "m.room.power_levels", "m.room.member"}


# --- history ---------------------------------------------------------------------------------------

def test_backfill_walks_back_newest_first_from_the_given_event(room):
    sent = [send_text(room.local, room.room_id, f"history {i}") for i in range(5)]
    body = ok(room.get(f"/backfill/{q(room.room_id)}", {"v": sent[-1], "limit": 3}))
    assert body["origin"] == room.ours.server_name
    assert [room.pdu_id(p) for p in body["pdus"]] == [sent[4], sent[3], sent[2]]

    everything = ok(room.get(f"/backfill/{q(room.room_id)}", {"v": sent[-1], "limit": 1000}))["pdus"]
    depths = [p["depth"] for p in everything]
    assert depths == sorted(depths, reverse=True)
    assert everything[-1]["type"] == "m.room.create"
    assert_error(room.get(f"/backfill/{q(room.room_id)}", {"limit": 3}), 400, "M_MISSING_PARAM")


def test_get_missing_events_returns_the_gap_oldest_first(room):
    sent = [send_text(room.local, room.room_id, f"gap {i}") for i in range(5)]
    path = f"{V1}/get_missing_events/{q(room.room_id)}"
    body = ok(room.peer.request(room.ours, "POST", path, {"earliest_events": [sent[0]], "latest_events": [sent[4]]}))
    assert [room.pdu_id(p) for p in body["events"]] == sent[1:4]

    limited = ok(room.peer.request(room.ours, "POST", path, {"earliest_events": [sent[0]],
                                                             "latest_events": [sent[4]], "limit": 2}))
    assert [room.pdu_id(p) for p in limited["events"]] == sent[2:4]

    [third] = ok(room.event(sent[2]))["pdus"]
    deep = ok(room.peer.request(room.ours, "POST", path, {"earliest_events": [], "latest_events": [sent[4]],
                                                          "min_depth": third["depth"]}))
    assert [room.pdu_id(p) for p in deep["events"]] == sent[2:4]

    bad = room.peer.request(room.ours, "POST", path, {"earliest_events": "x", "latest_events": [sent[4]]})
    assert_error(bad, 400, "M_BAD_JSON")


def test_timestamp_to_event(room):
    event_id = send_text(room.local, room.room_id, "at a time")
    [pdu] = ok(room.event(event_id))["pdus"]
    ts = pdu["origin_server_ts"]
    for direction in ("f", "b"):
        found = ok(room.get(f"/timestamp_to_event/{q(room.room_id)}", {"ts": ts, "dir": direction}))
        assert found["origin_server_ts"] == ts
    assert_error(room.get(f"/timestamp_to_event/{q(room.room_id)}", {"ts": ts + 3_600_000, "dir": "f"}),
                 404, "M_NOT_FOUND")
    assert_error(room.get(f"/timestamp_to_event/{q(room.room_id)}", {"ts": ts, "dir": "x"}), 400, "M_INVALID_PARAM")


# --- server ACLs ---------------------------------------------------------------------------------------

def test_server_acl_shuts_a_denied_server_out_of_every_room_endpoint(ours, peer):
    acl_room = Room(ours, peer)
    message = send_text(acl_room.local, acl_room.room_id, "before the ACL")
    assert ok(acl_room.event(message))
    ok(acl_room.local.put(f"/rooms/{q(acl_room.room_id)}/state/m.room.server_acl",
                          {"allow": ["*"], "allow_ip_literals": False}))  # the peer is 127.0.0.1:PORT
    rid = q(acl_room.room_id)
    for path, params in ((f"/event/{q(message)}", None), (f"/state_ids/{rid}", {"event_id": message}),
                         (f"/state/{rid}", {"event_id": message}), (f"/event_auth/{rid}/{q(message)}", None),
                         (f"/backfill/{rid}", {"v": message}), (f"/timestamp_to_event/{rid}", {"ts": 0, "dir": "f"})):
        assert_error(acl_room.get(path, params), 403, "M_FORBIDDEN")
    missing = peer.request(ours, "POST", f"{V1}/get_missing_events/{rid}",
                           {"earliest_events": [], "latest_events": [message]})
    assert_error(missing, 403, "M_FORBIDDEN")
    # And its events are refused.
    pdu = peer.message(acl_room.version, acl_room.room_id, acl_room.join["state_key"], [acl_room.join_id],
                       acl_room.join["auth_events"] + [acl_room.join_id], acl_room.join["depth"] + 1, "denied")
    answer = ok(peer.send(ours, uuid.uuid4().hex, [pdu]))
    assert "error" in answer["pdus"][acl_room.pdu_id(pdu)]


# --- queries ---------------------------------------------------------------------------------------------

def test_profile_query_answers_for_local_users(ours, peer):
    user = register(ours, "prof")
    ok(user.put(f"/profile/{q(user.user_id)}/displayname", {"displayname": "Prof"}))
    ok(user.put(f"/profile/{q(user.user_id)}/avatar_url", {"avatar_url": "mxc://example.org/abc"}))
    query = f"{V1}/query/profile"
    assert ok(peer.request(ours, "GET", query, params={"user_id": user.user_id})) == {
        "displayname": "Prof", "avatar_url": "mxc://example.org/abc"}
    assert ok(peer.request(ours, "GET", query, params={"user_id": user.user_id, "field": "displayname"})) == {
        "displayname": "Prof"}
    assert_error(peer.request(ours, "GET", query, params={"user_id": user.user_id, "field": "email"}),
                 400, "M_INVALID_PARAM")
    assert_error(peer.request(ours, "GET", query, params={"user_id": f"@nobody{uuid.uuid4().hex[:6]}:"
                                                                     f"{ours.server_name}"}), 404, "M_NOT_FOUND")
    assert_error(peer.request(ours, "GET", query, params={"user_id": peer.user("someone")}), 400, "M_INVALID_PARAM")
    assert_error(peer.request(ours, "GET", query), 400, "M_MISSING_PARAM")


def test_directory_query_answers_local_aliases_with_our_server_first(ours, room):
    localpart = "dir" + uuid.uuid4().hex[:8]
    alias = f"#{localpart}:{ours.server_name}"
    ok(room.local.put(f"/directory/room/{q(alias)}", {"room_id": room.room_id}))
    query = f"{V1}/query/directory"
    answer = ok(room.peer.request(ours, "GET", query, params={"room_alias": alias}))
    assert answer == {"room_id": room.room_id, "servers": [ours.server_name, room.peer.name]}
    assert_error(room.peer.request(ours, "GET", query, params={"room_alias": f"#none{localpart}:{ours.server_name}"}),
                 404, "M_NOT_FOUND")


def test_unknown_query_type_is_unrecognized(ours, peer):
    assert_error(peer.request(ours, "GET", f"{V1}/query/nonsense"), 404, "M_UNRECOGNIZED")


# --- our users asking other servers ----------------------------------------------------------------------

def test_remote_profile_and_alias_not_found_are_not_found(ours, peer):
    """The peer answers 404 to both queries: our client API says M_NOT_FOUND, as Synapse does."""
    user = register(ours, "asker")
    assert_error(user.get(f"/profile/{q(peer.user('ghost'))}"), 404, "M_NOT_FOUND")
    assert_error(user.get(f"/directory/room/{q('#nothing:' + peer.name)}"), 404, "M_NOT_FOUND")


def test_an_unreachable_server_is_not_found_with_the_reason(ours):
    """The spec gives these endpoints no 5xx (Synapse answers 502): the client is told 404, and why."""
    user = register(ours, "asker")
    unused_port = free_port()
    for path in (f"/profile/{q('@x:127.0.0.1:' + str(unused_port))}",
                 f"/directory/room/{q('#x:127.0.0.1:' + str(unused_port))}"):
        body = assert_error(user.get(path), 404, "M_NOT_FOUND")
        assert "Could not reach 127.0.0.1:" in body["error"]
