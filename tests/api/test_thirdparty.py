"""Third-party lookups (client-server API "Third-party Networks", third_party_lookup.yaml),
answered by real application services that declare the protocol: protocol metadata merged across
services, lookups by fields and reverse lookups by Matrix ID, and services that fail being left
out rather than failing the request."""

import tempfile

import pytest

from tests.appservice_fixture import AppServiceServer
from tests.harness import Client, assert_error, free_port, new_user, running_homeserver

SERVER = "test.local"


def irc_protocol(network_id: str, desc: str) -> dict:
    return {"user_fields": ["network", "nickname"], "location_fields": ["network", "channel"],
            "icon": "mxc://example.org/irc", "field_types": {
                "network": {"regexp": "([a-z0-9]+\\.)*[a-z0-9]+", "placeholder": "irc.example.org"},
                "nickname": {"regexp": "[^\\s#]+", "placeholder": "username"},
                "channel": {"regexp": "#[^\\s]+", "placeholder": "#foobar"}},
            "instances": [{"desc": desc, "icon": "mxc://example.org/net", "network_id": network_id,
                           "fields": {"network": f"{network_id}.example.org"}}]}


GITTER = {"user_fields": ["username"], "location_fields": ["room"], "icon": "mxc://example.org/gitter",
          "field_types": {"username": {"regexp": ".+", "placeholder": "who"}, "room": {"regexp": ".+",
                                                                                    "placeholder": "where"}},
          "instances": [{"desc": "Gitter", "fields": {}, "instance_id": "gitter-main"}]}
ALICE = {"userid": "@irc_alice:test.local", "protocol": "irc", "fields": {"network": "libera.example.org",
                                                                          "nickname": "alice"}}
BOB = {"userid": "@irc2_bob:test.local", "protocol": "irc", "fields": {"network": "oftc.example.org",
                                                                       "nickname": "bob"}}
CHANNEL = {"alias": "#irc_#matrix:test.local", "protocol": "irc", "fields": {"network": "libera.example.org",
                                                                             "channel": "#matrix"}}


@pytest.fixture(scope="module")
def services():
    first, second, broken = (AppServiceServer(f"hs-token-{i}").start() for i in range(3))
    first.protocols = {"irc": irc_protocol("libera", "Libera Chat"), "gitter": GITTER}
    # The second is invalid (a userid that is not a string): the homeserver must drop it.
    first.thirdparty_users = [ALICE, {"userid": 5, "protocol": "irc", "fields": {"nickname": "alice"}}]
    first.thirdparty_locations = [CHANNEL]
    second.protocols = {"irc": irc_protocol("oftc", "OFTC")}
    second.thirdparty_users = [BOB]
    broken.respond_with("^/thirdparty/", 500, {"errcode": "M_UNKNOWN"})
    yield first, second, broken
    for service in (first, second, broken):
        service.stop()


@pytest.fixture(scope="module")
def server(db_dsn, services):
    first, second, broken = services
    directory = tempfile.mkdtemp(prefix="as-reg-")
    paths = [
        first.write_registration(directory, id="ircbridge", as_token="as-1", sender_localpart="ircbot",
                                 protocols=["irc", "gitter"],
                                 namespaces={"users": [{"regex": "@irc_.*", "exclusive": True}],
                                             "aliases": [{"regex": "#irc_.*", "exclusive": True}]}),
        second.write_registration(directory, id="oftcbridge", as_token="as-2", sender_localpart="oftcbot",
                                  protocols=["irc"], namespaces={"users": [{"regex": "@irc2_.*", "exclusive": True}]}),
        broken.write_registration(directory, id="broken", as_token="as-3", sender_localpart="brokenbot",
                                  protocols=["irc", "slack"], namespaces={"users": [{"regex": "@irc.*",
                                                                                     "exclusive": False}]}),
        first.write_registration(directory, id="down", as_token="as-4", sender_localpart="downbot",
                                 protocols=["irc"], url=f"http://127.0.0.1:{free_port()}"),
    ]
    with running_homeserver(db_dsn, app_service_config_files=paths) as hs:
        yield hs


