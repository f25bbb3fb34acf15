"""What only application services may call: POST /_matrix/client/v1/appservice/{appserviceId}/ping
(appservice_ping.yaml), their published room lists (appservice_room_directory.yaml, read back
through /publicRooms' third_party_instance_id and include_all_networks), and the exclusive alias
namespaces (M_EXCLUSIVE) for aliases and createRoom's room_alias_name."""

import tempfile
import uuid

import pytest

from tests.appservice_fixture import AppServiceServer
from tests.harness import Client, assert_error, create, free_port, new_user, q, running_homeserver

SERVER = "test.local"
BRIDGE_TOKEN = "as-token-bridge"
OTHER_TOKEN = "as-token-other"
NOURL_TOKEN = "as-token-nourl"
DOWN_TOKEN = "as-token-down"
PING = "/_matrix/client/v1/appservice/{}/ping"


@pytest.fixture(scope="module")
def service():
    service = AppServiceServer("hs-token-bridge").start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def server(db_dsn, service):
    directory = tempfile.mkdtemp(prefix="as-reg-")
    paths = [
        service.write_registration(directory, id="bridge", as_token=BRIDGE_TOKEN, sender_localpart="bridgebot",
                                   namespaces={"aliases": [{"regex": "#bridge_.*:test\\.local", "exclusive": True}],
                                               "users": [{"regex": "@bridge_.*:test\\.local", "exclusive": True}]}),
        service.write_registration(directory, id="other", as_token=OTHER_TOKEN, sender_localpart="otherbot",
                                   namespaces={"aliases": [{"regex": "#other_.*", "exclusive": False}]}),
        service.write_registration(directory, id="nourl", as_token=NOURL_TOKEN, sender_localpart="nourlbot",
                                   url=None),
        # Nothing listens on this port: connections are refused.
        service.write_registration(directory, id="down", as_token=DOWN_TOKEN, sender_localpart="downbot",
                                   url=f"http://127.0.0.1:{free_port()}"),
    ]
    with running_homeserver(db_dsn, app_service_config_files=paths) as hs:
        yield hs


# --- ping ------------------------------------------------------------------------------------------

def test_ping_calls_the_service_with_the_transaction_id_and_reports_the_duration(server, service):
    txn = f"ping-{uuid.uuid4().hex}"
    resp = Client(server, BRIDGE_TOKEN).post(PING.format("bridge"), {"transaction_id": txn})
    assert resp.status_code == 200, resp.text
    assert isinstance(resp.json()["duration_ms"], int) and resp.json()["duration_ms"] >= 0
    assert txn in service.pings
    (request,) = [r for r in service.requests_to("/ping$") if (r.body or {}).get("transaction_id") == txn]
    assert request.authorized and not request.token_in_query


def test_ping_without_a_transaction_id_works(server):
    resp = Client(server, BRIDGE_TOKEN).post(PING.format("bridge"), {})
    assert resp.status_code == 200, resp.text


def test_ping_by_an_ordinary_user_is_forbidden(server):
    assert_error(new_user(server).post(PING.format("bridge"), {}), 403, "M_FORBIDDEN")


def test_ping_of_another_service_is_forbidden(server):
    assert_error(Client(server, OTHER_TOKEN).post(PING.format("bridge"), {}), 403, "M_FORBIDDEN")


def test_ping_without_a_token_is_missing_token(server):
    assert_error(Client(server).post(PING.format("bridge"), {}), 401, "M_MISSING_TOKEN")


def test_ping_with_a_body_that_is_not_json_is_not_json(server):
    resp = Client(server, BRIDGE_TOKEN).post(PING.format("bridge"), data=b"{nope",
                                             headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "M_NOT_JSON")


def test_ping_of_a_service_without_url_is_url_not_set(server):
    assert_error(Client(server, NOURL_TOKEN).post(PING.format("nourl"), {}), 400, "M_URL_NOT_SET")


