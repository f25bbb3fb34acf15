"""Account data (client-server "Client Config") and room tags ("Room Tagging"): set and read
back by the user themself only, server-controlled types refused, tags kept as room account data
of type m.tag."""

import psycopg2
import pytest

from tests.api.test_response_schemas import assert_matches_spec
from tests.api.test_sync import assert_error, create, new_user, q

GLOBAL = "/_matrix/client/v3/user/{userId}/account_data/{type}"
ROOM = "/_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}"
TAGS = "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags"
TAG = "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}"


def me(client) -> str:
    return client.get("/account/whoami").json()["user_id"]


def global_path(client, data_type, user_id=None):
    return f"/user/{q(user_id or me(client))}/account_data/{q(data_type)}"


def room_path(client, room_id, data_type, user_id=None):
    return f"/user/{q(user_id or me(client))}/rooms/{q(room_id)}/account_data/{q(data_type)}"


def tags_path(client, room_id, tag=None, user_id=None):
    path = f"/user/{q(user_id or me(client))}/rooms/{q(room_id)}/tags"
    return path if tag is None else f"{path}/{q(tag)}"


def test_global_account_data_is_stored_and_read_back(homeserver):
    alice = new_user(homeserver, "ad")
    resp = alice.put(global_path(alice, "org.example.config"), {"theme": "dark", "n": [1, {"x": None}]})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert_matches_spec(resp, GLOBAL)
    resp = alice.get(global_path(alice, "org.example.config"))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"theme": "dark", "n": [1, {"x": None}]}
    assert_matches_spec(resp, GLOBAL)


def test_setting_account_data_again_replaces_the_whole_content(homeserver):
    alice = new_user(homeserver, "ad")
    alice.put(global_path(alice, "org.example.config"), {"a": 1, "b": 2})
    assert alice.put(global_path(alice, "org.example.config"), {"c": 3}).status_code == 200
    assert alice.get(global_path(alice, "org.example.config")).json() == {"c": 3}


def test_unset_global_account_data_is_not_found(homeserver):
    alice = new_user(homeserver, "ad")
    assert_error(alice.get(global_path(alice, "org.example.never")), 404, "M_NOT_FOUND")


def test_room_account_data_is_separate_from_global_and_from_other_rooms(homeserver):
    alice = new_user(homeserver, "ad")
    room_a, room_b = create(alice), create(alice)
    resp = alice.put(room_path(alice, room_a, "org.example.pref"), {"room": "a"})
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, ROOM)
    resp = alice.get(room_path(alice, room_a, "org.example.pref"))
    assert resp.json() == {"room": "a"}
    assert_matches_spec(resp, ROOM)
    assert_error(alice.get(room_path(alice, room_b, "org.example.pref")), 404, "M_NOT_FOUND")
    assert_error(alice.get(global_path(alice, "org.example.pref")), 404, "M_NOT_FOUND")


