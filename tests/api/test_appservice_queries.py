"""The homeserver asking application services (Application Service API: GET
/_matrix/app/v1/rooms/{roomAlias}, /users/{userId}, POST /ping, /thirdparty/*): an unknown alias
in a namespace lets the service create the room before a lookup or a join answers; an invite of an
unregistered namespace user asks the service about them first. AppServiceApi is also driven
directly, for the errors the client ping endpoint reports."""

import tempfile
import uuid

import pytest

from hs.appservice.api import AppServiceApi, AppServiceError
from hs.appservice.registration import ApplicationService
from tests.appservice_fixture import AppServiceServer
from tests.harness import Client, create, free_port, new_user, q, running_homeserver

SERVER = "test.local"


@pytest.fixture(scope="module")
def service():
    irc = AppServiceServer(hs_token="hs-irc").start()
    try:
        yield irc
    finally:
        irc.stop()


@pytest.fixture(scope="module")
def server(db_dsn, service):
    path = service.write_registration(tempfile.mkdtemp(prefix="as-reg-"), id="irc", as_token="as-irc",
                                      sender_localpart="ircbot",
                                      namespaces={"users": [{"regex": f"@irc_.*:{SERVER}", "exclusive": False}],
                                                  "aliases": [{"regex": f"#irc_.*:{SERVER}", "exclusive": False}]})
    with running_homeserver(db_dsn, app_service_config_files=[path]) as hs:
        yield hs


def alias_queries(service, alias):
    return [r for r in service.requests_to(r"^/_matrix/app/v1/rooms/") if r.path.endswith("/" + alias)]


def test_joining_an_unknown_alias_in_the_namespace_lets_the_service_create_the_room(server, service):
    bot = Client(server).register(f"irc_bot{uuid.uuid4().hex[:8]}")
    localpart = f"irc_channel{uuid.uuid4().hex[:8]}"
    alias = f"#{localpart}:{SERVER}"
    created = {}

    def create_room(queried_alias):
        assert queried_alias == alias
        created["room_id"] = create(bot, room_alias_name=localpart, preset="public_chat")
        return True
    service.on_alias_query = create_room
    try:
        alice = new_user(server, "alice")
        resp = alice.post(f"/join/{q(alias)}", {})
    finally:
        service.on_alias_query = None
    assert resp.status_code == 200, resp.text
    assert resp.json()["room_id"] == created["room_id"]
    [asked] = alias_queries(service, alias)
    assert asked.method == "GET" and asked.authorized and not asked.token_in_query
    # The alias exists now: a second lookup does not ask again.
    resp = alice.get(f"/directory/room/{q(alias)}")
    assert resp.status_code == 200 and resp.json()["room_id"] == created["room_id"]
    assert len(alias_queries(service, alias)) == 1


def test_looking_up_an_alias_the_service_does_not_know_is_not_found(server, service):
    alice = new_user(server, "alice")
    alias = f"#irc_nowhere{uuid.uuid4().hex[:8]}:{SERVER}"
    resp = alice.get(f"/directory/room/{q(alias)}")
    assert resp.status_code == 404 and resp.json()["errcode"] == "M_NOT_FOUND"
    assert len(alias_queries(service, alias)) == 1
    resp = alice.post(f"/join/{q(alias)}", {})
    assert resp.status_code == 404 and resp.json()["errcode"] == "M_NOT_FOUND"


def test_an_alias_outside_every_namespace_is_not_asked_about(server, service):
    alice = new_user(server, "alice")
    alias = f"#plain{uuid.uuid4().hex[:8]}:{SERVER}"
    resp = alice.get(f"/directory/room/{q(alias)}")
    assert resp.status_code == 404 and resp.json()["errcode"] == "M_NOT_FOUND"
    assert alias_queries(service, alias) == []


def test_inviting_an_unregistered_namespace_user_asks_the_service_before_sending_the_invite(server, service):
    alice = new_user(server, "alice")
    room_id = create(alice)
    ghost = f"@irc_ghost{uuid.uuid4().hex[:8]}:{SERVER}"
    service.known_users.add(ghost)
    resp = alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": ghost})
    assert resp.status_code == 200, resp.text
    invite = service.wait_for(lambda: [e for e in service.events()
                                       if e["type"] == "m.room.member" and e["state_key"] == ghost], timeout=60)
    assert invite[0]["content"]["membership"] == "invite"
    paths = [r.path for r in service.requests]
    asked = paths.index(f"/_matrix/app/v1/users/{ghost}")
    carried = next(i for i, r in enumerate(service.requests) if r.path.startswith("/_matrix/app/v1/transactions/")
                   and any(e.get("state_key") == ghost for e in r.body["events"]))
    assert asked < carried


