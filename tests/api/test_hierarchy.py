"""GET /_matrix/client/v1/rooms/{roomId}/hierarchy (client-server API "Spaces"): the depth-first
walk of m.space.child events, the order of children, max_depth, suggested_only, pagination, and
which rooms a user may see, against a real server and database. Only local rooms are walked:
children this server does not have are left out (federation comes later)."""

import time

import pytest

from tests.api.test_response_schemas import assert_matches_spec
from tests.harness import Client, assert_error, create, q

SERVER = "test.local"
HIERARCHY_PATH = "/_matrix/client/v1/rooms/{roomId}/hierarchy"


def space(client, name="space", **body) -> str:
    return create(client, preset="public_chat", name=name, creation_content={"type": "m.space"}, **body)


def room(client, name="room", **body) -> str:
    return create(client, preset="public_chat", name=name, **body)


def add_child(client, parent, child, **content) -> str:
    content.setdefault("via", [SERVER])
    resp = client.put(f"/rooms/{q(parent)}/state/m.space.child/{q(child)}", content)
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"]


def hierarchy(client, room_id, **params):
    return client.get(f"/_matrix/client/v1/rooms/{q(room_id)}/hierarchy", params=params)


def ok_hierarchy(client, room_id, **params) -> dict:
    resp = hierarchy(client, room_id, **params)
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, HIERARCHY_PATH)
    return resp.json()


def ids(body) -> list[str]:
    return [r["room_id"] for r in body["rooms"]]


def walk(client, room_id, **params) -> list[str]:
    seen, token = [], None
    for _ in range(100):
        body = ok_hierarchy(client, room_id, **params, **({"from": token} if token else {}))
        seen += ids(body)
        token = body.get("next_batch")
        if token is None:
            return seen
    raise AssertionError("pagination did not end")


@pytest.fixture(scope="module")
def alice(homeserver):
    return Client(homeserver).register("alice")


@pytest.fixture(scope="module")
def bob(homeserver):
    return Client(homeserver).register("bob")


@pytest.fixture(scope="module")
def tree(alice):
    """top -> [a, sub -> [b, c], d] in that order; sub is a space."""
    top, sub = space(alice, "top"), space(alice, "sub")
    a, b, c, d = (room(alice, n) for n in "abcd")
    add_child(alice, top, a, order="1")
    add_child(alice, top, sub, order="2")
    add_child(alice, top, d, order="3")
    add_child(alice, sub, b, order="1", suggested=True)
    add_child(alice, sub, c, order="2")
    return {"top": top, "sub": sub, "a": a, "b": b, "c": c, "d": d}


# --- the walk ---------------------------------------------------------------------------------

def test_walk_is_depth_first_in_child_order(alice, tree):
    body = ok_hierarchy(alice, tree["top"])
    t = tree
    assert ids(body) == [t["top"], t["a"], t["sub"], t["b"], t["c"], t["d"]]
    assert "next_batch" not in body


def test_each_room_carries_its_summary(alice, tree):
    rooms = {r["room_id"]: r for r in ok_hierarchy(alice, tree["top"])["rooms"]}
    top = rooms[tree["top"]]
    assert (top["name"], top["room_type"], top["join_rule"], top["num_joined_members"]) == ("top", "m.space",
                                                                                             "public", 1)
    assert top["world_readable"] is False and top["guest_can_join"] is False
    assert rooms[tree["a"]]["name"] == "a"
    assert "room_type" not in rooms[tree["a"]]


def test_children_state_is_stripped_child_events_with_timestamps(alice, tree):
    rooms = {r["room_id"]: r for r in ok_hierarchy(alice, tree["top"])["rooms"]}
    children = rooms[tree["sub"]]["children_state"]
    assert [(e["type"], e["state_key"], e["sender"]) for e in children] == [
        ("m.space.child", tree["b"], alice.user_id), ("m.space.child", tree["c"], alice.user_id)]
    assert children[0]["content"] == {"via": [SERVER], "order": "1", "suggested": True}
    assert all(isinstance(e["origin_server_ts"], int) for e in children)
    assert all(set(e) == {"type", "state_key", "content", "sender", "origin_server_ts"} for e in children)
    assert rooms[tree["a"]]["children_state"] == []


def test_children_without_order_follow_by_timestamp_then_room_id(alice):
    top = space(alice)
    first, second, ordered = room(alice), room(alice), room(alice)
    add_child(alice, top, first)
    time.sleep(0.01)
    add_child(alice, top, second)
    add_child(alice, top, ordered, order="zzz")
    assert ids(ok_hierarchy(alice, top)) == [top, ordered, first, second]


