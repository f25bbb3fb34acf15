"""Cross-signing (client-server API "Cross-signing"): POST /keys/device_signing/upload,
POST /keys/signatures/upload and the cross-signing sections of /keys/query. Keys are real
ed25519 keys (pynacl) and signatures are made with signedjson, as a client makes them."""

import nacl.signing
import pytest
from signedjson.key import encode_verify_key_base64
from signedjson.sign import sign_json

from tests.api.test_devices import start_uia
from tests.api.test_e2e_keys import Device
from tests.api.test_response_schemas import assert_matches_spec
from tests.api.test_sync import assert_error, create, post, sync
from tests.harness import query

SIGNING_UPLOAD = "/keys/device_signing/upload"
SIGNATURES_UPLOAD = "/keys/signatures/upload"
PASSWORD = "correct horse battery"


class CrossSigningKey:
    def __init__(self):
        self.key = nacl.signing.SigningKey.generate()
        self.public = encode_verify_key_base64(self.key.verify_key)
        self.key.alg, self.key.version = "ed25519", self.public

    @property
    def key_id(self) -> str:
        return f"ed25519:{self.public}"

    def body(self, user_id, usage, signer=None) -> dict:
        obj = {"user_id": user_id, "usage": [usage], "keys": {self.key_id: self.public}}
        return sign_json(obj, user_id, (signer or self).key)

    def sign(self, obj, user_id) -> dict:
        return sign_json(obj, user_id, self.key)


class Identity:
    """A device with its user's three cross-signing keys."""

    def __init__(self, homeserver):
        self.device = Device(homeserver)
        self.client, self.user_id = self.device.client, self.device.user_id
        self.master, self.ssk, self.usk = CrossSigningKey(), CrossSigningKey(), CrossSigningKey()

    def keys_body(self) -> dict:
        return {"master_key": self.master.body(self.user_id, "master"),
                "self_signing_key": self.ssk.body(self.user_id, "self_signing", self.master),
                "user_signing_key": self.usk.body(self.user_id, "user_signing", self.master)}

    def upload_keys(self, body=None):
        return self.client.post(SIGNING_UPLOAD, self.keys_body() if body is None else body)

    def with_device_keys(self) -> "Identity":
        assert self.device.upload(device_keys=self.device.device_keys()).status_code == 200
        return self


def keys_query(client, *user_ids) -> dict:
    return post(client, "/keys/query", {"device_keys": {u: [] for u in user_ids}})


def stored_key_types(db_dsn, user_id) -> list:
    return query(db_dsn, "SELECT key_type FROM e2e_cross_signing_keys WHERE user_id = %s ORDER BY key_type",
                 (user_id,))


def uia_password(identity) -> dict:
    return {"type": "m.login.password", "password": PASSWORD,
            "identifier": {"type": "m.id.user", "user": identity.user_id}}


@pytest.fixture
def alice(homeserver):
    return Identity(homeserver).with_device_keys()


@pytest.fixture
def bob(homeserver):
    return Identity(homeserver).with_device_keys()


def test_first_upload_needs_no_uia_and_others_see_master_and_self_signing_keys_only(alice, bob):
    assert alice.upload_keys().status_code == 200
    own = keys_query(alice.client, alice.user_id)
    body = alice.keys_body()
    assert own["master_keys"] == {alice.user_id: body["master_key"]}
    assert own["self_signing_keys"] == {alice.user_id: body["self_signing_key"]}
    assert own["user_signing_keys"] == {alice.user_id: body["user_signing_key"]}
    seen = keys_query(bob.client, alice.user_id)
    assert seen["master_keys"] == {alice.user_id: body["master_key"]}
    assert seen["self_signing_keys"] == {alice.user_id: body["self_signing_key"]}
    assert "user_signing_keys" not in seen
    resp = bob.client.post("/keys/query", {"device_keys": {alice.user_id: []}})
    assert_matches_spec(resp, "/_matrix/client/v3/keys/query")
    assert resp.json() == seen


def test_reuploading_the_same_keys_needs_no_uia_but_replacing_them_does(db_dsn, alice):
    assert alice.upload_keys().status_code == 200
    assert alice.upload_keys().status_code == 200
    old_master = alice.master.public
    alice.master, alice.ssk = CrossSigningKey(), CrossSigningKey()
    refused = alice.upload_keys()
    assert refused.status_code == 401, refused.text
    assert refused.json()["flows"] == [{"stages": ["m.login.password"]}]
    assert list(keys_query(alice.client, alice.user_id)["master_keys"][alice.user_id]["keys"]) == \
        [f"ed25519:{old_master}"]
    body = {**alice.keys_body(), "auth": {**uia_password(alice), "session": refused.json()["session"]}}
    assert alice.upload_keys(body).status_code == 200, alice.upload_keys(body).text
    assert keys_query(alice.client, alice.user_id)["master_keys"][alice.user_id]["keys"] == \
        {alice.master.key_id: alice.master.public}



@pytest.mark.parametrize("mangle, errcode", [
    (lambda a, b: b["master_key"].update(usage=["self_signing"]), "M_INVALID_PARAM"),
    (lambda a, b: b["master_key"].update(user_id="@someone:test.local"), "M_INVALID_PARAM"),
    (lambda a, b: b["master_key"]["keys"].update({"ed25519:other": "other"}), "M_INVALID_PARAM"),
    (lambda a, b: b.update(self_signing_key=a.ssk.body(a.user_id, "self_signing")), "M_INVALID_SIGNATURE"),
    (lambda a, b: b.update(user_signing_key=a.usk.body(a.user_id, "user_signing", CrossSigningKey())),
     "M_INVALID_SIGNATURE"),
    (lambda a, b: b.update(master_key="nope"), "M_BAD_JSON"),
])
def test_invalid_signing_keys_are_refused_and_nothing_is_stored(db_dsn, alice, mangle, errcode):
    body = alice.keys_body()
    mangle(alice, body)
    assert_error(alice.upload_keys(body), 400, errcode)
    assert stored_key_types(db_dsn, alice.user_id) == []


