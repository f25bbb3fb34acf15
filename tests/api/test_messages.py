"""Reading a room's timeline (client-server API "Getting events for a room"): /messages paging in
both directions with from/to/limit, filters and lazy-loaded members, /context and its tokens,
/members (membership, not_membership, at) and /joined_members."""

import json
import uuid

import jsonschema
import pytest

from tests.api.test_response_schemas import response_schema
from tests.harness import Client, assert_error, create, q

MESSAGES_PATH = "/_matrix/client/v3/rooms/{roomId}/messages"
CONTEXT_PATH = "/_matrix/client/v3/rooms/{roomId}/context/{eventId}"
SENT = 60


def new_user(homeserver, prefix="p") -> Client:
    return Client(homeserver).register(f"{prefix}{uuid.uuid4().hex[:10]}")


def send(client, room_id, content, event_type="m.room.message") -> str:
    resp = client.put(f"/rooms/{q(room_id)}/send/{event_type}/{uuid.uuid4().hex}", content)
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"]


def messages(client, room_id, **params):
    resp = client.get(f"/rooms/{q(room_id)}/messages", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def page_all(client, room_id, direction, limit, **params) -> list[dict]:
    """Every event, one page at a time, until a page has no `end`."""
    events, token, pages = [], None, 0
    while True:
        query = {"dir": direction, "limit": limit, **params}
        if token is not None:
            query["from"] = token
        body = messages(client, room_id, **query)
        if token is not None:
            assert body["start"] == token
        events += body["chunk"]
        pages += 1
        assert pages < 500
        if "end" not in body:
            return events
        assert body["end"] != token
        token = body["end"]


class Room:
    """A room with alice, bob and carol, and a known sequence of SENT events after creation."""

    def __init__(self, homeserver):
        self.alice = new_user(homeserver, "alice")
        self.bob = new_user(homeserver, "bob")
        self.carol = new_user(homeserver, "carol")
        self.room_id = create(self.alice, preset="public_chat", name="Paging")
        for user in (self.bob, self.carol):
            assert user.post(f"/rooms/{q(self.room_id)}/join", {}).status_code == 200
        self.sent = []  # (event_id, sender, type, has_url)
        for i in range(SENT):
            user = (self.alice, self.bob)[i % 2]
            if i % 10 == 3:
                content, event_type = {"msgtype": "m.image", "body": f"img {i}", "url": f"mxc://test.local/{i}"}, \
                    "m.room.message"
            elif i % 10 == 7:
                content, event_type = {"n": i}, "org.example.custom"
            else:
                content, event_type = {"msgtype": "m.text", "body": f"message {i}"}, "m.room.message"
            if i == 35:
                resp = self.alice.put(f"/rooms/{q(self.room_id)}/state/m.room.name/", {"name": "Renamed"})
                assert resp.status_code == 200, resp.text
                self.sent.append((resp.json()["event_id"], self.alice.user_id, "m.room.name", False))
                continue
            event_id = send(user, self.room_id, content, event_type)
            self.sent.append((event_id, user.user_id, event_type, "url" in content))
        self.sent_ids = [s[0] for s in self.sent]


@pytest.fixture(scope="module")
def room(homeserver) -> Room:
    return Room(homeserver)


# --- /messages: exact order, both ways ------------------------------------------------------------

@pytest.mark.parametrize("limit", [1, 7, 10, 1000])
def test_paging_backwards_returns_every_event_once_newest_first(room, limit):
    events = page_all(room.bob, room.room_id, "b", limit)
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))
    assert ids[:SENT] == room.sent_ids[::-1]
    assert events[-1]["type"] == "m.room.create"
    assert all(e["room_id"] == room.room_id for e in events)


@pytest.mark.parametrize("limit", [1, 7, 10, 1000])
def test_paging_forwards_returns_every_event_once_oldest_first(room, limit):
    forwards = page_all(room.bob, room.room_id, "f", limit)
    backwards = page_all(room.bob, room.room_id, "b", 13)
    assert [e["event_id"] for e in forwards] == [e["event_id"] for e in backwards][::-1]
    assert forwards[0]["type"] == "m.room.create"
    assert [e["event_id"] for e in forwards][-SENT:] == room.sent_ids


