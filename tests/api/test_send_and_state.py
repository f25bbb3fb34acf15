"""Sending events and room state (client-server API "Sending events to a room", "Getting
events for a room"): transaction idempotency, state by type and key, power levels, size and
canonical-JSON limits, rc_message, and what /state shows to members, leavers and strangers."""

import uuid

import jsonschema
import pytest

from tests.api.test_response_schemas import response_schema
from tests.harness import Client, assert_error, create, q, running_homeserver
from tests.pg import fresh_database


def new_user(homeserver, prefix="s") -> Client:
    return Client(homeserver).register(f"{prefix}{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def alice(homeserver):
    return Client(homeserver).register("alice")


@pytest.fixture(scope="module")
def bob(homeserver):
    return new_user(homeserver, "bob")


def send(client, room_id, content, txn=None, event_type="m.room.message"):
    return client.put(f"/rooms/{q(room_id)}/send/{q(event_type)}/{q(txn or uuid.uuid4().hex)}", content)


def get_event(client, room_id, event_id):
    resp = client.get(f"/rooms/{q(room_id)}/event/{q(event_id)}")
    assert resp.status_code == 200, resp.text
    return resp.json()


MESSAGE = {"msgtype": "m.text", "body": "hello"}


# --- sending and transaction IDs ---------------------------------------------------------------

def test_send_returns_an_event_id_that_reads_back(alice):
    room_id = create(alice)
    resp = send(alice, room_id, MESSAGE, txn="t1")
    assert resp.status_code == 200, resp.text
    jsonschema.validate(resp.json(), response_schema(
        "/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}", "put", 200))
    event = get_event(alice, room_id, resp.json()["event_id"])
    assert event["type"] == "m.room.message"
    assert event["content"] == MESSAGE
    assert event["sender"] == alice.user_id
    assert event["room_id"] == room_id
    assert "state_key" not in event
    jsonschema.validate(event, response_schema("/_matrix/client/v3/rooms/{roomId}/event/{eventId}", "get", 200))


def test_same_transaction_id_gives_the_same_event(alice):
    room_id = create(alice)
    first = send(alice, room_id, MESSAGE, txn="same")
    again = send(alice, room_id, {"msgtype": "m.text", "body": "different body"}, txn="same")
    assert first.status_code == again.status_code == 200
    assert first.json()["event_id"] == again.json()["event_id"]
    chunk = alice.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 5}).json()["chunk"]
    assert [e["content"] for e in chunk if e["type"] == "m.room.message"] == [MESSAGE]


def test_transaction_ids_are_scoped_to_the_device(alice, homeserver):
    room_id = create(alice)
    other_device = Client(homeserver).login("alice")
    first = send(alice, room_id, MESSAGE, txn="scoped").json()["event_id"]
    second = send(other_device, room_id, MESSAGE, txn="scoped").json()["event_id"]
    assert first != second


def test_transaction_ids_are_scoped_to_the_room_and_event_type(alice):
    room_a, room_b = create(alice), create(alice)
    ids = {send(alice, room_a, MESSAGE, txn="scope2").json()["event_id"],
           send(alice, room_b, MESSAGE, txn="scope2").json()["event_id"],
           send(alice, room_a, {"x": 1}, txn="scope2", event_type="org.example.other").json()["event_id"]}
    assert len(ids) == 3


def test_transaction_id_is_shown_only_to_the_sending_device(alice, bob, homeserver):
    room_id = create(alice, preset="public_chat")
    assert bob.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    event_id = send(alice, room_id, MESSAGE, txn="mytxn").json()["event_id"]
    assert get_event(alice, room_id, event_id)["unsigned"]["transaction_id"] == "mytxn"
    other_device = Client(homeserver).login("alice")
    assert "transaction_id" not in get_event(other_device, room_id, event_id)["unsigned"]
    assert "transaction_id" not in get_event(bob, room_id, event_id)["unsigned"]
    page = alice.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 1}).json()["chunk"]
    assert page[0]["event_id"] == event_id and page[0]["unsigned"]["transaction_id"] == "mytxn"
    page = other_device.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 1}).json()["chunk"]
    assert page[0]["event_id"] == event_id and "transaction_id" not in page[0]["unsigned"]