def test_self_signing_key_alone_is_refused_without_a_master_key(db_dsn, alice):
    body = alice.keys_body()
    del body["master_key"]
    assert_error(alice.upload_keys(body), 400, "M_MISSING_PARAM")
    assert stored_key_types(db_dsn, alice.user_id) == []


def test_device_and_master_key_signatures_are_stored_and_returned_by_query(alice, bob):
    assert alice.upload_keys().status_code == 200
    assert bob.upload_keys().status_code == 200
    device_keys = alice.device.device_keys()
    signed_device = alice.ssk.sign(dict(device_keys), alice.user_id)
    signed_own_master = alice.device.sign(alice.master.body(alice.user_id, "master"))
    signed_bob_master = alice.usk.sign(bob.master.body(bob.user_id, "master"), alice.user_id)
    resp = alice.client.post(SIGNATURES_UPLOAD, {
        alice.user_id: {alice.device.device_id: signed_device, alice.master.public: signed_own_master},
        bob.user_id: {bob.master.public: signed_bob_master}})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"failures": {}}

    seen_by_bob = keys_query(bob.client, alice.user_id, bob.user_id)
    device_sigs = seen_by_bob["device_keys"][alice.user_id][alice.device.device_id]["signatures"][alice.user_id]
    assert device_sigs[alice.ssk.key_id] == signed_device["signatures"][alice.user_id][alice.ssk.key_id]
    master_sigs = seen_by_bob["master_keys"][alice.user_id]["signatures"][alice.user_id]
    device_key_id = f"ed25519:{alice.device.device_id}"
    assert master_sigs[device_key_id] == signed_own_master["signatures"][alice.user_id][device_key_id]
    # Whom Alice verified is hers to know.
    assert alice.user_id not in seen_by_bob["master_keys"][bob.user_id]["signatures"]
    seen_by_alice = keys_query(alice.client, bob.user_id)
    assert seen_by_alice["master_keys"][bob.user_id]["signatures"][alice.user_id][alice.usk.key_id] == \
        signed_bob_master["signatures"][alice.user_id][alice.usk.key_id]


def test_bad_signatures_are_reported_per_key_and_the_good_ones_stored(db_dsn, alice, bob):
    assert alice.upload_keys().status_code == 200
    assert bob.upload_keys().status_code == 200
    forged = alice.ssk.sign(alice.device.device_keys(), alice.user_id)
    forged["signatures"][alice.user_id][alice.ssk.key_id] = \
        alice.ssk.sign({"other": "object"}, alice.user_id)["signatures"][alice.user_id][alice.ssk.key_id]
    altered = alice.usk.sign({**bob.master.body(bob.user_id, "master"), "usage": ["master", "x"]}, alice.user_id)
    good = alice.device.sign(alice.master.body(alice.user_id, "master"))
    resp = alice.client.post(SIGNATURES_UPLOAD, {
        alice.user_id: {alice.device.device_id: forged, "NODEVICE": {"signatures": {}},
                        alice.master.public: good},
        bob.user_id: {bob.master.public: altered, bob.device.device_id: {"signatures": {}}}})
    assert resp.status_code == 200, resp.text
    failures = resp.json()["failures"]
    assert {u: {k: v["errcode"] for k, v in by_key.items()} for u, by_key in failures.items()} == {
        alice.user_id: {alice.device.device_id: "M_INVALID_SIGNATURE", "NODEVICE": "M_NOT_FOUND"},
        bob.user_id: {bob.master.public: "M_INVALID_SIGNATURE", bob.device.device_id: "M_NOT_FOUND"}}
    assert query(db_dsn, "SELECT signer_key_id, target_id FROM e2e_cross_signing_signatures"
                         " WHERE signer_user_id = %s", (alice.user_id,)) == \
        [(f"ed25519:{alice.device.device_id}", alice.master.public)]


def test_signing_keys_and_signatures_show_the_user_in_a_room_mates_device_lists(homeserver, alice, bob):
    room_id = create(alice.client)
    post(alice.client, f"/rooms/{room_id}/invite", {"user_id": bob.user_id})
    post(bob.client, f"/join/{room_id}")
    since = sync(bob.client)["next_batch"]
    assert alice.upload_keys().status_code == 200
    after_keys = sync(bob.client, since=since, timeout=0)
    assert after_keys["device_lists"]["changed"] == [alice.user_id]
    signed = alice.ssk.sign(alice.device.device_keys(), alice.user_id)
    assert alice.client.post(SIGNATURES_UPLOAD, {alice.user_id: {alice.device.device_id: signed}}).json() == \
        {"failures": {}}
    assert sync(bob.client, since=after_keys["next_batch"], timeout=0)["device_lists"]["changed"] == [alice.user_id]


@pytest.mark.parametrize("path", [SIGNING_UPLOAD, SIGNATURES_UPLOAD])
def test_cross_signing_endpoints_need_an_access_token(homeserver, alice, path):
    alice.client.access_token = None
    assert_error(alice.client.post(path, {}), 401, "M_MISSING_TOKEN")


def test_deactivating_the_account_deletes_its_cross_signing_keys(db_dsn, alice):
    assert alice.upload_keys().status_code == 200
    session = start_uia(alice.client, "POST", "/account/deactivate", {})
    resp = alice.client.post("/account/deactivate", {"auth": dict(uia_password(alice), session=session)})
    assert resp.status_code == 200, resp.text
    assert stored_key_types(db_dsn, alice.user_id) == []
