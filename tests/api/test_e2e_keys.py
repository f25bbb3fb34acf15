"""Device keys, one-time keys and fallback keys (client-server API "End-to-End Encryption",
"Key management API"): POST /keys/upload, /keys/query, /keys/claim, and /sync's
device_one_time_keys_count and device_unused_fallback_key_types."""

import threading
import time
import uuid

import pytest

from hs.events.signing import generate_signing_key, sign_json
from tests.api.test_response_schemas import assert_matches_spec
from tests.api.test_sync import assert_error, sync
from tests.harness import Client, create, q, query

UPLOAD = "/_matrix/client/v3/keys/upload"
QUERY = "/_matrix/client/v3/keys/query"
CLAIM = "/_matrix/client/v3/keys/claim"
ALGORITHMS = ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"]


class Device:
    """A client device with an ed25519 identity key, signing what it uploads as the spec says."""

    def __init__(self, homeserver, display_name="Phone", client=None):
        self.client = client or Client(homeserver).register(f"k{uuid.uuid4().hex[:10]}",
                                                            initial_device_display_name=display_name)
        self.user_id, self.device_id = self.client.user_id, self.client.device_id
        self.key = generate_signing_key(self.device_id)

    def another_device(self, homeserver) -> "Device":
        return Device(homeserver, client=Client(homeserver).login(self.user_id.split(":")[0][1:]))

    def sign(self, obj: dict) -> dict:
        return sign_json(obj, self.user_id, self.key)

    def device_keys(self, **overrides) -> dict:
        keys = {"user_id": self.user_id, "device_id": self.device_id, "algorithms": ALGORITHMS,
                "keys": {f"curve25519:{self.device_id}": "curve" + self.device_id,
                         f"ed25519:{self.device_id}": self.key.verify_key_base64}}
        keys.update(overrides)
        return self.sign(keys)

    def otks(self, *key_ids, prefix="otk") -> dict:
        return {f"signed_curve25519:{k}": self.sign({"key": f"{prefix}-{k}"}) for k in key_ids}

    def fallback(self, key_id, key="fb") -> dict:
        return {f"signed_curve25519:{key_id}": self.sign({"key": key, "fallback": True})}

    def upload(self, **body):
        return self.client.post("/keys/upload", body)


def upload_ok(device, **body) -> dict:
    resp = device.upload(**body)
    assert resp.status_code == 200, resp.text
    return resp.json()["one_time_key_counts"]


def claim(client, wanted: dict) -> dict:
    resp = client.post("/keys/claim", {"one_time_keys": wanted})
    assert resp.status_code == 200, resp.text
    return resp.json()


def claim_one(client, device) -> dict:
    return claim(client, {device.user_id: {device.device_id: "signed_curve25519"}})["one_time_keys"]


def stored_keys(db_dsn, device) -> tuple:
    """What the database holds for the device: (device keys rows, one-time key ids, fallback rows)."""
    where = (device.user_id, device.device_id)
    return (query(db_dsn, "SELECT key_json FROM e2e_device_keys WHERE user_id = %s AND device_id = %s", where),
            query(db_dsn, "SELECT key_id FROM e2e_one_time_keys WHERE user_id = %s AND device_id = %s"
                          " ORDER BY key_id", where),
            query(db_dsn, "SELECT key_id, used FROM e2e_fallback_keys WHERE user_id = %s AND device_id = %s", where))


@pytest.fixture
def alice(homeserver):
    return Device(homeserver, "Alice's phone")


@pytest.fixture
def bob(homeserver):
    return Device(homeserver, "Bob's laptop")


# --- upload and query ---

def test_uploaded_device_keys_are_returned_to_others_with_the_device_display_name(alice, bob):
    resp = alice.upload(device_keys=alice.device_keys())
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"one_time_key_counts": {"signed_curve25519": 0}}
    assert_matches_spec(resp, UPLOAD)
    resp = bob.client.post("/keys/query", {"device_keys": {alice.user_id: []}, "timeout": 10000})
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, QUERY)
    expected = dict(alice.device_keys(), unsigned={"device_display_name": "Alice's phone"})
    assert resp.json() == {"device_keys": {alice.user_id: {alice.device_id: expected}}, "failures": {}}


