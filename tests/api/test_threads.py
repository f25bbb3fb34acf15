"""Threads (client-server API "Threading"): the m.thread bundled aggregation, the validation of
new m.thread relations, and GET /_matrix/client/v1/rooms/{roomId}/threads, against a real
server and database."""


import jsonschema
import pytest

from tests.api.test_relations import (
    CLIENT_EVENT,
    assert_error,
    assert_spec,
    bundled,
    create_room,
    edit,
    get_event,
    join,
    leave,
    put_event,
    reaction,
    redact,
    relates,
    relation_ids,
    send,
    text,
    user,
)
from tests.harness import q

THREADS = "/_matrix/client/v1/rooms/{roomId}/threads"

# Threading, "Server-side aggregation of m.thread relationships".
THREAD_AGGREGATION = {
    "type": "object",
    "required": ["latest_event", "count", "current_user_participated"],
    "additionalProperties": False,
    "properties": {
        "latest_event": CLIENT_EVENT,
        "count": {"type": "integer", "minimum": 1},
        "current_user_participated": {"type": "boolean"},
    },
}


@pytest.fixture(scope="module")
def alice(homeserver):
    return user(homeserver, "alice")


@pytest.fixture(scope="module")
def bob(homeserver):
    return user(homeserver, "bob")


@pytest.fixture(scope="module")
def carol(homeserver):
    return user(homeserver, "carol")


def reply(client, room_id, root, body="reply") -> str:
    return send(client, room_id, relates("m.thread", root, body))


def threads(client, room_id, **params):
    return client.get(f"/_matrix/client/v1/rooms/{q(room_id)}/threads", params=params)


def thread_ids(client, room_id, **params) -> list[str]:
    resp = threads(client, room_id, **params)
    assert resp.status_code == 200, resp.text
    return [e["event_id"] for e in resp.json()["chunk"]]


# --- the m.thread aggregation ----------------------------------------------------------------

@pytest.mark.parametrize("version", ["1", "11", "12"])
def test_a_thread_root_bundles_its_latest_reply_count_and_participation(alice, bob, version):
    room = create_room(alice, bob, version=version)
    root = send(alice, room, text("Hello world! How are you?"))
    reply(bob, room, root, "I'm doing okay")
    latest = reply(bob, room, root, "How about yourself?")

    summary = bundled(alice, room, root)["m.thread"]

    jsonschema.validate(summary, THREAD_AGGREGATION)
    assert summary["latest_event"]["event_id"] == latest
    assert summary["latest_event"]["content"]["body"] == "How about yourself?"
    assert summary["latest_event"]["room_id"] == room
    assert summary["count"] == 2
    # alice sent the root: that is taking part
    assert summary["current_user_participated"] is True


def test_participation_is_the_readers_own(alice, bob, carol):
    room = create_room(alice, bob, carol)
    root = send(alice, room)
    reply(bob, room, root)

    assert bundled(bob, room, root)["m.thread"]["current_user_participated"] is True
    assert bundled(carol, room, root)["m.thread"]["current_user_participated"] is False


def test_the_latest_reply_carries_its_own_aggregations(alice, bob):
    # "child events of the latest_event should themselves be aggregated"
    room = create_room(alice, bob)
    root = send(alice, room)
    latest = reply(bob, room, root, "tpyo")
    fixed = send(bob, room, edit(latest, "typo"))

    summary = bundled(alice, room, root)["m.thread"]

    assert summary["latest_event"]["event_id"] == latest
    assert summary["latest_event"]["unsigned"]["m.relations"]["m.replace"]["event_id"] == fixed


def test_redacting_the_latest_reply_moves_the_summary_back(alice, bob):
    room = create_room(alice, bob)
    root = send(alice, room)
    first = reply(bob, room, root)
    second = reply(bob, room, root)
    redact(bob, room, second)

    summary = bundled(alice, room, root)["m.thread"]

    assert (summary["latest_event"]["event_id"], summary["count"]) == (first, 1)


def test_a_user_who_left_sees_the_thread_as_it_was_when_they_left(alice, bob):
    room = create_room(alice, bob)
    root = send(alice, room)
    before = reply(alice, room, root)
    leave(bob, room)
    reply(alice, room, root, "after bob left")

    summary = bundled(bob, room, root)["m.thread"]

    assert (summary["latest_event"]["event_id"], summary["count"]) == (before, 1)
    assert relation_ids(bob, room, root, "m.thread", limit=10) == [before]