def test_transaction_id_is_shown_to_a_refreshed_token_of_the_same_device(alice, homeserver):
    # The spec scopes transaction IDs to the device (the access token before v1.7).
    room_id = create(alice)
    event_id = send(alice, room_id, MESSAGE, txn="dev-txn").json()["event_id"]
    same_device = Client(homeserver).login("alice", device_id=alice.device_id)
    assert same_device.device_id == alice.device_id
    assert get_event(same_device, room_id, event_id)["unsigned"]["transaction_id"] == "dev-txn"


def test_send_to_an_unknown_room_is_not_found(alice):
    assert_error(send(alice, "!nosuchroom:test.local", MESSAGE), 404, "M_NOT_FOUND")


def test_send_to_a_malformed_room_id_is_invalid_param(alice):
    assert_error(send(alice, "nosuchroom", MESSAGE), 400, "M_INVALID_PARAM")


def test_non_object_body_is_bad_json(alice):
    room_id = create(alice)
    for body in (b"[1, 2]", b'"text"', b"5", b"null"):
        resp = alice.request("PUT", f"/rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}",
                             data=body, headers={"Content-Type": "application/json"})
        assert_error(resp, 400, "M_BAD_JSON")


def test_non_json_body_is_not_json(alice):
    room_id = create(alice)
    resp = alice.request("PUT", f"/rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}", data=b"{not json",
                         headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "M_NOT_JSON")


def test_event_over_64k_is_too_large(alice):
    room_id = create(alice)
    resp = send(alice, room_id, {"msgtype": "m.text", "body": "x" * 65536})
    assert_error(resp, 413, "M_TOO_LARGE")
    # Just under the limit is fine.
    resp = send(alice, room_id, {"msgtype": "m.text", "body": "x" * 64000})
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("version", ["6", "11", "12"])
@pytest.mark.parametrize("value", [1.5, 2 ** 53, -(2 ** 53), 1e20])
def test_floats_and_huge_integers_are_bad_json_from_v6(alice, version, value):
    room_id = create(alice, room_version=version)
    assert_error(send(alice, room_id, {"msgtype": "m.text", "body": "n", "n": value}), 400, "M_BAD_JSON")
    assert_error(alice.put(f"/rooms/{q(room_id)}/state/org.example.n/", {"n": [value]}), 400, "M_BAD_JSON")


@pytest.mark.parametrize("version", ["1", "5"])
def test_floats_and_big_integers_are_kept_before_v6(alice, version):
    # Canonical JSON's number limits are enforced from room version 6.
    room_id = create(alice, room_version=version)
    content = {"msgtype": "m.text", "body": "n", "f": 1.5, "big": 2 ** 60}
    resp = send(alice, room_id, content)
    assert resp.status_code == 200, resp.text
    assert get_event(alice, room_id, resp.json()["event_id"])["content"] == content


def test_event_of_another_room_or_unknown_is_not_found(alice):
    room_a, room_b = create(alice), create(alice)
    event_id = send(alice, room_b, MESSAGE).json()["event_id"]
    assert_error(alice.get(f"/rooms/{q(room_a)}/event/{q(event_id)}"), 404, "M_NOT_FOUND")
    assert_error(alice.get(f"/rooms/{q(room_a)}/event/{q('$nosuchevent')}"), 404, "M_NOT_FOUND")
    assert_error(alice.get(f"/rooms/{q(room_a)}/event/notanevent"), 400, "M_INVALID_PARAM")


def test_largest_safe_integers_are_accepted(alice):
    room_id = create(alice)
    content = {"msgtype": "m.text", "body": "n", "max": 2 ** 53 - 1, "min": -(2 ** 53 - 1)}
    event_id = send(alice, room_id, content).json()["event_id"]
    assert get_event(alice, room_id, event_id)["content"] == content


def test_event_type_over_255_bytes_is_refused(alice):
    room_id = create(alice)
    resp = send(alice, room_id, MESSAGE, event_type="x" * 256)
    assert resp.status_code in (400, 413), resp.text
    assert resp.json()["errcode"] in ("M_TOO_LARGE", "M_BAD_JSON", "M_INVALID_PARAM")


# --- state -------------------------------------------------------------------------------------