def test_a_registered_namespace_user_is_not_asked_about(server, service):
    alice = new_user(server, "alice")
    puppet = Client(server).register(f"irc_known{uuid.uuid4().hex[:8]}")
    room_id = create(alice)
    assert alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": puppet.user_id}).status_code == 200
    service.wait_for(lambda: [e for e in service.events() if e.get("state_key") == puppet.user_id], timeout=60)
    assert service.requests_to(r"^/_matrix/app/v1/users/" + puppet.user_id) == []


# --- AppServiceApi, in this process ----------------------------------------------------------------

def registration(url, hs_token="hs-irc"):
    return ApplicationService(id="irc", url=url, as_token="as", hs_token=hs_token, sender=f"@ircbot:{SERVER}",
                              namespaces={"users": [], "aliases": [], "rooms": []})


def test_ping_sends_the_transaction_id_with_the_hs_token(service):
    AppServiceApi(SERVER, timeout_s=10).ping(registration(service.url), "txn-1")
    assert service.pings[-1] == "txn-1"
    assert service.requests_to(r"/ping$")[-1].authorized


def test_ping_errors_carry_the_client_ping_endpoints_errcodes(service):
    api = AppServiceApi(SERVER, timeout_s=1)
    with pytest.raises(AppServiceError) as e:
        api.ping(registration(None), None)
    assert (e.value.status, e.value.errcode) == (400, "M_URL_NOT_SET")
    with pytest.raises(AppServiceError) as e:
        api.ping(registration(service.url, hs_token="wrong"), None)
    assert (e.value.status, e.value.errcode) == (502, "M_BAD_STATUS")
    assert e.value.to_json()["status"] == 403 and "M_FORBIDDEN" in e.value.to_json()["body"]
    with pytest.raises(AppServiceError) as e:
        api.ping(registration(f"http://127.0.0.1:{free_port()}"), None)
    assert (e.value.status, e.value.errcode) == (502, "M_CONNECTION_FAILED")
    service.respond_with(r"^/ping$", 200, {}, delay_s=3)
    try:
        with pytest.raises(AppServiceError) as e:
            api.ping(registration(service.url), None)
    finally:
        service.clear_responses()
    assert (e.value.status, e.value.errcode) == (504, "M_CONNECTION_TIMEOUT")


def test_user_and_alias_queries_are_true_only_for_a_200(service):
    api = AppServiceApi(SERVER, timeout_s=10)
    known = f"@irc_known:{SERVER}"
    service.known_users.add(known)
    assert api.query_user(registration(service.url), known) is True
    assert api.query_user(registration(service.url), f"@irc_other:{SERVER}") is False
    assert api.query_alias(registration(service.url), f"#irc_none:{SERVER}") is False
    assert api.query_alias(registration(f"http://127.0.0.1:{free_port()}"), f"#irc_none:{SERVER}") is False


def test_third_party_lookups_return_the_services_results(service):
    api = AppServiceApi(SERVER, timeout_s=10)
    service.protocols = {"irc": {"user_fields": ["network", "nickname"], "location_fields": [], "icon": "",
                                 "field_types": {}, "instances": []}}
    service.thirdparty_users = [{"userid": f"@irc_bob:{SERVER}", "protocol": "irc",
                                 "fields": {"network": "libera", "nickname": "bob"}}]
    try:
        assert api.get_protocol(registration(service.url), "irc")["user_fields"] == ["network", "nickname"]
        assert api.get_protocol(registration(service.url), "xmpp") is None
        found = api.query_third_party(registration(service.url), "user", "irc", {"nickname": "bob"})
        assert [r["userid"] for r in found] == [f"@irc_bob:{SERVER}"]
        assert api.query_third_party(registration(service.url), "user", "irc", {"nickname": "eve"}) == []
    finally:
        service.protocols = {}
        service.thirdparty_users = []