def test_thread_replies_are_listed_by_relations(alice, bob):
    room = create_room(alice, bob)
    root = send(alice, room)
    replies = [reply(bob, room, root, f"reply {n}") for n in range(3)]

    assert relation_ids(alice, room, root, "m.thread") == replies[::-1]


# --- validation of m.thread --------------------------------------------------------------------

@pytest.mark.parametrize("child", ["thread", "edit", "reaction", "reference"])
def test_a_thread_off_an_event_with_a_relation_is_refused(alice, bob, child):
    # Threading, "Validation of m.thread relationships": HTTP 400 with M_UNKNOWN.
    room = create_room(alice, bob)
    root = send(alice, room)
    if child == "thread":
        parent = reply(bob, room, root)
    elif child == "edit":
        parent = send(alice, room, edit(root, "edited"))
    elif child == "reaction":
        parent = send(bob, room, reaction(root, "👍"), "m.reaction")
    else:
        parent = send(bob, room, relates("m.reference", root))

    resp = put_event(bob, room, relates("m.thread", parent, "nested"))

    assert_error(resp, 400, "M_UNKNOWN")
    assert relation_ids(alice, room, parent) == []


def test_an_encrypted_thread_off_a_thread_reply_is_refused(alice, bob):
    room = create_room(alice, bob)
    root = send(alice, room)
    child = reply(bob, room, root)

    resp = put_event(bob, room, {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AAAA",
                                 "m.relates_to": {"rel_type": "m.thread", "event_id": child}}, "m.room.encrypted")

    assert_error(resp, 400, "M_UNKNOWN")


def test_a_rich_reply_can_start_a_thread(alice, bob):
    # A rich reply has m.relates_to but no rel_type: it is not the child of a relationship.
    room = create_room(alice, bob)
    first = send(alice, room)
    rich_reply = send(bob, room, text("re", **{"m.relates_to": {"m.in_reply_to": {"event_id": first}}}))

    threaded = reply(alice, room, rich_reply)

    assert bundled(alice, room, rich_reply)["m.thread"]["latest_event"]["event_id"] == threaded


def test_a_reply_in_a_thread_may_use_the_reply_fallback(alice, bob):
    room = create_room(alice, bob)
    root = send(alice, room)
    first = reply(bob, room, root)
    content = text("fallback", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                                                   "m.in_reply_to": {"event_id": first}}})

    second = send(alice, room, content)

    assert bundled(alice, room, root)["m.thread"]["latest_event"]["event_id"] == second


def test_threading_off_an_event_in_another_room_is_not_refused(alice):
    # The spec ignores relations across rooms rather than refusing them.
    room, other = create_room(alice), create_room(alice)
    root = send(alice, other)
    child = reply(alice, other, root)

    assert put_event(alice, room, relates("m.thread", child)).status_code == 200


# --- GET /threads ------------------------------------------------------------------------------

def test_threads_are_listed_by_latest_activity_with_their_summary(alice, bob):
    room = create_room(alice, bob)
    old_root = send(alice, room, text("old"))
    new_root = send(bob, room, text("new"))
    send(alice, room, text("not a thread"))
    reply(bob, room, old_root)
    reply(alice, room, new_root)
    latest = reply(bob, room, old_root, "bump")

    resp = threads(alice, room)

    assert_spec(resp, THREADS)
    chunk = resp.json()["chunk"]
    assert [e["event_id"] for e in chunk] == [old_root, new_root]
    summary = chunk[0]["unsigned"]["m.relations"]["m.thread"]
    jsonschema.validate(summary, THREAD_AGGREGATION)
    assert (summary["latest_event"]["event_id"], summary["count"]) == (latest, 2)
    assert "next_batch" not in resp.json()


def test_participated_lists_threads_the_reader_started_or_replied_in(alice, bob, carol):
    room = create_room(alice, bob, carol)
    started = send(carol, room, text("carol's"))
    reply(alice, room, started)
    replied = send(alice, room, text("alice's"))
    reply(carol, room, replied)
    other = send(alice, room, text("not carol's"))
    reply(bob, room, other)

    assert thread_ids(carol, room, include="participated") == [replied, started]
    assert thread_ids(carol, room, include="all") == [other, replied, started]


