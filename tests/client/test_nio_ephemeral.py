"""What is not in a room's timeline, through matrix-nio's sync loops: typing, read receipts,
presence and to-device messages. Each client acts with nio's own calls and syncs from its own
`next_batch` (repeated sync() calls, or sync_forever as bots run it); what nio builds from those
responses (room.typing_users, read receipts, PresenceEvent, to-device events) is what the
assertions read.
"""

import asyncio
import contextlib
import time

from nio import (
    AsyncClient,
    JoinResponse,
    LoginResponse,
    PresenceEvent,
    PresenceSetResponse,
    ReceiptEvent,
    RoomCreateResponse,
    RoomPreset,
    RoomTypingResponse,
    SyncResponse,
    ToDeviceMessage,
    ToDeviceResponse,
    UnknownToDeviceEvent,
    UpdateReceiptMarkerResponse,
)
from nio.api import ReceiptType

from tests.client.test_nio_sync import PASSWORD, record_messages, run, send_text, sync_until


async def _alice_and_bob_in_a_room(new_user) -> tuple[AsyncClient, AsyncClient, str]:
    """Both joined and past their initial sync, so what follows arrives incrementally."""
    alice, bob = await new_user("nealice"), await new_user("nebob")
    created = await alice.room_create(name="ephemeral", preset=RoomPreset.public_chat)
    assert isinstance(created, RoomCreateResponse), created
    joined = await bob.join(created.room_id)
    assert isinstance(joined, JoinResponse), joined
    for client in (alice, bob):
        first = await client.sync(timeout=0, full_state=True)
        assert isinstance(first, SyncResponse), first
        assert created.room_id in client.rooms
    return alice, bob, created.room_id


def record(add_callback, event_type) -> list:
    """Events of `event_type` that nio hands to callbacks registered with `add_callback`."""
    seen = []

    async def on_event(*args):
        seen.append(args[-1])

    add_callback(on_event, event_type)
    return seen


@contextlib.asynccontextmanager
async def syncing_forever(*clients: AsyncClient):
    """Each client in its own sync_forever loop, cancelled on the way out."""
    loops = [asyncio.create_task(client.sync_forever(timeout=2000)) for client in clients]
    try:
        yield loops
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)


async def synced_until(client: AsyncClient, loops, done, timeout_s: float = 20) -> None:
    """Waits on the client's sync_forever rounds until done() holds."""
    deadline = time.monotonic() + timeout_s
    while not done():
        for loop in loops:
            if loop.done():
                loop.result()  # a loop that died raises here rather than as a timeout
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the awaited change never arrived"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.synced.wait(), remaining)


def test_nio_clients_see_each_others_messages_and_read_receipts(homeserver):
    async def scenario(new_user):
        alice, bob, room_id = await _alice_and_bob_in_a_room(new_user)
        bob_inbox = record_messages(bob)
        receipts = record(bob.add_ephemeral_callback, ReceiptEvent)

        event_id = await send_text(alice, room_id, "read me")
        await sync_until(bob, lambda: bob_inbox)
        assert bob_inbox == [(room_id, alice.user_id, "read me", event_id)]
        reply_id = await send_text(bob, room_id, "read it?")

        marked = await alice.update_receipt_marker(room_id, reply_id, ReceiptType.read)
        assert isinstance(marked, UpdateReceiptMarkerResponse), marked
        await sync_until(bob, lambda: alice.user_id in bob.rooms[room_id].threaded_read_receipts)
        receipt = bob.rooms[room_id].threaded_read_receipts[alice.user_id]["main"]
        assert (receipt.event_id, receipt.receipt_type, receipt.user_id, receipt.thread_id) == (
            reply_id, "m.read", alice.user_id, "main")
        assert receipt.timestamp > 0
        assert [(r.event_id, r.user_id) for event in receipts for r in event.receipts
                if r.user_id == alice.user_id] == [(reply_id, alice.user_id)]

        # And the other way round, in Alice's own sync loop.
        marked = await bob.update_receipt_marker(room_id, event_id, ReceiptType.read)
        assert isinstance(marked, UpdateReceiptMarkerResponse), marked
        await sync_until(alice, lambda: bob.user_id in alice.rooms[room_id].threaded_read_receipts)
        assert alice.rooms[room_id].threaded_read_receipts[bob.user_id]["main"].event_id == event_id
    run(homeserver, scenario)


