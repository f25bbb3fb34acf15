"""Device keys and one-time keys through matrix-nio with encryption (its `e2e` extra, vodozemac):
each client uploads its own keys with keys_upload(), finds the other's device with keys_query()
and opens an Olm session with keys_claim(). nio checks the device keys' self-signature and the
claimed key's signature by that device, so what it accepts is what encrypting clients accept.
"""

import asyncio
import contextlib
import itertools
import tempfile
import time

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    KeysClaimResponse,
    KeysQueryResponse,
    KeysUploadResponse,
    LoginResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomMessageText,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
)

PASSWORD = "nio e2e correct horse"
_names = itertools.count()
ENCRYPTION = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


def run(homeserver, scenario):
    async def main():
        async with contextlib.AsyncExitStack() as stack:
            async def new_user(prefix: str) -> AsyncClient:
                store = stack.enter_context(tempfile.TemporaryDirectory())
                client = AsyncClient(homeserver.base_url, "", store_path=store,
                                     config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False))
                stack.push_async_callback(client.close)
                resp = await client.register(f"{prefix}{next(_names)}_{int(time.time() * 1000) % 10**8}", PASSWORD,
                                             device_name=f"{prefix}'s device")
                assert isinstance(resp, RegisterResponse), resp
                # None when nio's e2e extra (vodozemac) is missing: setup.py's test extra has it.
                assert client.olm is not None
                return client
            return await scenario(new_user)

    return asyncio.run(main())


async def upload_keys(client: AsyncClient) -> KeysUploadResponse:
    assert client.should_upload_keys
    resp = await client.keys_upload()
    assert isinstance(resp, KeysUploadResponse), resp
    return resp


async def login_another_device(stack: contextlib.AsyncExitStack, base_url: str, user_id: str,
                               name: str) -> AsyncClient:
    """A second encrypted device of `user_id`, logged in and with its keys uploaded; closed (and
    its store removed) with `stack`."""
    store = stack.enter_context(tempfile.TemporaryDirectory())
    device = AsyncClient(base_url, user_id, store_path=store,
                         config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False))
    stack.push_async_callback(device.close)
    logged_in = await device.login(PASSWORD, device_name=name)
    assert isinstance(logged_in, LoginResponse), logged_in
    await upload_keys(device)
    return device


async def two_clients_in_an_encrypted_room(new_user) -> tuple[AsyncClient, AsyncClient, str]:
    alice, bob = await new_user("nkalice"), await new_user("nkbob")
    created = await alice.room_create(name="encrypted", preset=RoomPreset.public_chat, initial_state=[ENCRYPTION])
    assert isinstance(created, RoomCreateResponse), created
    joined = await bob.join(created.room_id)
    assert isinstance(joined, JoinResponse), joined
    for client in (alice, bob):
        resp = await client.sync(timeout=0, full_state=True)
        assert isinstance(resp, SyncResponse), resp
        assert client.rooms[created.room_id].encrypted
    return alice, bob, created.room_id


def test_nio_clients_upload_query_and_claim_each_others_keys(homeserver):
    async def scenario(new_user):
        alice, bob, _ = await two_clients_in_an_encrypted_room(new_user)
        for client in (alice, bob):
            uploaded = await upload_keys(client)
            # nio with vodozemac fills its account's capacity.
            assert uploaded.signed_curve25519_count == client.olm.account.max_one_time_keys
            assert not client.should_upload_keys

        for me, other, other_device_name in ((alice, bob, "nkbob's device"), (bob, alice, "nkalice's device")):
            assert other.user_id in me.users_for_key_query
            resp = await me.keys_query()
            assert isinstance(resp, KeysQueryResponse), resp
            device = me.device_store[other.user_id][other.device_id]
            assert device.ed25519 == other.olm.account.identity_keys["ed25519"]
            assert device.curve25519 == other.olm.account.identity_keys["curve25519"]
            assert device.display_name == other_device_name

        claimed = await alice.keys_claim({bob.user_id: [bob.device_id]})
        assert isinstance(claimed, KeysClaimResponse), claimed
        [key_id] = claimed.one_time_keys[bob.user_id][bob.device_id]
        assert key_id.startswith("signed_curve25519:")
        # nio verified the claimed key's signature and opened an Olm session with it.
        assert alice.olm.session_store.get(bob.olm.account.identity_keys["curve25519"])

        resp = await bob.sync(timeout=0, since=bob.next_batch)
        assert isinstance(resp, SyncResponse), resp
        assert resp.device_key_count.signed_curve25519 == bob.olm.account.max_one_time_keys - 1
    run(homeserver, scenario)


def test_a_message_encrypted_with_a_claimed_key_is_decrypted_by_its_owner(homeserver):
    """The Olm session alice opens with bob's claimed one-time key carries the room key to bob,
    who can only decrypt it if the server handed out one of his own keys, unaltered."""
    async def scenario(new_user):
        alice, bob, room_id = await two_clients_in_an_encrypted_room(new_user)
        for client in (alice, bob):
            await upload_keys(client)
        resp = await alice.keys_query()
        assert isinstance(resp, KeysQueryResponse), resp
        sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "secret"},
                                     ignore_unverified_devices=True)
        assert isinstance(sent, RoomSendResponse), sent
        received = []

        async def on_message(room, event):
            received.append((event.sender, event.body))

        bob.add_event_callback(on_message, RoomMessageText)
        deadline = time.monotonic() + 20
        while not received:
            assert time.monotonic() < deadline, "bob never decrypted the message"
            resp = await bob.sync(timeout=2000, since=bob.next_batch)
            assert isinstance(resp, SyncResponse), resp
        assert received == [(alice.user_id, "secret")]
    run(homeserver, scenario)
