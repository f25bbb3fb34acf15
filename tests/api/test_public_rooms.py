"""The published room directory (client-server API "Room discovery"): GET/PUT
/directory/list/room/{roomId} and GET/POST /publicRooms — who may publish, which rooms are
listed, their fields, order, filters and pagination — against a real server and database."""

import uuid

import pytest

from tests.api.test_response_schemas import assert_matches_spec
from tests.harness import Client, assert_error, create, q, query

SERVER = "test.local"
LIST_PATH = "/_matrix/client/v3/directory/list/room/{roomId}"
PUBLIC_ROOMS_PATH = "/_matrix/client/v3/publicRooms"


def word() -> str:
    """A search term no other room of the module has."""
    return "w" + uuid.uuid4().hex[:12]


def send_state(client, room_id, event_type, content, state_key=""):
    resp = client.put(f"/rooms/{q(room_id)}/state/{event_type}/{q(state_key)}", content)
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"]


def join(client, room_id):
    resp = client.post(f"/rooms/{q(room_id)}/join", {})
    assert resp.status_code == 200, resp.text


def leave(client, room_id):
    resp = client.post(f"/rooms/{q(room_id)}/leave", {})
    assert resp.status_code == 200, resp.text


def publish(client, room_id, visibility="public"):
    return client.put(f"/directory/list/room/{q(room_id)}", {"visibility": visibility})


def search(client, term, **body):
    resp = client.post("/publicRooms", {"filter": {"generic_search_term": term}, **body})
    assert resp.status_code == 200, resp.text
    return resp.json()


def search_ids(client, term, **body) -> list[str]:
    return [r["room_id"] for r in search(client, term, **body)["chunk"]]


def walk(client, method="GET", limit=3, **body) -> list[dict]:
    """Every listed room, page after page by next_batch."""
    rooms, since = [], None
    for _ in range(1000):
        if method == "GET":
            params = {"limit": limit} | ({"since": since} if since else {})
            resp = client.get("/publicRooms", params=params)
        else:
            resp = client.post("/publicRooms", {"limit": limit, **body} | ({"since": since} if since else {}))
        assert resp.status_code == 200, resp.text
        page = resp.json()
        assert len(page["chunk"]) <= limit
        rooms += page["chunk"]
        since = page.get("next_batch")
        if since is None:
            return rooms
    raise AssertionError("pagination did not end")


def all_listed_ids(client) -> list[str]:
    resp = client.get("/publicRooms", params={"limit": 500})
    assert resp.status_code == 200, resp.text
    assert "next_batch" not in resp.json()
    return [r["room_id"] for r in resp.json()["chunk"]]


@pytest.fixture(scope="module")
def alice(homeserver):
    return Client(homeserver).register("alice")


@pytest.fixture(scope="module")
def bob(homeserver):
    return Client(homeserver).register("bob")


@pytest.fixture(scope="module")
def members(homeserver):
    return [Client(homeserver).register(f"member{n}") for n in range(4)]


@pytest.fixture(scope="module")
def admin(homeserver, db_dsn):
    client = Client(homeserver).register("the_admin")
    query(db_dsn, "UPDATE users SET admin = TRUE WHERE user_id = %s", (client.user_id,))
    return client


# --- GET/PUT /directory/list/room/{roomId} ------------------------------------------------------

def test_room_created_private_is_not_in_the_directory(alice):
    room_id = create(alice, preset="public_chat")
    resp = Client(alice.server).get(f"/directory/list/room/{q(room_id)}")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"visibility": "private"}
    assert_matches_spec(resp, LIST_PATH)


def test_room_created_public_is_in_the_directory(alice):
    room_id = create(alice, visibility="public")
    assert Client(alice.server).get(f"/directory/list/room/{q(room_id)}").json() == {"visibility": "public"}


def test_visibility_of_an_unknown_room_is_not_found(alice):
    resp = alice.get(f"/directory/list/room/{q('!nope:test.local')}")
    assert_error(resp, 404, "M_NOT_FOUND")
    assert_matches_spec(resp, LIST_PATH)