def test_invalid_order_counts_as_no_order(alice):
    top = space(alice)
    bad, good = room(alice), room(alice)
    add_child(alice, top, bad, order="\u00e9")
    add_child(alice, top, good, order="b")
    assert ids(ok_hierarchy(alice, top)) == [top, good, bad]


@pytest.mark.parametrize("content", [{"via": []}, {"via": "test.local"}, {"via": [5]}, {}])
def test_child_without_a_valid_via_is_not_a_child(alice, content):
    top, child = space(alice), room(alice)
    resp = alice.put(f"/rooms/{q(top)}/state/m.space.child/{q(child)}", content)
    assert resp.status_code == 200, resp.text
    body = ok_hierarchy(alice, top)
    assert ids(body) == [top]
    assert body["rooms"][0]["children_state"] == []


def test_redacted_child_event_is_not_a_child(alice):
    top, child = space(alice), room(alice)
    event_id = add_child(alice, top, child)
    assert alice.put(f"/rooms/{q(top)}/redact/{q(event_id)}/txn-redact-child", {}).status_code == 200
    assert ids(ok_hierarchy(alice, top)) == [top]


def test_room_that_is_not_a_space_has_no_children(alice):
    parent, child = room(alice), room(alice)
    add_child(alice, parent, child)
    body = ok_hierarchy(alice, parent)
    assert ids(body) == [parent]
    assert body["rooms"][0]["children_state"] == []


def test_room_listed_twice_or_in_a_cycle_appears_once(alice):
    top, sub, shared = space(alice), space(alice), room(alice)
    add_child(alice, top, sub, order="1")
    add_child(alice, top, shared, order="2")
    add_child(alice, sub, shared)
    add_child(alice, sub, top)
    assert ids(ok_hierarchy(alice, top)) == [top, sub, shared]


def test_child_this_server_does_not_have_is_left_out(alice):
    top, local = space(alice), room(alice)
    add_child(alice, top, "!remote:elsewhere.example", via=["elsewhere.example"], order="1")
    add_child(alice, top, local, order="2")
    body = ok_hierarchy(alice, top)
    assert ids(body) == [top, local]
    # The child event itself is still shown: it is the space's state.
    assert [e["state_key"] for e in body["rooms"][0]["children_state"]] == ["!remote:elsewhere.example", local]


@pytest.mark.parametrize("version", ["1", "11", "12"])
def test_rooms_of_every_version_are_walked(alice, version):
    top = space(alice, room_version=version)
    child = room(alice, room_version=version)
    add_child(alice, top, child)
    body = ok_hierarchy(alice, top)
    assert ids(body) == [top, child]
    assert [r["room_version"] for r in body["rooms"]] == [version, version]


# --- max_depth and suggested_only -------------------------------------------------------------

def test_max_depth_zero_is_the_root_alone(alice, tree):
    body = ok_hierarchy(alice, tree["top"], max_depth=0)
    assert ids(body) == [tree["top"]]
    assert len(body["rooms"][0]["children_state"]) == 3


def test_max_depth_one_stops_at_the_roots_children(alice, tree):
    t = tree
    assert ids(ok_hierarchy(alice, t["top"], max_depth=1)) == [t["top"], t["a"], t["sub"], t["d"]]


def test_suggested_only_follows_suggested_children(alice, tree):
    t = tree
    assert ids(ok_hierarchy(alice, t["sub"], suggested_only="true")) == [t["sub"], t["b"]]
    assert ids(ok_hierarchy(alice, t["top"], suggested_only="true")) == [t["top"]]
    body = ok_hierarchy(alice, t["sub"], suggested_only="true")
    assert [e["state_key"] for e in body["rooms"][0]["children_state"]] == [t["b"]]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": "x"}, {"max_depth": -1}, {"suggested_only": "maybe"}])
def test_bad_parameters_are_invalid(alice, tree, params):
    assert_error(hierarchy(alice, tree["top"], **params), 400, "M_INVALID_PARAM")


# --- pagination -------------------------------------------------------------------------------

def test_pages_cover_the_walk_once_in_order(alice, tree):
    t = tree
    first = ok_hierarchy(alice, t["top"], limit=2)
    assert ids(first) == [t["top"], t["a"]]
    assert "next_batch" in first
    assert walk(alice, t["top"], limit=2) == [t["top"], t["a"], t["sub"], t["b"], t["c"], t["d"]]
    assert walk(alice, t["top"], limit=1, max_depth=1) == [t["top"], t["a"], t["sub"], t["d"]]


