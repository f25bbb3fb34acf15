"""POST /search (client-server API "Server Side Search"): the room_events category over message
bodies, room names and topics, with PostgreSQL full-text search; what a user may find (their
rooms, up to their leave, by history visibility), filters, ordering, next_batch pagination,
event context, groupings, state, and input that must never break the query."""

import random
import string
import uuid

import jsonschema
import pytest

from tests.api.test_response_schemas import response_schema
from tests.harness import Client, assert_error, create, q

SEARCH = "/_matrix/client/v3/search"


def word(prefix: str = "") -> str:
    """A word no other test uses (letters only, so the text parser keeps it one token)."""
    return prefix + "".join(random.choice(string.ascii_lowercase) for _ in range(12))


def new_user(homeserver, prefix="u") -> Client:
    return Client(homeserver).register(f"{prefix}{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def alice(homeserver):
    return new_user(homeserver, "alice")


@pytest.fixture
def bob(homeserver):
    return new_user(homeserver, "bob")


def send(client, room_id, body, event_type="m.room.message", **extra) -> str:
    content = {"msgtype": "m.text", "body": body, **extra} if event_type == "m.room.message" else extra
    resp = client.put(f"/rooms/{q(room_id)}/send/{q(event_type)}/{uuid.uuid4().hex}", content)
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"]


def set_state(client, room_id, event_type, content, state_key=""):
    resp = client.put(f"/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}", content)
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"]


def join(client, room_id):
    resp = client.post(f"/join/{q(room_id)}", {})
    assert resp.status_code == 200, resp.text


def search(client, criteria: dict, next_batch=None, status=200):
    path = "/search" + (f"?next_batch={q(next_batch)}" if next_batch is not None else "")
    resp = client.post(path, {"search_categories": {"room_events": criteria}})
    assert resp.status_code == status, resp.text
    if status == 200:
        jsonschema.validate(resp.json(), response_schema(SEARCH, "post", 200), cls=jsonschema.Draft202012Validator)
        return resp.json()["search_categories"]["room_events"]
    return resp.json()


def ids(result) -> list[str]:
    return [r["result"]["event_id"] for r in result["results"]]


# --- finding messages ----------------------------------------------------------------------------

def test_search_finds_a_message_by_a_word_of_its_body(alice):
    room = create(alice)
    term = word()
    event_id = send(alice, room, f"the {term} landed")
    send(alice, room, "nothing to see here")
    found = search(alice, {"search_term": term})
    assert ids(found) == [event_id]
    assert found["count"] == 1
    result = found["results"][0]
    assert result["result"]["room_id"] == room
    assert result["result"]["sender"] == alice.user_id
    assert result["result"]["content"]["body"] == f"the {term} landed"
    assert isinstance(result["rank"], float) and result["rank"] > 0
    assert term in found["highlights"]
    assert "next_batch" not in found


def test_a_word_prefix_matches_and_the_whole_word_is_highlighted(alice):
    room = create(alice)
    term = word()
    event_id = send(alice, room, f"{term}ish weather")
    found = search(alice, {"search_term": term[:8]})
    assert ids(found) == [event_id]
    assert f"{term}ish" in found["highlights"]


def test_matching_is_case_insensitive_and_every_word_must_match(alice):
    room = create(alice)
    first, second = word(), word()
    both = send(alice, room, f"{first.upper()} and {second}")
    send(alice, room, f"only {first}")
    assert ids(search(alice, {"search_term": f"{first} {second.upper()}"})) == [both]


def test_odd_search_terms_never_fail(alice):
    room = create(alice)
    term = word()
    send(alice, room, f"{term} it's a-b c.d e@f.org ünïcödé 中文 🙂")
    for odd in ["&", "|", "!", "(", ")", ":*", "'", "''", "\\", "\\'", "<->", "a & | b", "!!!x", "(((", "*",
                "' & '", "\"quoted\"", "-", "or", "OR NOT", "\u00a0", "🙂", "中文", "ünïcödé", "x" * 5000,
                "a" * 3000 + " b", "e@f.org", "c.d", "it's", "\x00", "a\x00b", "   ", "", f"{term}:*",
                f"'{term}'", f"{term} & !{term}"]:
        resp = alice.post("/search", {"search_categories": {"room_events": {"search_term": odd}}})
        assert resp.status_code == 200, (odd, resp.text)
        assert "results" in resp.json()["search_categories"]["room_events"]
    # The operators a user types are words to find, not query syntax.
    assert len(search(alice, {"search_term": f"{term}:*"})["results"]) == 1
    assert len(search(alice, {"search_term": f"{term} & !{term}"})["results"]) == 1


def test_a_term_with_no_words_finds_nothing(alice):
    room = create(alice)
    send(alice, room, "punctuation only ...")
    found = search(alice, {"search_term": "... !!! ???"})
    assert found["results"] == [] and found["count"] == 0


def test_room_names_and_topics_are_searched_by_their_keys(alice):
    name, topic = word(), word()
    room = create(alice, name=f"{name} room", topic=f"about {topic}")
    name_hits = search(alice, {"search_term": name})
    assert [r["result"]["type"] for r in name_hits["results"]] == ["m.room.name"]
    assert name_hits["results"][0]["result"]["room_id"] == room
    assert [r["result"]["type"] for r in search(alice, {"search_term": topic})["results"]] == ["m.room.topic"]
    assert search(alice, {"search_term": name, "keys": ["content.body", "content.topic"]})["results"] == []
    assert len(search(alice, {"search_term": name, "keys": ["content.name"]})["results"]) == 1


def test_search_works_in_a_room_version_1_room(alice):
    room = create(alice, room_version="1")
    term = word()
    event_id = send(alice, room, term)
    assert ":" in event_id
    assert ids(search(alice, {"search_term": term})) == [event_id]


def test_redacted_messages_are_not_found(alice):
    room = create(alice)
    term = word()
    event_id = send(alice, room, term)
    resp = alice.put(f"/rooms/{q(room)}/redact/{q(event_id)}/{uuid.uuid4().hex}", {})
    assert resp.status_code == 200, resp.text
    found = search(alice, {"search_term": term})
    assert found["results"] == [] and found["count"] == 0


# --- what a user may find ------------------------------------------------------------------------

def test_messages_in_rooms_the_user_is_not_in_are_not_found(alice, bob):
    room = create(alice, preset="public_chat")
    term = word()
    send(alice, room, term)
    found = search(bob, {"search_term": term})
    assert found["results"] == [] and found["count"] == 0


def test_a_user_who_left_finds_messages_up_to_their_leave_only(alice, bob):
    room = create(alice, preset="public_chat")
    join(bob, room)
    term = word()
    before = send(alice, room, f"{term} before")
    assert bob.post(f"/rooms/{q(room)}/leave", {}).status_code == 200
    send(alice, room, f"{term} after")
    assert ids(search(bob, {"search_term": term})) == [before]


def test_a_forgotten_room_is_not_searched(alice, bob):
    room = create(alice, preset="public_chat")
    join(bob, room)
    term = word()
    send(alice, room, term)
    assert bob.post(f"/rooms/{q(room)}/leave", {}).status_code == 200
    assert bob.post(f"/rooms/{q(room)}/forget", {}).status_code == 200
    assert search(bob, {"search_term": term})["results"] == []


def test_history_visibility_joined_hides_messages_from_before_the_join(alice, bob):
    room = create(alice, preset="public_chat",
                  initial_state=[{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}])
    term = word()
    send(alice, room, f"{term} early")
    join(bob, room)
    later = send(alice, room, f"{term} late")
    assert ids(search(bob, {"search_term": term})) == [later]
    assert len(search(alice, {"search_term": term})["results"]) == 2


def test_hidden_matches_do_not_shorten_a_page(alice, bob):
    room = create(alice, preset="public_chat",
                  initial_state=[{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}])
    term = word()
    # The hidden matches rank first, and there are more of them than one candidate page holds.
    for _ in range(12):
        send(alice, room, f"{term} {term} {term}")
    join(bob, room)
    shown = [send(alice, room, f"{term} shown among several other words {i}") for i in range(3)]
    found = search(bob, {"search_term": term, "order_by": "rank", "filter": {"limit": 3}})
    assert sorted(ids(found)) == sorted(shown)
    assert "next_batch" not in found


# --- filters and ordering ------------------------------------------------------------------------

def test_filter_rooms_and_not_rooms_limit_the_rooms_searched(alice):
    first, second = create(alice), create(alice)
    term = word()
    in_first, in_second = send(alice, first, term), send(alice, second, term)
    assert ids(search(alice, {"search_term": term, "filter": {"rooms": [first]}})) == [in_first]
    assert ids(search(alice, {"search_term": term, "filter": {"not_rooms": [first]}})) == [in_second]


def test_filter_senders_and_types(alice, bob):
    room = create(alice, preset="public_chat")
    join(bob, room)
    term = word()
    from_alice, from_bob = send(alice, room, term), send(bob, room, term)
    notice = send(alice, room, term, event_type="m.room.message")
    assert set(ids(search(alice, {"search_term": term, "filter": {"senders": [bob.user_id]}}))) == {from_bob}
    assert set(ids(search(alice, {"search_term": term, "filter": {"not_senders": [bob.user_id]}}))) == {
        from_alice, notice}
    assert search(alice, {"search_term": term, "filter": {"types": ["m.room.topic"]}})["results"] == []
    assert len(search(alice, {"search_term": term, "filter": {"types": ["m.room.*"]}})["results"]) == 3


def test_order_by_recent_returns_newest_first(alice):
    room = create(alice)
    term = word()
    sent = [send(alice, room, f"{term} {i}") for i in range(3)]
    assert ids(search(alice, {"search_term": term, "order_by": "recent"})) == sent[::-1]


def test_order_by_rank_puts_the_closer_match_first(alice):
    room = create(alice)
    term = word()
    weak = send(alice, room, f"{term} among many many other words that dilute the match a great deal")
    strong = send(alice, room, f"{term} {term} {term}")
    found = search(alice, {"search_term": term, "order_by": "rank"})
    assert ids(found) == [strong, weak]
    assert found["results"][0]["rank"] > found["results"][1]["rank"]


@pytest.mark.parametrize("order_by", ["recent", "rank"])
def test_next_batch_pages_through_every_result_once(alice, order_by):
    room = create(alice)
    term = word()
    sent = {send(alice, room, f"{term} {'x ' * i}") for i in range(5)}
    seen, batch, pages = [], None, 0
    while True:
        page = search(alice, {"search_term": term, "order_by": order_by, "filter": {"limit": 2}}, batch)
        pages += 1
        assert page["count"] == 5
        seen += ids(page)
        batch = page.get("next_batch")
        if batch is None:
            break
    assert pages == 3
    assert len(seen) == 5 and set(seen) == sent


def test_an_invalid_next_batch_is_refused(alice):
    for token in ["nonsense", "eyJvIjoicmFuayJ9", "%%%"]:
        resp = alice.post(f"/search?next_batch={q(token)}",
                          {"search_categories": {"room_events": {"search_term": "x"}}})
        assert_error(resp, 400, "M_INVALID_PARAM")


def test_a_next_batch_from_another_ordering_is_refused(alice):
    room = create(alice)
    term = word()
    for _ in range(3):
        send(alice, room, term)
    page = search(alice, {"search_term": term, "order_by": "recent", "filter": {"limit": 1}})
    resp = alice.post(f"/search?next_batch={q(page['next_batch'])}",
                      {"search_categories": {"room_events": {"search_term": term, "order_by": "rank"}}})
    assert_error(resp, 400, "M_INVALID_PARAM")


# --- context, groups and state -------------------------------------------------------------------

def test_event_context_returns_events_around_the_result_with_profiles(alice, bob):
    room = create(alice, preset="public_chat")
    join(bob, room)
    assert bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Bobby"}).status_code == 200
    term = word()
    before = [send(alice, room, f"before {i}") for i in range(3)]
    hit = send(bob, room, term)
    after = [send(alice, room, f"after {i}") for i in range(3)]
    found = search(alice, {"search_term": term, "event_context": {"before_limit": 2, "after_limit": 1,
                                                                  "include_profile": True}})
    context = found["results"][0]["context"]
    assert [e["event_id"] for e in context["events_before"]] == before[:0:-1]
    assert [e["event_id"] for e in context["events_after"]] == after[:1]
    assert context["profile_info"][bob.user_id] == {"displayname": "Bobby"}
    assert alice.user_id in context["profile_info"]
    # The tokens page on from the context with /messages.
    resp = alice.get(f"/rooms/{q(room)}/messages?dir=b&limit=1&from={q(context['start'])}")
    assert [e["event_id"] for e in resp.json()["chunk"]] == [before[0]]
    resp = alice.get(f"/rooms/{q(room)}/messages?dir=f&limit=1&from={q(context['end'])}")
    assert [e["event_id"] for e in resp.json()["chunk"]] == [after[1]]
    assert found["results"][0]["result"]["event_id"] == hit


def test_context_is_absent_unless_asked_for(alice):
    room = create(alice)
    term = word()
    send(alice, room, term)
    assert "context" not in search(alice, {"search_term": term})["results"][0]


def test_groupings_by_room_and_sender(alice, bob):
    first, second = create(alice, preset="public_chat"), create(alice)
    join(bob, first)
    term = word()
    a1 = send(alice, first, term)
    b1 = send(bob, first, term)
    a2 = send(alice, second, term)
    found = search(alice, {"search_term": term, "order_by": "recent",
                           "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]}})
    groups = found["groups"]
    assert set(groups["room_id"]) == {first, second}
    assert groups["room_id"][second]["results"] == [a2]
    assert groups["room_id"][first]["results"] == [b1, a1]
    assert sorted(g["order"] for g in groups["room_id"].values()) == [1, 2]
    assert groups["sender"][alice.user_id]["results"] == [a2, a1]
    assert groups["sender"][bob.user_id]["results"] == [b1]


def test_a_group_next_batch_pages_within_that_group(alice):
    first, second = create(alice), create(alice)
    term = word()
    in_first = [send(alice, first, term) for _ in range(3)]
    send(alice, second, term)
    page = search(alice, {"search_term": term, "order_by": "recent", "filter": {"limit": 2},
                          "groupings": {"group_by": [{"key": "room_id"}]}})
    # The newest two: one in each room.
    group = page["groups"]["room_id"][first]
    assert group["results"] == [in_first[2]]
    more = search(alice, {"search_term": term, "order_by": "recent", "filter": {"limit": 10}}, group["next_batch"])
    assert ids(more) == in_first[1::-1]


def test_empty_groups_when_nothing_matches(alice):
    found = search(alice, {"search_term": word(), "groupings": {"group_by": [{"key": "room_id"}]}})
    assert found["groups"] == {"room_id": {}}
    assert found["results"] == []


def test_include_state_returns_the_state_of_each_room_with_results(alice):
    name = word()
    room = create(alice, name=name)
    term = word()
    send(alice, room, term)
    found = search(alice, {"search_term": term, "include_state": True})
    state = found["state"][room]
    assert {e["type"] for e in state} >= {"m.room.create", "m.room.member", "m.room.name"}
    assert next(e for e in state if e["type"] == "m.room.name")["content"] == {"name": name}


# --- requests that are refused -------------------------------------------------------------------

def test_missing_search_categories_is_refused(alice):
    assert_error(alice.post("/search", {}), 400, "M_MISSING_PARAM")


def test_missing_search_term_is_refused(alice):
    assert_error(alice.post("/search", {"search_categories": {"room_events": {}}}), 400, "M_MISSING_PARAM")


@pytest.mark.parametrize("criteria, errcode", [
    ({"search_term": 5}, "M_BAD_JSON"),
    ({"search_term": "x", "order_by": "newest"}, "M_INVALID_PARAM"),
    ({"search_term": "x", "keys": ["content.url"]}, "M_INVALID_PARAM"),
    ({"search_term": "x", "keys": "content.body"}, "M_BAD_JSON"),
    ({"search_term": "x", "filter": {"rooms": "!a:b"}}, "M_BAD_JSON"),
    ({"search_term": "x", "filter": {"limit": -1}}, "M_BAD_JSON"),
    ({"search_term": "x", "event_context": {"before_limit": "5"}}, "M_BAD_JSON"),
    ({"search_term": "x", "groupings": {"group_by": [{"key": "type"}]}}, "M_INVALID_PARAM"),
    ({"search_term": "x", "include_state": "yes"}, "M_BAD_JSON"),
])
def test_malformed_criteria_are_refused(alice, criteria, errcode):
    assert_error(alice.post("/search", {"search_categories": {"room_events": criteria}}), 400, errcode)


def test_no_room_events_category_returns_no_categories(alice):
    resp = alice.post("/search", {"search_categories": {}})
    assert resp.status_code == 200
    assert resp.json() == {"search_categories": {}}


def test_search_needs_an_access_token(homeserver):
    resp = Client(homeserver).post("/search", {"search_categories": {"room_events": {"search_term": "x"}}})
    assert_error(resp, 401, "M_MISSING_TOKEN")
