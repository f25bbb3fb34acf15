"""POST /createRoom (client-server API "Creation"): presets, power levels per room version,
initial state, creation content, aliases, invites, room versions, bad input, and the order of
the initial events, against a real server and database."""

import threading
import uuid

import jsonschema
import psycopg2
import pytest

from tests.api.test_response_schemas import response_schema
from tests.harness import Client, assert_error, create, new_user, q

ALL_VERSIONS = [str(n) for n in range(1, 13)]


@pytest.fixture(scope="module")
def alice(homeserver):
    return Client(homeserver).register("alice")


@pytest.fixture(scope="module")
def bob(homeserver):
    return Client(homeserver).register("bob")


@pytest.fixture(scope="module")
def carol(homeserver):
    return Client(homeserver).register("carol")


def state_content(client, room_id, event_type, state_key=""):
    resp = client.get(f"/rooms/{q(room_id)}/state/{event_type}/{q(state_key)}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def state_missing(client, room_id, event_type, state_key="") -> bool:
    resp = client.get(f"/rooms/{q(room_id)}/state/{event_type}/{q(state_key)}")
    assert resp.status_code in (200, 404), resp.text
    if resp.status_code == 404:
        assert resp.json()["errcode"] == "M_NOT_FOUND"
    return resp.status_code == 404


def all_events_forward(client, room_id) -> list[dict]:
    resp = client.get(f"/rooms/{q(room_id)}/messages", params={"dir": "f", "limit": 100})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert "end" not in body
    return body["chunk"]


# --- presets ---------------------------------------------------------------------------------

def test_create_room_response_matches_the_spec(alice):
    resp = alice.post("/createRoom", {})
    assert resp.status_code == 200, resp.text
    jsonschema.validate(resp.json(), response_schema("/_matrix/client/v3/createRoom", "post", 200))
    assert resp.json()["room_id"].startswith("!")


def test_private_chat_preset_is_invite_only_shared_and_guests_can_join(alice):
    room_id = create(alice, preset="private_chat")
    assert state_content(alice, room_id, "m.room.join_rules") == {"join_rule": "invite"}
    assert state_content(alice, room_id, "m.room.history_visibility") == {"history_visibility": "shared"}
    assert state_content(alice, room_id, "m.room.guest_access") == {"guest_access": "can_join"}
    levels = state_content(alice, room_id, "m.room.power_levels")
    assert levels["invite"] == 0
    # Room version 12 (the default): the creator has unlimited power and is not listed.
    assert alice.user_id not in levels["users"]


def test_no_preset_and_private_visibility_means_private_chat(alice):
    room_id = create(alice)
    assert state_content(alice, room_id, "m.room.join_rules") == {"join_rule": "invite"}
    assert state_content(alice, room_id, "m.room.guest_access") == {"guest_access": "can_join"}


def test_public_chat_preset_is_public_shared_guests_forbidden_and_invite_needs_moderator(alice):
    room_id = create(alice, preset="public_chat")
    assert state_content(alice, room_id, "m.room.join_rules") == {"join_rule": "public"}
    assert state_content(alice, room_id, "m.room.history_visibility") == {"history_visibility": "shared"}
    # The spec's preset table: public_chat sets guest_access to forbidden.
    assert state_content(alice, room_id, "m.room.guest_access") == {"guest_access": "forbidden"}
    assert state_content(alice, room_id, "m.room.power_levels")["invite"] == 50


def test_public_visibility_without_preset_means_public_chat(alice, db_dsn):
    room_id = create(alice, visibility="public")
    assert state_content(alice, room_id, "m.room.join_rules") == {"join_rule": "public"}
    with psycopg2.connect(db_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT is_public FROM rooms WHERE room_id = %s", (room_id,))
        assert cur.fetchone() == (True,)
    conn.close()


def test_private_visibility_is_not_published(alice, db_dsn):
    room_id = create(alice, preset="public_chat")
    with psycopg2.connect(db_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT is_public FROM rooms WHERE room_id = %s", (room_id,))
        assert cur.fetchone() == (False,)
    conn.close()


def test_trusted_private_chat_v12_makes_invitees_additional_creators(alice, bob):
    room_id = create(alice, preset="trusted_private_chat", invite=[bob.user_id])
    create_event = alice.get(f"/rooms/{q(room_id)}/state/m.room.create/", params={"format": "event"}).json()
    assert create_event["sender"] == alice.user_id
    assert create_event["content"]["additional_creators"] == [bob.user_id]
    assert create_event["content"]["room_version"] == "12"
    assert "creator" not in create_event["content"]
    levels = state_content(alice, room_id, "m.room.power_levels")
    assert levels["users"] == {}
    assert levels["invite"] == 0
    assert state_content(alice, room_id, "m.room.join_rules") == {"join_rule": "invite"}
    # The invitee, a creator, has unlimited power once joined: they may change the power levels.
    assert bob.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    resp = bob.put(f"/rooms/{q(room_id)}/state/m.room.power_levels/", {**levels, "ban": 75})
    assert resp.status_code == 200, resp.text


def test_trusted_private_chat_combines_additional_creators_from_creation_content(alice, bob, carol):
    room_id = create(alice, preset="trusted_private_chat", invite=[bob.user_id, carol.user_id],
                     creation_content={"additional_creators": [carol.user_id, "@dave:test.local"]})
    content = state_content(alice, room_id, "m.room.create")
    # Deduplicated, as createRoom's creation_content says.
    assert sorted(content["additional_creators"]) == sorted([bob.user_id, carol.user_id, "@dave:test.local"])
    assert len(content["additional_creators"]) == 3


def test_trusted_private_chat_v11_gives_invitees_the_creators_power_level(alice, bob):
    room_id = create(alice, preset="trusted_private_chat", invite=[bob.user_id], room_version="11")
    levels = state_content(alice, room_id, "m.room.power_levels")
    assert levels["users"] == {alice.user_id: 100, bob.user_id: 100}
    assert levels["invite"] == 0
    create_content = state_content(alice, room_id, "m.room.create")
    assert "additional_creators" not in create_content
    assert "creator" not in create_content  # v11: the sender is the creator


def test_v11_creator_is_at_100_in_the_users_map(alice):
    room_id = create(alice, room_version="11", preset="public_chat")
    levels = state_content(alice, room_id, "m.room.power_levels")
    assert levels["users"] == {alice.user_id: 100}
    assert levels["invite"] == 50
    assert levels["state_default"] == 50 and levels["events_default"] == 0


def test_v1_create_event_names_the_creator(alice):
    room_id = create(alice, room_version="1")
    assert room_id.endswith(":test.local")
    content = state_content(alice, room_id, "m.room.create")
    assert content == {"creator": alice.user_id, "room_version": "1"}


def test_v12_tombstone_needs_more_than_the_state_default(alice):
    # createRoom step 3: in room version 12 the tombstone level MUST be above state_default.
    levels = state_content(alice, create(alice), "m.room.power_levels")
    assert levels["events"]["m.room.tombstone"] > levels["state_default"]
    assert levels["events"]["m.room.tombstone"] == 150


# --- request fields --------------------------------------------------------------------------

def test_name_and_topic_become_state(alice):
    room_id = create(alice, name="Room name", topic="Room topic")
    assert state_content(alice, room_id, "m.room.name") == {"name": "Room name"}
    topic = state_content(alice, room_id, "m.room.topic")
    assert topic["topic"] == "Room topic"
    assert topic["m.topic"] == {"m.text": [{"body": "Room topic", "mimetype": "text/plain"}]}


def test_initial_state_overrides_the_preset_and_is_overridden_by_name(alice):
    room_id = create(alice, preset="private_chat", name="From name", initial_state=[
        {"type": "m.room.join_rules", "content": {"join_rule": "public"}},
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}},
        {"type": "m.room.name", "content": {"name": "From initial_state"}},
        {"type": "org.example.custom", "state_key": "k", "content": {"x": 1}},
    ])
    assert state_content(alice, room_id, "m.room.join_rules") == {"join_rule": "public"}
    assert state_content(alice, room_id, "m.room.history_visibility") == {"history_visibility": "joined"}
    assert state_content(alice, room_id, "m.room.name") == {"name": "From name"}
    assert state_content(alice, room_id, "org.example.custom", "k") == {"x": 1}
    # The preset's join rules were not sent and then replaced: initial_state took their place.
    types = [(e["type"], e.get("state_key")) for e in all_events_forward(alice, room_id)]
    assert types.count(("m.room.join_rules", "")) == 1
    assert types.count(("m.room.history_visibility", "")) == 1
    assert types.count(("m.room.name", "")) == 2


@pytest.mark.parametrize("event_type", ["m.room.create", "m.room.member"])
def test_initial_state_may_not_hold_create_or_member_events(alice, event_type):
    resp = alice.post("/createRoom", {"initial_state": [
        {"type": event_type, "state_key": alice.user_id if event_type == "m.room.member" else "",
         "content": {"membership": "join"}}]})
    assert_error(resp, 400, "M_BAD_JSON")


def test_power_level_content_override_is_applied_on_top_of_the_defaults(alice, bob):
    room_id = create(alice, room_version="11", power_level_content_override={
        "events_default": 10, "users": {alice.user_id: 100, bob.user_id: 60}})
    levels = state_content(alice, room_id, "m.room.power_levels")
    assert levels["events_default"] == 10
    assert levels["users"] == {alice.user_id: 100, bob.user_id: 60}
    assert levels["state_default"] == 50 and levels["ban"] == 50


def test_power_level_override_that_locks_the_creator_out_is_invalid_room_state(alice, db_dsn):
    # v11: the creator's level comes from the users map; at 0 they cannot send the canonical
    # alias or the join rules that follow the power levels.
    local = f"locked{uuid.uuid4().hex[:8]}"
    resp = alice.post("/createRoom", {"room_version": "11", "preset": "private_chat", "room_alias_name": local,
                                      "visibility": "public",
                                      "power_level_content_override": {"users": {alice.user_id: 0}}})
    assert_error(resp, 400, "M_INVALID_ROOM_STATE")
    with psycopg2.connect(db_dsn) as conn, conn.cursor() as cur:
        # The half-made room is not published, and its alias is free again.
        cur.execute("SELECT count(*) FROM rooms WHERE is_public AND creator = %s AND room_version = '11'"
                    " AND room_id NOT IN (SELECT room_id FROM current_state_events"
                    " WHERE type = 'm.room.join_rules')", (alice.user_id,))
        assert cur.fetchone() == (0,)
    conn.close()
    assert alice.post("/createRoom", {"room_alias_name": local}).status_code == 200


def test_power_level_override_naming_a_v12_creator_is_invalid_room_state(alice):
    resp = alice.post("/createRoom", {"power_level_content_override": {"users": {alice.user_id: 100}}})
    assert_error(resp, 400, "M_INVALID_ROOM_STATE")


def test_creation_content_keys_reach_the_create_event_and_server_keys_win(alice):
    room_id = create(alice, room_version="10",
                     creation_content={"m.federate": False, "room_version": "1", "creator": "@x:y",
                                       "type": "m.space"})
    content = state_content(alice, room_id, "m.room.create")
    assert content == {"m.federate": False, "room_version": "10", "creator": alice.user_id, "type": "m.space"}


def test_invalid_additional_creators_are_invalid_room_state(alice, db_dsn):
    with psycopg2.connect(db_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM rooms")
        before = cur.fetchone()[0]
        resp = alice.post("/createRoom", {"creation_content": {"additional_creators": ["not a user id"]}})
        assert_error(resp, 400, "M_INVALID_ROOM_STATE")
        cur.execute("SELECT count(*) FROM rooms")
        assert cur.fetchone()[0] == before
    conn.close()


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_every_room_version_can_be_created(alice, version):
    room_id = create(alice, room_version=version, name=f"v{version}")
    content = state_content(alice, room_id, "m.room.create")
    assert content["room_version"] == version
    if version == "12":
        assert ":" not in room_id
    else:
        assert room_id.endswith(":test.local")
    # The room works: a message can be sent and read back.
    resp = alice.put(f"/rooms/{q(room_id)}/send/m.room.message/t1", {"msgtype": "m.text", "body": "hi"})
    assert resp.status_code == 200, resp.text
    event_id = resp.json()["event_id"]
    got = alice.get(f"/rooms/{q(room_id)}/event/{q(event_id)}")
    assert got.status_code == 200, got.text
    assert got.json()["content"]["body"] == "hi"


@pytest.mark.parametrize("version", ["13", "0", "", "org.example.custom"])
def test_unknown_room_version_is_refused(alice, version):
    assert_error(alice.post("/createRoom", {"room_version": version}), 400, "M_UNSUPPORTED_ROOM_VERSION")


def test_invites_are_sent_with_is_direct(alice, bob, carol):
    room_id = create(alice, invite=[bob.user_id, carol.user_id], is_direct=True)
    members = alice.get(f"/rooms/{q(room_id)}/members", params={"membership": "invite"}).json()["chunk"]
    by_user = {m["state_key"]: m for m in members}
    assert set(by_user) == {bob.user_id, carol.user_id}
    for member in by_user.values():
        assert member["content"]["membership"] == "invite"
        assert member["content"]["is_direct"] is True
        assert member["sender"] == alice.user_id


def test_invites_without_is_direct_do_not_carry_it(alice, bob):
    room_id = create(alice, invite=[bob.user_id])
    content = state_content(alice, room_id, "m.room.member", bob.user_id)
    assert content["membership"] == "invite"
    assert "is_direct" not in content


def test_inviting_yourself_is_refused_before_anything_is_created(alice, db_dsn):
    with psycopg2.connect(db_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM rooms")
        before = cur.fetchone()[0]
        resp = alice.post("/createRoom", {"invite": [alice.user_id]})
        assert_error(resp, 400, "M_INVALID_PARAM")
        cur.execute("SELECT count(*) FROM rooms")
        assert cur.fetchone()[0] == before
    conn.close()


def test_room_alias_name_creates_the_alias_and_canonical_alias(alice, bob):
    local = f"room{uuid.uuid4().hex[:8]}"
    resp = alice.post("/createRoom", {"room_alias_name": local, "preset": "public_chat"})
    assert resp.status_code == 200, resp.text
    room_id = resp.json()["room_id"]
    alias = f"#{local}:test.local"
    assert state_content(alice, room_id, "m.room.canonical_alias") == {"alias": alias}
    # The alias resolves: joining by it lands in the room.
    joined = bob.post(f"/join/{q(alias)}", {})
    assert joined.status_code == 200, joined.text
    assert joined.json() == {"room_id": room_id}


def test_taken_room_alias_is_refused_before_a_room_is_made(alice, db_dsn):
    local = f"taken{uuid.uuid4().hex[:8]}"
    create(alice, room_alias_name=local)
    with psycopg2.connect(db_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM rooms")
        before = cur.fetchone()[0]
        assert_error(alice.post("/createRoom", {"room_alias_name": local}), 400, "M_ROOM_IN_USE")
        cur.execute("SELECT count(*) FROM rooms")
        assert cur.fetchone()[0] == before
    conn.close()


@pytest.mark.parametrize("local", ["a:b", "a#b", "a b", "", "a\u0000b", "a\n", "x" * 250])
def test_invalid_room_alias_name_is_refused_before_a_room_is_made(alice, db_dsn, local):
    with psycopg2.connect(db_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM rooms")
        before = cur.fetchone()[0]
        resp = alice.post("/createRoom", {"room_alias_name": local})
        assert resp.status_code == 400, resp.text
        assert resp.json()["errcode"] in ("M_INVALID_PARAM", "M_BAD_ALIAS")
        cur.execute("SELECT count(*) FROM rooms")
        assert cur.fetchone()[0] == before
    conn.close()


@pytest.mark.parametrize("local", ["été", "a/b", "x" * 200])
def test_room_alias_names_may_hold_any_character_but_colon(alice, local):
    resp = alice.post("/createRoom", {"room_alias_name": local})
    assert resp.status_code == 200, resp.text
    assert resp.json()["room_alias"] == f"#{local}:test.local"


@pytest.mark.parametrize("entry", [{"type": "a\u0000", "content": {}},
                                   {"type": "a", "state_key": "\u0000", "content": {}},
                                   {"type": "x" * 256, "content": {}},
                                   {"type": "a", "state_key": "k" * 256, "content": {}}])
def test_initial_state_with_an_impossible_type_or_key_is_refused_before_a_room_is_made(alice, db_dsn, entry):
    with psycopg2.connect(db_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM rooms")
        before = cur.fetchone()[0]
        assert_error(alice.post("/createRoom", {"initial_state": [entry]}), 400, "M_BAD_JSON")
        cur.execute("SELECT count(*) FROM rooms")
        assert cur.fetchone()[0] == before
    conn.close()


@pytest.mark.parametrize("body", [
    {"name": 1}, {"topic": ["x"]}, {"room_version": 12}, {"preset": 5}, {"visibility": True},
    {"invite": "@bob:test.local"}, {"invite": [5]}, {"is_direct": "yes"}, {"creation_content": []},
    {"power_level_content_override": "x"}, {"initial_state": {}}, {"initial_state": ["x"]},
    {"initial_state": [{"type": "m.room.name"}]}, {"initial_state": [{"content": {}}]},
    {"initial_state": [{"type": "m.room.name", "state_key": 1, "content": {}}]},
    {"room_alias_name": 7},
])
def test_mistyped_fields_are_bad_json(alice, body):
    assert_error(alice.post("/createRoom", body), 400, "M_BAD_JSON")


def test_non_object_body_is_bad_json(alice):
    assert_error(alice.post("/createRoom", ["x"]), 400, "M_BAD_JSON")


def test_unknown_preset_is_refused(alice):
    assert_error(alice.post("/createRoom", {"preset": "secret_chat"}), 400, "M_INVALID_PARAM")


def test_malformed_invitee_is_refused(alice):
    assert_error(alice.post("/createRoom", {"invite": ["bob"]}), 400, "M_INVALID_PARAM")


def test_create_room_needs_a_token(homeserver):
    assert_error(Client(homeserver).post("/createRoom", {}), 401, "M_MISSING_TOKEN")


# --- the order of the initial events ---------------------------------------------------------

def test_initial_events_follow_the_spec_order(alice, bob):
    # createRoom: create, creator join, power levels, canonical alias, preset events,
    # initial_state in order, name and topic, invites.
    local = f"order{uuid.uuid4().hex[:8]}"
    room_id = create(alice, preset="private_chat", room_alias_name=local, name="N", topic="T",
                     invite=[bob.user_id],
                     initial_state=[{"type": "org.example.a", "content": {}},
                                    {"type": "org.example.b", "state_key": "x", "content": {}}])
    events = all_events_forward(alice, room_id)
    assert [(e["type"], e["state_key"]) for e in events] == [
        ("m.room.create", ""),
        ("m.room.member", alice.user_id),
        ("m.room.power_levels", ""),
        ("m.room.canonical_alias", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.guest_access", ""),
        ("org.example.a", ""),
        ("org.example.b", "x"),
        ("m.room.name", ""),
        ("m.room.topic", ""),
        ("m.room.member", bob.user_id),
    ]
    assert all(e["sender"] == alice.user_id and e["room_id"] == room_id for e in events)
    assert events[1]["content"]["membership"] == "join"
    assert events[-1]["content"]["membership"] == "invite"


def test_creator_is_joined_and_the_room_is_in_joined_rooms(alice):
    room_id = create(alice)
    assert room_id in alice.get("/joined_rooms").json()["joined_rooms"]
    joined = alice.get(f"/rooms/{q(room_id)}/joined_members").json()["joined"]
    assert list(joined) == [alice.user_id]


def test_rooms_created_concurrently_by_one_user_all_succeed(homeserver):
    # Version 12 room IDs hash the create event: identical ones made in one millisecond collided.
    alice = new_user(homeserver, "cc")
    results = []

    def create_one(i):
        results.append(alice.post("/createRoom", {"name": f"room {i}", "preset": "private_chat"}))

    threads = [threading.Thread(target=create_one, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in results] == [200] * 12, [r.text for r in results if r.status_code != 200]
    assert len(set(alice.get("/joined_rooms").json()["joined_rooms"])) == 12