def test_state_put_and_get_with_a_state_key(alice):
    room_id = create(alice)
    resp = alice.put(f"/rooms/{q(room_id)}/state/org.example.thing/{q('key/with:chars')}", {"a": 1})
    assert resp.status_code == 200, resp.text
    jsonschema.validate(resp.json(), response_schema(
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}", "put", 200))
    event_id = resp.json()["event_id"]
    got = alice.get(f"/rooms/{q(room_id)}/state/org.example.thing/{q('key/with:chars')}")
    assert got.status_code == 200 and got.json() == {"a": 1}
    full = alice.get(f"/rooms/{q(room_id)}/state/org.example.thing/{q('key/with:chars')}",
                     params={"format": "event"}).json()
    assert full["event_id"] == event_id
    assert full["state_key"] == "key/with:chars"
    assert full["type"] == "org.example.thing"
    assert full["content"] == {"a": 1}
    assert full["sender"] == alice.user_id and full["room_id"] == room_id
    assert isinstance(full["origin_server_ts"], int)


def test_state_put_and_get_without_a_state_key(alice):
    room_id = create(alice)
    resp = alice.put(f"/rooms/{q(room_id)}/state/m.room.name", {"name": "First"})
    assert resp.status_code == 200, resp.text
    assert alice.get(f"/rooms/{q(room_id)}/state/m.room.name").json() == {"name": "First"}
    assert alice.get(f"/rooms/{q(room_id)}/state/m.room.name/").json() == {"name": "First"}
    resp = alice.put(f"/rooms/{q(room_id)}/state/m.room.name/", {"name": "Second"})
    assert resp.status_code == 200, resp.text
    event = alice.get(f"/rooms/{q(room_id)}/state/m.room.name", params={"format": "event"}).json()
    assert event["content"] == {"name": "Second"} and event["state_key"] == ""
    # The replaced state is named in unsigned.
    assert event["unsigned"]["prev_content"] == {"name": "First"}


def test_missing_state_is_not_found(alice):
    room_id = create(alice)
    assert_error(alice.get(f"/rooms/{q(room_id)}/state/m.room.name"), 404, "M_NOT_FOUND")
    assert_error(alice.get(f"/rooms/{q(room_id)}/state/m.room.member/{q('@nobody:test.local')}"), 404,
                 "M_NOT_FOUND")


def test_state_put_needs_the_state_default_level(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert bob.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    assert_error(bob.put(f"/rooms/{q(room_id)}/state/org.example.setting/", {"v": 1}), 403, "M_FORBIDDEN")
    assert_error(bob.put(f"/rooms/{q(room_id)}/state/m.room.name/", {"name": "x"}), 403, "M_FORBIDDEN")
    # Messages need only events_default (0).
    assert send(bob, room_id, MESSAGE).status_code == 200
    assert_error(alice.get(f"/rooms/{q(room_id)}/state/org.example.setting/"), 404, "M_NOT_FOUND")


def test_message_needs_events_default(alice, bob):
    room_id = create(alice, preset="public_chat", power_level_content_override={"events_default": 10})
    assert bob.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    assert_error(send(bob, room_id, MESSAGE), 403, "M_FORBIDDEN")


def test_state_put_non_object_body_is_bad_json(alice):
    room_id = create(alice)
    resp = alice.request("PUT", f"/rooms/{q(room_id)}/state/m.room.name/", data=b"[1]",
                         headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "M_BAD_JSON")


def test_state_on_unknown_and_malformed_rooms(alice):
    assert_error(alice.put(f"/rooms/{q('!nosuch:test.local')}/state/m.room.name/", {"name": "x"}), 404,
                 "M_NOT_FOUND")
    assert_error(alice.get(f"/rooms/{q('!nosuch:test.local')}/state/m.room.name/"), 404, "M_NOT_FOUND")
    assert_error(alice.get(f"/rooms/{q('!nosuch:test.local')}/state"), 404, "M_NOT_FOUND")
    assert_error(alice.get("/rooms/nosuch/state"), 400, "M_INVALID_PARAM")
    assert_error(alice.put("/rooms/nosuch/state/m.room.name/", {"name": "x"}), 400, "M_INVALID_PARAM")


def test_full_state_as_a_member(alice):
    room_id = create(alice, name="The room")
    resp = alice.get(f"/rooms/{q(room_id)}/state")
    assert resp.status_code == 200, resp.text
    jsonschema.validate(resp.json(), response_schema("/_matrix/client/v3/rooms/{roomId}/state", "get", 200))
    keys = {(e["type"], e["state_key"]) for e in resp.json()}
    assert keys == {("m.room.create", ""), ("m.room.member", alice.user_id), ("m.room.power_levels", ""),
                    ("m.room.join_rules", ""), ("m.room.history_visibility", ""), ("m.room.guest_access", ""),
                    ("m.room.name", "")}
    assert all(e["room_id"] == room_id for e in resp.json())


def test_state_after_leaving_is_the_state_at_the_leave(alice, bob):
    room_id = create(alice, preset="public_chat", name="Before")
    assert bob.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    assert bob.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    assert alice.put(f"/rooms/{q(room_id)}/state/m.room.name/", {"name": "After"}).status_code == 200
    assert alice.put(f"/rooms/{q(room_id)}/state/org.example.later/", {}).status_code == 200

    state = {(e["type"], e["state_key"]): e for e in bob.get(f"/rooms/{q(room_id)}/state").json()}
    assert state[("m.room.name", "")]["content"] == {"name": "Before"}
    assert ("org.example.later", "") not in state
    assert state[("m.room.member", bob.user_id)]["content"]["membership"] == "leave"
    assert bob.get(f"/rooms/{q(room_id)}/state/m.room.name/").json() == {"name": "Before"}
    assert_error(bob.get(f"/rooms/{q(room_id)}/state/org.example.later/"), 404, "M_NOT_FOUND")
    # The member still sees the latest.
    assert alice.get(f"/rooms/{q(room_id)}/state/m.room.name/").json() == {"name": "After"}


def test_state_of_a_room_never_joined_is_forbidden(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert_error(bob.get(f"/rooms/{q(room_id)}/state"), 403, "M_FORBIDDEN")
    assert_error(bob.get(f"/rooms/{q(room_id)}/state/m.room.name/"), 403, "M_FORBIDDEN")


def test_invited_user_cannot_read_the_full_state(alice, bob):
    room_id = create(alice)
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}).status_code == 200
    assert_error(bob.get(f"/rooms/{q(room_id)}/state"), 403, "M_FORBIDDEN")


def test_world_readable_state_is_readable_by_a_non_member(alice, bob):
    room_id = create(alice, preset="public_chat", name="Open",
                     initial_state=[{"type": "m.room.history_visibility",
                                     "content": {"history_visibility": "world_readable"}}])
    assert bob.get(f"/rooms/{q(room_id)}/state/m.room.name/").json() == {"name": "Open"}
    assert any(e["type"] == "m.room.name" for e in bob.get(f"/rooms/{q(room_id)}/state").json())


# --- rate limits -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def limited(pg_server_dsn, template_db):
    # A database of its own: one master allocates a database's event stream positions, so two
    # masters must not write events into the same one.
    with fresh_database(pg_server_dsn, "hs_test_rc_message", template=template_db) as dsn, \
            running_homeserver(dsn, rc_message={"per_second": 0.001, "burst_count": 3}) as server:
        yield server


def test_rc_message_limits_sending(limited):
    user = new_user(limited, "rl")
    room_id = create(user)
    sent = [send(user, room_id, MESSAGE, txn=f"rl{i}") for i in range(3)]
    assert [r.status_code for r in sent] == [200, 200, 200]
    # A retry of a request that went through is answered from its transaction, not limited.
    retry = send(user, room_id, MESSAGE, txn="rl2")
    assert retry.status_code == 200 and retry.json() == sent[2].json()
    body = assert_error(send(user, room_id, MESSAGE, txn="rl3"), 429, "M_LIMIT_EXCEEDED")
    assert isinstance(body["retry_after_ms"], int) and body["retry_after_ms"] > 0
    # The limit is per user: another user still sends.
    other = new_user(limited, "rl")
    assert send(other, create(other), MESSAGE).status_code == 200


def test_rc_message_limits_state_events_and_redactions(limited):
    user = new_user(limited, "rl")
    room_id = create(user)
    ids = [send(user, room_id, MESSAGE, txn=f"s{i}").json()["event_id"] for i in range(3)]
    assert_error(user.put(f"/rooms/{q(room_id)}/state/m.room.topic/", {"topic": "t"}), 429, "M_LIMIT_EXCEEDED")
    assert_error(user.put(f"/rooms/{q(room_id)}/redact/{q(ids[0])}/r1", {}), 429, "M_LIMIT_EXCEEDED")


# --- NUL: valid in JSON strings, impossible in PostgreSQL text --------------------------------------

@pytest.mark.parametrize("path", ["/send/x%00y/t1", "/send/m.room.message/t%002", "/state/org.x%00/",
                                  "/state/org.x/a%00b"])
def test_nul_in_path_parameters_is_invalid_param(alice, path):
    room_id = create(alice)
    assert_error(alice.put(f"/rooms/{q(room_id)}{path}", {}), 400, "M_INVALID_PARAM")
    if path.startswith("/state"):
        assert_error(alice.get(f"/rooms/{q(room_id)}{path}"), 400, "M_INVALID_PARAM")


def test_nul_in_the_redaction_transaction_id_is_invalid_param(alice):
    room_id = create(alice)
    event_id = send(alice, room_id, MESSAGE).json()["event_id"]
    assert_error(alice.put(f"/rooms/{q(room_id)}/redact/{q(event_id)}/t%00x", {}), 400, "M_INVALID_PARAM")


def test_nul_in_searchable_content_is_stored_and_read_back(alice):
    room_id = create(alice)
    content = {"msgtype": "m.text", "body": "a\u0000b"}
    resp = send(alice, room_id, content)
    assert resp.status_code == 200, resp.text
    assert get_event(alice, room_id, resp.json()["event_id"])["content"] == content
    resp = alice.put(f"/rooms/{q(room_id)}/state/m.room.name/", {"name": "n\u0000"})
    assert resp.status_code == 200, resp.text
    assert alice.get(f"/rooms/{q(room_id)}/state/m.room.name/").json() == {"name": "n\u0000"}


def test_nul_in_a_member_display_name_is_stored(alice):
    room_id = create(alice)
    content = {"membership": "join", "displayname": "A\u0000lice"}
    resp = alice.put(f"/rooms/{q(room_id)}/state/m.room.member/{q(alice.user_id)}", content)
    assert resp.status_code == 200, resp.text
    assert alice.get(f"/rooms/{q(room_id)}/state/m.room.member/{q(alice.user_id)}").json() == content
    joined = alice.get(f"/rooms/{q(room_id)}/joined_members").json()["joined"]
    assert joined[alice.user_id]["display_name"] == "Alice"


def test_nul_in_a_messages_filter_matches_nothing(alice):
    room_id = create(alice)
    send(alice, room_id, MESSAGE)
    resp = alice.get(f"/rooms/{q(room_id)}/messages",
                     params={"dir": "b", "filter": '{"types": ["m.room.message\\u0000"]}'})
    assert resp.status_code == 200, resp.text
    assert resp.json()["chunk"] == []
    resp = alice.get(f"/rooms/{q(room_id)}/messages",
                     params={"dir": "b", "limit": 1, "filter": '{"not_senders": ["@x\\u0000:y"]}'})
    assert resp.status_code == 200, resp.text
    assert [e["content"] for e in resp.json()["chunk"]] == [MESSAGE]


def test_state_is_forbidden_to_a_user_whose_invite_ended_without_a_join(alice, bob):
    room_id = create(alice, name="Private")
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}).status_code == 200
    assert bob.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    assert_error(bob.get(f"/rooms/{q(room_id)}/state"), 403, "M_FORBIDDEN")
    assert_error(bob.get(f"/rooms/{q(room_id)}/state/m.room.name/"), 403, "M_FORBIDDEN")
    assert_error(bob.get(f"/rooms/{q(room_id)}/members"), 403, "M_FORBIDDEN")


def test_state_of_a_world_readable_room_after_a_rejected_invite_is_the_current_state(alice, bob):
    room_id = create(alice, name="Before", initial_state=[
        {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}])
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}).status_code == 200
    assert bob.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    assert alice.put(f"/rooms/{q(room_id)}/state/m.room.name/", {"name": "After"}).status_code == 200
    assert bob.get(f"/rooms/{q(room_id)}/state/m.room.name/").json() == {"name": "After"}


def test_setting_the_same_state_twice_returns_the_same_event(alice):
    room_id = create(alice)
    first = alice.put(f"/rooms/{q(room_id)}/state/m.room.topic/", {"topic": "same"})
    again = alice.put(f"/rooms/{q(room_id)}/state/m.room.topic/", {"topic": "same"})
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    changed = alice.put(f"/rooms/{q(room_id)}/state/m.room.topic/", {"topic": "other"})
    assert changed.json() != first.json()
    chunk = alice.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 5}).json()["chunk"]
    assert [e["content"]["topic"] for e in chunk if e["type"] == "m.room.topic"] == ["other", "same"]
