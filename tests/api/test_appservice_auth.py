"""Application services on the client API: as_token authentication, identity assertion with
`user_id=` and `device_id=` (Application Service API, "Identity assertion"; MSC4326 in Matrix
1.17), the sender created at start-up, and the rate-limit exemption of `rate_limited: false`."""

import tempfile
import uuid

import pytest

from tests.appservice_fixture import AppServiceServer
from tests.harness import Client, assert_error, create, new_user, q, running_homeserver
from tests.workers.cluster import WorkerProcess, master_with_replication, wait_caught_up

SERVER = "test.local"
BRIDGE_TOKEN = "as-token-bridge"
LIMITED_TOKEN = "as-token-limited"
# Three messages at once, then one per 100 s: a burst of five always meets the limit.
TIGHT_LIMIT = {"per_second": 0.01, "burst_count": 3}


@pytest.fixture(scope="module")
def server(db_dsn):
    service = AppServiceServer("hs-token-bridge").start()
    directory = tempfile.mkdtemp(prefix="as-reg-")
    try:
        paths = [
            service.write_registration(directory, id="bridge", as_token=BRIDGE_TOKEN, sender_localpart="bridgebot",
                                       rate_limited=False,
                                       namespaces={"users": [{"regex": "@bridge_.*:test\\.local", "exclusive": True}]}),
            service.write_registration(directory, id="limited", as_token=LIMITED_TOKEN, sender_localpart="limitedbot",
                                       namespaces={"users": [{"regex": "@limited_.*:test\\.local",
                                                              "exclusive": False}]}),
        ]
        with running_homeserver(db_dsn, app_service_config_files=paths, rc_message=TIGHT_LIMIT) as hs:
            yield hs
    finally:
        service.stop()


def as_client(server, token=BRIDGE_TOKEN) -> Client:
    return Client(server, token)


def register_ghost(server, localpart=None, token=BRIDGE_TOKEN, **extra) -> dict:
    localpart = localpart or f"bridge_{uuid.uuid4().hex[:8]}"
    resp = Client(server, token).post("/register", {"type": "m.login.application_service", "username": localpart,
                                                    **extra})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_as_token_alone_acts_as_the_sender_without_a_device(server):
    resp = as_client(server).get("/account/whoami")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"user_id": f"@bridgebot:{SERVER}", "is_guest": False}


def test_as_token_in_the_query_string_authenticates_too(server):
    resp = Client(server).get("/account/whoami", params={"access_token": BRIDGE_TOKEN})
    assert resp.status_code == 200, resp.text
    assert resp.json()["user_id"] == f"@bridgebot:{SERVER}"


def test_sender_exists_from_start_up_with_a_profile(server):
    resp = new_user(server).get(f"/profile/{q('@bridgebot:' + SERVER)}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["displayname"] == "bridgebot"


def test_user_id_parameter_masquerades_as_a_registered_namespace_user(server):
    ghost = register_ghost(server, inhibit_login=True)["user_id"]
    resp = as_client(server).get("/account/whoami", params={"user_id": ghost})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"user_id": ghost, "is_guest": False}