def test_query_by_device_id_returns_only_those_devices_that_have_keys(homeserver, alice):
    upload_ok(alice, device_keys=alice.device_keys())
    second = alice.another_device(homeserver)
    upload_ok(second, device_keys=second.device_keys())
    third_without_keys = alice.another_device(homeserver)
    everything = claim_free_query(alice.client, {alice.user_id: []})
    assert sorted(everything[alice.user_id]) == sorted([alice.device_id, second.device_id])
    chosen = claim_free_query(alice.client, {alice.user_id: [second.device_id, third_without_keys.device_id, "NOPE"]})
    assert list(chosen[alice.user_id]) == [second.device_id]
    # A device without a display name has none in `unsigned` (as Synapse).
    assert chosen[alice.user_id][second.device_id]["unsigned"] == {}


def claim_free_query(client, wanted) -> dict:
    resp = client.post("/keys/query", {"device_keys": wanted})
    assert resp.status_code == 200, resp.text
    return resp.json()["device_keys"]


def test_query_of_an_unknown_local_user_is_empty_and_a_remote_user_is_a_failure(alice):
    resp = alice.client.post("/keys/query", {"device_keys": {"@nobody:test.local": [],
                                                             "@carol:elsewhere.example": ["DEV"]}})
    assert resp.status_code == 200, resp.text
    assert resp.json()["device_keys"] == {"@nobody:test.local": {}}
    # elsewhere.example does not resolve: its server cannot be asked.
    assert list(resp.json()["failures"]) == ["elsewhere.example"]
    assert resp.json()["failures"]["elsewhere.example"]["status"] == 503


@pytest.mark.parametrize("body,status,errcode", [
    ({}, 400, "M_MISSING_PARAM"),
    ({"device_keys": []}, 400, "M_BAD_JSON"),
    ({"device_keys": {"@a:test.local": "DEV"}}, 400, "M_BAD_JSON"),
    ({"device_keys": {"@a:test.local": [1]}}, 400, "M_BAD_JSON"),
    ({"device_keys": {"not a user": []}}, 400, "M_INVALID_PARAM"),
    ({"device_keys": {"@a:test.local": ["D\x00"]}}, 400, "M_BAD_JSON"),
])
def test_malformed_query_is_refused(alice, body, status, errcode):
    assert_error(alice.client.post("/keys/query", body), status, errcode)


@pytest.mark.parametrize("path", ["/keys/upload", "/keys/query", "/keys/claim"])
def test_key_endpoints_need_an_access_token(homeserver, path):
    assert_error(Client(homeserver).post(path, {}), 401, "M_MISSING_TOKEN")


def test_reuploading_identical_device_keys_is_accepted(alice):
    upload_ok(alice, device_keys=alice.device_keys())
    upload_ok(alice, device_keys=alice.device_keys())


def test_different_device_keys_for_the_same_device_are_refused_and_the_first_kept(db_dsn, alice):
    upload_ok(alice, device_keys=alice.device_keys())
    original = alice.device_keys()
    alice.key = generate_signing_key(alice.device_id)
    assert_error(alice.upload(device_keys=alice.device_keys()), 400, "M_INVALID_PARAM")
    assert stored_keys(db_dsn, alice)[0] == [(original,)]


def test_device_keys_must_be_for_the_requesting_user_and_device(alice, bob):
    assert_error(alice.upload(device_keys=alice.device_keys(user_id=bob.user_id)), 400, "M_BAD_JSON")
    assert_error(alice.upload(device_keys=alice.device_keys(device_id="OTHER")), 400, "M_BAD_JSON")
    wrong_key_id = alice.device_keys(keys={"ed25519:OTHER": alice.key.verify_key_base64,
                                           f"ed25519:{alice.device_id}": alice.key.verify_key_base64})
    assert_error(alice.upload(device_keys=wrong_key_id), 400, "M_INVALID_PARAM")


