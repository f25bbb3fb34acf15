"""GET /_matrix/client/v1/room_summary/{roomIdOrAlias} (client-server API v1.15, MSC3266): who
may see which room's summary, with and without a token, and the fields it carries, against a
real server and database."""

import uuid

import pytest

from tests.api.test_response_schemas import assert_matches_spec
from tests.harness import Client, create, q, running_homeserver

SERVER = "test.local"
SUMMARY_PATH = "/_matrix/client/v1/room_summary/{roomIdOrAlias}"


def summary(client, room_id_or_alias, **kw):
    return client.get(f"/_matrix/client/v1/room_summary/{q(room_id_or_alias)}", **kw)


def ok_summary(client, room_id_or_alias) -> dict:
    resp = summary(client, room_id_or_alias)
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, SUMMARY_PATH)
    return resp.json()


def join(client, room_id):
    resp = client.post(f"/rooms/{q(room_id)}/join", {})
    assert resp.status_code == 200, resp.text


def assert_not_found(resp):
    assert resp.status_code == 404, resp.text
    assert resp.json()["errcode"] == "M_NOT_FOUND"
    assert_matches_spec(resp, SUMMARY_PATH)


@pytest.fixture(scope="module")
def server(db_dsn):
    """Guests are allowed here, so that a guest's summary can be asked for."""
    with running_homeserver(db_dsn, allow_guest_access=True) as process:
        yield process


@pytest.fixture(scope="module")
def alice(server):
    return Client(server).register("alice")


@pytest.fixture(scope="module")
def bob(server):
    return Client(server).register("bob")


@pytest.fixture(scope="module")
def anonymous(server):
    return Client(server)


@pytest.fixture(scope="module")
def guest(server):
    client = Client(server)
    resp = client.post("/register?kind=guest", {})
    assert resp.status_code == 200, resp.text
    client.access_token = resp.json()["access_token"]
    return client


# --- what a summary says ------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1", "11", "12"])
def test_member_sees_the_full_summary(alice, version):
    alias_name = f"sum_{uuid.uuid4().hex[:8]}"
    room_id = create(alice, preset="public_chat", room_version=version, name="Summary room", topic="A topic",
                     room_alias_name=alias_name, initial_state=[
                         {"type": "m.room.avatar", "content": {"url": "mxc://test.local/pic"}},
                         {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    assert ok_summary(alice, room_id) == {
        "room_id": room_id, "name": "Summary room", "topic": "A topic",
        "canonical_alias": f"#{alias_name}:{SERVER}", "avatar_url": "mxc://test.local/pic",
        "num_joined_members": 1, "world_readable": False, "guest_can_join": False, "join_rule": "public",
        "room_version": version, "encryption": "m.megolm.v1.aes-sha2", "membership": "join",
    }


def test_summary_by_alias_is_the_rooms(alice):
    alias_name = f"by_alias_{uuid.uuid4().hex[:8]}"
    room_id = create(alice, preset="public_chat", room_alias_name=alias_name)
    assert ok_summary(alice, f"#{alias_name}:{SERVER}")["room_id"] == room_id


def test_space_summary_has_its_room_type(alice):
    room_id = create(alice, preset="public_chat", creation_content={"type": "m.space"})
    assert ok_summary(alice, room_id)["room_type"] == "m.space"


def test_topic_falls_back_to_the_plain_text_topic_block(alice):
    room_id = create(alice, preset="public_chat", initial_state=[{"type": "m.room.topic", "content": {
        "topic": "", "m.topic": {"m.text": [{"mimetype": "text/html", "body": "<b>bold</b>"},
                                            {"body": "plain"}]}}}])
    assert ok_summary(alice, room_id)["topic"] == "plain"


def test_joined_member_count_counts_joined_members(alice, bob):
    room_id = create(alice, preset="public_chat")
    join(bob, room_id)
    assert ok_summary(alice, room_id)["num_joined_members"] == 2


# --- who may see it ---------------------------------------------------------------------------

def test_non_member_sees_a_public_room_with_membership_leave(alice, bob):
    room_id = create(alice, preset="public_chat")
    body = ok_summary(bob, room_id)
    assert body["membership"] == "leave"
    assert body["join_rule"] == "public"


def test_non_member_does_not_see_an_invite_only_room(alice, bob):
    room_id = create(alice, preset="private_chat")
    assert_not_found(summary(bob, room_id))


def test_invited_user_sees_an_invite_only_room(alice, bob):
    room_id = create(alice, preset="private_chat", name="Invited")
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}).status_code == 200
    body = ok_summary(bob, room_id)
    assert body["membership"] == "invite"
    assert body["name"] == "Invited"


def test_user_who_left_an_invite_only_room_no_longer_sees_it(alice, bob):
    room_id = create(alice, preset="private_chat")
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}).status_code == 200
    join(bob, room_id)
    assert bob.post(f"/rooms/{q(room_id)}/leave", {}).status_code == 200
    assert_not_found(summary(bob, room_id))