@pytest.fixture(scope="module")
def user(server):
    return new_user(server)


def test_protocols_merge_every_services_instances_with_instance_ids(user):
    resp = user.get("/thirdparty/protocols")
    assert resp.status_code == 200, resp.text
    protocols = resp.json()
    # slack: declared only by a service that fails, so nobody describes it.
    assert set(protocols) == {"irc", "gitter"}
    irc = protocols["irc"]
    assert irc["user_fields"] == ["network", "nickname"]
    assert sorted((i["desc"], i["instance_id"]) for i in irc["instances"]) == [
        ("Libera Chat", "ircbridge|libera"), ("OFTC", "oftcbridge|oftc")]
    assert protocols["gitter"]["instances"] == GITTER["instances"]


def test_one_protocol(user):
    resp = user.get("/thirdparty/protocol/gitter")
    assert resp.status_code == 200, resp.text
    assert resp.json()["location_fields"] == ["room"]


@pytest.mark.parametrize("protocol", ["nosuch", "slack"])
def test_unknown_or_undescribed_protocol_is_not_found(user, protocol):
    assert_error(user.get(f"/thirdparty/protocol/{protocol}"), 404, "M_NOT_FOUND")


def test_user_lookup_by_fields_merges_valid_results_of_all_services(user, services):
    resp = user.get("/thirdparty/user/irc", params={"nickname": "alice"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == [ALICE]
    # The fields went to each service declaring irc, with its hs_token.
    first, second, _ = services
    for service in (first, second):
        (request,) = [r for r in service.requests_to("^/_matrix/app/v1/thirdparty/user/irc$")
                      if r.query.get("nickname") == ["alice"]]
        assert request.authorized
        assert "access_token" not in request.query


def test_user_lookup_by_fields_from_the_second_service(user):
    resp = user.get("/thirdparty/user/irc", params={"network": "oftc.example.org"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == [BOB]


def test_location_lookup_by_fields(user):
    resp = user.get("/thirdparty/location/irc", params={"channel": "#matrix"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == [CHANNEL]


def test_lookup_with_no_results_is_not_found(user):
    assert_error(user.get("/thirdparty/user/irc", params={"nickname": "nobody"}), 404, "M_NOT_FOUND")


def test_lookup_of_an_undeclared_protocol_is_not_found(user):
    assert_error(user.get("/thirdparty/location/nosuch", params={"channel": "#x"}), 404, "M_NOT_FOUND")


def test_reverse_user_lookup_asks_the_services_whose_namespace_holds_the_user(user, services):
    resp = user.get("/thirdparty/user", params={"userid": ALICE["userid"]})
    assert resp.status_code == 200, resp.text
    assert resp.json() == [ALICE]
    second = services[1]
    assert not [r for r in second.requests_to("^/_matrix/app/v1/thirdparty/user$")
                if r.query.get("userid") == [ALICE["userid"]]]


def test_reverse_location_lookup(user):
    resp = user.get("/thirdparty/location", params={"alias": CHANNEL["alias"]})
    assert resp.status_code == 200, resp.text
    assert resp.json() == [CHANNEL]


@pytest.mark.parametrize("path", ["/thirdparty/user", "/thirdparty/location"])
def test_reverse_lookup_without_the_id_is_missing_param(user, path):
    assert_error(user.get(path), 400, "M_MISSING_PARAM")


@pytest.mark.parametrize("path", ["/thirdparty/protocols", "/thirdparty/protocol/irc", "/thirdparty/user/irc",
                                  "/thirdparty/location?alias=%23irc_x:test.local"])
def test_lookups_need_an_access_token(server, path):
    assert_error(Client(server).get(path), 401, "M_MISSING_TOKEN")