def test_account_data_of_another_user_cannot_be_read_or_written(homeserver, db_dsn):
    alice, bob = new_user(homeserver, "ad"), new_user(homeserver, "ad")
    room_id = create(alice)
    alice.put(global_path(alice, "org.example.secret"), {"s": 1})
    alice_id = me(alice)
    assert_error(bob.get(global_path(bob, "org.example.secret", alice_id)), 403, "M_FORBIDDEN")
    assert_error(bob.put(global_path(bob, "org.example.secret", alice_id), {"s": 2}), 403, "M_FORBIDDEN")
    assert_error(bob.put(room_path(bob, room_id, "org.example.x", alice_id), {}), 403, "M_FORBIDDEN")
    assert_error(bob.get(room_path(bob, room_id, "org.example.x", alice_id)), 403, "M_FORBIDDEN")
    assert_error(bob.get(tags_path(bob, room_id, user_id=alice_id)), 403, "M_FORBIDDEN")
    assert_error(bob.put(tags_path(bob, room_id, "u.x", alice_id), {}), 403, "M_FORBIDDEN")
    assert_error(bob.delete(tags_path(bob, room_id, "u.x", alice_id)), 403, "M_FORBIDDEN")
    with psycopg2.connect(db_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT type, content FROM account_data WHERE user_id = %s", (alice_id,))
        assert cur.fetchall() == [("org.example.secret", {"s": 1})]


@pytest.mark.parametrize("data_type", ["m.fully_read", "m.push_rules"])
def test_server_controlled_types_are_refused_globally_and_per_room(homeserver, data_type):
    alice = new_user(homeserver, "ad")
    room_id = create(alice)
    resp = alice.put(global_path(alice, data_type), {"event_id": "$x"})
    assert_error(resp, 405, "M_BAD_JSON")
    assert_matches_spec(resp, GLOBAL)
    resp = alice.put(room_path(alice, room_id, data_type), {"event_id": "$x"})
    assert_error(resp, 405, "M_BAD_JSON")
    assert_matches_spec(resp, ROOM)
    assert_error(alice.get(room_path(alice, room_id, data_type)), 404, "M_NOT_FOUND")


@pytest.mark.parametrize("body, errcode", [(b"[1, 2]", "M_BAD_JSON"), (b"\"text\"", "M_BAD_JSON"),
                                           (b"{not json", "M_NOT_JSON")])
def test_account_data_must_be_a_json_object(homeserver, body, errcode):
    alice = new_user(homeserver, "ad")
    resp = alice.request("PUT", global_path(alice, "org.example.bad"), data=body,
                         headers={"Content-Type": "application/json"})
    assert_error(resp, 400, errcode)
    assert_error(alice.get(global_path(alice, "org.example.bad")), 404, "M_NOT_FOUND")


def test_account_data_with_a_nul_character_is_refused(homeserver):
    alice = new_user(homeserver, "ad")
    assert_error(alice.put(global_path(alice, "org.example.nul"), {"k": "a\u0000b"}), 400, "M_BAD_JSON")


def test_room_account_data_needs_a_valid_room_id(homeserver):
    alice = new_user(homeserver, "ad")
    assert_error(alice.put(room_path(alice, "not-a-room", "org.example.x"), {}), 400, "M_INVALID_PARAM")


def test_room_tags_are_added_listed_and_removed(homeserver):
    alice = new_user(homeserver, "ad")
    room_id = create(alice)
    resp = alice.get(tags_path(alice, room_id))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"tags": {}}
    resp = alice.put(tags_path(alice, room_id, "u.work"), {"order": 0.25})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert_matches_spec(resp, TAG)
    assert alice.put(tags_path(alice, room_id, "m.favourite"), {}).status_code == 200
    resp = alice.get(tags_path(alice, room_id))
    assert resp.json() == {"tags": {"u.work": {"order": 0.25}, "m.favourite": {}}}
    assert_matches_spec(resp, TAGS)
    resp = alice.delete(tags_path(alice, room_id, "u.work"))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert_matches_spec(resp, TAG)
    assert alice.get(tags_path(alice, room_id)).json() == {"tags": {"m.favourite": {}}}


def test_tags_are_the_rooms_m_tag_account_data(homeserver):
    alice = new_user(homeserver, "ad")
    room_id = create(alice)
    alice.put(tags_path(alice, room_id, "u.a b/c"), {"order": 1})
    assert alice.get(room_path(alice, room_id, "m.tag")).json() == {"tags": {"u.a b/c": {"order": 1}}}
    alice.put(room_path(alice, room_id, "m.tag"), {"tags": {"u.other": {}}})
    assert alice.get(tags_path(alice, room_id)).json() == {"tags": {"u.other": {}}}


def test_setting_a_tag_again_replaces_its_content(homeserver):
    alice = new_user(homeserver, "ad")
    room_id = create(alice)
    alice.put(tags_path(alice, room_id, "u.work"), {"order": 0.5, "x": 1})
    alice.put(tags_path(alice, room_id, "u.work"), {"order": 0.1})
    assert alice.get(tags_path(alice, room_id)).json() == {"tags": {"u.work": {"order": 0.1}}}


def test_removing_a_tag_the_room_does_not_have_succeeds(homeserver):
    alice = new_user(homeserver, "ad")
    room_id = create(alice)
    resp = alice.delete(tags_path(alice, room_id, "u.none"))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert alice.get(tags_path(alice, room_id)).json() == {"tags": {}}


@pytest.mark.parametrize("order", [1.5, -0.1, "0.5", True, None])
def test_tag_order_must_be_a_number_between_0_and_1(homeserver, order):
    alice = new_user(homeserver, "ad")
    room_id = create(alice)
    assert_error(alice.put(tags_path(alice, room_id, "u.work"), {"order": order}), 400, "M_BAD_JSON")
    assert alice.get(tags_path(alice, room_id)).json() == {"tags": {}}


def test_tags_of_one_room_do_not_show_in_another(homeserver):
    alice = new_user(homeserver, "ad")
    room_a, room_b = create(alice), create(alice)
    alice.put(tags_path(alice, room_a, "u.work"), {})
    assert alice.get(tags_path(alice, room_b)).json() == {"tags": {}}
