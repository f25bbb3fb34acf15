"""An encrypted conversation through the workers set-up: matrix-nio clients with encryption talk
only to HAProxy in front of the master, a synchrotron and a client_reader (`synctl -a DIR start`,
tests/workers/synctl_cluster.py). Key uploads, queries and claims go to the master; the room keys
travel as to-device messages and the megolm events reach the other side through the
synchrotron's /sync, over replication. Each side must decrypt the other's message."""

import time
import types

import pytest

pytest.importorskip("vodozemac", reason="matrix-nio's e2e extra (vodozemac) is not installed")

from nio import AsyncClient, JoinResponse, RoomCreateResponse, RoomPreset, SyncResponse

from tests.client.test_nio_e2e_keys import ENCRYPTION, run, upload_keys
from tests.client.test_nio_encrypted_rooms import exchange_both_ways
from tests.workers.synctl_cluster import require_haproxy, running_cluster, running_haproxy


@pytest.fixture(scope="module")
def haproxy_base(db_dsn):
    require_haproxy()
    unlimited = {"per_second": 1000, "burst_count": 1000}
    with running_cluster(database={"name": "psycopg2", "args": {"dsn": db_dsn, "cp_max": 10}},
                         rc_message=unlimited, rc_login={"address": unlimited, "account": unlimited}) as cluster:
        cluster.add_worker("synchrotron1", "apps.synchrotron")
        cluster.add_worker("client_reader1", "apps.client_reader")
        started = cluster.run("-a", cluster.dir, "start", cluster.main)
        assert started.returncode == 0, started.stdout + started.stderr
        with running_haproxy(cluster) as base:
            yield base


async def sync_until_encrypted_room_with(client: AsyncClient, room_id: str, members: set[str]) -> None:
    """The synchrotron serves /sync from replicated state, which may trail the master's answer
    to the join by a moment."""
    deadline = time.monotonic() + 15
    while not (room_id in client.rooms and client.rooms[room_id].encrypted
               and set(client.rooms[room_id].users) == members):
        assert time.monotonic() < deadline, f"{client.user_id} never saw {members} in encrypted {room_id}"
        resp = await client.sync(timeout=1000, since=client.next_batch)
        assert isinstance(resp, SyncResponse), resp


def test_two_nio_clients_decrypt_each_others_messages_behind_haproxy(haproxy_base):
    async def scenario(new_user):
        alice, bob = await new_user("ewalice"), await new_user("ewbob")
        created = await alice.room_create(name="encrypted", preset=RoomPreset.public_chat, initial_state=[ENCRYPTION])
        assert isinstance(created, RoomCreateResponse), created
        joined = await bob.join(created.room_id)
        assert isinstance(joined, JoinResponse), joined
        for client in (alice, bob):
            await sync_until_encrypted_room_with(client, created.room_id, {alice.user_id, bob.user_id})
            await upload_keys(client)
        await exchange_both_ways(alice, bob, created.room_id)
    run(types.SimpleNamespace(base_url=haproxy_base), scenario)
