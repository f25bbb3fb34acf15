"""A real client library across servers: matrix-nio users, one on a real Synapse and one on ours,
invite each other to a private room, join, and talk, with the room as each client builds it
from /sync (members, name) agreeing. Both directions."""

import asyncio
import contextlib
import itertools
import time

import pytest
from nio import AsyncClient, JoinResponse, RegisterResponse, RoomCreateResponse, RoomPreset, SyncResponse

from tests.client.test_nio_sync import record_messages, send_text, sync_until

PASSWORD = "correct horse battery"
_names = itertools.count()


@pytest.fixture(params=["synapse_invites", "ours_invites"])
def servers(request, synapse, ours):
    return (synapse, ours) if request.param == "synapse_invites" else (ours, synapse)


def test_nio_users_on_two_servers_invite_join_and_talk(servers):
    inviting_server, invited_server = servers

    async def main():
        async with contextlib.AsyncExitStack() as stack:
            async def new_user(server, prefix: str) -> AsyncClient:
                client = AsyncClient(server.base_url, "")
                stack.push_async_callback(client.close)
                resp = await client.register(f"{prefix}{next(_names)}_{int(time.time() * 1000) % 10**8}", PASSWORD)
                assert isinstance(resp, RegisterResponse), resp
                first = await client.sync(timeout=0, full_state=True)
                assert isinstance(first, SyncResponse), first
                return client

            alice, bob = await new_user(inviting_server, "nfalice"), await new_user(invited_server, "nfbob")
            alice_inbox, bob_inbox = record_messages(alice), record_messages(bob)
            created = await alice.room_create(name="across servers", preset=RoomPreset.private_chat,
                                              invite=[bob.user_id])
            assert isinstance(created, RoomCreateResponse), created
            room_id = created.room_id

            await sync_until(bob, lambda: room_id in bob.invited_rooms, timeout_s=30)
            assert bob.invited_rooms[room_id].name == "across servers"
            assert isinstance(await bob.join(room_id), JoinResponse)
            await sync_until(bob, lambda: room_id in bob.rooms and alice.user_id in bob.rooms[room_id].users)
            await sync_until(alice, lambda: room_id in alice.rooms and bob.user_id in alice.rooms[room_id].users,
                             timeout_s=30)

            await send_text(alice, room_id, "hello from the inviting server")
            await sync_until(bob, lambda: any(m[2] == "hello from the inviting server" for m in bob_inbox),
                             timeout_s=30)
            await send_text(bob, room_id, "and back")
            await sync_until(alice, lambda: any(m[2] == "and back" for m in alice_inbox), timeout_s=30)
            assert bob.rooms[room_id].name == alice.rooms[room_id].name == "across servers"
            assert set(bob.rooms[room_id].users) == set(alice.rooms[room_id].users) == {alice.user_id, bob.user_id}

    asyncio.run(main())