@pytest.mark.parametrize("mangle,errcode", [
    (lambda keys, device: keys.update(algorithms="m.megolm.v1.aes-sha2"), "M_BAD_JSON"),
    (lambda keys, device: keys.update(keys=[]), "M_BAD_JSON"),
    (lambda keys, device: keys.pop("signatures"), "M_BAD_JSON"),
    (lambda keys, device: keys["keys"].pop(f"ed25519:{device.device_id}"), "M_INVALID_PARAM"),
    (lambda keys, device: keys["keys"].update({f"ed25519:{device.device_id}": "notbase64!"}), "M_INVALID_PARAM"),
    # Changed after signing: the signature no longer covers what is uploaded.
    (lambda keys, device: keys["algorithms"].append("m.other"), "M_INVALID_PARAM"),
    (lambda keys, device: keys["signatures"][device.user_id].update(
        {f"ed25519:{device.device_id}": generate_signing_key().verify_key_base64}), "M_INVALID_PARAM"),
])
def test_malformed_or_badly_signed_device_keys_are_refused_and_not_stored(db_dsn, alice, mangle, errcode):
    keys = alice.device_keys(algorithms=list(ALGORITHMS))
    mangle(keys, alice)
    assert_error(alice.upload(device_keys=keys), 400, errcode)
    assert stored_keys(db_dsn, alice) == ([], [], [])


def test_unsigned_is_not_stored_with_the_device_keys(alice, bob):
    upload_ok(alice, device_keys=dict(alice.device_keys(), unsigned={"device_display_name": "spoofed"}))
    keys = claim_free_query(bob.client, {alice.user_id: []})[alice.user_id][alice.device_id]
    assert keys["unsigned"] == {"device_display_name": "Alice's phone"}


# --- one-time and fallback keys ---

def test_one_time_key_counts_grow_with_uploads_and_a_repeated_upload_adds_nothing(alice):
    assert upload_ok(alice, one_time_keys=alice.otks("A", "B")) == {"signed_curve25519": 2}
    assert upload_ok(alice, one_time_keys=alice.otks("A", "B")) == {"signed_curve25519": 2}
    assert upload_ok(alice, one_time_keys={"curve25519:C": "plain"}) == {"signed_curve25519": 2, "curve25519": 1}


def test_a_one_time_key_id_reused_with_another_key_fails_the_whole_upload(db_dsn, alice):
    upload_ok(alice, one_time_keys=alice.otks("A"))
    resp = alice.upload(device_keys=alice.device_keys(), fallback_keys=alice.fallback("F"),
                        one_time_keys={**alice.otks("B"), **alice.otks("A", prefix="other")})
    assert_error(resp, 400, "M_UNKNOWN")
    assert stored_keys(db_dsn, alice) == ([], [("A",)], [])


@pytest.mark.parametrize("body,status,errcode", [
    ({"one_time_keys": ["k"]}, 400, "M_BAD_JSON"),
    ({"one_time_keys": {"nocolon": "k"}}, 400, "M_INVALID_PARAM"),
    ({"one_time_keys": {":id": "k"}}, 400, "M_INVALID_PARAM"),
    ({"one_time_keys": {"signed_curve25519:A": 5}}, 400, "M_BAD_JSON"),
    ({"one_time_keys": {"signed_curve25519:A": {"signatures": {}}}}, 400, "M_BAD_JSON"),
    ({"one_time_keys": {"signed_curve25519:A": "nul\x00"}}, 400, "M_BAD_JSON"),
    ({"one_time_keys": {"signed_curve25519:A": {"key": "k", "x\x00": 1}}}, 400, "M_BAD_JSON"),
    ({"one_time_keys": {f"signed_curve25519:{'x' * 300}": "k"}}, 400, "M_INVALID_PARAM"),
    ({"one_time_keys": {"signed_curve25519:A": {"key": "k" * 20000}}}, 413, "M_TOO_LARGE"),
    ({"one_time_keys": {f"curve25519:{i}": "k" for i in range(201)}}, 413, "M_TOO_LARGE"),
    ({"fallback_keys": {"curve25519:A": "k", "curve25519:B": "k"}}, 400, "M_INVALID_PARAM"),
    ({"fallback_keys": "k"}, 400, "M_BAD_JSON"),
    ({"device_keys": "k"}, 400, "M_BAD_JSON"),
])
def test_malformed_uploads_are_refused_and_store_nothing(db_dsn, alice, body, status, errcode):
    body = {"one_time_keys": alice.otks("OK"), **body}
    assert_error(alice.upload(**body), status, errcode)
    assert stored_keys(db_dsn, alice) == ([], [], [])


