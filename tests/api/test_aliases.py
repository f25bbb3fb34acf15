"""Room aliases (client-server API "Room aliases"): PUT/GET/DELETE /directory/room/{roomAlias},
GET /rooms/{roomId}/aliases, and the check that m.room.canonical_alias names aliases of its own
room (PUT /rooms/{roomId}/state: "servers SHOULD validate"), against a real server and database."""

import uuid

import pytest

from tests.api.test_response_schemas import assert_matches_spec
from tests.harness import Client, assert_error, create, q, query

SERVER = "test.local"
ALIAS_PATH = "/_matrix/client/v3/directory/room/{roomAlias}"


def fresh_alias(prefix="a") -> str:
    return f"#{prefix}_{uuid.uuid4().hex[:10]}:{SERVER}"


def put_alias(client, alias, room_id):
    return client.put(f"/directory/room/{q(alias)}", {"room_id": room_id})


def send_state(client, room_id, event_type, content, state_key=""):
    return client.put(f"/rooms/{q(room_id)}/state/{event_type}/{q(state_key)}", content)


def state_content(client, room_id, event_type, state_key=""):
    resp = client.get(f"/rooms/{q(room_id)}/state/{event_type}/{q(state_key)}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def join(client, room_id):
    resp = client.post(f"/rooms/{q(room_id)}/join", {})
    assert resp.status_code == 200, resp.text


def alias_row(db_dsn, alias):
    rows = query(db_dsn, "SELECT room_id, creator FROM room_aliases WHERE room_alias = %s", (alias,))
    return tuple(rows[0]) if rows else None


@pytest.fixture(scope="module")
def alice(homeserver):
    return Client(homeserver).register("alice")


@pytest.fixture(scope="module")
def bob(homeserver):
    return Client(homeserver).register("bob")


@pytest.fixture(scope="module")
def admin(homeserver, db_dsn):
    client = Client(homeserver).register("the_admin")
    query(db_dsn, "UPDATE users SET admin = TRUE WHERE user_id = %s", (client.user_id,))
    return client


@pytest.fixture(scope="module")
def room(alice):
    return create(alice, preset="public_chat")


# --- creating and resolving -------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1", "11", "12"])
def test_member_creates_an_alias_that_resolves_to_the_room(alice, version):
    room_id = create(alice, room_version=version)
    alias = fresh_alias()
    resp = put_alias(alice, alias, room_id)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert_matches_spec(resp, ALIAS_PATH)
    got = Client(alice.server).get(f"/directory/room/{q(alias)}")
    assert got.status_code == 200, got.text
    assert got.json() == {"room_id": room_id, "servers": [SERVER]}
    assert_matches_spec(got, ALIAS_PATH)


def test_alias_is_stored_with_its_creator(alice, room, db_dsn):
    alias = fresh_alias()
    assert put_alias(alice, alias, room).status_code == 200
    assert alias_row(db_dsn, alias) == (room, alice.user_id)


def test_resolving_an_alias_needs_no_access_token(alice, room):
    alias = fresh_alias()
    assert put_alias(alice, alias, room).status_code == 200
    resp = Client(alice.server).get(f"/directory/room/{q(alias)}")
    assert resp.status_code == 200
    assert resp.json()["room_id"] == room


def test_unknown_alias_is_not_found(alice):
    resp = alice.get(f"/directory/room/{q(fresh_alias())}")
    assert_error(resp, 404, "M_NOT_FOUND")
    assert_matches_spec(resp, ALIAS_PATH)


def test_alias_on_another_server_is_not_found_without_federation(alice):
    assert_error(alice.get(f"/directory/room/{q('#somewhere:elsewhere.example')}"), 404, "M_NOT_FOUND")


@pytest.mark.parametrize("bad", ["nosigil:test.local", "#nocolon", "#:test.local", "#a:bad_server!",
                                 "#" + "x" * 250 + ":test.local"])
def test_malformed_alias_is_an_invalid_parameter(alice, bad):
    resp = alice.get(f"/directory/room/{q(bad)}")
    assert_error(resp, 400, "M_INVALID_PARAM")
    assert_matches_spec(resp, ALIAS_PATH)


def test_alias_with_a_slash_and_non_ascii_localpart_round_trips(alice, room):
    alias = f"#caf\u00e9/{uuid.uuid4().hex[:6]}:{SERVER}"
    assert put_alias(alice, alias, room).status_code == 200
    resp = alice.get(f"/directory/room/{q(alias)}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["room_id"] == room


def test_servers_lists_this_server_first_once(alice, bob, room):
    join(bob, room)
    alias = fresh_alias()
    assert put_alias(alice, alias, room).status_code == 200
    assert alice.get(f"/directory/room/{q(alias)}").json()["servers"] == [SERVER]


def test_taken_alias_is_a_conflict_and_keeps_its_room(alice, room, db_dsn):
    alias = fresh_alias()
    assert put_alias(alice, alias, room).status_code == 200
    other = create(alice)
    resp = put_alias(alice, alias, other)
    assert_error(resp, 409, "M_UNKNOWN")
    assert_matches_spec(resp, ALIAS_PATH)
    assert alias_row(db_dsn, alias) == (room, alice.user_id)


def test_alias_taken_by_create_room_is_a_conflict(alice):
    localpart = f"made_{uuid.uuid4().hex[:8]}"
    room_id = create(alice, room_alias_name=localpart)
    assert alice.get(f"/directory/room/{q(f'#{localpart}:{SERVER}')}").json()["room_id"] == room_id
    assert_error(put_alias(alice, f"#{localpart}:{SERVER}", create(alice)), 409, "M_UNKNOWN")


def test_alias_on_another_server_cannot_be_created(alice, room, db_dsn):
    alias = f"#mine_{uuid.uuid4().hex[:6]}:elsewhere.example"
    resp = put_alias(alice, alias, room)
    assert_error(resp, 400, "M_INVALID_PARAM")
    assert_matches_spec(resp, ALIAS_PATH)
    assert alias_row(db_dsn, alias) is None


@pytest.mark.parametrize("bad", ["#has space:test.local", "#tab\there:test.local", "#nocolon",
                                 "#" + "x" * 250 + ":test.local"])
def test_alias_with_bad_grammar_cannot_be_created(alice, room, db_dsn, bad):
    assert_error(put_alias(alice, bad, room), 400, "M_INVALID_PARAM")
    assert alias_row(db_dsn, bad) is None


def test_alias_for_an_unknown_room_is_not_found(alice, db_dsn):
    alias = fresh_alias()
    assert_error(put_alias(alice, alias, "!nosuchroom:test.local"), 404, "M_NOT_FOUND")
    assert alias_row(db_dsn, alias) is None


@pytest.mark.parametrize("body,errcode", [({}, "M_MISSING_PARAM"), ({"room_id": 5}, "M_BAD_JSON"),
                                          ({"room_id": "not-a-room"}, "M_INVALID_PARAM")])
def test_bad_body_is_refused(alice, body, errcode):
    assert_error(alice.put(f"/directory/room/{q(fresh_alias())}", body), 400, errcode)


def test_non_member_cannot_create_an_alias(alice, bob, db_dsn):
    room_id = create(alice, preset="private_chat")
    alias = fresh_alias()
    assert_error(put_alias(bob, alias, room_id), 403, "M_FORBIDDEN")
    assert alias_row(db_dsn, alias) is None


def test_user_who_left_cannot_create_an_alias(alice, bob):
    room_id = create(alice, preset="public_chat")
    join(bob, room_id)
    assert bob.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    assert_error(put_alias(bob, fresh_alias(), room_id), 403, "M_FORBIDDEN")


def test_server_admin_creates_an_alias_without_being_in_the_room(alice, admin):
    room_id = create(alice, preset="private_chat")
    alias = fresh_alias()
    assert put_alias(admin, alias, room_id).status_code == 200
    assert alice.get(f"/directory/room/{q(alias)}").json()["room_id"] == room_id


def test_creating_an_alias_needs_an_access_token(homeserver, room):
    assert_error(Client(homeserver).put(f"/directory/room/{q(fresh_alias())}", {"room_id": room}),
                 401, "M_MISSING_TOKEN")


# --- deleting ---------------------------------------------------------------------------------

def test_creator_deletes_the_alias(alice, room, db_dsn):
    alias = fresh_alias()
    assert put_alias(alice, alias, room).status_code == 200
    resp = alice.delete(f"/directory/room/{q(alias)}")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert_matches_spec(resp, ALIAS_PATH)
    assert_error(alice.get(f"/directory/room/{q(alias)}"), 404, "M_NOT_FOUND")
    assert alias_row(db_dsn, alias) is None


def test_deleting_an_unknown_alias_is_not_found(alice):
    resp = alice.delete(f"/directory/room/{q(fresh_alias())}")
    assert_error(resp, 404, "M_NOT_FOUND")
    assert_matches_spec(resp, ALIAS_PATH)


def test_deleting_another_servers_alias_is_an_invalid_parameter(alice):
    assert_error(alice.delete(f"/directory/room/{q('#x:elsewhere.example')}"), 400, "M_INVALID_PARAM")


def test_member_without_power_cannot_delete_someone_elses_alias(alice, bob, db_dsn):
    room_id = create(alice, preset="public_chat")
    join(bob, room_id)
    alias = fresh_alias()
    assert put_alias(alice, alias, room_id).status_code == 200
    assert_error(bob.delete(f"/directory/room/{q(alias)}"), 403, "M_FORBIDDEN")
    assert alias_row(db_dsn, alias) == (room_id, alice.user_id)


@pytest.mark.parametrize("version", ["11", "12"])
def test_moderator_deletes_someone_elses_alias(alice, bob, version):
    # Creators are not listed in a v12 room's power levels: they have unlimited power.
    users = {bob.user_id: 50} if version == "12" else {alice.user_id: 100, bob.user_id: 50}
    room_id = create(alice, preset="public_chat", room_version=version,
                     power_level_content_override={"users": users})
    join(bob, room_id)
    alias = fresh_alias()
    assert put_alias(alice, alias, room_id).status_code == 200
    assert bob.delete(f"/directory/room/{q(alias)}").status_code == 200
    assert_error(alice.get(f"/directory/room/{q(alias)}"), 404, "M_NOT_FOUND")


def test_moderator_who_left_cannot_delete_someone_elses_alias(alice, bob):
    room_id = create(alice, preset="public_chat", room_version="11",
                     power_level_content_override={"users": {alice.user_id: 100, bob.user_id: 50}})
    join(bob, room_id)
    alias = fresh_alias()
    assert put_alias(alice, alias, room_id).status_code == 200
    assert bob.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    assert_error(bob.delete(f"/directory/room/{q(alias)}"), 403, "M_FORBIDDEN")


def test_alias_creator_deletes_it_after_leaving_the_room(alice, bob):
    room_id = create(alice, preset="public_chat")
    join(bob, room_id)
    alias = fresh_alias()
    assert put_alias(bob, alias, room_id).status_code == 200
    assert bob.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    assert bob.delete(f"/directory/room/{q(alias)}").status_code == 200


def test_server_admin_deletes_any_alias(alice, admin):
    room_id = create(alice)
    alias = fresh_alias()
    assert put_alias(alice, alias, room_id).status_code == 200
    assert admin.delete(f"/directory/room/{q(alias)}").status_code == 200
    assert_error(alice.get(f"/directory/room/{q(alias)}"), 404, "M_NOT_FOUND")


@pytest.mark.parametrize("version", ["1", "12"])
def test_deleting_an_alias_takes_it_out_of_the_canonical_alias_event(alice, version):
    room_id = create(alice, room_version=version)
    main, alt, kept = fresh_alias(), fresh_alias(), fresh_alias()
    for alias in (main, alt, kept):
        assert put_alias(alice, alias, room_id).status_code == 200
    assert send_state(alice, room_id, "m.room.canonical_alias",
                      {"alias": main, "alt_aliases": [alt, kept]}).status_code == 200
    assert alice.delete(f"/directory/room/{q(main)}").status_code == 200
    assert state_content(alice, room_id, "m.room.canonical_alias") == {"alt_aliases": [alt, kept]}
    assert alice.delete(f"/directory/room/{q(alt)}").status_code == 200
    assert state_content(alice, room_id, "m.room.canonical_alias") == {"alt_aliases": [kept]}


def test_alias_deletion_stands_when_the_canonical_alias_cannot_be_updated(alice, bob):
    room_id = create(alice, preset="public_chat")
    join(bob, room_id)
    alias = fresh_alias()
    assert put_alias(bob, alias, room_id).status_code == 200
    assert send_state(alice, room_id, "m.room.canonical_alias", {"alias": alias}).status_code == 200
    # bob (power 0) may delete his own alias but not send m.room.canonical_alias (50).
    assert bob.delete(f"/directory/room/{q(alias)}").status_code == 200
    assert_error(alice.get(f"/directory/room/{q(alias)}"), 404, "M_NOT_FOUND")
    assert state_content(alice, room_id, "m.room.canonical_alias") == {"alias": alias}


def test_deleting_an_alias_needs_an_access_token(homeserver):
    assert_error(Client(homeserver).delete(f"/directory/room/{q(fresh_alias())}"), 401, "M_MISSING_TOKEN")


# --- GET /rooms/{roomId}/aliases ---------------------------------------------------------------

LOCAL_ALIASES_PATH = "/_matrix/client/v3/rooms/{roomId}/aliases"


def test_member_lists_the_rooms_local_aliases(alice, bob):
    room_id = create(alice, preset="public_chat")
    join(bob, room_id)
    mine, his = fresh_alias("m"), fresh_alias("h")
    assert put_alias(alice, mine, room_id).status_code == 200
    assert put_alias(bob, his, room_id).status_code == 200
    resp = bob.get(f"/rooms/{q(room_id)}/aliases")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"aliases": sorted([mine, his])}
    assert_matches_spec(resp, LOCAL_ALIASES_PATH)


def test_room_without_aliases_lists_none(alice):
    room_id = create(alice)
    assert alice.get(f"/rooms/{q(room_id)}/aliases").json() == {"aliases": []}


def test_non_member_cannot_list_aliases_of_a_room_that_is_not_world_readable(alice, bob):
    room_id = create(alice, preset="public_chat")
    assert put_alias(alice, fresh_alias(), room_id).status_code == 200
    resp = bob.get(f"/rooms/{q(room_id)}/aliases")
    assert_error(resp, 403, "M_FORBIDDEN")
    assert_matches_spec(resp, LOCAL_ALIASES_PATH)


def test_anyone_lists_aliases_of_a_world_readable_room(alice, bob):
    room_id = create(alice, initial_state=[{"type": "m.room.history_visibility",
                                            "content": {"history_visibility": "world_readable"}}])
    alias = fresh_alias()
    assert put_alias(alice, alias, room_id).status_code == 200
    assert bob.get(f"/rooms/{q(room_id)}/aliases").json() == {"aliases": [alias]}


def test_server_admin_lists_aliases_without_being_in_the_room(alice, admin):
    room_id = create(alice)
    alias = fresh_alias()
    assert put_alias(alice, alias, room_id).status_code == 200
    assert admin.get(f"/rooms/{q(room_id)}/aliases").json() == {"aliases": [alias]}


def test_aliases_of_an_unknown_room_are_forbidden(alice):
    assert_error(alice.get(f"/rooms/{q('!unknown:test.local')}/aliases"), 403, "M_FORBIDDEN")


def test_listing_aliases_needs_an_access_token(homeserver, room):
    assert_error(Client(homeserver).get(f"/rooms/{q(room)}/aliases"), 401, "M_MISSING_TOKEN")


# --- m.room.canonical_alias -------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1", "11", "12"])
def test_canonical_alias_naming_the_rooms_own_alias_is_accepted(alice, version):
    room_id = create(alice, room_version=version)
    main, alt = fresh_alias(), fresh_alias()
    assert put_alias(alice, main, room_id).status_code == 200
    assert put_alias(alice, alt, room_id).status_code == 200
    resp = send_state(alice, room_id, "m.room.canonical_alias", {"alias": main, "alt_aliases": [alt]})
    assert resp.status_code == 200, resp.text
    assert state_content(alice, room_id, "m.room.canonical_alias") == {"alias": main, "alt_aliases": [alt]}


@pytest.mark.parametrize("version", ["1", "11", "12"])
def test_canonical_alias_pointing_at_another_room_is_a_bad_alias(alice, version):
    room_id, other = create(alice, room_version=version), create(alice)
    alias = fresh_alias()
    assert put_alias(alice, alias, other).status_code == 200
    assert_error(send_state(alice, room_id, "m.room.canonical_alias", {"alias": alias}), 400, "M_BAD_ALIAS")
    assert_error(alice.get(f"/rooms/{q(room_id)}/state/m.room.canonical_alias/"), 404, "M_NOT_FOUND")


def test_canonical_alias_that_does_not_exist_is_a_bad_alias(alice, room):
    assert_error(send_state(alice, room, "m.room.canonical_alias", {"alias": fresh_alias()}), 400, "M_BAD_ALIAS")


def test_alt_alias_pointing_at_another_room_is_a_bad_alias(alice):
    room_id, other = create(alice), create(alice)
    mine, theirs = fresh_alias(), fresh_alias()
    assert put_alias(alice, mine, room_id).status_code == 200
    assert put_alias(alice, theirs, other).status_code == 200
    assert_error(send_state(alice, room_id, "m.room.canonical_alias", {"alias": mine, "alt_aliases": [theirs]}),
                 400, "M_BAD_ALIAS")


@pytest.mark.parametrize("content", [{"alias": "not-an-alias"}, {"alias": 5}, {"alt_aliases": "#a:test.local"},
                                     {"alt_aliases": ["#nocolon"]}, {"alt_aliases": [7]}])
def test_canonical_alias_with_bad_syntax_is_an_invalid_parameter(alice, room, content):
    assert_error(send_state(alice, room, "m.room.canonical_alias", content), 400, "M_INVALID_PARAM")


def test_canonical_alias_on_another_server_cannot_be_checked_and_is_accepted(alice):
    room_id = create(alice)
    resp = send_state(alice, room_id, "m.room.canonical_alias", {"alias": "#there:elsewhere.example"})
    assert resp.status_code == 200, resp.text


def test_empty_canonical_alias_clears_it(alice):
    room_id = create(alice)
    alias = fresh_alias()
    assert put_alias(alice, alias, room_id).status_code == 200
    assert send_state(alice, room_id, "m.room.canonical_alias", {"alias": alias}).status_code == 200
    assert send_state(alice, room_id, "m.room.canonical_alias", {}).status_code == 200
    assert send_state(alice, room_id, "m.room.canonical_alias", {"alias": None}).status_code == 200


def test_aliases_already_in_the_event_are_not_checked_again(alice, db_dsn):
    room_id = create(alice)
    main, added = fresh_alias(), fresh_alias()
    assert put_alias(alice, main, room_id).status_code == 200
    assert put_alias(alice, added, room_id).status_code == 200
    assert send_state(alice, room_id, "m.room.canonical_alias", {"alias": main}).status_code == 200
    # The alias goes away behind the event's back (not through DELETE, which would update it).
    query(db_dsn, "DELETE FROM room_aliases WHERE room_alias = %s", (main,))
    resp = send_state(alice, room_id, "m.room.canonical_alias", {"alias": main, "alt_aliases": [added]})
    assert resp.status_code == 200, resp.text


def test_refused_canonical_alias_writes_no_event(alice, db_dsn):
    room_id = create(alice)
    before = query(db_dsn, "SELECT count(*) FROM events WHERE room_id = %s", (room_id,))[0][0]
    assert_error(send_state(alice, room_id, "m.room.canonical_alias", {"alias": fresh_alias()}), 400, "M_BAD_ALIAS")
    assert query(db_dsn, "SELECT count(*) FROM events WHERE room_id = %s", (room_id,))[0][0] == before