@pytest.mark.parametrize("version", ["1", "11", "12"])
def test_creator_publishes_and_unpublishes_the_room(alice, version):
    term = word()
    room_id = create(alice, preset="public_chat", name=term, room_version=version)
    resp = publish(alice, room_id)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert_matches_spec(resp, LIST_PATH)
    assert alice.get(f"/directory/list/room/{q(room_id)}").json() == {"visibility": "public"}
    assert search_ids(alice, term) == [room_id]
    assert publish(alice, room_id, "private").status_code == 200
    assert alice.get(f"/directory/list/room/{q(room_id)}").json() == {"visibility": "private"}
    assert search_ids(alice, term) == []


def test_visibility_defaults_to_public(alice):
    room_id = create(alice, preset="public_chat")
    assert alice.put(f"/directory/list/room/{q(room_id)}", {}).status_code == 200
    assert alice.get(f"/directory/list/room/{q(room_id)}").json() == {"visibility": "public"}


def test_member_without_power_cannot_publish(alice, bob, db_dsn):
    room_id = create(alice, preset="public_chat")
    join(bob, room_id)
    assert_error(publish(bob, room_id), 403, "M_FORBIDDEN")
    assert query(db_dsn, "SELECT is_public FROM rooms WHERE room_id = %s", (room_id,)) == [(False,)]


def test_non_member_cannot_publish(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert_error(publish(bob, room_id), 403, "M_FORBIDDEN")


def test_moderator_who_left_cannot_unpublish(alice, bob):
    room_id = create(alice, visibility="public", room_version="11",
                     power_level_content_override={"users": {alice.user_id: 100, bob.user_id: 50}})
    join(bob, room_id)
    leave(bob, room_id)
    assert_error(publish(bob, room_id, "private"), 403, "M_FORBIDDEN")


@pytest.mark.parametrize("version", ["11", "12"])
def test_moderator_publishes_the_room(alice, bob, version):
    users = {bob.user_id: 50} if version == "12" else {alice.user_id: 100, bob.user_id: 50}
    room_id = create(alice, preset="public_chat", room_version=version, power_level_content_override={"users": users})
    join(bob, room_id)
    assert publish(bob, room_id).status_code == 200
    assert alice.get(f"/directory/list/room/{q(room_id)}").json() == {"visibility": "public"}


def test_server_admin_publishes_a_room_they_are_not_in(alice, admin):
    room_id = create(alice, preset="public_chat")
    assert publish(admin, room_id).status_code == 200
    assert alice.get(f"/directory/list/room/{q(room_id)}").json() == {"visibility": "public"}


def test_publishing_an_unknown_room_is_not_found(alice):
    resp = publish(alice, "!nope:test.local")
    assert_error(resp, 404, "M_NOT_FOUND")
    assert_matches_spec(resp, LIST_PATH)


@pytest.mark.parametrize("body,errcode", [({"visibility": "everyone"}, "M_INVALID_PARAM"),
                                          ({"visibility": True}, "M_BAD_JSON")])
def test_bad_visibility_is_refused(alice, body, errcode):
    room_id = create(alice, preset="public_chat")
    assert_error(alice.put(f"/directory/list/room/{q(room_id)}", body), 400, errcode)


def test_publishing_needs_an_access_token(homeserver, alice):
    room_id = create(alice, preset="public_chat")
    assert_error(Client(homeserver).put(f"/directory/list/room/{q(room_id)}", {"visibility": "public"}),
                 401, "M_MISSING_TOKEN")


# --- which rooms are listed -------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1", "11", "12"])
def test_published_room_is_listed_with_its_fields(alice, version):
    term = word()
    alias_name = f"room_{term}"
    room_id = create(alice, visibility="public", preset="public_chat", room_version=version,
                     name=f"Room {term}", topic="All about it", room_alias_name=alias_name)
    send_state(alice, room_id, "m.room.avatar", {"url": "mxc://test.local/avatar"})
    resp = alice.post("/publicRooms", {"filter": {"generic_search_term": term}})
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, PUBLIC_ROOMS_PATH)
    assert resp.json()["chunk"] == [{
        "room_id": room_id, "name": f"Room {term}", "topic": "All about it",
        "canonical_alias": f"#{alias_name}:{SERVER}", "num_joined_members": 1, "world_readable": False,
        "guest_can_join": False, "avatar_url": "mxc://test.local/avatar", "join_rule": "public",
    }]