def test_banned_user_does_not_see_an_invite_only_room(alice, bob):
    room_id = create(alice, preset="private_chat")
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}).status_code == 200
    assert alice.post(f"/rooms/{q(room_id)}/ban", {"user_id": bob.user_id}).status_code == 200
    assert_not_found(summary(bob, room_id))


def test_anyone_sees_a_world_readable_room(alice, bob):
    room_id = create(alice, preset="private_chat", initial_state=[
        {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}])
    body = ok_summary(bob, room_id)
    assert body["world_readable"] is True
    assert body["join_rule"] == "invite"


@pytest.mark.parametrize("version,rule", [("7", "knock"), ("12", "knock"), ("10", "knock_restricted")])
def test_anyone_sees_a_knockable_room(alice, bob, version, rule):
    room_id = create(alice, preset="private_chat", room_version=version,
                     initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": rule, "allow": []}}])
    assert ok_summary(bob, room_id)["join_rule"] == rule


def test_knock_join_rule_does_not_open_a_room_version_without_knocking(alice, bob):
    room_id = create(alice, preset="private_chat", room_version="6",
                     initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}])
    assert_not_found(summary(bob, room_id))


@pytest.mark.parametrize("version", ["8", "12"])
def test_member_of_an_allowed_room_sees_a_restricted_room(alice, bob, version):
    allowed = create(alice, preset="public_chat")
    join(bob, allowed)
    room_id = create(alice, preset="private_chat", room_version=version, initial_state=[
        {"type": "m.room.join_rules",
         "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": allowed}]}}])
    body = ok_summary(bob, room_id)
    assert body["allowed_room_ids"] == [allowed]
    assert body["membership"] == "leave"


def test_non_member_of_the_allowed_rooms_does_not_see_a_restricted_room(alice, bob):
    allowed = create(alice, preset="private_chat")
    room_id = create(alice, preset="private_chat", room_version="12", initial_state=[
        {"type": "m.room.join_rules",
         "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": allowed}]}}])
    assert_not_found(summary(bob, room_id))


# --- without a token, and guests ----------------------------------------------------------------

def test_summary_of_a_public_room_needs_no_token(alice, anonymous):
    room_id = create(alice, preset="public_chat", name="Open")
    body = ok_summary(anonymous, room_id)
    assert body["name"] == "Open"
    assert "membership" not in body


def test_summary_of_a_world_readable_room_needs_no_token(alice, anonymous):
    room_id = create(alice, preset="private_chat", initial_state=[
        {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}])
    assert "membership" not in ok_summary(anonymous, room_id)


def test_invite_only_room_is_not_found_without_a_token(alice, anonymous):
    assert_not_found(summary(anonymous, create(alice, preset="private_chat")))


def test_restricted_room_is_not_found_without_a_token(alice, anonymous):
    allowed = create(alice, preset="public_chat")
    room_id = create(alice, preset="private_chat", room_version="12", initial_state=[
        {"type": "m.room.join_rules",
         "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": allowed}]}}])
    assert_not_found(summary(anonymous, room_id))


def test_invalid_token_is_refused_not_treated_as_anonymous(alice, anonymous):
    room_id = create(alice, preset="public_chat")
    resp = summary(anonymous, room_id, token="not-a-token")
    assert resp.status_code == 401, resp.text
    assert resp.json()["errcode"] == "M_UNKNOWN_TOKEN"


def test_guest_sees_a_public_room_summary(alice, guest):
    room_id = create(alice, preset="public_chat")
    assert ok_summary(guest, room_id)["membership"] == "leave"


# --- rooms that are not there -----------------------------------------------------------------

def test_unknown_room_is_not_found(alice):
    assert_not_found(summary(alice, "!unknown:test.local"))


def test_unknown_alias_is_not_found(alice):
    assert_not_found(summary(alice, f"#nothing_{uuid.uuid4().hex[:6]}:{SERVER}"))


def test_room_on_another_server_is_not_found_without_federation(alice):
    assert_not_found(summary(alice, "#room:elsewhere.example"))
    resp = alice.get(f"/_matrix/client/v1/room_summary/{q('!room:elsewhere.example')}",
                     params={"via": "elsewhere.example"})
    assert_not_found(resp)


def test_neither_room_id_nor_alias_is_an_invalid_parameter(alice):
    resp = summary(alice, "plainword")
    assert resp.status_code == 400, resp.text
    assert resp.json()["errcode"] == "M_INVALID_PARAM"