def test_nio_clients_see_each_other_start_and_stop_typing(homeserver):
    async def scenario(new_user):
        alice, bob, room_id = await _alice_and_bob_in_a_room(new_user)
        assert bob.rooms[room_id].typing_users == []

        started = await alice.room_typing(room_id, True, timeout=30_000)
        assert isinstance(started, RoomTypingResponse), started
        await sync_until(bob, lambda: bob.rooms[room_id].typing_users == [alice.user_id])
        started = await bob.room_typing(room_id, True, timeout=30_000)
        assert isinstance(started, RoomTypingResponse), started
        await sync_until(alice, lambda: sorted(alice.rooms[room_id].typing_users) == sorted([alice.user_id,
                                                                                              bob.user_id]))

        # Well inside the 30 s the notices were valid for: only the stops can clear them.
        stopped = await alice.room_typing(room_id, False)
        assert isinstance(stopped, RoomTypingResponse), stopped
        await sync_until(bob, lambda: bob.rooms[room_id].typing_users == [bob.user_id], timeout_s=10)
        stopped = await bob.room_typing(room_id, False)
        assert isinstance(stopped, RoomTypingResponse), stopped
        await sync_until(alice, lambda: alice.rooms[room_id].typing_users == [], timeout_s=10)
    run(homeserver, scenario)


def test_nio_sync_forever_loops_see_each_others_presence_and_status_message(homeserver):
    async def scenario(new_user):
        alice, bob, _ = await _alice_and_bob_in_a_room(new_user)
        seen_by = {client.user_id: record(client.add_presence_callback, PresenceEvent) for client in (alice, bob)}

        def latest(viewer: AsyncClient, user_id: str) -> PresenceEvent | None:
            return next((p for p in reversed(seen_by[viewer.user_id]) if p.user_id == user_id), None)

        async with syncing_forever(alice, bob) as loops:
            for client, status in ((alice, "status msg"), (bob, "bob's status")):
                resp = await client.set_presence("online", status)
                assert isinstance(resp, PresenceSetResponse), resp
            await synced_until(bob, loops, lambda: getattr(latest(bob, alice.user_id), "status_msg", None))
            await synced_until(alice, loops, lambda: getattr(latest(alice, bob.user_id), "status_msg", None))
            for viewer, user, status in ((bob, alice, "status msg"), (alice, bob, "bob's status")):
                event = latest(viewer, user.user_id)
                assert (event.presence, event.status_msg, event.currently_active) == ("online", status, True)
                assert isinstance(event.last_active_ago, int) and 0 <= event.last_active_ago < 60_000

            resp = await alice.set_presence("unavailable", "away for lunch")
            assert isinstance(resp, PresenceSetResponse), resp
            await synced_until(bob, loops, lambda: latest(bob, alice.user_id).presence == "unavailable")
            assert latest(bob, alice.user_id).status_msg == "away for lunch"
    run(homeserver, scenario)


def test_nio_receives_a_to_device_message_on_its_own_device_exactly_once(homeserver):
    async def scenario(new_user):
        alice, bob, room_id = await _alice_and_bob_in_a_room(new_user)
        # Bob's second device shares his account but is not the message's recipient.
        bob_phone = AsyncClient(homeserver.base_url, bob.user_id)
        try:
            logged_in = await bob_phone.login(PASSWORD, device_name="bob's phone")
            assert isinstance(logged_in, LoginResponse), logged_in
            first = await bob_phone.sync(timeout=0, full_state=True)
            assert isinstance(first, SyncResponse), first

            received, on_phone = (record(c.add_to_device_callback, UnknownToDeviceEvent) for c in (bob, bob_phone))
            message = ToDeviceMessage("org.example.nio_ping", bob.user_id, bob.device_id, {"ping": 1, "text": "hi"})
            sent = await alice.to_device(message, tx_id="ping-1")
            assert isinstance(sent, ToDeviceResponse), sent
            # A retried transaction is the same message, not a second one.
            retried = await alice.to_device(message, tx_id="ping-1")
            assert isinstance(retried, ToDeviceResponse), retried

            await sync_until(bob, lambda: received)
            assert [(e.sender, e.type, e.source["content"]) for e in received] == [
                (alice.user_id, "org.example.nio_ping", {"ping": 1, "text": "hi"})]

            # Later syncs from the advanced next_batch must not hand it out again; a message in
            # the room shows each of them really returned something new.
            bob_inbox, phone_inbox = record_messages(bob), record_messages(bob_phone)
            for i in range(3):
                await send_text(alice, room_id, f"after the ping {i}")
                await sync_until(bob, lambda n=i + 1: len(bob_inbox) == n)
            assert len(received) == 1
            # The phone's syncs span the send, so a message routed to it would be here.
            await sync_until(bob_phone, lambda: len(phone_inbox) == 3)
            assert on_phone == []
        finally:
            await bob_phone.close()
    run(homeserver, scenario)