def test_a_device_holds_a_bounded_number_of_unclaimed_one_time_keys(db_dsn, alice):
    for batch in range(5):
        upload_ok(alice, one_time_keys={f"curve25519:{batch}-{i}": "k" for i in range(200)})
    assert_error(alice.upload(one_time_keys={"curve25519:extra": "k"}), 400, "M_INVALID_PARAM")
    assert len(stored_keys(db_dsn, alice)[1]) == 1000


def test_claim_hands_out_each_one_time_key_once_then_the_fallback_key(alice, bob):
    upload_ok(alice, one_time_keys=alice.otks("A", "B"), fallback_keys=alice.fallback("F"))
    resp = bob.client.post("/keys/claim", {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}},
                                           "timeout": 10000})
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, CLAIM)
    assert resp.json() == {"one_time_keys": {alice.user_id: {alice.device_id: alice.otks("A")}}, "failures": {}}
    assert claim_one(bob.client, alice) == {alice.user_id: {alice.device_id: alice.otks("B")}}
    fallback = {alice.user_id: {alice.device_id: alice.fallback("F")}}
    assert claim_one(bob.client, alice) == fallback
    # The fallback key is used, not consumed: it keeps being handed out until replaced.
    assert claim_one(bob.client, alice) == fallback


def test_sync_carries_key_counts_and_unused_fallback_types_and_follows_claims(alice, bob):
    initial = sync(alice.client)
    assert initial["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert initial["device_unused_fallback_key_types"] == []
    upload_ok(alice, one_time_keys=alice.otks("A"), fallback_keys=alice.fallback("F"))
    body = sync(alice.client, since=initial["next_batch"], timeout=0)
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 1}
    assert body["device_unused_fallback_key_types"] == ["signed_curve25519"]
    claim_one(bob.client, alice)
    assert sync(alice.client, since=body["next_batch"], timeout=0)["device_one_time_keys_count"] == \
        {"signed_curve25519": 0}
    claim_one(bob.client, alice)
    assert sync(alice.client, since=body["next_batch"], timeout=0)["device_unused_fallback_key_types"] == []
    # Every device has counts of its own.
    assert sync(alice.another_device(bob.client.server).client)["device_one_time_keys_count"] == \
        {"signed_curve25519": 0}


def test_same_fallback_key_again_stays_used_and_a_new_one_is_unused(alice, bob):
    upload_ok(alice, fallback_keys=alice.fallback("F"))
    claim_one(bob.client, alice)
    upload_ok(alice, fallback_keys=alice.fallback("F"))
    assert sync(alice.client)["device_unused_fallback_key_types"] == []
    upload_ok(alice, fallback_keys=alice.fallback("G", key="fb2"))
    assert sync(alice.client)["device_unused_fallback_key_types"] == ["signed_curve25519"]
    assert claim_one(bob.client, alice) == {alice.user_id: {alice.device_id: alice.fallback("G", key="fb2")}}


def test_a_claim_does_not_wake_a_parked_sync(alice, bob):
    upload_ok(alice, one_time_keys=alice.otks("A"))
    since = sync(alice.client)["next_batch"]
    timer = threading.Timer(0.3, claim_one, (bob.client, alice))
    timer.start()
    started = time.monotonic()
    body = sync(alice.client, since=since, timeout=1500)
    timer.join()
    assert time.monotonic() - started >= 1.4
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 0}


def test_claims_for_unknown_users_devices_or_algorithms_are_absent_and_remote_ones_fail(alice, bob):
    upload_ok(alice, one_time_keys=alice.otks("A"))
    result = claim(bob.client, {alice.user_id: {"NODEVICE": "signed_curve25519"},
                                bob.user_id: {bob.device_id: "signed_curve25519"},
                                "@nobody:test.local": {"D": "signed_curve25519"},
                                "@carol:elsewhere.example": {"D": "signed_curve25519"}})
    assert result["one_time_keys"] == {} and list(result["failures"]) == ["elsewhere.example"]
    assert result["failures"]["elsewhere.example"]["status"] == 503
    assert claim(bob.client, {alice.user_id: {alice.device_id: "curve25519"}})["one_time_keys"] == {}


