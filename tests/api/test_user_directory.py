"""POST /user_directory/search (client-server API "User directory"): who a user can find
(those sharing a room with them, and members of public or world-readable rooms), matching on
localpart and display name without regard to case, ordering, limit and `limited`."""

import random
import string
import uuid

import jsonschema
import pytest

from tests.api.test_response_schemas import response_schema
from tests.harness import Client, create, q

PATH = "/_matrix/client/v3/user_directory/search"


def token() -> str:
    return "".join(random.choice(string.ascii_lowercase) for _ in range(10))


def new_user(homeserver, localpart=None, displayname=None) -> Client:
    client = Client(homeserver).register(localpart or f"u{uuid.uuid4().hex[:10]}")
    if displayname is not None:
        resp = client.put(f"/profile/{q(client.user_id)}/displayname", {"displayname": displayname})
        assert resp.status_code == 200, resp.text
    return client


def join(client, room_id):
    resp = client.post(f"/join/{q(room_id)}", {})
    assert resp.status_code == 200, resp.text


def search(client, term, limit=None) -> dict:
    body = {"search_term": term}
    if limit is not None:
        body["limit"] = limit
    resp = client.post("/user_directory/search", body)
    assert resp.status_code == 200, resp.text
    jsonschema.validate(resp.json(), response_schema(PATH, "post", 200), cls=jsonschema.Draft202012Validator)
    return resp.json()


def found(client, term, **kw) -> list[str]:
    return [r["user_id"] for r in search(client, term, **kw)["results"]]


def share_private_room(a: Client, b: Client) -> str:
    room = create(a, preset="private_chat")
    assert a.post(f"/rooms/{q(room)}/invite", {"user_id": b.user_id}).status_code == 200
    join(b, room)
    return room


@pytest.fixture(scope="module")
def searcher(homeserver):
    return new_user(homeserver)


def test_a_user_sharing_a_private_room_is_found_by_display_name(homeserver, searcher):
    name = token()
    other = new_user(homeserver, displayname=f"{name.capitalize()} Smith")
    share_private_room(searcher, other)
    result = search(searcher, name.upper())
    assert result == {"results": [{"user_id": other.user_id, "display_name": f"{name.capitalize()} Smith"}],
                      "limited": False}


def test_a_user_is_found_by_a_part_of_their_localpart(homeserver, searcher):
    localpart = f"loc{token()}"
    other = new_user(homeserver, localpart=localpart)
    share_private_room(searcher, other)
    assert found(searcher, localpart[3:9]) == [other.user_id]


def test_a_full_user_id_finds_the_user(homeserver, searcher):
    other = new_user(homeserver)
    share_private_room(searcher, other)
    assert found(searcher, other.user_id) == [other.user_id]


def test_the_server_name_alone_matches_nobody(homeserver, searcher):
    other = new_user(homeserver)
    share_private_room(searcher, other)
    assert found(searcher, homeserver.server_name) == []


def test_members_of_public_rooms_are_found_by_anyone(homeserver, searcher):
    name = token()
    other = new_user(homeserver, displayname=name)
    create(other, preset="public_chat")
    assert found(searcher, name) == [other.user_id]