def test_messages_response_matches_the_spec(room):
    resp = room.alice.get(f"/rooms/{q(room.room_id)}/messages", params={"dir": "b", "limit": 5})
    assert resp.status_code == 200, resp.text
    jsonschema.validate(resp.json(), response_schema(MESSAGES_PATH, "get", 200))
    assert len(resp.json()["chunk"]) == 5 and "end" in resp.json()


def test_end_is_omitted_at_the_start_of_the_room(room):
    everything = page_all(room.alice, room.room_id, "b", 1000)
    body = messages(room.alice, room.room_id, dir="b", limit=len(everything) + 1)
    assert len(body["chunk"]) == len(everything)
    assert "end" not in body


def test_end_is_omitted_at_the_newest_event_going_forwards(room):
    body = messages(room.alice, room.room_id, dir="f", limit=1000)
    assert body["chunk"][-1]["event_id"] == room.sent_ids[-1]
    assert "end" not in body


def test_paging_back_then_forward_from_a_token_resumes_exactly(room):
    first = messages(room.alice, room.room_id, dir="b", limit=20)
    assert [e["event_id"] for e in first["chunk"]] == room.sent_ids[::-1][:20]
    second = messages(room.alice, room.room_id, dir="b", limit=20, **{"from": first["end"]})
    assert [e["event_id"] for e in second["chunk"]] == room.sent_ids[::-1][20:40]
    # Forwards from the end of the second page: the events after it, the first page's events.
    forward = messages(room.alice, room.room_id, dir="f", limit=30, **{"from": second["end"]})
    assert [e["event_id"] for e in forward["chunk"]] == room.sent_ids[-39:-9]


def test_to_token_stops_the_page_without_repeating_events(room):
    first = messages(room.alice, room.room_id, dir="b", limit=10)
    second = messages(room.alice, room.room_id, dir="b", limit=15, **{"from": first["end"]})
    # Backwards from the newest event down to the end of the first page: exactly that page.
    body = messages(room.alice, room.room_id, dir="b", limit=100, to=first["end"])
    assert [e["event_id"] for e in body["chunk"]] == [e["event_id"] for e in first["chunk"]][:-1]
    # Backwards from the first page's end to the second's: the second page but its last event,
    # which the token stands for.
    body = messages(room.alice, room.room_id, dir="b", limit=100, to=second["end"], **{"from": first["end"]})
    assert [e["event_id"] for e in body["chunk"]] == [e["event_id"] for e in second["chunk"]][:-1]
    # Forwards between the same tokens: the same events, oldest first.
    body = messages(room.alice, room.room_id, dir="f", limit=100, to=first["end"], **{"from": second["end"]})
    assert [e["event_id"] for e in body["chunk"]] == [e["event_id"] for e in second["chunk"]][:-1][::-1]


def test_limit_zero_returns_no_events(room):
    body = messages(room.alice, room.room_id, dir="b", limit=0)
    assert body["chunk"] == []


def test_limit_over_1000_is_capped(room):
    body = messages(room.alice, room.room_id, dir="f", limit=100000)
    assert len(body["chunk"]) <= 1000


# --- /messages: filters ----------------------------------------------------------------------------

def _filtered(room, **filter_json):
    return page_all(room.alice, room.room_id, "b", 9, filter=json.dumps(filter_json))


def test_types_filter(room):
    events = _filtered(room, types=["org.example.custom"])
    assert [e["event_id"] for e in events] == [s[0] for s in room.sent if s[2] == "org.example.custom"][::-1]


def test_wildcard_types_filter(room):
    events = _filtered(room, types=["org.example.*"])
    assert [e["event_id"] for e in events] == [s[0] for s in room.sent if s[2] == "org.example.custom"][::-1]


def test_not_types_filter(room):
    events = _filtered(room, not_types=["m.room.message", "m.room.member"])
    assert {e["type"] for e in events} == {"org.example.custom", "m.room.name", "m.room.create",
                                           "m.room.power_levels", "m.room.join_rules",
                                           "m.room.history_visibility", "m.room.guest_access"}


def test_senders_filter(room):
    events = _filtered(room, senders=[room.bob.user_id])
    expected = [s[0] for s in room.sent if s[1] == room.bob.user_id][::-1]
    assert [e["event_id"] for e in events][:-1] == expected
    assert (events[-1]["type"], events[-1]["state_key"]) == ("m.room.member", room.bob.user_id)
    assert {e["sender"] for e in events} == {room.bob.user_id}