def test_threads_pagination_visits_every_thread_once(alice):
    room = create_room(alice)
    roots = [send(alice, room, text(f"root {n}")) for n in range(5)]
    for root in roots:
        reply(alice, room, root)
    seen, token, pages = [], None, 0
    while True:
        resp = threads(alice, room, limit=2, **({"from": token} if token else {}))
        assert_spec(resp, THREADS)
        seen += [e["event_id"] for e in resp.json()["chunk"]]
        token = resp.json().get("next_batch")
        pages += 1
        if token is None:
            break

    assert seen == roots[::-1]
    assert pages == 3


def test_redacting_a_threads_latest_reply_moves_it_back_in_the_list(alice, bob):
    room = create_room(alice, bob)
    root_a, root_b = send(alice, room, text("a")), send(alice, room, text("b"))
    reply(bob, room, root_b, "b1")
    reply(bob, room, root_a, "a1")
    latest_b = reply(bob, room, root_b, "b2")
    assert thread_ids(alice, room) == [root_b, root_a]

    redact(bob, room, latest_b)

    assert thread_ids(alice, room) == [root_a, root_b]


def test_a_thread_whose_replies_are_all_redacted_is_no_longer_listed(alice, bob):
    room = create_room(alice, bob)
    root = send(alice, room)
    only = reply(bob, room, root)
    redact(bob, room, only)

    assert thread_ids(alice, room) == []
    assert "m.relations" not in get_event(alice, room, root)["unsigned"]


def test_a_redacted_root_is_still_listed_with_its_summary(alice, bob):
    room = create_room(alice, bob)
    root = send(alice, room)
    latest = reply(bob, room, root)
    redact(alice, room, root)

    chunk = threads(alice, room).json()["chunk"]

    assert [e["event_id"] for e in chunk] == [root]
    assert chunk[0]["content"] == {}
    assert chunk[0]["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"] == latest


def test_a_user_who_left_sees_no_thread_started_after_leaving(alice, bob):
    room = create_room(alice, bob)
    before = send(alice, room, text("before"))
    reply(alice, room, before)
    leave(bob, room)
    after = send(alice, room, text("after"))
    reply(alice, room, after)

    chunk = threads(bob, room).json()["chunk"]

    assert [e["event_id"] for e in chunk] == [before]
    assert chunk[0]["unsigned"]["m.relations"]["m.thread"]["count"] == 1


def test_threads_of_a_private_room_are_forbidden_to_non_members(alice, carol):
    room = create_room(alice, preset="private_chat")
    reply(alice, room, send(alice, room))

    assert_error(threads(carol, room), 403, "M_FORBIDDEN")


def test_threads_of_an_unknown_room_are_forbidden(alice):
    # threads_list.yaml lists "The room does not exist" under 403.
    assert_error(threads(alice, "!nosuchroom:test.local"), 403, "M_FORBIDDEN")


@pytest.mark.parametrize("params", [{"from": "nonsense"}, {"include": "some"}, {"limit": "0"}, {"limit": "x"}])
def test_bad_threads_parameters_are_m_invalid_param(alice, params):
    room = create_room(alice)

    assert_error(threads(alice, room, **params), 400, "M_INVALID_PARAM")


def test_a_room_with_no_threads_lists_none(alice):
    room = create_room(alice)
    send(alice, room)

    resp = threads(alice, room)

    assert_spec(resp, THREADS)
    assert resp.json() == {"chunk": []}


def test_a_reply_sent_while_the_reader_was_away_is_not_their_latest(alice, carol):
    # Under `joined` history a member who left and came back cannot see what was sent between.
    room = create_room(alice, initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                                              "content": {"history_visibility": "joined"}}])
    join(carol, room)
    root = send(alice, room)
    seen = reply(alice, room, root, "seen")
    leave(carol, room)
    reply(alice, room, root, "sent while carol was away")
    join(carol, room)

    assert bundled(carol, room, root)["m.thread"]["latest_event"]["event_id"] == seen
    assert relation_ids(carol, room, root, "m.thread") == [seen]
