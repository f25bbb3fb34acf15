"""/sync through matrix-nio: two clients sync in a loop, each from its own `next_batch`, and see
each other's invites, joins, messages and room names. nio parses every sync response with its
own schema and room model, so what it builds is what clients in the wild see.

nio is asyncio; each test runs its own event loop with asyncio.run and closes its clients.
"""

import asyncio
import contextlib
import itertools
import time

from nio import (
    AsyncClient,
    JoinResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomMessageText,
    RoomPreset,
    RoomPutStateResponse,
    RoomSendResponse,
    SyncResponse,
)

PASSWORD = "nio sync correct horse"
_names = itertools.count()


def run(homeserver, scenario):
    async def main():
        async with contextlib.AsyncExitStack() as stack:
            async def new_user(prefix: str) -> AsyncClient:
                client = AsyncClient(homeserver.base_url, "")
                stack.push_async_callback(client.close)
                resp = await client.register(f"{prefix}{next(_names)}_{int(time.time() * 1000) % 10**8}", PASSWORD)
                assert isinstance(resp, RegisterResponse), resp
                return client
            return await scenario(new_user)

    return asyncio.run(main())


async def sync_until(client: AsyncClient, done, timeout_s: float = 20, long_poll_ms: int = 2000):
    """Incremental syncs from the client's own next_batch until done() holds."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "the awaited change never arrived"
        resp = await client.sync(timeout=long_poll_ms, since=client.next_batch)
        assert isinstance(resp, SyncResponse), resp


def record_messages(client: AsyncClient) -> list:
    received = []

    async def on_message(room, event):
        received.append((room.room_id, event.sender, event.body, event.event_id))

    client.add_event_callback(on_message, RoomMessageText)
    return received


async def send_text(client, room_id, body) -> str:
    resp = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
    assert isinstance(resp, RoomSendResponse), resp
    return resp.event_id


def _invite_join_and_talk(room_version: str):
    async def scenario(new_user):
        alice, bob = await new_user("nsalice"), await new_user("nsbob")
        for client in (alice, bob):
            first = await client.sync(timeout=0, full_state=True)
            assert isinstance(first, SyncResponse), first
        alice_inbox, bob_inbox = record_messages(alice), record_messages(bob)

        created = await alice.room_create(name="nio sync room", topic="syncing", preset=RoomPreset.private_chat,
                                          initial_state=[], room_version=room_version)
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id
        await sync_until(alice, lambda: room_id in alice.rooms)
        assert alice.rooms[room_id].name == "nio sync room"
        invited = await alice.room_invite(room_id, bob.user_id)
        assert isinstance(invited, RoomInviteResponse), invited

        await sync_until(bob, lambda: room_id in bob.invited_rooms)
        invite_room = bob.invited_rooms[room_id]
        assert invite_room.inviter == alice.user_id
        assert invite_room.name == "nio sync room"

        joined = await bob.join(room_id)
        assert isinstance(joined, JoinResponse), joined
        await sync_until(bob, lambda: room_id in bob.rooms and room_id not in bob.invited_rooms)
        room = bob.rooms[room_id]
        assert room.name == "nio sync room" and room.topic == "syncing"
        assert set(room.users) == {alice.user_id, bob.user_id}
        await sync_until(alice, lambda: bob.user_id in alice.rooms[room_id].users
                         and not alice.rooms[room_id].users[bob.user_id].invited)

        sent = []
        for i in range(5):
            sent.append((alice.user_id, f"from alice {i}", await send_text(alice, room_id, f"from alice {i}")))
            sent.append((bob.user_id, f"from bob {i}", await send_text(bob, room_id, f"from bob {i}")))
        await sync_until(bob, lambda: len([m for m in bob_inbox if m[1] == alice.user_id]) == 5)
        await sync_until(alice, lambda: len([m for m in alice_inbox if m[1] == bob.user_id]) == 5)
        for inbox in (alice_inbox, bob_inbox):
            # Each message once, in the order sent (the sender's own come back to it too).
            assert [(s, b, e) for r, s, b, e in inbox if r == room_id] == sent

        renamed = await alice.room_put_state(room_id, "m.room.name", {"name": "renamed over sync"})
        assert isinstance(renamed, RoomPutStateResponse), renamed
        await sync_until(bob, lambda: bob.rooms[room_id].name == "renamed over sync")
    return scenario


def test_nio_clients_see_invites_joins_messages_and_names_over_sync_v12(homeserver):
    run(homeserver, _invite_join_and_talk("12"))


def test_nio_clients_see_invites_joins_messages_and_names_over_sync_v11(homeserver):
    run(homeserver, _invite_join_and_talk("11"))


def test_nio_long_poll_returns_when_the_other_client_sends(homeserver):
    async def scenario(new_user):
        alice, bob = await new_user("nsalice"), await new_user("nsbob")
        created = await alice.room_create(name="long poll", preset=RoomPreset.public_chat)
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id
        assert isinstance(await bob.join(room_id), JoinResponse)
        first = await bob.sync(timeout=0, full_state=True)
        assert isinstance(first, SyncResponse), first
        bob_inbox = record_messages(bob)
        started = time.monotonic()
        parked = asyncio.create_task(bob.sync(timeout=15000, since=bob.next_batch))
        await asyncio.sleep(0.5)
        assert not parked.done()
        event_id = await send_text(alice, room_id, "are you there?")
        resp = await parked
        assert isinstance(resp, SyncResponse), resp
        assert time.monotonic() - started < 8
        assert [(m[2], m[3]) for m in bob_inbox] == [("are you there?", event_id)]
    run(homeserver, scenario)