def test_world_readable_guest_room_is_listed_as_such(alice):
    term = word()
    room_id = create(alice, visibility="public", preset="public_chat", name=term, initial_state=[
        {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}},
        {"type": "m.room.guest_access", "content": {"guest_access": "can_join"}}])
    [entry] = search(alice, term)["chunk"]
    assert entry["room_id"] == room_id
    assert entry["world_readable"] is True
    assert entry["guest_can_join"] is True


def test_published_invite_only_room_is_not_listed(alice):
    term = word()
    room_id = create(alice, visibility="public", preset="private_chat", name=term)
    assert alice.get(f"/directory/list/room/{q(room_id)}").json() == {"visibility": "public"}
    assert search_ids(alice, term) == []
    assert room_id not in all_listed_ids(alice)


def test_unpublished_public_room_is_never_listed(alice):
    term = word()
    room_id = create(alice, preset="public_chat", name=term)
    assert search_ids(alice, term) == []
    assert room_id not in all_listed_ids(alice)
    assert room_id not in [r["room_id"] for r in walk(Client(alice.server))]


def test_published_world_readable_invite_only_room_is_listed(alice):
    term = word()
    room_id = create(alice, visibility="public", preset="private_chat", name=term, initial_state=[
        {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}])
    [entry] = search(alice, term)["chunk"]
    assert entry["room_id"] == room_id
    assert entry["join_rule"] == "invite"
    assert entry["world_readable"] is True


def test_published_knock_room_is_listed(alice):
    term = word()
    room_id = create(alice, visibility="public", preset="private_chat", room_version="12", name=term,
                     initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}])
    assert [(r["room_id"], r["join_rule"]) for r in search(alice, term)["chunk"]] == [(room_id, "knock")]


def test_room_whose_join_rule_becomes_invite_leaves_the_list(alice):
    term = word()
    room_id = create(alice, visibility="public", preset="public_chat", name=term)
    assert search_ids(alice, term) == [room_id]
    send_state(alice, room_id, "m.room.join_rules", {"join_rule": "invite"})
    assert search_ids(alice, term) == []


def test_room_everyone_left_is_not_listed(alice):
    term = word()
    room_id = create(alice, visibility="public", preset="public_chat", name=term)
    leave(alice, room_id)
    assert search_ids(alice, term) == []


def test_member_count_follows_joins_and_leaves(alice, members):
    term = word()
    room_id = create(alice, visibility="public", preset="public_chat", name=term)
    for member in members[:3]:
        join(member, room_id)
    assert search(alice, term)["chunk"][0]["num_joined_members"] == 4
    leave(members[0], room_id)
    # Changing a profile is a join -> join change, which must not count twice.
    send_state(members[1], room_id, "m.room.member", {"membership": "join", "displayname": "B"}, members[1].user_id)
    assert search(alice, term)["chunk"][0]["num_joined_members"] == 3


def test_member_counts_are_kept_in_the_database(alice, bob, db_dsn):
    room_id = create(alice, preset="public_chat")
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}).status_code == 200
    assert query(db_dsn, "SELECT joined_members, invited_members FROM room_member_counts WHERE room_id = %s",
                 (room_id,)) == [(1, 1)]
    join(bob, room_id)
    assert query(db_dsn, "SELECT joined_members, invited_members FROM room_member_counts WHERE room_id = %s",
                 (room_id,)) == [(2, 0)]


def test_redacted_room_name_is_neither_shown_nor_searched(alice):
    term = word()
    room_id = create(alice, visibility="public", preset="public_chat", topic=f"topic {term}")
    name_event = send_state(alice, room_id, "m.room.name", {"name": f"name {term}x"})
    assert search_ids(alice, f"{term}x") == [room_id]
    resp = alice.put(f"/rooms/{q(room_id)}/redact/{q(name_event)}/{word()}", {})
    assert resp.status_code == 200, resp.text
    assert search_ids(alice, f"{term}x") == []
    [entry] = search(alice, term)["chunk"]
    assert "name" not in entry
    assert entry["topic"] == f"topic {term}"


# --- search and room types --------------------------------------------------------------------

