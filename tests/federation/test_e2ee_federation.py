"""End-to-end encryption across servers: matrix-nio clients with encryption (vodozemac), one on a
real Synapse and one on ours, query and claim each other's keys over federation, share Megolm
sessions over to-device messages and decrypt each other's messages; a device that logs in later
on either side is seen through the device list updates and gets the keys of new messages.

Then, with a peer played by the test: what our server answers other servers (/user/keys/query,
/user/keys/claim, /user/devices), how it keeps a remote user's device list in step from
m.device_list_update EDUs (applied in order, resynced on a gap) and m.signing_key_update, and
what /keys/query reports for servers that cannot be reached."""

import asyncio
import contextlib
import itertools
import tempfile
import time
import uuid

import pytest
import requests

pytest.importorskip("vodozemac", reason="matrix-nio's e2e extra (vodozemac) is not installed")

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    KeysQueryResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomPreset,
    SyncResponse,
)

from hs.events.signing import generate_signing_key, sign_json
from tests.client.test_nio_e2e_keys import ENCRYPTION, PASSWORD, login_another_device, upload_keys
from tests.client.test_nio_encrypted_rooms import assert_received, send_text
from tests.client.test_nio_sync import sync_until
from tests.federation.fake_peer import FakePeer
from tests.federation_fixture import SyncWatcher, create_room, ok, register
from tests.harness import Client, assert_error, free_port, q, wait_for

V1 = "/_matrix/federation/v1"
_names = itertools.count()


# --- two nio clients, one per server --------------------------------------------------------------

async def _new_user(stack, server, prefix: str) -> AsyncClient:
    store = stack.enter_context(tempfile.TemporaryDirectory())
    client = AsyncClient(server.base_url, "", store_path=store,
                         config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False))
    stack.push_async_callback(client.close)
    resp = await client.register(f"{prefix}{next(_names)}_{int(time.time() * 1000) % 10**8}", PASSWORD,
                                 device_name=f"{prefix}'s device")
    assert isinstance(resp, RegisterResponse), resp
    assert client.olm is not None
    await upload_keys(client)
    return client


async def _sees_devices(me: AsyncClient, other: AsyncClient, device_ids: set[str], timeout_s: float = 30):
    """Syncs (querying keys whenever nio wants to) until `me` knows exactly `device_ids` of `other`."""
    deadline = time.monotonic() + timeout_s

    def known() -> set[str]:
        return set(me.device_store[other.user_id]) if other.user_id in me.device_store.users else set()
    while known() != device_ids:
        assert time.monotonic() < deadline, f"{me.user_id} sees {known()} of {other.user_id}, not {device_ids}"
        resp = await me.sync(timeout=1000, since=me.next_batch)
        assert isinstance(resp, SyncResponse), resp
        if me.users_for_key_query:
            queried = await me.keys_query()
            assert isinstance(queried, KeysQueryResponse), queried
            assert not queried.failures, queried.failures


@pytest.fixture(params=["ours_hosts", "synapse_hosts", "both_ours"])
def hosts(request, synapse, ours, ours_b):
    return {"ours_hosts": (ours, synapse), "synapse_hosts": (synapse, ours), "both_ours": (ours, ours_b)}[
        request.param]


def test_nio_encrypted_conversation_across_servers_with_a_device_joining_later(hosts):
    host, guest = hosts

    async def main():
        async with contextlib.AsyncExitStack() as stack:
            alice, bob = await _new_user(stack, host, "e2alice"), await _new_user(stack, guest, "e2bob")
            created = await alice.room_create(name="secret", preset=RoomPreset.private_chat,
                                              initial_state=[ENCRYPTION], invite=[bob.user_id])
            assert isinstance(created, RoomCreateResponse), created
            room_id = created.room_id
            await sync_until(bob, lambda: room_id in bob.invited_rooms, timeout_s=30)
            assert isinstance(await bob.join(room_id), JoinResponse)
            await sync_until(alice, lambda: room_id in alice.rooms and bob.user_id in alice.rooms[room_id].users,
                             timeout_s=30)
            await sync_until(bob, lambda: room_id in bob.rooms and bob.rooms[room_id].encrypted, timeout_s=30)

            # Each finds the other's device over federation, claims a one-time key of it (nio
            # checks both signatures) and sends its Megolm session over to-device.
            await _sees_devices(alice, bob, {bob.device_id})
            await _sees_devices(bob, alice, {alice.device_id})
            for sender, receiver in ((alice, bob), (bob, alice)):
                body = f"from {sender.user_id}, secretly"
                event_id = await send_text(sender, room_id, body)
                await assert_received(receiver, sender, room_id, event_id, body)

            # A device of the guest's user that logs in later is announced to the host's server
            # (m.device_list_update), seen by alice's client and sent the next message's keys.
            laptop = await login_another_device(stack, guest.base_url, bob.user_id, "bob's laptop")
            assert isinstance(await laptop.sync(timeout=0, full_state=True), SyncResponse)
            await _sees_devices(alice, bob, {bob.device_id, laptop.device_id})
            event_id = await send_text(alice, room_id, "for both of bob's devices")
            for device in (bob, laptop):
                await assert_received(device, alice, room_id, event_id, "for both of bob's devices")

            # And the other way: a new device of alice's is seen by bob's client.
            tablet = await login_another_device(stack, host.base_url, alice.user_id, "alice's tablet")
            assert isinstance(await tablet.sync(timeout=0, full_state=True), SyncResponse)
            await _sees_devices(bob, alice, {alice.device_id, tablet.device_id})
            event_id = await send_text(bob, room_id, "for both of alice's devices")
            for device in (alice, tablet):
                await assert_received(device, bob, room_id, event_id, "for both of alice's devices")

    asyncio.run(main())


