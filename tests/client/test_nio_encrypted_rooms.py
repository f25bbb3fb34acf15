"""An encrypted conversation between matrix-nio clients with encryption (vodozemac): each side's
message reaches the other as a decrypted RoomMessageText, a device that logs in later is found
through /sync's `device_lists.changed` and gets the room key, and a user who leaves the only room
shared with another shows up in that user's `device_lists.left`."""

import contextlib
import time

import pytest

pytest.importorskip("vodozemac", reason="matrix-nio's e2e extra (vodozemac) is not installed")

from nio import (
    AsyncClient,
    KeysQueryResponse,
    MegolmEvent,
    RoomLeaveResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

from tests.client.test_nio_e2e_keys import login_another_device, run, two_clients_in_an_encrypted_room, upload_keys


async def send_text(sender: AsyncClient, room_id: str, body: str) -> str:
    sent = await sender.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body},
                                  ignore_unverified_devices=True)
    assert isinstance(sent, RoomSendResponse), sent
    return sent.event_id


async def sync_until_decrypted(receiver: AsyncClient, room_id: str, event_id: str, timeout_s: float = 20):
    """Syncs until the event arrives; returns it as nio delivered it (decrypted or not)."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert time.monotonic() < deadline, f"{receiver.device_id} never received {event_id}"
        resp = await receiver.sync(timeout=2000, since=receiver.next_batch)
        assert isinstance(resp, SyncResponse), resp
        room = resp.rooms.join.get(room_id)
        for event in room.timeline.events if room else ():
            if event.event_id == event_id:
                return event


async def assert_received(receiver: AsyncClient, sender: AsyncClient, room_id: str, event_id: str, body: str):
    event = await sync_until_decrypted(receiver, room_id, event_id)
    assert not isinstance(event, MegolmEvent), f"{receiver.device_id} could not decrypt: {event}"
    assert isinstance(event, RoomMessageText), event
    assert (event.sender, event.body, event.decrypted) == (sender.user_id, body, True)


async def exchange_both_ways(alice: AsyncClient, bob: AsyncClient, room_id: str) -> None:
    for sender, receiver, body in ((alice, bob, "hello bob, secretly"), (bob, alice, "hello alice, secretly")):
        event_id = await send_text(sender, room_id, body)
        await assert_received(receiver, sender, room_id, event_id, body)


def test_two_nio_clients_decrypt_each_others_messages(homeserver):
    async def scenario(new_user):
        alice, bob, room_id = await two_clients_in_an_encrypted_room(new_user)
        for client in (alice, bob):
            await upload_keys(client)
        await exchange_both_ways(alice, bob, room_id)
    run(homeserver, scenario)


def test_a_device_that_logs_in_later_decrypts_and_a_leaver_is_in_device_lists_left(homeserver):
    async def scenario(new_user):
        alice, bob, room_id = await two_clients_in_an_encrypted_room(new_user)
        for client in (alice, bob):
            await upload_keys(client)
        await exchange_both_ways(alice, bob, room_id)
        assert set(alice.device_store[bob.user_id]) == {bob.device_id}

        async with contextlib.AsyncExitStack() as stack:
            laptop = await login_another_device(stack, homeserver.base_url, bob.user_id, "bob's laptop")
            synced = await laptop.sync(timeout=0, full_state=True)
            assert isinstance(synced, SyncResponse), synced

            synced = await alice.sync(timeout=0, since=alice.next_batch)
            assert isinstance(synced, SyncResponse), synced
            assert bob.user_id in synced.device_list.changed
            assert bob.user_id in alice.users_for_key_query
            queried = await alice.keys_query()
            assert isinstance(queried, KeysQueryResponse), queried
            assert set(alice.device_store[bob.user_id]) == {bob.device_id, laptop.device_id}

            event_id = await send_text(alice, room_id, "for both of bob's devices")
            for device in (laptop, bob):
                await assert_received(device, alice, room_id, event_id, "for both of bob's devices")

        left = await bob.room_leave(room_id)
        assert isinstance(left, RoomLeaveResponse), left
        synced = await alice.sync(timeout=0, since=alice.next_batch)
        assert isinstance(synced, SyncResponse), synced
        assert synced.device_list.left == [bob.user_id]
        assert bob.user_id not in synced.device_list.changed
    run(homeserver, scenario)
