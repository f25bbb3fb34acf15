"""Dehydrated devices (MSC3814, as Synapse serves it): PUT/GET/DELETE
/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device and POST/GET
.../dehydrated_device/{deviceId}/events. The dehydrated device is a device without an access
token whose keys are uploaded with it; others claim its keys and send it to-device messages; a
later login reads them page by page (reading deletes nothing, as the MSC says); replacing or
deleting it takes its keys and messages with it and announces a device list change."""

import base64
import json
import os
import threading

import pytest

from hs.events.canonical_json import encode_canonical_json
from hs.events.signing import generate_signing_key, sign_json
from hs.worker_routes import ROUTES, serves
from tests.api.test_device_lists import device_lists, room_of
from tests.api.test_devices import delete_device
from tests.api.test_e2e_keys import Device, claim_one
from tests.api.test_sync import assert_error, sync
from tests.api.test_to_device import send_to_device
from tests.harness import Client, q, query

PATH = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"
DEVICE_DATA = {"algorithm": "m.dehydration.v2", "device_pickle": "c2VjcmV0", "nonce": "bm9uY2U"}


def events_path(device_id: str) -> str:
    return f"{PATH}/{q(device_id)}/events"


class Dehydrated(Device):
    """The keys of a dehydrated device of `owner`'s user. Its ID is what the MSC asks for, an
    unpadded base64 curve25519 key, so it may hold '/' and '+' (sent percent-encoded)."""

    def __init__(self, owner: Device):
        self.client, self.user_id = owner.client, owner.user_id
        self.device_id = "/+" + base64.b64encode(os.urandom(32)).decode().rstrip("=")
        self.key = generate_signing_key()

    def sign(self, obj: dict) -> dict:
        # Our SigningKey names itself by an alphanumeric version; the key ID is not signed, so
        # the signature is the same under the device's ID.
        signed = sign_json(obj, self.user_id, self.key)
        signatures = signed["signatures"][self.user_id]
        signatures[f"ed25519:{self.device_id}"] = signatures.pop(self.key.key_id)
        return signed

    def body(self, otk_ids=("a", "b"), **overrides) -> dict:
        body = {"device_id": self.device_id, "device_data": DEVICE_DATA,
                "initial_device_display_name": "Dehydrated device",
                "device_keys": self.device_keys(dehydrated=True),
                "one_time_keys": self.otks(*otk_ids), "fallback_keys": self.fallback("fb")}
        body.update(overrides)
        return body

    def put(self, **overrides):
        return self.client.put(PATH, self.body(**overrides))


def dehydrate(owner: Device, **overrides) -> Dehydrated:
    dehydrated = Dehydrated(owner)
    resp = dehydrated.put(**overrides)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"device_id": dehydrated.device_id}
    return dehydrated


def device_ids(client) -> list[str]:
    resp = client.get("/devices")
    assert resp.status_code == 200, resp.text
    return sorted(d["device_id"] for d in resp.json()["devices"])


def queried_keys(client, user_id) -> dict:
    resp = client.post("/keys/query", {"device_keys": {user_id: []}})
    assert resp.status_code == 200, resp.text
    return resp.json()["device_keys"][user_id]


def read_events(client, device_id, next_batch=None, limit=None) -> dict:
    resp = client.post(events_path(device_id), {"next_batch": next_batch} if next_batch else {},
                       params={"limit": limit} if limit else None)
    assert resp.status_code == 200, resp.text
    return resp.json()


def inbox_count(db_dsn, user_id, device_id) -> int:
    return query(db_dsn, "SELECT count(*) FROM device_inbox WHERE user_id = %s AND device_id = %s",
                 (user_id, device_id))[0][0]


@pytest.fixture
def alice(homeserver):
    return Device(homeserver)


# --- the flow Element's clients follow ---