# --- a peer played by the test ---------------------------------------------------------------------

def serve_answers(peer: FakePeer) -> dict:
    """The peer's canned answers, {(method, unquoted path): (status, body)}, emptied first."""
    peer.answers.clear()
    return peer.answers


def device_keys(user_id: str, device_id: str) -> dict:
    key = generate_signing_key(device_id)
    keys = {"user_id": user_id, "device_id": device_id, "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
            "keys": {f"ed25519:{device_id}": key.verify_key_base64, f"curve25519:{device_id}": "c" * 43}}
    return sign_json(keys, user_id, key)


def cross_signing_key(user_id: str, usage: str) -> dict:
    public = generate_signing_key().verify_key_base64
    return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{public}": public}}


class LocalWithKeys:
    """A user of ours with two devices: one with device keys, one-time keys and cross-signing
    keys uploaded, one without keys."""

    def __init__(self, ours):
        self.client = register(ours, "k")
        self.user_id, self.device_id = self.client.user_id, self.client.device_id
        self.keys = device_keys(self.user_id, self.device_id)
        ok(self.client.post("/keys/upload", {"device_keys": self.keys, "one_time_keys": {
            f"signed_curve25519:K{i}": {"key": f"otk{i}"} for i in range(2)}}))
        self.master = cross_signing_key(self.user_id, "master")
        ok(self.client.post("/keys/device_signing/upload", {"master_key": self.master}))
        self.keyless_device = Client(ours).login(self.user_id, initial_device_display_name="no keys here").device_id


def test_user_keys_query_claim_and_devices_serve_our_users(ours, peer):
    local = LocalWithKeys(ours)
    answer = ok(peer.request(ours, "POST", f"{V1}/user/keys/query", {"device_keys": {local.user_id: []}}))
    served = answer["device_keys"][local.user_id]
    assert set(served) == {local.device_id}
    assert {k: v for k, v in served[local.device_id].items() if k != "unsigned"} == local.keys
    assert served[local.device_id]["unsigned"] == {}  # no display names by default, as Synapse
    assert answer["master_keys"][local.user_id]["keys"] == local.master["keys"]
    assert "user_signing_keys" not in answer and "failures" not in answer

    claimed = [ok(peer.request(ours, "POST", f"{V1}/user/keys/claim",
                               {"one_time_keys": {local.user_id: {local.device_id: "signed_curve25519"}}}))
               ["one_time_keys"][local.user_id][local.device_id] for _ in range(2)]
    assert sorted(k for c in claimed for k in c) == ["signed_curve25519:K0", "signed_curve25519:K1"]

    devices = ok(peer.request(ours, "GET", f"{V1}/user/devices/{q(local.user_id)}"))
    assert devices["user_id"] == local.user_id and isinstance(devices["stream_id"], int)
    by_id = {d["device_id"]: d for d in devices["devices"]}
    assert set(by_id) == {local.device_id, local.keyless_device}
    assert by_id[local.device_id]["keys"] == local.keys and "keys" not in by_id[local.keyless_device]
    assert not any("device_display_name" in d for d in devices["devices"])
    assert devices["master_key"]["keys"] == local.master["keys"] and "self_signing_key" not in devices


def test_inbound_key_requests_about_other_servers_users_or_unsigned_are_refused(ours, peer):
    stranger = peer.user("someone")
    assert_error(peer.request(ours, "POST", f"{V1}/user/keys/query", {"device_keys": {stranger: []}}),
                 400, "M_INVALID_PARAM")
    assert_error(peer.request(ours, "POST", f"{V1}/user/keys/claim",
                              {"one_time_keys": {stranger: {"D": "signed_curve25519"}}}), 400, "M_INVALID_PARAM")
    assert_error(peer.request(ours, "GET", f"{V1}/user/devices/{q(stranger)}"), 400, "M_INVALID_PARAM")
    assert_error(peer.request(ours, "POST", f"{V1}/user/keys/query", {"device_keys": "no"}), 400, "M_BAD_JSON")
    unsigned = requests.post(ours.fed_url + f"{V1}/user/keys/query", json={"device_keys": {}},
                             verify=peer.ca.cert_path, timeout=10)
    assert unsigned.status_code == 401