def test_members_of_world_readable_rooms_are_found_by_anyone(homeserver, searcher):
    name = token()
    other = new_user(homeserver, displayname=name)
    create(other, preset="private_chat",
           initial_state=[{"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}])
    assert found(searcher, name) == [other.user_id]


def test_users_only_in_private_rooms_the_searcher_is_not_in_are_hidden(homeserver, searcher):
    name = token()
    other = new_user(homeserver, displayname=name)
    create(other, preset="private_chat")
    assert found(searcher, name) == []


def test_users_in_no_room_are_hidden(homeserver, searcher):
    name = token()
    new_user(homeserver, displayname=name)
    assert found(searcher, name) == []


def test_a_user_who_left_the_shared_room_is_no_longer_found(homeserver, searcher):
    name = token()
    other = new_user(homeserver, displayname=name)
    room = share_private_room(searcher, other)
    assert found(searcher, name) == [other.user_id]
    assert other.post(f"/rooms/{q(room)}/leave", {}).status_code == 200
    assert found(searcher, name) == []


def test_an_invited_user_who_has_not_joined_is_not_found(homeserver, searcher):
    name = token()
    other = new_user(homeserver, displayname=name)
    room = create(searcher, preset="private_chat")
    assert searcher.post(f"/rooms/{q(room)}/invite", {"user_id": other.user_id}).status_code == 200
    assert found(searcher, name) == []


def test_every_word_must_match_the_name_or_localpart(homeserver, searcher):
    first, last = token(), token()
    both = new_user(homeserver, displayname=f"{first} {last}")
    only_first = new_user(homeserver, displayname=f"{first} other")
    for user in (both, only_first):
        share_private_room(searcher, user)
    assert found(searcher, f"{last} {first}") == [both.user_id]
    assert set(found(searcher, first)) == {both.user_id, only_first.user_id}


def test_exact_matches_come_before_prefix_matches_before_others(homeserver, searcher):
    name = token()
    inner = new_user(homeserver, displayname=f"x{name}y")
    prefix = new_user(homeserver, displayname=f"{name}suffix")
    exact = new_user(homeserver, displayname=name)
    for user in (inner, prefix, exact):
        share_private_room(searcher, user)
    assert found(searcher, name) == [exact.user_id, prefix.user_id, inner.user_id]


def test_limit_truncates_and_sets_limited(homeserver, searcher):
    name = token()
    users = [new_user(homeserver, displayname=f"{name} {i}") for i in range(3)]
    room = create(searcher, preset="public_chat")
    for user in users:
        join(user, room)
    result = search(searcher, name, limit=2)
    assert len(result["results"]) == 2 and result["limited"] is True
    result = search(searcher, name, limit=3)
    assert len(result["results"]) == 3 and result["limited"] is False


def test_the_default_limit_is_ten(homeserver, searcher):
    name = token()
    room = create(searcher, preset="public_chat")
    for i in range(11):
        join(new_user(homeserver, displayname=f"{name} {i}"), room)
    result = search(searcher, name)
    assert len(result["results"]) == 10 and result["limited"] is True


def test_avatar_urls_are_returned(homeserver, searcher):
    name = token()
    other = new_user(homeserver, displayname=name)
    assert other.put(f"/profile/{q(other.user_id)}/avatar_url",
                     {"avatar_url": "mxc://test.local/abc"}).status_code == 200
    create(other, preset="public_chat")
    assert search(searcher, name)["results"] == [
        {"user_id": other.user_id, "display_name": name, "avatar_url": "mxc://test.local/abc"}]


def test_deactivated_users_are_not_found(homeserver, searcher):
    localpart = f"deact{token()}"
    other = new_user(homeserver, localpart=localpart)
    create(other, preset="public_chat")
    assert found(searcher, localpart) == [other.user_id]
    resp = other.post("/account/deactivate", {})
    assert resp.status_code == 401
    resp = other.post("/account/deactivate", {"auth": {"type": "m.login.password", "session": resp.json()["session"],
                                                       "identifier": {"type": "m.id.user", "user": other.user_id},
                                                       "password": "correct horse battery"}})
    assert resp.status_code == 200, resp.text
    assert found(searcher, localpart) == []


def test_like_wildcards_in_the_term_are_literal(homeserver, searcher):
    other = new_user(homeserver, displayname=f"{token()}")
    share_private_room(searcher, other)
    assert found(searcher, "%") == []
    assert found(searcher, "_") == []


@pytest.mark.parametrize("term", ["", "   ", "\x00", "\\", "'", "%_\\", "🙂", "a" * 2000])
def test_odd_terms_never_fail(searcher, term):
    result = search(searcher, term)
    assert isinstance(result["results"], list)


@pytest.mark.parametrize("body, errcode", [
    ({}, "M_MISSING_PARAM"),
    ({"search_term": 5}, "M_BAD_JSON"),
    ({"search_term": "x", "limit": "10"}, "M_BAD_JSON"),
    ({"search_term": "x", "limit": True}, "M_BAD_JSON"),
])
def test_malformed_requests_are_refused(searcher, body, errcode):
    resp = searcher.post("/user_directory/search", body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["errcode"] == errcode


def test_search_needs_an_access_token(homeserver):
    resp = Client(homeserver).post("/user_directory/search", {"search_term": "x"})
    assert resp.status_code == 401
    assert resp.json()["errcode"] == "M_MISSING_TOKEN"