def test_ping_answered_with_an_error_status_is_bad_status_with_status_and_body(server, service):
    service.respond_with("^/ping$", 401, {"errcode": "M_UNKNOWN_TOKEN"})
    try:
        resp = Client(server, BRIDGE_TOKEN).post(PING.format("bridge"), {})
    finally:
        service.clear_responses()
    assert_error(resp, 502, "M_BAD_STATUS")
    assert resp.json()["status"] == 401
    assert "M_UNKNOWN_TOKEN" in resp.json()["body"]


def test_ping_of_an_unreachable_service_is_connection_failed(server):
    assert_error(Client(server, DOWN_TOKEN).post(PING.format("down"), {}), 502, "M_CONNECTION_FAILED")


# --- the services' published room lists ---------------------------------------------------------

def public_room_ids(client, **body) -> list:
    resp = client.post("/publicRooms", body)
    assert resp.status_code == 200, resp.text
    return [room["room_id"] for room in resp.json()["chunk"]]


def list_path(network, room_id):
    return f"/directory/list/appservice/{q(network)}/{q(room_id)}"


def test_service_publishes_a_room_in_its_network_list_only(server):
    owner = new_user(server)
    room_id = create(owner, preset="public_chat")
    bridge = Client(server, BRIDGE_TOKEN)
    resp = bridge.put(list_path("irc", room_id), {"visibility": "public"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert room_id in public_room_ids(owner, third_party_instance_id="bridge|irc")
    assert room_id in public_room_ids(owner, include_all_networks=True)
    assert room_id not in public_room_ids(owner)
    assert room_id not in public_room_ids(owner, third_party_instance_id="bridge|slack")
    assert room_id not in public_room_ids(owner, third_party_instance_id="other|irc")


def test_private_visibility_and_delete_take_the_room_out_of_the_list(server):
    owner = new_user(server)
    bridge = Client(server, BRIDGE_TOKEN)
    for unpublish in (lambda r: bridge.put(list_path("irc", r), {"visibility": "private"}),
                      lambda r: bridge.delete(list_path("irc", r))):
        room_id = create(owner, preset="public_chat")
        assert bridge.put(list_path("irc", room_id), {"visibility": "public"}).status_code == 200
        resp = unpublish(room_id)
        assert resp.status_code == 200, resp.text
        assert room_id not in public_room_ids(owner, third_party_instance_id="bridge|irc")


def test_server_list_rooms_are_in_the_all_networks_list_too(server):
    owner = new_user(server)
    room_id = create(owner, preset="public_chat", visibility="public")
    assert room_id in public_room_ids(owner, include_all_networks=True)
    assert room_id not in public_room_ids(owner, third_party_instance_id="bridge|irc")


def test_ordinary_user_cannot_edit_a_service_list(server):
    owner = new_user(server)
    room_id = create(owner)
    assert_error(owner.put(list_path("irc", room_id), {"visibility": "public"}), 403, "M_FORBIDDEN")
    assert_error(owner.delete(list_path("irc", room_id)), 403, "M_FORBIDDEN")


@pytest.mark.parametrize("body, errcode", [({}, "M_MISSING_PARAM"), ({"visibility": "hidden"}, "M_INVALID_PARAM"),
                                           ({"visibility": 1}, "M_BAD_JSON")])
def test_bad_visibility_is_refused(server, body, errcode):
    room_id = create(new_user(server))
    assert_error(Client(server, BRIDGE_TOKEN).put(list_path("irc", room_id), body), 400, errcode)


def test_unknown_room_is_not_found(server):
    resp = Client(server, BRIDGE_TOKEN).put(list_path("irc", f"!nowhere{uuid.uuid4().hex[:6]}:{SERVER}"),
                                            {"visibility": "public"})
    assert_error(resp, 404, "M_NOT_FOUND")


def test_public_rooms_refuses_all_networks_with_one_network(server):
    body = {"third_party_instance_id": "bridge|irc", "include_all_networks": True}
    assert_error(new_user(server).post("/publicRooms", body), 400, "M_INVALID_PARAM")


def test_instance_id_not_of_a_service_network_lists_nothing(server):
    owner = new_user(server)
    room_id = create(owner, preset="public_chat")
    assert Client(server, BRIDGE_TOKEN).put(list_path("irc", room_id), {"visibility": "public"}).status_code == 200
    for instance_id in ("bridge", "bridge|irc|x", "|"):
        assert public_room_ids(owner, third_party_instance_id=instance_id) == []


# --- exclusive alias namespaces ---------------------------------------------------------------------

def alias(localpart):
    return f"#{localpart}{uuid.uuid4().hex[:8]}:{SERVER}"


def put_alias(client, room_alias, room_id):
    return client.put(f"/directory/room/{q(room_alias)}", {"room_id": room_id})


def test_user_cannot_create_an_alias_in_an_exclusive_namespace(server):
    owner = new_user(server)
    room_id = create(owner)
    assert_error(put_alias(owner, alias("bridge_"), room_id), 400, "M_EXCLUSIVE")
    resp = put_alias(owner, alias("other_"), room_id)  # a non-exclusive namespace
    assert resp.status_code == 200, resp.text


def test_create_room_with_an_exclusive_alias_is_refused_before_the_room_exists(server):
    owner = new_user(server)
    localpart = f"bridge_{uuid.uuid4().hex[:8]}"
    assert_error(owner.post("/createRoom", {"room_alias_name": localpart}), 400, "M_EXCLUSIVE")
    joined = owner.get("/joined_rooms")
    assert joined.status_code == 200, joined.text
    assert joined.json()["joined_rooms"] == []


def test_service_creates_aliases_in_its_namespace_without_being_in_the_room(server):
    room_id = create(new_user(server))
    room_alias = alias("bridge_")
    resp = put_alias(Client(server, BRIDGE_TOKEN), room_alias, room_id)
    assert resp.status_code == 200, resp.text
    found = Client(server).get(f"/directory/room/{q(room_alias)}")
    assert found.status_code == 200, found.text
    assert found.json()["room_id"] == room_id


def test_service_cannot_create_aliases_outside_its_namespace(server):
    room_id = create(new_user(server))
    assert_error(put_alias(Client(server, BRIDGE_TOKEN), alias("plain_"), room_id), 400, "M_EXCLUSIVE")
    assert_error(put_alias(Client(server, OTHER_TOKEN), alias("bridge_"), room_id), 400, "M_EXCLUSIVE")


def test_service_creates_the_room_and_alias_of_its_namespace_with_create_room(server):
    localpart = f"bridge_{uuid.uuid4().hex[:8]}"
    resp = Client(server, BRIDGE_TOKEN).post("/createRoom", {"room_alias_name": localpart})
    assert resp.status_code == 200, resp.text
    assert resp.json()["room_alias"] == f"#{localpart}:{SERVER}"


def test_service_deletes_any_alias_of_its_namespace_and_users_none(server):
    owner = new_user(server)
    room_id = create(owner)
    room_alias = alias("bridge_")
    bridge = Client(server, BRIDGE_TOKEN)
    assert put_alias(bridge, room_alias, room_id).status_code == 200
    assert_error(new_user(server).delete(f"/directory/room/{q(room_alias)}"), 403, "M_FORBIDDEN")
    # The room's moderator may delete its aliases, but not one a service holds exclusively.
    assert_error(owner.delete(f"/directory/room/{q(room_alias)}"), 400, "M_EXCLUSIVE")
    assert_error(Client(server, OTHER_TOKEN).delete(f"/directory/room/{q(room_alias)}"), 400, "M_EXCLUSIVE")
    resp = bridge.delete(f"/directory/room/{q(room_alias)}")
    assert resp.status_code == 200, resp.text
    assert_error(Client(server).get(f"/directory/room/{q(room_alias)}"), 404, "M_NOT_FOUND")
