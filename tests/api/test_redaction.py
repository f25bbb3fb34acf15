"""Redactions (client-server API "Redactions", /rooms/v1 and /rooms/v11 redaction algorithms):
who may redact, what the redacted event looks like on /event, /messages and /state, the shape of
the redaction event per room version, and transaction idempotency."""

import uuid

import jsonschema
import pytest

from tests.api.test_response_schemas import response_schema
from tests.harness import Client, assert_error, create, new_user, q


@pytest.fixture(scope="module")
def alice(homeserver):
    return Client(homeserver).register("alice")


@pytest.fixture(scope="module")
def bob(homeserver):
    return new_user(homeserver, "bob")


def send(client, room_id, content=None, event_type="m.room.message") -> str:
    content = content if content is not None else {"msgtype": "m.text", "body": "secret", "format": "x"}
    resp = client.put(f"/rooms/{q(room_id)}/send/{event_type}/{uuid.uuid4().hex}", content)
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"]


def redact(client, room_id, event_id, body=None, txn=None):
    return client.put(f"/rooms/{q(room_id)}/redact/{q(event_id)}/{q(txn or uuid.uuid4().hex)}",
                      body if body is not None else {})


def get_event(client, room_id, event_id) -> dict:
    resp = client.get(f"/rooms/{q(room_id)}/event/{q(event_id)}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def latest(client, room_id, limit=10) -> list[dict]:
    resp = client.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": limit})
    assert resp.status_code == 200, resp.text
    return resp.json()["chunk"]


VERSIONS = ["1", "11", "12"]


@pytest.mark.parametrize("version", VERSIONS)
def test_redacting_your_own_message_strips_its_content(alice, version):
    room_id = create(alice, room_version=version)
    target = send(alice, room_id)
    resp = redact(alice, room_id, target, {"reason": "oops"})
    assert resp.status_code == 200, resp.text
    jsonschema.validate(resp.json(), response_schema(
        "/_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}", "put", 200))
    redaction_id = resp.json()["event_id"]
    event = get_event(alice, room_id, target)
    assert event["content"] == {}
    assert event["type"] == "m.room.message" and event["sender"] == alice.user_id
    because = event["unsigned"]["redacted_because"]
    assert because["event_id"] == redaction_id
    assert because["type"] == "m.room.redaction"
    assert because["content"]["reason"] == "oops"
    assert because["redacts"] == target and because["content"]["redacts"] == target
    # /messages shows the same redacted form.
    by_id = {e["event_id"]: e for e in latest(alice, room_id)}
    assert by_id[target]["content"] == {}
    assert by_id[target]["unsigned"]["redacted_because"]["event_id"] == redaction_id


@pytest.mark.parametrize("version", VERSIONS)
def test_redaction_event_has_redacts_at_top_level_and_in_content(alice, version):
    room_id = create(alice, room_version=version)
    target = send(alice, room_id)
    redaction_id = redact(alice, room_id, target).json()["event_id"]
    for event in (get_event(alice, room_id, redaction_id),
                  next(e for e in latest(alice, room_id) if e["event_id"] == redaction_id)):
        assert event["type"] == "m.room.redaction"
        assert event["redacts"] == target
        assert event["content"]["redacts"] == target
        assert "state_key" not in event


def test_redaction_ids_are_v1_style_in_room_version_1(alice):
    room_id = create(alice, room_version="1")
    target = send(alice, room_id)
    redaction_id = redact(alice, room_id, target).json()["event_id"]
    assert redaction_id.startswith("$") and redaction_id.endswith(":test.local")


def test_redacting_another_users_event_needs_the_redact_level(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert bob.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    alices = send(alice, room_id)
    assert_error(redact(bob, room_id, alices), 403, "M_FORBIDDEN")
    assert get_event(bob, room_id, alices)["content"]["body"] == "secret"
    assert "redacted_because" not in get_event(bob, room_id, alices)["unsigned"]
    # The room's creator (unlimited power in v12) may redact Bob's.
    bobs = send(bob, room_id)
    assert redact(alice, room_id, bobs).status_code == 200
    assert get_event(bob, room_id, bobs)["content"] == {}


def test_moderator_at_the_redact_level_may_redact_others_in_v11(alice, bob, homeserver):
    carol = new_user(homeserver, "carol")
    room_id = create(alice, room_version="11", preset="public_chat",
                     power_level_content_override={"users": {alice.user_id: 100, bob.user_id: 50}})
    for user in (bob, carol):
        assert user.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    carols = send(carol, room_id)
    assert redact(bob, room_id, carols).status_code == 200
    assert get_event(carol, room_id, carols)["content"] == {}
    assert_error(redact(carol, room_id, send(bob, room_id)), 403, "M_FORBIDDEN")


def test_non_member_cannot_redact(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert_error(redact(bob, room_id, send(alice, room_id)), 403, "M_FORBIDDEN")


def test_redacting_an_unknown_event_is_not_found(alice):
    room_id = create(alice)
    assert_error(redact(alice, room_id, "$doesnotexist"), 404, "M_NOT_FOUND")


def test_redacting_an_event_of_another_room_is_not_found(alice):
    room_a, room_b = create(alice), create(alice)
    target = send(alice, room_b)
    assert_error(redact(alice, room_a, target), 404, "M_NOT_FOUND")
    assert get_event(alice, room_b, target)["content"]["body"] == "secret"


def test_redacting_the_create_event_of_another_v12_room_is_not_found(alice):
    # A v12 create event carries no room_id: its room is derived from its ID.
    room_a, room_b = create(alice), create(alice)
    create_b = next(e for e in alice.get(f"/rooms/{q(room_b)}/state").json() if e["type"] == "m.room.create")
    assert_error(redact(alice, room_a, create_b["event_id"]), 404, "M_NOT_FOUND")
    assert "redacted_because" not in get_event(alice, room_b, create_b["event_id"])["unsigned"]


def test_redacting_in_an_unknown_room_is_not_found(alice):
    room_id = create(alice)
    target = send(alice, room_id)
    assert_error(redact(alice, "!nosuchroom:test.local", target), 404, "M_NOT_FOUND")


def test_malformed_ids_are_invalid_param(alice):
    room_id = create(alice)
    target = send(alice, room_id)
    assert_error(redact(alice, "notaroom", target), 400, "M_INVALID_PARAM")
    assert_error(redact(alice, room_id, "notanevent"), 400, "M_INVALID_PARAM")


def test_reason_must_be_a_string(alice):
    room_id = create(alice)
    assert_error(redact(alice, room_id, send(alice, room_id), {"reason": 5}), 400, "M_BAD_JSON")


def test_redaction_transaction_ids_are_idempotent(alice):
    room_id = create(alice)
    target = send(alice, room_id)
    first = redact(alice, room_id, target, {"reason": "a"}, txn="redact-txn")
    again = redact(alice, room_id, target, {"reason": "b"}, txn="redact-txn")
    assert first.status_code == again.status_code == 200
    assert first.json()["event_id"] == again.json()["event_id"]
    redactions = [e for e in latest(alice, room_id) if e["type"] == "m.room.redaction"]
    assert [e["event_id"] for e in redactions] == [first.json()["event_id"]]
    # The same transaction ID for another target is another request.
    other = redact(alice, room_id, send(alice, room_id), txn="redact-txn")
    assert other.status_code == 200 and other.json()["event_id"] != first.json()["event_id"]


def test_redacting_twice_keeps_the_first_redaction_as_the_cause(alice):
    room_id = create(alice)
    target = send(alice, room_id)
    first = redact(alice, room_id, target).json()["event_id"]
    second = redact(alice, room_id, target)
    assert second.status_code == 200, second.text
    assert get_event(alice, room_id, target)["unsigned"]["redacted_because"]["event_id"] == first


# --- state events: what each room version's algorithm keeps -------------------------------------

def _state_event(client, room_id, event_type, state_key=""):
    resp = client.get(f"/rooms/{q(room_id)}/state/{event_type}/{q(state_key)}", params={"format": "event"})
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.parametrize("version, kept", [
    ("1", {"ban": 50, "events": {}, "events_default": 0, "kick": 50, "redact": 50, "state_default": 50,
           "users": {}, "users_default": 0}),
    ("11", {"ban": 50, "events": {}, "events_default": 0, "kick": 50, "redact": 50, "state_default": 50,
            "users": {}, "users_default": 0, "invite": 25}),
])
def test_redacted_power_levels_keep_the_version_specific_keys(alice, version, kept):
    room_id = create(alice, room_version=version)
    content = {**kept, "invite": 25, "users": {alice.user_id: 100}, "notifications": {"room": 20},
               "org.example": 1}
    kept = {**kept, "users": {alice.user_id: 100}}
    event_id = alice.put(f"/rooms/{q(room_id)}/state/m.room.power_levels/", content).json()["event_id"]
    assert redact(alice, room_id, event_id).status_code == 200
    assert get_event(alice, room_id, event_id)["content"] == kept
    state = _state_event(alice, room_id, "m.room.power_levels")
    assert state["event_id"] == event_id and state["content"] == kept


@pytest.mark.parametrize("version", ["1", "9", "11"])
def test_redacted_member_events_keep_membership_and_the_join_authoriser_from_v9(alice, bob, version):
    assert bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Bob"}).status_code == 200
    if version == "1":
        room_id = create(alice, room_version=version, preset="public_chat")
        kept = {"membership": "join"}
    else:
        space = create(alice, room_version=version, preset="public_chat")
        room_id = create(alice, room_version=version, initial_state=[{"type": "m.room.join_rules", "content": {
            "join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}}])
        assert bob.post(f"/rooms/{q(space)}/join", {}).status_code == 200
        kept = {"membership": "join", "join_authorised_via_users_server": alice.user_id}
    assert bob.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    join = _state_event(alice, room_id, "m.room.member", bob.user_id)
    assert join["content"]["displayname"] == "Bob"
    assert redact(alice, room_id, join["event_id"]).status_code == 200
    assert _state_event(alice, room_id, "m.room.member", bob.user_id)["content"] == kept
    # Still a member: redaction keeps the membership.
    assert room_id in bob.get("/joined_rooms").json()["joined_rooms"]


@pytest.mark.parametrize("version, whole", [("1", False), ("11", True)])
def test_redacted_create_event_content(alice, version, whole):
    room_id = create(alice, room_version=version, creation_content={"org.example": True})
    create_event = _state_event(alice, room_id, "m.room.create")
    assert redact(alice, room_id, create_event["event_id"]).status_code == 200
    # v11 keeps the whole content; before, only `creator`.
    expected = create_event["content"] if whole else {"creator": alice.user_id}
    redacted = _state_event(alice, room_id, "m.room.create")
    assert redacted["content"] == expected
    assert "redacted_because" in redacted["unsigned"]


def test_redacted_custom_state_is_empty_and_the_room_keeps_working(alice):
    room_id = create(alice)
    event_id = alice.put(f"/rooms/{q(room_id)}/state/org.example.cfg/k", {"v": 1}).json()["event_id"]
    assert redact(alice, room_id, event_id).status_code == 200
    assert alice.get(f"/rooms/{q(room_id)}/state/org.example.cfg/k").json() == {}
    send(alice, room_id)


def test_redacted_power_levels_drop_invite_for_the_auth_rules_in_v1(alice, bob, homeserver):
    # Before v11 redaction strips `invite` from power levels: the invite level falls back to
    # the default 0 for every later event, as on every other server.
    carol = new_user(homeserver, "carol")
    room_id = create(alice, room_version="1", preset="public_chat")
    assert bob.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    assert_error(bob.post(f"/rooms/{q(room_id)}/invite", {"user_id": carol.user_id}), 403, "M_FORBIDDEN")
    levels_id = _state_event(alice, room_id, "m.room.power_levels")["event_id"]
    assert redact(alice, room_id, levels_id).status_code == 200
    resp = bob.post(f"/rooms/{q(room_id)}/invite", {"user_id": carol.user_id})
    assert resp.status_code == 200, resp.text


def test_redacted_power_levels_keep_invite_for_the_auth_rules_in_v11(alice, bob, homeserver):
    carol = new_user(homeserver, "carol")
    room_id = create(alice, room_version="11", preset="public_chat")
    assert bob.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    levels_id = _state_event(alice, room_id, "m.room.power_levels")["event_id"]
    assert redact(alice, room_id, levels_id).status_code == 200
    assert_error(bob.post(f"/rooms/{q(room_id)}/invite", {"user_id": carol.user_id}), 403, "M_FORBIDDEN")


# --- m.room.redaction sent through /send ---------------------------------------------------------

def test_redaction_sent_through_send_still_needs_the_redact_level_in_v11(alice, bob):
    # From v11 `redacts` lives in content, so /send can build a redaction: it must meet the same
    # rule as /redact (own event, or the redact level).
    room_id = create(alice, room_version="11", preset="public_chat")
    assert bob.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    alices = send(alice, room_id)
    resp = bob.put(f"/rooms/{q(room_id)}/send/m.room.redaction/{uuid.uuid4().hex}", {"redacts": alices})
    assert_error(resp, 403, "M_FORBIDDEN")
    assert get_event(bob, room_id, alices)["content"]["body"] == "secret"
    assert "redacted_because" not in get_event(bob, room_id, alices)["unsigned"]


def test_redaction_sent_as_state_is_checked_too(alice, bob):
    room_id = create(alice, room_version="11", preset="public_chat",
                     power_level_content_override={"state_default": 0, "users": {alice.user_id: 100}})
    assert bob.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    alices = send(alice, room_id)
    resp = bob.put(f"/rooms/{q(room_id)}/state/m.room.redaction/x", {"redacts": alices})
    assert_error(resp, 403, "M_FORBIDDEN")
    assert get_event(bob, room_id, alices)["content"]["body"] == "secret"


def test_own_event_can_be_redacted_through_send_in_v11(alice):
    room_id = create(alice, room_version="11")
    target = send(alice, room_id)
    resp = alice.put(f"/rooms/{q(room_id)}/send/m.room.redaction/{uuid.uuid4().hex}", {"redacts": target})
    assert resp.status_code == 200, resp.text
    assert get_event(alice, room_id, target)["unsigned"]["redacted_because"]["event_id"] == resp.json()["event_id"]


@pytest.mark.parametrize("redacts", [5, {"a": 1}, ["$x"]])
def test_redaction_through_send_with_a_non_string_target_is_refused(alice, redacts):
    room_id = create(alice, room_version="11")
    resp = alice.put(f"/rooms/{q(room_id)}/send/m.room.redaction/{uuid.uuid4().hex}", {"redacts": redacts})
    assert resp.status_code == 400, resp.text
    assert resp.json()["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM")


def test_redaction_through_send_of_an_unknown_event_is_not_found(alice):
    room_id = create(alice, room_version="11")
    resp = alice.put(f"/rooms/{q(room_id)}/send/m.room.redaction/{uuid.uuid4().hex}", {"redacts": "$nope"})
    assert_error(resp, 404, "M_NOT_FOUND")


def test_prev_content_of_a_redacted_previous_state_is_redacted(alice):
    room_id = create(alice)
    first = alice.put(f"/rooms/{q(room_id)}/state/m.room.topic/", {"topic": "secret topic"}).json()["event_id"]
    assert redact(alice, room_id, first).status_code == 200
    assert alice.put(f"/rooms/{q(room_id)}/state/m.room.topic/", {"topic": "new"}).status_code == 200
    event = _state_event(alice, room_id, "m.room.topic")
    assert event["content"] == {"topic": "new"}
    assert event["unsigned"]["replaces_state"] == first
    assert event["unsigned"]["prev_content"] == {}


def test_non_member_learns_nothing_about_events_from_a_redaction(alice, bob):
    room_id = create(alice, room_version="11")
    existing = send(alice, room_id)
    # The same answer whether the event exists or not: the auth rules refuse first.
    assert_error(redact(bob, room_id, existing), 403, "M_FORBIDDEN")
    assert_error(redact(bob, room_id, "$doesnotexist"), 403, "M_FORBIDDEN")