def test_search_matches_name_topic_and_canonical_alias_ignoring_case(alice):
    term = word()
    by_name = create(alice, visibility="public", preset="public_chat", name=f"The {term.upper()} room")
    by_topic = create(alice, visibility="public", preset="public_chat", topic=f"about {term}")
    by_alias = create(alice, visibility="public", preset="public_chat", room_alias_name=f"x{term}x")
    create(alice, visibility="public", preset="public_chat", name="something else")
    assert set(search_ids(alice, term.capitalize())) == {by_name, by_topic, by_alias}


def test_search_ignores_case_beyond_ascii(alice):
    term = word()
    room_id = create(alice, visibility="public", preset="public_chat", name=f"Café ÉTÉ {term}")
    assert search_ids(alice, f"été {term}") == [room_id]
    assert search_ids(alice, f"CAFÉ ÉTÉ {term}") == [room_id]


def test_search_term_is_matched_literally_not_as_a_pattern(alice):
    term = word()
    room_id = create(alice, visibility="public", preset="public_chat", name=f"{term} 100%_done")
    create(alice, visibility="public", preset="public_chat", name=f"{term} 1000 things")
    assert search_ids(alice, f"{term} 100%_") == [room_id]


def test_blank_search_term_filters_nothing(alice):
    listed = all_listed_ids(alice)
    assert [r["room_id"] for r in walk(alice, "POST", limit=500, filter={"generic_search_term": "  "})] == listed


def test_room_types_filter(alice):
    term = word()
    space = create(alice, visibility="public", preset="public_chat", name=term,
                   creation_content={"type": "m.space"})
    plain = create(alice, visibility="public", preset="public_chat", name=term)
    other = create(alice, visibility="public", preset="public_chat", name=term,
                   creation_content={"type": "org.example.kind"})
    spaces = search(alice, term, filter={"generic_search_term": term, "room_types": ["m.space"]})["chunk"]
    assert [(r["room_id"], r["room_type"]) for r in spaces] == [(space, "m.space")]
    untyped = search(alice, term, filter={"generic_search_term": term, "room_types": [None]})["chunk"]
    assert [r["room_id"] for r in untyped] == [plain]
    assert "room_type" not in untyped[0]
    both = search(alice, term, filter={"generic_search_term": term, "room_types": [None, "org.example.kind"]})
    assert {r["room_id"] for r in both["chunk"]} == {plain, other}
    everything = search(alice, term, filter={"generic_search_term": term, "room_types": []})
    assert {r["room_id"] for r in everything["chunk"]} == {space, plain, other}


@pytest.mark.parametrize("body", [{"limit": "10"}, {"since": 5}, {"filter": "x"},
                                  {"filter": {"generic_search_term": 5}}, {"filter": {"room_types": "m.space"}},
                                  {"filter": {"room_types": [5]}}, {"include_all_networks": "yes"}])
def test_mistyped_filter_fields_are_bad_json(alice, body):
    assert_error(alice.post("/publicRooms", body), 400, "M_BAD_JSON")


# --- order and pagination ---------------------------------------------------------------------

def test_rooms_are_ordered_by_joined_members_then_room_id(alice, members):
    term = word()
    sizes = {}
    for size in (1, 3, 2, 2):
        room_id = create(alice, visibility="public", preset="public_chat", name=term)
        for member in members[:size - 1]:
            join(member, room_id)
        sizes[room_id] = size
    got = [(r["num_joined_members"], r["room_id"]) for r in search(alice, term)["chunk"]]
    assert got == sorted(((n, r) for r, n in sizes.items()), reverse=True)


def test_filtered_pages_cover_every_match_once_in_order(alice):
    term = word()
    made = {create(alice, visibility="public", preset="public_chat", name=f"{term} {n}") for n in range(7)}
    first = search(alice, term, limit=3)
    assert "prev_batch" not in first
    assert len(first["chunk"]) == 3
    pages = [first]
    while "next_batch" in pages[-1]:
        pages.append(search(alice, term, limit=3, since=pages[-1]["next_batch"]))
    assert [len(p["chunk"]) for p in pages] == [3, 3, 1]
    seen = [r["room_id"] for p in pages for r in p["chunk"]]
    assert sorted(seen) == sorted(made)
    assert seen == search_ids(alice, term)