def test_a_dehydrated_device_receives_keys_and_messages_that_a_new_login_reads_then_deletes(homeserver, db_dsn,
                                                                                             alice):
    bob = Device(homeserver)
    room_of(homeserver, alice.client, bob.client)
    bob_since = sync(bob.client)["next_batch"]
    dehydrated = dehydrate(alice, otk_ids=("a", "b"))
    assert device_lists(bob.client, bob_since)["changed"] == [alice.user_id]

    # Bob sees it in /keys/query, flagged as the client signed it, claims a one-time key and
    # sends it messages (by name and through `*`).
    keys = queried_keys(bob.client, alice.user_id)[dehydrated.device_id]
    assert keys["dehydrated"] is True
    assert keys["unsigned"] == {"device_display_name": "Dehydrated device"}
    assert claim_one(bob.client, dehydrated) == {
        alice.user_id: {dehydrated.device_id: {"signed_curve25519:a": dehydrated.sign({"key": "otk-a"})}}}
    for n in range(3):
        assert send_to_device(bob.client, {alice.user_id: {dehydrated.device_id: {"n": n}}},
                              event_type="m.room.encrypted").status_code == 200
    assert send_to_device(bob.client, {alice.user_id: {"*": {"n": 3}}}, event_type="m.room.encrypted"
                          ).status_code == 200

    # Alice logs in afresh, finds the device and reads its messages two at a time.
    login = Client(homeserver).login(alice.user_id.split(":")[0][1:])
    resp = login.get(PATH)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"device_id": dehydrated.device_id, "device_data": DEVICE_DATA}
    first = read_events(login, dehydrated.device_id, limit=2)
    assert first["events"] == [{"type": "m.room.encrypted", "sender": bob.user_id, "content": {"n": n}}
                               for n in (0, 1)]
    second = read_events(login, dehydrated.device_id, first["next_batch"], limit=2)
    assert [e["content"] for e in second["events"]] == [{"n": 2}, {"n": 3}]
    last = read_events(login, dehydrated.device_id, second["next_batch"], limit=2)
    assert last["events"] == [] and last["next_batch"]
    # Reading acknowledged nothing: an interrupted rehydration can start again.
    assert read_events(login, dehydrated.device_id, first["next_batch"], limit=2) == second
    assert inbox_count(db_dsn, alice.user_id, dehydrated.device_id) == 4

    bob_since = sync(bob.client)["next_batch"]
    resp = login.delete(PATH)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"device_id": dehydrated.device_id}
    assert device_lists(bob.client, bob_since)["changed"] == [alice.user_id]
    assert_error(login.get(PATH), 404, "M_NOT_FOUND")
    assert dehydrated.device_id not in queried_keys(bob.client, alice.user_id)
    assert dehydrated.device_id not in device_ids(login)
    assert inbox_count(db_dsn, alice.user_id, dehydrated.device_id) == 0


def test_the_dehydrated_device_has_no_access_token_and_is_listed_among_the_devices(homeserver, db_dsn, alice):
    dehydrated = dehydrate(alice)
    assert query(db_dsn, "SELECT count(*) FROM access_tokens WHERE user_id = %s AND device_id = %s",
                 (alice.user_id, dehydrated.device_id)) == [(0,)]
    # As Synapse (and the MSC, which lets DELETE /devices/{id} remove it): clients hide it by
    # the `dehydrated` flag of its keys.
    assert device_ids(alice.client) == sorted([alice.device_id, dehydrated.device_id])
    resp = alice.client.get(f"/devices/{q(dehydrated.device_id)}")
    assert resp.status_code == 200 and resp.json()["display_name"] == "Dehydrated device"


def test_its_fallback_key_is_handed_out_once_the_one_time_keys_are_gone(homeserver, alice):
    dehydrated = dehydrate(alice, otk_ids=("only",))
    bob = Device(homeserver)
    assert list(claim_one(bob.client, dehydrated)[alice.user_id][dehydrated.device_id]) == ["signed_curve25519:only"]
    assert claim_one(bob.client, dehydrated)[alice.user_id][dehydrated.device_id] == {
        "signed_curve25519:fb": dehydrated.sign({"key": "fb", "fallback": True})}


# --- replacing and deleting ---

def test_a_new_upload_replaces_the_old_device_with_its_keys_and_messages(homeserver, db_dsn, alice):
    bob = Device(homeserver)
    room_of(homeserver, alice.client, bob.client)
    old = dehydrate(alice)
    assert send_to_device(bob.client, {alice.user_id: {old.device_id: {"n": 1}}}).status_code == 200
    bob_since = sync(bob.client)["next_batch"]
    new = dehydrate(alice)
    assert device_lists(bob.client, bob_since)["changed"] == [alice.user_id]
    assert alice.client.get(PATH).json()["device_id"] == new.device_id
    assert device_ids(alice.client) == sorted([alice.device_id, new.device_id])
    assert set(queried_keys(bob.client, alice.user_id)) == {new.device_id}  # alice's own uploaded none
    assert inbox_count(db_dsn, alice.user_id, old.device_id) == 0
    assert query(db_dsn, "SELECT count(*) FROM e2e_one_time_keys WHERE user_id = %s AND device_id = %s",
                 (alice.user_id, old.device_id)) == [(0,)]
    assert_error(alice.client.post(events_path(old.device_id), {}), 403, "M_FORBIDDEN")