@pytest.mark.parametrize("body,errcode", [
    ({}, "M_MISSING_PARAM"),
    ({"one_time_keys": []}, "M_BAD_JSON"),
    ({"one_time_keys": {"@a:test.local": ["D"]}}, "M_BAD_JSON"),
    ({"one_time_keys": {"@a:test.local": {"D": 1}}}, "M_BAD_JSON"),
    ({"one_time_keys": {"@a:test.local": {"D": "alg\x00"}}}, "M_BAD_JSON"),
    ({"one_time_keys": {"nobody": {"D": "alg"}}}, "M_INVALID_PARAM"),
])
def test_malformed_claims_are_refused(alice, body, errcode):
    assert_error(alice.client.post("/keys/claim", body), 400, errcode)


def concurrent_claims(owner, claimers) -> list[dict]:
    """Each claimer's claim of the owner's device's key, all released at once from threads."""
    barrier, results = threading.Barrier(len(claimers)), []

    def run(claimer):
        barrier.wait()
        results.append(claim_one(claimer.client, owner)[owner.user_id][owner.device_id])

    threads = [threading.Thread(target=run, args=(c,)) for c in claimers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == len(claimers)
    return results


def test_concurrent_claims_never_hand_out_the_same_one_time_key(homeserver, alice):
    upload_ok(alice, one_time_keys=alice.otks("A", "B", "C"), fallback_keys=alice.fallback("F"))
    results = concurrent_claims(alice, [Device(homeserver) for _ in range(10)])
    got = sorted(next(iter(r)) for r in results)
    assert got == ["signed_curve25519:A", "signed_curve25519:B", "signed_curve25519:C"] + ["signed_curve25519:F"] * 7


def test_two_concurrent_claims_of_the_last_key_get_it_once_and_the_fallback_once(homeserver, alice):
    claimers = [Device(homeserver), Device(homeserver)]
    for round_ in range(5):
        upload_ok(alice, one_time_keys=alice.otks(f"last{round_}"), fallback_keys=alice.fallback("F"))
        results = concurrent_claims(alice, claimers)
        assert sorted(results, key=lambda r: next(iter(r))) == [alice.fallback("F"), alice.otks(f"last{round_}")]


def test_keys_of_a_logged_out_device_are_gone(homeserver, db_dsn, alice, bob):
    upload_ok(alice, device_keys=alice.device_keys(), one_time_keys=alice.otks("A"), fallback_keys=alice.fallback("F"))
    assert alice.client.post("/logout", {}).status_code == 200
    assert stored_keys(db_dsn, alice) == ([], [], [])
    assert claim_free_query(bob.client, {alice.user_id: []}) == {alice.user_id: {}}
    assert claim_one(bob.client, alice) == {}


def test_devices_woken_together_each_get_their_own_key_counts(homeserver, alice, bob):
    # One message wakes every parked sync at once; their key counts are read in shared queries.
    devices = [alice, bob, alice.another_device(homeserver), bob.another_device(homeserver)]
    for n, device in enumerate(devices):
        if n:
            upload_ok(device, one_time_keys=device.otks(*[f"k{i}" for i in range(n)]))
    room_id = create(alice.client, preset="public_chat")
    assert bob.client.post(f"/join/{q(room_id)}", {}).status_code == 200
    tokens = [sync(d.client)["next_batch"] for d in devices]
    results = [None] * len(devices)

    def park(i):
        results[i] = sync(devices[i].client, since=tokens[i], timeout=20000)

    threads = [threading.Thread(target=park, args=(i,)) for i in range(len(devices))]
    for t in threads:
        t.start()
    time.sleep(0.5)
    alice.client.put(f"/rooms/{q(room_id)}/send/m.room.message/wake", {"msgtype": "m.text", "body": "hi"})
    for t in threads:
        t.join(30)
    assert [r["device_one_time_keys_count"] for r in results] == [{"signed_curve25519": n} for n in range(4)]
