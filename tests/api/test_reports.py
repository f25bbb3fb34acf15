"""Reporting content (client-server API "Reporting content"): POST /rooms/{roomId}/report/{eventId}
by joined members who can see the event, POST /rooms/{roomId}/report by anyone; reports land
in event_reports; the 404s reveal nothing about events a reporter cannot see."""

import uuid

import jsonschema
import psycopg2
import pytest

from tests.api.test_response_schemas import response_schema
from tests.harness import Client, create, new_user, q

EVENT_PATH = "/_matrix/client/v3/rooms/{roomId}/report/{eventId}"
ROOM_PATH = "/_matrix/client/v3/rooms/{roomId}/report"


@pytest.fixture(scope="module")
def alice(homeserver):
    return new_user(homeserver)


@pytest.fixture
def bob(homeserver):
    return new_user(homeserver)


def send(client, room_id, body="hello") -> str:
    resp = client.put(f"/rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}",
                      {"msgtype": "m.text", "body": body})
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"]


def join(client, room_id):
    assert client.post(f"/join/{q(room_id)}", {}).status_code == 200


def report_event(client, room_id, event_id, body):
    return client.post(f"/rooms/{q(room_id)}/report/{q(event_id)}", body)


def reports_for(db_dsn, room_id) -> list[tuple]:
    with psycopg2.connect(db_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT event_id, user_id, reason, score FROM event_reports WHERE room_id = %s ORDER BY id",
                    (room_id,))
        return cur.fetchall()


def assert_error(resp, status, errcode, path):
    assert resp.status_code == status, resp.text
    assert resp.json()["errcode"] == errcode, resp.text
    schema = response_schema(path, "post", status)
    jsonschema.validate(resp.json(), schema, cls=jsonschema.Draft202012Validator)


# --- events --------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["12", "11", "1"])
def test_a_member_reports_an_event_with_reason_and_score(alice, bob, db_dsn, version):
    room = create(alice, preset="public_chat", room_version=version)
    join(bob, room)
    event_id = send(alice, room, "offensive")
    resp = report_event(bob, room, event_id, {"reason": "this makes me sad", "score": -100})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    jsonschema.validate(resp.json(), response_schema(EVENT_PATH, "post", 200))
    assert reports_for(db_dsn, room) == [(event_id, bob.user_id, "this makes me sad", -100)]


def test_reason_and_score_are_optional(alice, db_dsn):
    room = create(alice)
    event_id = send(alice, room)
    assert report_event(alice, room, event_id, {}).status_code == 200
    assert reports_for(db_dsn, room) == [(event_id, alice.user_id, None, None)]


def test_a_user_not_in_the_room_gets_not_found(alice, bob, db_dsn):
    room = create(alice, preset="public_chat")
    event_id = send(alice, room)
    assert_error(report_event(bob, room, event_id, {"reason": "x"}), 404, "M_NOT_FOUND", EVENT_PATH)
    assert reports_for(db_dsn, room) == []


def test_a_member_who_left_gets_not_found(alice, bob):
    room = create(alice, preset="public_chat")
    join(bob, room)
    event_id = send(alice, room)
    assert bob.post(f"/rooms/{q(room)}/leave", {}).status_code == 200
    assert_error(report_event(bob, room, event_id, {}), 404, "M_NOT_FOUND", EVENT_PATH)


def test_an_event_hidden_by_history_visibility_is_not_found(alice, bob):
    room = create(alice, preset="public_chat",
                  initial_state=[{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}])
    event_id = send(alice, room)
    join(bob, room)
    assert_error(report_event(bob, room, event_id, {}), 404, "M_NOT_FOUND", EVENT_PATH)


def test_an_unknown_event_is_not_found(alice):
    room = create(alice)
    assert_error(report_event(alice, room, "$nonexistent", {}), 404, "M_NOT_FOUND", EVENT_PATH)


def test_an_event_of_another_room_is_not_found(alice):
    room, other = create(alice), create(alice)
    event_id = send(alice, other)
    assert_error(report_event(alice, room, event_id, {}), 404, "M_NOT_FOUND", EVENT_PATH)


@pytest.mark.parametrize("body, errcode", [
    ({"score": 1}, "M_INVALID_PARAM"),
    ({"score": -101}, "M_INVALID_PARAM"),
    ({"score": "-5"}, "M_INVALID_PARAM"),
    ({"score": -5.5}, "M_INVALID_PARAM"),
    ({"score": True}, "M_INVALID_PARAM"),
    ({"reason": 5}, "M_BAD_JSON"),
    ({"reason": "a\x00b"}, "M_INVALID_PARAM"),
    ({"reason": "x" * 10_001}, "M_INVALID_PARAM"),
])
def test_malformed_reports_are_refused(alice, db_dsn, body, errcode):
    room = create(alice)
    event_id = send(alice, room)
    resp = report_event(alice, room, event_id, body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["errcode"] == errcode
    assert reports_for(db_dsn, room) == []


def test_an_event_id_with_slashes_and_pluses_is_reported(alice, db_dsn):
    room = create(alice, room_version="3")
    event_id = None
    for i in range(200):  # v3 event IDs are standard base64: '/' or '+' turn up quickly
        event_id = send(alice, room, f"m{i}")
        if "/" in event_id or "+" in event_id:
            break
    assert "/" in event_id or "+" in event_id
    assert report_event(alice, room, event_id, {"reason": "r"}).status_code == 200
    assert reports_for(db_dsn, room) == [(event_id, alice.user_id, "r", None)]


def test_an_event_report_needs_a_json_body(alice):
    room = create(alice)
    event_id = send(alice, room)
    resp = alice.request("POST", f"/rooms/{q(room)}/report/{q(event_id)}", data=b"not json")
    assert resp.status_code == 400 and resp.json()["errcode"] == "M_NOT_JSON"


# --- rooms ---------------------------------------------------------------------------------------

def test_anyone_may_report_a_room(alice, bob, db_dsn):
    room = create(alice, preset="private_chat")
    resp = bob.post(f"/rooms/{q(room)}/report", {"reason": "spam room"})
    assert resp.status_code == 200, resp.text
    jsonschema.validate(resp.json(), response_schema(ROOM_PATH, "post", 200))
    assert reports_for(db_dsn, room) == [(None, bob.user_id, "spam room", None)]


def test_a_room_report_may_have_a_blank_reason(alice, db_dsn):
    room = create(alice)
    assert alice.post(f"/rooms/{q(room)}/report", {"reason": ""}).status_code == 200
    assert reports_for(db_dsn, room) == [(None, alice.user_id, "", None)]


def test_reporting_an_unknown_room_is_not_found(alice):
    assert_error(alice.post(f"/rooms/{q('!nope:test.local')}/report", {"reason": "x"}), 404, "M_NOT_FOUND",
                 ROOM_PATH)


def test_a_room_report_needs_a_reason(alice):
    room = create(alice)
    resp = alice.post(f"/rooms/{q(room)}/report", {})
    assert resp.status_code == 400 and resp.json()["errcode"] == "M_MISSING_PARAM"


def test_reports_need_an_access_token(homeserver, alice):
    room = create(alice)
    resp = Client(homeserver).post(f"/rooms/{q(room)}/report", {"reason": "x"})
    assert resp.status_code == 401 and resp.json()["errcode"] == "M_MISSING_TOKEN"