def test_prev_batch_pages_back_to_the_first_page(alice):
    term = word()
    for n in range(6):
        create(alice, visibility="public", preset="public_chat", name=f"{term} {n}")
    first = search(alice, term, limit=2)
    second = search(alice, term, limit=2, since=first["next_batch"])
    third = search(alice, term, limit=2, since=second["next_batch"])
    assert "next_batch" not in third
    back_to_second = search(alice, term, limit=2, since=third["prev_batch"])
    assert back_to_second["chunk"] == second["chunk"]
    back_to_first = search(alice, term, limit=2, since=back_to_second["prev_batch"])
    assert back_to_first["chunk"] == first["chunk"]
    assert "prev_batch" not in back_to_first
    assert search(alice, term, limit=2, since=back_to_first["next_batch"])["chunk"] == second["chunk"]


def test_unfiltered_listing_pages_without_gaps_or_repeats(alice, homeserver):
    for n in range(4):
        create(alice, visibility="public", preset="public_chat", name=f"pager {n}")
    listed = all_listed_ids(alice)
    assert len(listed) >= 4
    anonymous = Client(homeserver)
    assert [r["room_id"] for r in walk(anonymous, limit=3)] == listed
    assert [r["room_id"] for r in walk(alice, "POST", limit=4)] == listed


def test_total_room_count_estimate_counts_listed_rooms(alice):
    resp = alice.get("/publicRooms", params={"limit": 1})
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, PUBLIC_ROOMS_PATH)
    assert resp.json()["total_room_count_estimate"] == len(all_listed_ids(alice))


def test_public_rooms_needs_no_token_to_get_but_one_to_post(homeserver, alice):
    create(alice, visibility="public", preset="public_chat")
    resp = Client(homeserver).get("/publicRooms")
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, PUBLIC_ROOMS_PATH)
    assert resp.json()["chunk"]
    assert_error(Client(homeserver).post("/publicRooms", {}), 401, "M_MISSING_TOKEN")


def test_post_with_an_empty_body_lists_everything(alice):
    resp = alice.post("/publicRooms", {})
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, PUBLIC_ROOMS_PATH)
    assert [r["room_id"] for r in resp.json()["chunk"]] == all_listed_ids(alice)


@pytest.mark.parametrize("since", ["garbage", "n1", "x1_!a:b", "n-1_!a:b"])
def test_unknown_pagination_token_is_an_invalid_parameter(alice, since):
    assert_error(alice.get("/publicRooms", params={"since": since}), 400, "M_INVALID_PARAM")


def test_negative_limit_is_an_invalid_parameter(alice):
    assert_error(alice.get("/publicRooms", params={"limit": -1}), 400, "M_INVALID_PARAM")
    assert_error(alice.post("/publicRooms", {"limit": -1}), 400, "M_INVALID_PARAM")


# --- other servers and networks ---------------------------------------------------------------

def test_this_servers_name_lists_the_local_directory(alice):
    resp = alice.get("/publicRooms", params={"server": SERVER, "limit": 500})
    assert [r["room_id"] for r in resp.json()["chunk"]] == all_listed_ids(alice)


def test_another_servers_directory_is_not_found_without_federation(alice):
    assert_error(alice.get("/publicRooms", params={"server": "elsewhere.example"}), 404, "M_NOT_FOUND")
    assert_error(alice.post("/publicRooms?server=elsewhere.example", {}), 404, "M_NOT_FOUND")


def test_invalid_server_name_is_an_invalid_parameter(alice):
    assert_error(alice.get("/publicRooms", params={"server": "not a server!"}), 400, "M_INVALID_PARAM")


def test_third_party_network_has_no_rooms(alice):
    resp = alice.post("/publicRooms", {"third_party_instance_id": "irc-freenode"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["chunk"] == []


def test_all_networks_cannot_be_combined_with_one_network(alice):
    assert_error(alice.post("/publicRooms", {"include_all_networks": True, "third_party_instance_id": "irc"}),
                 400, "M_INVALID_PARAM")


def test_all_networks_lists_the_local_directory(alice):
    resp = alice.post("/publicRooms", {"include_all_networks": True, "limit": 500})
    assert [r["room_id"] for r in resp.json()["chunk"]] == all_listed_ids(alice)