def test_not_senders_filter(room):
    events = _filtered(room, not_senders=[room.alice.user_id, room.bob.user_id])
    assert [(e["type"], e["sender"]) for e in events] == [("m.room.member", room.carol.user_id)]


def test_contains_url_filter(room):
    with_url = _filtered(room, contains_url=True)
    assert [e["event_id"] for e in with_url] == [s[0] for s in room.sent if s[3]][::-1]
    without = _filtered(room, contains_url=False, types=["m.room.message"])
    assert [e["event_id"] for e in without] == [s[0] for s in room.sent
                                                if not s[3] and s[2] == "m.room.message"][::-1]


def test_filter_limit_applies(room):
    body = messages(room.alice, room.room_id, dir="b", filter=json.dumps({"limit": 3}))
    assert len(body["chunk"]) == 3


def test_lazy_load_members_returns_the_senders_member_events(room):
    body = messages(room.alice, room.room_id, dir="b", limit=4,
                    filter=json.dumps({"lazy_load_members": True, "types": ["m.room.message"]}))
    senders = {e["sender"] for e in body["chunk"]}
    assert senders == {room.alice.user_id, room.bob.user_id}
    state = body["state"]
    assert sorted(e["state_key"] for e in state) == sorted(senders)
    assert all(e["type"] == "m.room.member" and e["content"]["membership"] == "join" for e in state)
    jsonschema.validate(body, response_schema(MESSAGES_PATH, "get", 200))


def test_lazy_load_members_for_a_single_sender(room):
    body = messages(room.alice, room.room_id, dir="b", limit=10,
                    filter=json.dumps({"lazy_load_members": True, "senders": [room.bob.user_id]}))
    assert [e["state_key"] for e in body["state"]] == [room.bob.user_id]


def test_without_lazy_loading_no_state_is_sent(room):
    body = messages(room.alice, room.room_id, dir="b", limit=4)
    assert body.get("state", []) == []


@pytest.mark.parametrize("raw", ["{not json", "[]", '{"types": "m.room.message"}', '{"limit": -1}',
                                 '{"contains_url": "yes"}', '{"senders": [5]}'])
def test_invalid_filter_is_invalid_param(room, raw):
    resp = room.alice.get(f"/rooms/{q(room.room_id)}/messages", params={"dir": "b", "filter": raw})
    assert_error(resp, 400, "M_INVALID_PARAM")


@pytest.mark.parametrize("param", ["from", "to"])
@pytest.mark.parametrize("token", ["garbage", "t1", "t1-x", "t1-2-3", "s", "sx", "s1_", "s1-2"])
def test_invalid_token_is_refused(room, param, token):
    resp = room.alice.get(f"/rooms/{q(room.room_id)}/messages", params={"dir": "b", param: token})
    assert resp.status_code == 400, resp.text
    assert resp.json()["errcode"] == "M_INVALID_PARAM"


def test_missing_dir_is_missing_param(room):
    assert_error(room.alice.get(f"/rooms/{q(room.room_id)}/messages"), 400, "M_MISSING_PARAM")


def test_bad_dir_is_invalid_param(room):
    assert_error(room.alice.get(f"/rooms/{q(room.room_id)}/messages", params={"dir": "x"}), 400,
                 "M_INVALID_PARAM")


@pytest.mark.parametrize("limit", ["-1", "ten", "1.5"])
def test_bad_limit_is_refused(room, limit):
    resp = room.alice.get(f"/rooms/{q(room.room_id)}/messages", params={"dir": "b", "limit": limit})
    assert resp.status_code == 400, resp.text
    assert resp.json()["errcode"] in ("M_INVALID_PARAM", "M_BAD_JSON")


def test_messages_of_an_unknown_room_is_not_found(room):
    assert_error(room.alice.get(f"/rooms/{q('!nosuchroom:test.local')}/messages", params={"dir": "b"}), 404,
                 "M_NOT_FOUND")


def test_messages_of_a_malformed_room_id_is_invalid_param(room):
    assert_error(room.alice.get("/rooms/nosuchroom/messages", params={"dir": "b"}), 400, "M_INVALID_PARAM")


# --- /context --------------------------------------------------------------------------------------