def test_keys_query_and_claim_report_servers_that_fail(ours, peer):
    client = register(ours, "f")
    nowhere = f"127.0.0.1:{free_port()}"
    body = ok(client.post("/keys/query", {"device_keys": {f"@x:{nowhere}": [], peer.user("x"): []},
                                          "timeout": 5000}))
    assert body["failures"][nowhere]["status"] == 503
    assert body["failures"][peer.name]["status"] == 404  # the peer does not serve key queries
    claimed = ok(client.post("/keys/claim", {"one_time_keys": {f"@x:{nowhere}": {"D": "signed_curve25519"}}}))
    assert claimed["one_time_keys"] == {} and claimed["failures"][nowhere]["status"] == 503
    assert_error(client.post("/keys/query", {"device_keys": {}, "timeout": "soon"}), 400, "M_BAD_JSON")


def test_remote_device_list_is_cached_and_kept_in_step_by_updates(ours, test_ca):
    peer = FakePeer(test_ca)
    try:
        answers = serve_answers(peer)
        local = register(ours, "d")
        room_id = create_room(local, preset="public_chat")
        localpart = "p" + uuid.uuid4().hex[:8]
        remote = peer.user(localpart)
        watch = SyncWatcher(local)
        peer.join(ours, room_id, localpart)
        watch.wait_for_membership(room_id, remote, "join")
        devices_path = f"{V1}/user/devices/{remote}"
        d1, d2, d3 = (device_keys(remote, d) for d in ("D1", "D2", "D3"))
        answers[("GET", devices_path)] = (200, {"user_id": remote, "stream_id": 5, "devices": [
            {"device_id": "D1", "keys": d1}]})
        answers[("POST", f"{V1}/user/keys/query")] = (200, {"device_keys": {remote: {"D1": d1}}})

        def resyncs() -> int:
            return sum(r.startswith("GET /_matrix/federation/v1/user/devices/") for r in peer.requests)

        def key_queries() -> int:
            return sum(r.startswith("POST /_matrix/federation/v1/user/keys/query") for r in peer.requests)

        def query() -> dict:
            return ok(local.post("/keys/query", {"device_keys": {remote: []}}))

        def update(stream_id, prev, device_id, keys=None, deleted=False):
            content = {"user_id": remote, "device_id": device_id, "stream_id": stream_id, "prev_id": prev,
                       "deleted": deleted}
            if keys is not None:
                content["keys"] = keys
            ok(peer.send(ours, uuid.uuid4().hex, [], [{"edu_type": "m.device_list_update", "content": content}]))

        def changed() -> bool:
            return remote in watch.next_batch(500).get("device_lists", {}).get("changed", [])

        # The first update names nothing we hold: the whole list is fetched.
        update(6, [], "D1", d1)
        wait_for(lambda: resyncs() == 1, "a resync")
        wait_for(changed, "the remote user in device_lists.changed")
        assert set(query()["device_keys"][remote]) == {"D1"}
        assert key_queries() == 0  # answered from the cached list

        # An update following the one we hold is applied as it is.
        update(7, [5], "D2", d2)
        wait_for(changed, "the second change")
        assert set(query()["device_keys"][remote]) == {"D1", "D2"}
        assert resyncs() == 1 and key_queries() == 0

        # A gap (prev_id 8 never seen): resync, and the list is what the server says now.
        answers[("GET", devices_path)] = (200, {"user_id": remote, "stream_id": 9, "devices": [
            {"device_id": "D2", "keys": d2}, {"device_id": "D3", "keys": d3}]})
        update(9, [8], "D3", d3)
        wait_for(lambda: resyncs() == 2, "a second resync")
        wait_for(changed, "the third change")
        assert set(query()["device_keys"][remote]) == {"D2", "D3"}

        # A deletion following it.
        update(10, [9], "D2", deleted=True)
        wait_for(changed, "the deletion")
        assert set(query()["device_keys"][remote]) == {"D3"}
        assert resyncs() == 2 and key_queries() == 0

        # New cross-signing keys: in the next query, and the user is marked changed.
        master, self_signing = cross_signing_key(remote, "master"), cross_signing_key(remote, "self_signing")
        ok(peer.send(ours, uuid.uuid4().hex, [], [{"edu_type": "m.signing_key_update", "content": {
            "user_id": remote, "master_key": master, "self_signing_key": self_signing}}]))
        wait_for(changed, "the cross-signing change")
        answer = query()
        assert answer["master_keys"][remote] == master and answer["self_signing_keys"][remote] == self_signing
        assert key_queries() == 0
    finally:
        peer.stop()


def test_a_remote_user_sharing_no_room_is_asked_each_time(ours, peer):
    answers = serve_answers(peer)
    stranger = peer.user("stranger" + uuid.uuid4().hex[:6])
    keys = device_keys(stranger, "S1")
    answers[("POST", f"{V1}/user/keys/query")] = (200, {"device_keys": {stranger: {"S1": keys}}})
    client = register(ours, "s")
    before = len(peer.requests)
    for _ in range(2):
        answer = ok(client.post("/keys/query", {"device_keys": {stranger: []}}))
        assert {k: v for k, v in answer["device_keys"][stranger]["S1"].items() if k != "unsigned"} == keys
    assert sum("/user/keys/query" in r for r in peer.requests[before:]) == 2