def test_changing_max_depth_or_suggested_only_mid_walk_is_refused(alice, tree):
    token = ok_hierarchy(alice, tree["top"], limit=1)["next_batch"]
    resp = hierarchy(alice, tree["top"], limit=1, max_depth=1, **{"from": token})
    assert_error(resp, 400, "M_INVALID_PARAM")
    assert_matches_spec(resp, HIERARCHY_PATH)
    assert_error(hierarchy(alice, tree["top"], suggested_only="true", **{"from": token}), 400, "M_INVALID_PARAM")


def test_unknown_token_is_refused(alice, tree):
    assert_error(hierarchy(alice, tree["top"], **{"from": "nonsense"}), 400, "M_INVALID_PARAM")


def test_token_is_bound_to_its_user_and_room(alice, bob, tree):
    token = ok_hierarchy(alice, tree["top"], limit=1)["next_batch"]
    assert_error(hierarchy(bob, tree["top"], **{"from": token}), 400, "M_INVALID_PARAM")
    assert_error(hierarchy(alice, tree["sub"], **{"from": token}), 400, "M_INVALID_PARAM")


def test_token_can_be_used_again(alice, tree):
    token = ok_hierarchy(alice, tree["top"], limit=2)["next_batch"]
    assert ids(ok_hierarchy(alice, tree["top"], limit=2, **{"from": token})) == \
        ids(ok_hierarchy(alice, tree["top"], limit=2, **{"from": token}))


# --- who sees what ----------------------------------------------------------------------------

def test_rooms_the_user_may_not_see_are_left_out_with_their_children(alice, bob):
    top = space(alice)
    hidden = create(alice, preset="private_chat", creation_content={"type": "m.space"})
    inside, visible = room(alice), room(alice)
    add_child(alice, top, hidden, order="1")
    add_child(alice, hidden, inside)
    add_child(alice, top, visible, order="2")
    assert ids(ok_hierarchy(bob, top)) == [top, visible]
    assert ids(ok_hierarchy(alice, top)) == [top, hidden, inside, visible]


def test_invited_user_sees_the_invite_only_child(alice, bob):
    top, private = space(alice), create(alice, preset="private_chat")
    add_child(alice, top, private)
    assert alice.post(f"/rooms/{q(private)}/invite", {"user_id": bob.user_id}).status_code == 200
    assert ids(ok_hierarchy(bob, top)) == [top, private]


def test_restricted_child_is_seen_by_members_of_the_space(alice, bob):
    top = space(alice)
    join_resp = bob.post(f"/rooms/{q(top)}/join", {})
    assert join_resp.status_code == 200, join_resp.text
    restricted = create(alice, preset="private_chat", room_version="12", initial_state=[
        {"type": "m.room.join_rules",
         "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": top}]}}])
    add_child(alice, top, restricted)
    rooms = ok_hierarchy(bob, top)["rooms"]
    assert [r["room_id"] for r in rooms] == [top, restricted]
    assert rooms[1]["allowed_room_ids"] == [top]


def test_world_readable_and_knockable_children_are_seen(alice, bob):
    top = space(alice)
    readable = create(alice, preset="private_chat", initial_state=[
        {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}])
    knock = create(alice, preset="private_chat", room_version="12",
                   initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}])
    add_child(alice, top, readable, order="1")
    add_child(alice, top, knock, order="2")
    assert ids(ok_hierarchy(bob, top)) == [top, readable, knock]


def test_root_the_user_may_not_see_is_forbidden(alice, bob):
    hidden = create(alice, preset="private_chat", creation_content={"type": "m.space"})
    resp = hierarchy(bob, hidden)
    assert_error(resp, 403, "M_FORBIDDEN")
    assert_matches_spec(resp, HIERARCHY_PATH)


def test_unknown_root_is_forbidden(alice):
    assert_error(hierarchy(alice, "!unknown:test.local"), 403, "M_FORBIDDEN")


def test_hierarchy_needs_an_access_token(homeserver, tree):
    assert_error(Client(homeserver).get(f"/_matrix/client/v1/rooms/{q(tree['top'])}/hierarchy"),
                 401, "M_MISSING_TOKEN")


def test_wide_space_pages_through_every_child(alice):
    top = space(alice)
    children = [room(alice, f"child {n:02d}") for n in range(12)]
    for n, child in enumerate(children):
        add_child(alice, top, child, order=f"{n:02d}")
    assert walk(alice, top, limit=5) == [top, *children]