def context(client, room_id, event_id, **params):
    resp = client.get(f"/rooms/{q(room_id)}/context/{q(event_id)}", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_context_returns_the_events_around_in_order(room):
    middle = 20
    body = context(room.bob, room.room_id, room.sent_ids[middle], limit=10)
    jsonschema.validate(body, response_schema(CONTEXT_PATH, "get", 200))
    assert body["event"]["event_id"] == room.sent_ids[middle]
    assert [e["event_id"] for e in body["events_before"]] == room.sent_ids[middle - 5:middle][::-1]
    assert [e["event_id"] for e in body["events_after"]] == room.sent_ids[middle + 1:middle + 6]


def test_context_tokens_continue_with_messages(room):
    middle = 30
    body = context(room.bob, room.room_id, room.sent_ids[middle], limit=6)
    before = messages(room.bob, room.room_id, dir="b", limit=5, **{"from": body["start"]})
    assert [e["event_id"] for e in before["chunk"]] == room.sent_ids[middle - 8:middle - 3][::-1]
    after = messages(room.bob, room.room_id, dir="f", limit=5, **{"from": body["end"]})
    assert [e["event_id"] for e in after["chunk"]] == room.sent_ids[middle + 4:middle + 9]


def test_context_state_is_the_state_at_the_last_event_returned(room):
    # The room was renamed at sent[35]; a context ending after it shows the new name.
    body = context(room.bob, room.room_id, room.sent_ids[33], limit=10)
    assert room.sent_ids[35] in [e["event_id"] for e in body["events_after"]]
    names = [e["content"]["name"] for e in body["state"] if e["type"] == "m.room.name"]
    assert names == ["Renamed"]
    body = context(room.bob, room.room_id, room.sent_ids[20], limit=4)
    names = [e["content"]["name"] for e in body["state"] if e["type"] == "m.room.name"]
    assert names == ["Paging"]
    keys = {(e["type"], e["state_key"]) for e in body["state"]}
    assert ("m.room.create", "") in keys and ("m.room.member", room.carol.user_id) in keys


def test_context_with_limit_zero_is_just_the_event(room):
    body = context(room.bob, room.room_id, room.sent_ids[10], limit=0)
    assert body["event"]["event_id"] == room.sent_ids[10]
    assert body["events_before"] == [] and body["events_after"] == []


def test_context_filter_applies_to_the_surroundings_not_the_event(room):
    custom = room.sent_ids[17]
    body = context(room.bob, room.room_id, custom, limit=6, filter=json.dumps({"senders": [room.alice.user_id]}))
    assert body["event"]["event_id"] == custom and body["event"]["sender"] == room.bob.user_id
    assert {e["sender"] for e in body["events_before"] + body["events_after"]} == {room.alice.user_id}
    assert len(body["events_before"]) == 3 and len(body["events_after"]) == 3


def test_context_lazy_load_members_limits_the_member_state(room):
    body = context(room.bob, room.room_id, room.sent_ids[20], limit=4,
                   filter=json.dumps({"lazy_load_members": True}))
    members = sorted(e["state_key"] for e in body["state"] if e["type"] == "m.room.member")
    assert members == sorted([room.alice.user_id, room.bob.user_id])
    assert any(e["type"] == "m.room.create" for e in body["state"])


def test_context_of_an_unknown_event_is_not_found(room):
    assert_error(room.bob.get(f"/rooms/{q(room.room_id)}/context/{q('$nosuchevent')}"), 404, "M_NOT_FOUND")


def test_context_of_an_event_in_another_room_is_not_found(room):
    other = create(room.bob)
    event_id = send(room.bob, other, {"msgtype": "m.text", "body": "elsewhere"})
    assert_error(room.bob.get(f"/rooms/{q(room.room_id)}/context/{q(event_id)}"), 404, "M_NOT_FOUND")


def test_context_for_a_non_member_is_forbidden(room, homeserver):
    stranger = new_user(homeserver, "stranger")
    assert_error(stranger.get(f"/rooms/{q(room.room_id)}/context/{q(room.sent_ids[0])}"), 403, "M_FORBIDDEN")


def test_context_invalid_filter_is_invalid_param(room):
    resp = room.bob.get(f"/rooms/{q(room.room_id)}/context/{q(room.sent_ids[0])}", params={"filter": "{x"})
    assert_error(resp, 400, "M_INVALID_PARAM")


# --- /members and /joined_members ----------------------------------------------------------------

@pytest.fixture(scope="module")
def members_room(homeserver):
    alice, bob, carol, dave = (new_user(homeserver, n) for n in ("alice", "bob", "carol", "dave"))
    room_id = create(alice, preset="public_chat")
    early = messages(alice, room_id, dir="b", limit=1)["end"]
    assert bob.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    assert carol.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    assert carol.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": dave.user_id}).status_code == 200
    return {"room_id": room_id, "alice": alice, "bob": bob, "carol": carol, "dave": dave, "early": early}


def _members(client, room_id, **params):
    resp = client.get(f"/rooms/{q(room_id)}/members", params=params)
    assert resp.status_code == 200, resp.text
    jsonschema.validate(resp.json(), response_schema("/_matrix/client/v3/rooms/{roomId}/members", "get", 200))
    return {e["state_key"]: e["content"]["membership"] for e in resp.json()["chunk"]}


def test_members_lists_every_membership(members_room):
    r = members_room
    assert _members(r["alice"], r["room_id"]) == {
        r["alice"].user_id: "join", r["bob"].user_id: "join", r["carol"].user_id: "leave",
        r["dave"].user_id: "invite"}


def test_members_membership_filter(members_room):
    r = members_room
    assert _members(r["alice"], r["room_id"], membership="join") == {
        r["alice"].user_id: "join", r["bob"].user_id: "join"}
    assert _members(r["alice"], r["room_id"], membership="leave") == {r["carol"].user_id: "leave"}


def test_members_not_membership_filter(members_room):
    r = members_room
    assert _members(r["alice"], r["room_id"], not_membership="join") == {
        r["carol"].user_id: "leave", r["dave"].user_id: "invite"}


def test_members_membership_and_not_membership_are_an_or(members_room):
    # "either the membership *is* the same as membership or is not the same as not_membership"
    r = members_room
    assert _members(r["alice"], r["room_id"], membership="leave", not_membership="join") == {
        r["carol"].user_id: "leave", r["dave"].user_id: "invite"}
    assert _members(r["alice"], r["room_id"], membership="join", not_membership="invite") == {
        r["alice"].user_id: "join", r["bob"].user_id: "join", r["carol"].user_id: "leave"}


def test_members_bad_membership_value_is_refused(members_room):
    r = members_room
    resp = r["alice"].get(f"/rooms/{q(r['room_id'])}/members", params={"membership": "joined"})
    assert_error(resp, 400, "M_INVALID_PARAM")


def test_members_at_an_earlier_token(members_room):
    r = members_room
    assert _members(r["alice"], r["room_id"], at=r["early"]) == {r["alice"].user_id: "join"}


def test_members_at_a_prev_batch_token_is_the_state_before_that_event(members_room, homeserver):
    # A timeline whose first event is Erin's join has prev_batch at that join: the members
    # before it do not include her.
    r = members_room
    erin = new_user(homeserver, "erin")
    room_id = create(r["alice"], preset="public_chat")
    assert erin.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    page = messages(r["alice"], room_id, dir="b", limit=1)
    assert page["chunk"][0]["state_key"] == erin.user_id
    assert _members(r["alice"], room_id, at=page["end"]) == {r["alice"].user_id: "join"}
    assert _members(r["alice"], room_id) == {r["alice"].user_id: "join", erin.user_id: "join"}


def test_members_at_an_invalid_token_is_refused(members_room):
    r = members_room
    assert_error(r["alice"].get(f"/rooms/{q(r['room_id'])}/members", params={"at": "nonsense"}), 400,
                 "M_INVALID_PARAM")


def test_members_after_leaving_are_those_at_the_leave(members_room, homeserver):
    r = members_room
    erin = new_user(homeserver, "erin")
    room_id = create(r["alice"], preset="public_chat")
    assert erin.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    assert erin.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    assert r["bob"].post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    assert _members(erin, room_id) == {r["alice"].user_id: "join", erin.user_id: "leave"}


def test_members_for_a_never_member_is_forbidden(members_room, homeserver):
    stranger = new_user(homeserver, "stranger")
    assert_error(stranger.get(f"/rooms/{q(members_room['room_id'])}/members"), 403, "M_FORBIDDEN")


def test_joined_members_shape(members_room):
    r = members_room
    assert r["bob"].put(f"/profile/{q(r['bob'].user_id)}/displayname", {"displayname": "Bobby"}).status_code == 200
    room_id = create(r["alice"], preset="public_chat")
    assert r["bob"].post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    resp = r["alice"].get(f"/rooms/{q(room_id)}/joined_members")
    assert resp.status_code == 200, resp.text
    jsonschema.validate(resp.json(), response_schema("/_matrix/client/v3/rooms/{roomId}/joined_members", "get",
                                                     200))
    # Registration sets the display name to the localpart.
    alice_name = r["alice"].user_id[1:].split(":")[0]
    assert resp.json() == {"joined": {r["alice"].user_id: {"display_name": alice_name},
                                      r["bob"].user_id: {"display_name": "Bobby"}}}


def test_joined_members_excludes_invited_and_left(members_room):
    r = members_room
    joined = r["alice"].get(f"/rooms/{q(r['room_id'])}/joined_members").json()["joined"]
    assert set(joined) == {r["alice"].user_id, r["bob"].user_id}


def test_joined_members_needs_membership(members_room):
    r = members_room
    assert_error(r["carol"].get(f"/rooms/{q(r['room_id'])}/joined_members"), 403, "M_FORBIDDEN")
    assert_error(r["dave"].get(f"/rooms/{q(r['room_id'])}/joined_members"), 403, "M_FORBIDDEN")


def test_context_filter_applies_to_the_state_too(room):
    body = context(room.bob, room.room_id, room.sent_ids[20], limit=4, filter=json.dumps({"types": ["m.room.message"]}))
    assert body["state"] == []
    body = context(room.bob, room.room_id, room.sent_ids[20], limit=4,
                   filter=json.dumps({"not_types": ["m.room.member"]}))
    assert {e["type"] for e in body["state"]} == {"m.room.create", "m.room.power_levels", "m.room.join_rules",
                                                  "m.room.history_visibility", "m.room.guest_access", "m.room.name"}


# --- sync tokens as /messages and /members positions -----------------------------------------------

def _stream_ordering(db_dsn, event_id) -> int:
    import psycopg2
    with psycopg2.connect(db_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT stream_ordering FROM events WHERE event_id = %s", (event_id,))
        (stream,) = cur.fetchone()
    conn.close()
    return stream


def test_a_sync_token_works_as_from_in_both_directions(room, db_dsn):
    # "from: ... This token can be obtained from a prev_batch or next_batch token returned by
    # the /sync endpoint": a sync token covers the events up to its room stream position.
    token = f"s{_stream_ordering(db_dsn, room.sent_ids[40])}_0_0"
    back = messages(room.alice, room.room_id, dir="b", limit=5, **{"from": token})
    assert back["start"] == token
    assert [e["event_id"] for e in back["chunk"]] == room.sent_ids[36:41][::-1]
    forward = messages(room.alice, room.room_id, dir="f", limit=5, **{"from": token})
    assert [e["event_id"] for e in forward["chunk"]] == room.sent_ids[41:46]


def test_a_sync_token_works_as_to(room, db_dsn):
    token = f"s{_stream_ordering(db_dsn, room.sent_ids[50])}"
    back = messages(room.alice, room.room_id, dir="b", limit=100, to=token)
    assert [e["event_id"] for e in back["chunk"]] == room.sent_ids[51:][::-1]
    forward = messages(room.alice, room.room_id, dir="f", limit=100, to=token,
                       **{"from": f"s{_stream_ordering(db_dsn, room.sent_ids[45])}"})
    assert [e["event_id"] for e in forward["chunk"]] == room.sent_ids[46:51]


def test_a_sync_token_from_before_the_room_existed(room):
    assert messages(room.alice, room.room_id, dir="b", **{"from": "s0"})["chunk"] == []
    forward = messages(room.alice, room.room_id, dir="f", limit=1, **{"from": "s0"})
    assert forward["chunk"][0]["type"] == "m.room.create"


def test_a_sync_token_works_as_members_at(members_room, db_dsn):
    r = members_room
    first_event = messages(r["alice"], r["room_id"], dir="f", limit=1)["chunk"][0]["event_id"]
    token = f"s{_stream_ordering(db_dsn, first_event) + 3}"
    # Three events after the create: the creator's join, power levels, join rules.
    assert _members(r["alice"], r["room_id"], at=token) == {r["alice"].user_id: "join"}


def test_an_invalid_sync_token_is_refused(room):
    assert_error(room.alice.get(f"/rooms/{q(room.room_id)}/messages", params={"dir": "b", "from": "s1_x"}), 400,
                 "M_INVALID_PARAM")