def test_user_id_of_the_sender_itself_is_accepted(server):
    resp = as_client(server).get("/account/whoami", params={"user_id": f"@bridgebot:{SERVER}"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["user_id"] == f"@bridgebot:{SERVER}"


def test_user_id_in_namespace_but_not_registered_is_forbidden(server):
    resp = as_client(server).get("/account/whoami", params={"user_id": f"@bridge_nobody{uuid.uuid4().hex[:6]}:{SERVER}"})
    assert resp.status_code == 403, resp.text
    assert resp.json()["errcode"] == "M_FORBIDDEN"


def test_user_id_outside_the_namespace_is_forbidden_even_if_registered(server):
    outsider = new_user(server)
    resp = as_client(server).get("/account/whoami", params={"user_id": outsider.user_id})
    assert resp.status_code == 403, resp.text
    assert resp.json()["errcode"] == "M_FORBIDDEN"


def test_other_service_cannot_act_as_this_services_users(server):
    ghost = register_ghost(server, inhibit_login=True)["user_id"]
    resp = as_client(server, LIMITED_TOKEN).get("/account/whoami", params={"user_id": ghost})
    assert resp.status_code == 403, resp.text
    assert resp.json()["errcode"] == "M_FORBIDDEN"


def test_user_id_parameter_is_ignored_for_ordinary_access_tokens(server):
    alice, bob = new_user(server), new_user(server)
    resp = alice.get("/account/whoami", params={"user_id": bob.user_id})
    assert resp.status_code == 200, resp.text
    assert resp.json()["user_id"] == alice.user_id


def test_device_id_parameter_asserts_an_existing_device(server):
    ghost = register_ghost(server, device_id="GHOSTDEV")
    assert ghost["device_id"] == "GHOSTDEV"
    for name in ("device_id", "org.matrix.msc3202.device_id"):
        resp = as_client(server).get("/account/whoami", params={"user_id": ghost["user_id"], name: "GHOSTDEV"})
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"user_id": ghost["user_id"], "device_id": "GHOSTDEV", "is_guest": False}


def test_device_id_parameter_naming_no_device_is_unknown_device(server):
    ghost = register_ghost(server, inhibit_login=True)["user_id"]
    resp = as_client(server).get("/account/whoami", params={"user_id": ghost, "device_id": "NOSUCHDEVICE"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["errcode"] == "M_UNKNOWN_DEVICE"


def test_unknown_token_is_still_unknown_token(server):
    resp = Client(server, "as-token-nobody-has").get("/account/whoami")
    assert resp.status_code == 401, resp.text
    assert resp.json()["errcode"] == "M_UNKNOWN_TOKEN"


def test_masqueraded_user_sends_with_transaction_ids_deduplicated(server):
    owner = new_user(server)
    room_id = create(owner, preset="public_chat")
    ghost = register_ghost(server, inhibit_login=True)["user_id"]
    as_ghost = {"user_id": ghost}
    bridge = as_client(server)
    resp = bridge.post(f"/rooms/{q(room_id)}/join", {}, params=as_ghost)
    assert resp.status_code == 200, resp.text
    sends = [bridge.put(f"/rooms/{q(room_id)}/send/m.room.message/txn1", {"msgtype": "m.text", "body": "hi"},
                        params=as_ghost) for _ in range(2)]
    assert [r.status_code for r in sends] == [200, 200], sends[-1].text
    assert sends[0].json()["event_id"] == sends[1].json()["event_id"]
    event = owner.get(f"/rooms/{q(room_id)}/event/{q(sends[0].json()['event_id'])}")
    assert event.status_code == 200, event.text
    assert event.json()["sender"] == ghost
    assert "transaction_id" not in event.json().get("unsigned", {})
    # The sender sees its transaction ID, as a device sees its own.
    own = bridge.get(f"/rooms/{q(room_id)}/event/{q(sends[0].json()['event_id'])}", params=as_ghost)
    assert own.status_code == 200, own.text
    assert own.json()["unsigned"]["transaction_id"] == "txn1"


def as_login(server, user_id, token=BRIDGE_TOKEN, headers=True):
    body = {"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": user_id}}
    return Client(server, token if headers else None).post("/login", body)


def test_login_flows_offer_application_service_login(server):
    assert {"type": "m.login.application_service"} in Client(server).get("/login").json()["flows"]


def test_service_logs_in_as_its_user_and_gets_a_device(server):
    ghost = register_ghost(server, inhibit_login=True)
    resp = as_login(server, ghost["user_id"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["user_id"] == ghost["user_id"] and body["device_id"]
    whoami = Client(server, body["access_token"]).get("/account/whoami").json()
    assert whoami == {"user_id": ghost["user_id"], "device_id": body["device_id"], "is_guest": False}


def test_service_login_outside_its_namespace_or_for_a_missing_user_is_forbidden(server):
    outsider = new_user(server)
    assert_error(as_login(server, outsider.user_id), 403, "M_FORBIDDEN")
    assert_error(as_login(server, f"@bridge_nobody_{uuid.uuid4().hex[:6]}:{SERVER}"), 403, "M_FORBIDDEN")
    ghost = register_ghost(server, inhibit_login=True)
    assert_error(as_login(server, ghost["user_id"], token=LIMITED_TOKEN), 403, "M_FORBIDDEN")


def test_service_login_needs_a_valid_as_token(server):
    ghost = register_ghost(server, inhibit_login=True)
    assert_error(as_login(server, ghost["user_id"], headers=False), 401, "M_MISSING_TOKEN")
    assert_error(as_login(server, ghost["user_id"], token="not-an-as-token"), 401, "M_UNKNOWN_TOKEN")
    # A user's own access token is no as_token either.
    assert_error(as_login(server, ghost["user_id"], token=new_user(server).access_token), 401, "M_UNKNOWN_TOKEN")


def test_key_upload_by_a_service_without_a_device_is_400(server):
    ghost = register_ghost(server, inhibit_login=True)
    resp = as_client(server).post("/keys/upload", {"one_time_keys": {}}, params={"user_id": ghost["user_id"]})
    assert_error(resp, 400, "M_MISSING_PARAM")


def send_burst(client, room_id, count=5, **params) -> list[int]:
    return [client.put(f"/rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}",
                       {"msgtype": "m.text", "body": str(i)}, params=params).status_code for i in range(count)]


def test_ordinary_users_meet_the_message_rate_limit(server):
    user = new_user(server)
    room_id = create(user)
    assert 429 in send_burst(user, room_id)


def test_service_with_rate_limited_false_is_not_rate_limited_nor_are_its_users(server):
    owner = new_user(server)
    room_id = create(owner, preset="public_chat")
    bridge = as_client(server)
    ghost = register_ghost(server, inhibit_login=True)["user_id"]
    for params in ({}, {"user_id": ghost}):
        resp = bridge.post(f"/rooms/{q(room_id)}/join", {}, params=params)
        assert resp.status_code == 200, resp.text
        assert send_burst(bridge, room_id, count=8, **params) == [200] * 8


def test_service_without_rate_limited_false_is_rate_limited(server):
    owner = new_user(server)
    room_id = create(owner, preset="public_chat")
    ghost = register_ghost(server, localpart=f"limited_{uuid.uuid4().hex[:8]}", token=LIMITED_TOKEN,
                           inhibit_login=True)["user_id"]
    limited = as_client(server, LIMITED_TOKEN)
    resp = limited.post(f"/rooms/{q(room_id)}/join", {}, params={"user_id": ghost})
    assert resp.status_code == 200, resp.text
    assert 429 in send_burst(limited, room_id, user_id=ghost)


# --- the same on workers: every process authenticates as_tokens -------------------------------------

@pytest.fixture(scope="module")
def cluster(db_dsn):
    service = AppServiceServer("hs-token-workers").start()
    path = service.write_registration(tempfile.mkdtemp(prefix="as-reg-"), id="bridge", as_token=BRIDGE_TOKEN,
                                      sender_localpart="bridgebot",
                                      namespaces={"users": [{"regex": "@bridge_.*", "exclusive": True}]})
    master = master_with_replication(db_dsn, app_service_config_files=[path])
    workers = []
    try:
        master.start()
        for worker_type in ("client_reader", "synchrotron"):
            workers.append(WorkerProcess(master, worker_type, f"{worker_type}1").start())
        yield master, *workers
    finally:
        for worker in workers:
            worker.stop()
        master.stop()
        service.stop()


def test_workers_authenticate_a_service_acting_as_its_user(cluster):
    master, reader, synchrotron = cluster
    owner = new_user(master)
    room_id = create(owner, preset="public_chat")
    ghost = register_ghost(master, inhibit_login=True)["user_id"]
    assert Client(master, BRIDGE_TOKEN).post(f"/rooms/{q(room_id)}/join", {}, params={"user_id": ghost}
                                             ).status_code == 200
    wait_caught_up(master, reader, synchrotron)
    members = Client(reader, BRIDGE_TOKEN).get(f"/rooms/{q(room_id)}/joined_members", params={"user_id": ghost})
    assert members.status_code == 200, members.text
    assert ghost in members.json()["joined"]
    # The sender itself is not in the room.
    assert Client(reader, BRIDGE_TOKEN).get(f"/rooms/{q(room_id)}/joined_members").status_code == 403
    synced = Client(synchrotron, BRIDGE_TOKEN).get("/sync", params={"user_id": ghost, "timeout": "0"})
    assert synced.status_code == 200, synced.text
    assert room_id in synced.json()["rooms"]["join"]
    unknown = Client(reader, BRIDGE_TOKEN).get(f"/rooms/{q(room_id)}/joined_members",
                                               params={"user_id": f"@bridge_none{uuid.uuid4().hex[:6]}:{SERVER}"})
    assert unknown.status_code == 403 and unknown.json()["errcode"] == "M_FORBIDDEN"