def test_uploading_the_same_device_again_recreates_it_without_its_old_messages(homeserver, db_dsn, alice):
    dehydrated = dehydrate(alice, otk_ids=("a",))
    bob = Device(homeserver)
    assert send_to_device(bob.client, {alice.user_id: {dehydrated.device_id: {"n": 1}}}).status_code == 200
    resp = dehydrated.put(otk_ids=("c",))
    assert resp.status_code == 200, resp.text
    assert read_events(alice.client, dehydrated.device_id)["events"] == []
    assert query(db_dsn, "SELECT key_id FROM e2e_one_time_keys WHERE user_id = %s AND device_id = %s",
                 (alice.user_id, dehydrated.device_id)) == [("c",)]


def test_refused_keys_for_the_same_id_leave_no_dehydrated_device(homeserver, alice):
    # As Synapse: an upload with the current device's ID replaces that device before its keys
    # are checked (a client never does this: the ID is the device's new identity key).
    dehydrated = dehydrate(alice)
    assert_error(dehydrated.put(one_time_keys={"bad": "k"}), 400, "M_INVALID_PARAM")
    assert_error(alice.client.get(PATH), 404, "M_NOT_FOUND")
    assert device_ids(alice.client) == [alice.device_id]


def test_concurrent_uploads_leave_exactly_one_dehydrated_device(homeserver, alice):
    candidates = [Dehydrated(alice) for _ in range(4)]
    statuses = []
    threads = [threading.Thread(target=lambda d=d: statuses.append(d.put().status_code)) for d in candidates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 4
    current = alice.client.get(PATH).json()["device_id"]
    assert current in {d.device_id for d in candidates}
    assert device_ids(alice.client) == sorted([alice.device_id, current])


def test_delete_devices_endpoint_and_logout_all_delete_the_dehydrated_device(homeserver, db_dsn, alice):
    dehydrated = dehydrate(alice)
    assert delete_device(alice.client, dehydrated.device_id, user=alice.user_id).status_code == 200
    assert_error(alice.client.get(PATH), 404, "M_NOT_FOUND")
    dehydrate(alice)
    assert alice.client.post("/logout/all", {}).status_code == 200
    assert query(db_dsn, "SELECT count(*) FROM dehydrated_devices WHERE user_id = %s", (alice.user_id,)) == [(0,)]
    assert query(db_dsn, "SELECT count(*) FROM devices WHERE user_id = %s", (alice.user_id,)) == [(0,)]


def test_get_and_delete_without_a_dehydrated_device_are_404_not_found(alice):
    assert_error(alice.client.get(PATH), 404, "M_NOT_FOUND")
    assert_error(alice.client.delete(PATH), 404, "M_NOT_FOUND")


def test_another_users_dehydrated_device_is_not_theirs_to_read_or_delete(homeserver, alice):
    dehydrated = dehydrate(alice)
    bob = Device(homeserver)
    assert_error(bob.client.get(PATH), 404, "M_NOT_FOUND")
    assert_error(bob.client.delete(PATH), 404, "M_NOT_FOUND")
    assert_error(bob.client.post(events_path(dehydrated.device_id), {}), 403, "M_FORBIDDEN")
    assert alice.client.get(PATH).json()["device_id"] == dehydrated.device_id


# --- reading the events ---

def test_events_of_a_device_that_is_not_the_dehydrated_one_are_403_forbidden(homeserver, alice):
    assert_error(alice.client.post(events_path("NOPE"), {}), 403, "M_FORBIDDEN")  # none exists
    dehydrate(alice)
    assert_error(alice.client.post(events_path(alice.device_id), {}), 403, "M_FORBIDDEN")
    assert_error(alice.client.get(events_path("NOPE")), 403, "M_FORBIDDEN")


def test_get_form_of_events_answers_next_batch_only_while_more_may_follow(homeserver, alice):
    dehydrated = dehydrate(alice)
    bob = Device(homeserver)
    for n in range(3):
        send_to_device(bob.client, {alice.user_id: {dehydrated.device_id: {"n": n}}})
    resp = alice.client.get(events_path(dehydrated.device_id), params={"limit": 2})
    assert resp.status_code == 200, resp.text
    page = resp.json()
    assert [e["content"]["n"] for e in page["events"]] == [0, 1]
    resp = alice.client.get(events_path(dehydrated.device_id), params={"from": page["next_batch"], "limit": 2})
    assert resp.json() == {"events": [{"type": "org.example.ping", "sender": bob.user_id, "content": {"n": 2}}]}


def test_a_next_batch_beyond_the_stream_reads_nothing(alice):
    dehydrated = dehydrate(alice)
    got = read_events(alice.client, dehydrated.device_id, "d999999999999999999")
    assert got["events"] == [] and got["next_batch"].startswith("d")


@pytest.mark.parametrize("token", ["12", "d", "d-1", "d1e3", "dx", "d" + "9" * 19, "d١"])
def test_malformed_next_batch_is_400_invalid_param(alice, token):
    dehydrated = dehydrate(alice)
    assert_error(alice.client.post(events_path(dehydrated.device_id), {"next_batch": token}), 400, "M_INVALID_PARAM")
    assert_error(alice.client.get(events_path(dehydrated.device_id), params={"from": token}), 400, "M_INVALID_PARAM")


def test_bad_events_requests_are_refused_with_the_spec_errors(alice):
    dehydrated = dehydrate(alice)
    path = events_path(dehydrated.device_id)
    assert_error(alice.client.post(path, {"next_batch": 5}), 400, "M_BAD_JSON")
    assert_error(alice.client.post(path, [1]), 400, "M_BAD_JSON")
    assert_error(alice.client.post(path, {}, params={"limit": 0}), 400, "M_INVALID_PARAM")
    assert_error(alice.client.post(path, {}, params={"limit": "many"}), 400, "M_INVALID_PARAM")


# --- bad uploads: the spec's errors, and nothing created or replaced ---

def _bad_bodies(d: Dehydrated) -> list[tuple[dict, str]]:
    other = Dehydrated(d)
    return [
        ({k: v for k, v in d.body().items() if k != "device_id"}, "M_MISSING_PARAM"),
        (d.body(device_id=7), "M_BAD_JSON"),
        (d.body(device_id=""), "M_INVALID_PARAM"),
        (d.body(device_id="x" * 513), "M_INVALID_PARAM"),
        (d.body(device_id="a\x00b"), "M_INVALID_PARAM"),
        ({k: v for k, v in d.body().items() if k != "device_data"}, "M_MISSING_PARAM"),
        (d.body(device_data="pickle"), "M_BAD_JSON"),
        (d.body(device_data={"device_pickle": "x"}), "M_BAD_JSON"),
        (d.body(device_data={"algorithm": 2}), "M_BAD_JSON"),
        (d.body(device_data={"algorithm": "m.dehydration.v2", "x": "a\x00"}), "M_BAD_JSON"),
        (d.body(initial_device_display_name=3), "M_BAD_JSON"),
        (d.body(initial_device_display_name="n" * 101), "M_BAD_JSON"),
        (d.body(initial_device_display_name="a\x00"), "M_INVALID_PARAM"),
        ({k: v for k, v in d.body().items() if k != "device_keys"}, "M_MISSING_PARAM"),
        (d.body(device_keys="keys"), "M_BAD_JSON"),
        # Keys of another device, or not signed by the device's own key (the /keys/upload checks).
        (d.body(device_keys=other.device_keys()), "M_BAD_JSON"),
        (d.body(device_keys={**d.device_keys(), "signatures": other.device_keys()["signatures"]}),
         "M_INVALID_PARAM"),
        (d.body(one_time_keys={"no-algorithm": "k"}), "M_INVALID_PARAM"),
        (d.body(fallback_keys=[1]), "M_BAD_JSON"),
    ]


def test_bad_uploads_are_refused_and_keep_the_current_device(homeserver, db_dsn, alice):
    current = dehydrate(alice)
    for body, errcode in _bad_bodies(Dehydrated(alice)):
        assert_error(alice.client.put(PATH, body), 400, errcode)
    assert alice.client.get(PATH).json()["device_id"] == current.device_id
    assert device_ids(alice.client) == sorted([alice.device_id, current.device_id])
    assert query(db_dsn, "SELECT count(*) FROM devices WHERE user_id = %s", (alice.user_id,)) == [(2,)]
    assert_error(alice.client.put(PATH, data=b"{not json", headers={"Content-Type": "application/json"}),
                 400, "M_NOT_JSON")


def test_the_id_of_a_logged_in_device_cannot_be_taken(homeserver, alice):
    other_login = Device(homeserver, client=Client(homeserver).login(alice.user_id.split(":")[0][1:]))
    taken = Dehydrated(alice)
    taken.device_id, taken.key = other_login.device_id, other_login.key
    assert_error(taken.put(), 400, "M_INVALID_PARAM")
    assert_error(alice.client.get(PATH), 404, "M_NOT_FOUND")
    assert other_login.client.get("/account/whoami").status_code == 200


# --- access and discovery ---

def test_every_endpoint_needs_an_access_token(homeserver):
    anonymous = Client(homeserver)
    for method in ("GET", "PUT", "DELETE"):
        assert_error(anonymous.request(method, PATH, json={}), 401, "M_MISSING_TOKEN")
    for method in ("GET", "POST"):
        assert_error(anonymous.request(method, events_path("X"), json={}), 401, "M_MISSING_TOKEN")


def test_versions_advertises_msc3814(homeserver):
    assert Client(homeserver).get("/_matrix/client/versions").json()["unstable_features"]["org.matrix.msc3814"] is True


def test_no_worker_serves_the_dehydrated_device_paths_so_haproxy_sends_them_to_the_master():
    for kind in ROUTES:
        for method in ("GET", "PUT", "DELETE", "POST"):
            assert not serves(kind, method, PATH)
            assert not serves(kind, method, PATH + "/ABC/events")


# --- a real client encrypting to it (matrix-nio with vodozemac), and a rehydration decrypting ---

def _signed(account, user_id: str, device_id: str, obj: dict) -> dict:
    signature = account.sign(encode_canonical_json(obj)).to_base64()
    return {**obj, "signatures": {user_id: {f"ed25519:{device_id}": signature}}}


def _dehydrated_olm_device(client: Client, account) -> str:
    """Uploads `account` (a vodozemac Olm account) as the dehydrated device, as Element does:
    its ID is its curve25519 key."""
    device_id = account.curve25519_key.to_base64()
    device_keys = _signed(account, client.user_id, device_id, {
        "user_id": client.user_id, "device_id": device_id, "dehydrated": True,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{device_id}": device_id, f"ed25519:{device_id}": account.ed25519_key.to_base64()}})
    account.generate_one_time_keys(2)
    one_time_keys = {f"signed_curve25519:{key_id}": _signed(account, client.user_id, device_id, {"key": key.to_base64()})
                     for key_id, key in account.one_time_keys.items()}
    account.mark_keys_as_published()
    resp = client.put(PATH, {"device_id": device_id, "device_data": DEVICE_DATA, "device_keys": device_keys,
                             "one_time_keys": one_time_keys})
    assert resp.status_code == 200, resp.text
    return device_id


def test_a_nio_client_encrypts_to_the_dehydrated_device_and_rehydration_decrypts_its_message(homeserver):
    vodozemac = pytest.importorskip("vodozemac", reason="matrix-nio's e2e extra (vodozemac) is not installed")
    from tests.client.test_nio_e2e_keys import PASSWORD, run, two_clients_in_an_encrypted_room, upload_keys
    from tests.client.test_nio_encrypted_rooms import send_text

    async def scenario(new_user):
        alice, bob, room_id = await two_clients_in_an_encrypted_room(new_user)
        await upload_keys(bob)
        await bob.sync(timeout=0, since=bob.next_batch)
        alice_http = Client(homeserver, alice.access_token)
        alice_http.user_id = alice.user_id
        account = vodozemac.Account()
        device_id = _dehydrated_olm_device(alice_http, account)
        # Bob learns of the new device through device_lists.changed and shares the room key with it.
        await bob.sync(timeout=0, since=bob.next_batch)
        assert alice.user_id in bob.users_for_key_query
        await bob.keys_query()
        assert device_id in bob.device_store[alice.user_id]
        event_id = await send_text(bob, room_id, "sent while alice had no device")
        return alice_http, account, device_id, room_id, event_id, bob.olm.account.identity_keys["curve25519"]

    alice_http, account, device_id, room_id, event_id, bob_curve = run(homeserver, scenario)
    # A new login rehydrates: reads the device's events and decrypts the room key Bob sent it.
    login = Client(homeserver).login(alice_http.user_id.split(":")[0][1:], PASSWORD)
    assert login.get(PATH).json()["device_id"] == device_id
    events = read_events(login, device_id)["events"]
    assert [e["type"] for e in events] == ["m.room.encrypted"]
    ciphertext = events[0]["content"]["ciphertext"][device_id]
    assert ciphertext["type"] == 0
    _, plaintext = account.create_inbound_session(vodozemac.Curve25519PublicKey.from_base64(bob_curve),
                                                  vodozemac.PreKeyMessage.from_base64(ciphertext["body"]))
    room_key = json.loads(plaintext)
    assert room_key["type"] == "m.room_key" and room_key["content"]["room_id"] == room_id
    session = vodozemac.InboundGroupSession(vodozemac.SessionKey(room_key["content"]["session_key"]))
    event = login.get(f"/rooms/{q(room_id)}/event/{q(event_id)}").json()
    decrypted = json.loads(session.decrypt(vodozemac.MegolmMessage.from_base64(event["content"]["ciphertext"])
                                           ).plaintext)
    assert decrypted["content"]["body"] == "sent while alice had no device"
