"""Device list tracking through matrix-nio with encryption: when a room-mate adds a device, nio
reads /sync's `device_lists.changed`, marks the user for a key query, and its keys_query() then
finds the new device, which is how an encrypting client learns whom to send room keys to."""

import contextlib

import pytest

pytest.importorskip("vodozemac", reason="matrix-nio's e2e extra (vodozemac) is not installed")

from nio import KeysQueryResponse, SyncResponse

from tests.client.test_nio_e2e_keys import login_another_device, run, two_clients_in_an_encrypted_room, upload_keys


def test_nio_queries_the_keys_of_a_room_mates_new_device(homeserver):
    async def scenario(new_user):
        alice, bob, _ = await two_clients_in_an_encrypted_room(new_user)
        for client in (alice, bob):
            await upload_keys(client)
        resp = await alice.keys_query()
        assert isinstance(resp, KeysQueryResponse), resp
        assert not alice.should_query_keys
        assert set(alice.device_store[bob.user_id].keys()) == {bob.device_id}

        async with contextlib.AsyncExitStack() as stack:
            laptop = await login_another_device(stack, homeserver.base_url, bob.user_id, "bob's laptop")

            synced = await alice.sync(timeout=0, since=alice.next_batch)
            assert isinstance(synced, SyncResponse), synced
            assert bob.user_id in synced.device_list.changed
            assert alice.should_query_keys and bob.user_id in alice.users_for_key_query
            resp = await alice.keys_query()
            assert isinstance(resp, KeysQueryResponse), resp
            assert set(alice.device_store[bob.user_id].keys()) == {bob.device_id, laptop.device_id}
            assert alice.device_store[bob.user_id][laptop.device_id].display_name == "bob's laptop"
    run(homeserver, scenario)
