"""The whole deployment as an admin runs it: `synctl -a DIR start` runs the master (media handed to
a worker), two synchrotrons, a client_reader and a media_repository over the test PostgreSQL,
behind a real HAProxy whose config `synctl haproxy-config` printed. matrix-nio clients talk only
to HAProxy: they register, invite and join, send, and sync; every message must reach every device
of every member exactly once and in order, also while each process is restarted in turn. Media
(uploads, downloads, thumbnails, its admin API) goes through HAProxy to the media worker.

The processes and HAProxy are shared by the module's tests and stopped by pid at its end
(tests/workers/synctl_cluster.py). nio is asyncio: each test runs its own loop with asyncio.run.
"""

import asyncio
import contextlib
import io
import itertools
import re
import time
from collections import defaultdict

import aiohttp
import pytest
import requests
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    LoginResponse,
    MemoryDownloadResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomMessageText,
    RoomSendResponse,
    RoomTypingResponse,
    SyncResponse,
    ThumbnailResponse,
    TypingNoticeEvent,
    UploadResponse,
)
from nio.api import ResizingMethod
from PIL import Image

from tests.harness import query
from tests.workers.synctl_cluster import require_haproxy, running_cluster, running_haproxy

PASSWORD = "e2e haproxy correct horse"
SYNCHROTRONS = ("synchrotron1", "synchrotron2")
# Big enough that no incremental sync here is ever limited: a gap would hide lost messages.
SYNC_FILTER = {"room": {"timeline": {"limit": 100}}}
# nio retries a refused connection itself; keep its back-off short.
NIO_CONFIG = AsyncClientConfig(max_timeout_retry_wait_time=1, request_timeout=20)
_names = itertools.count()


@pytest.fixture(scope="module")
def deployment(db_dsn):
    require_haproxy()
    unlimited = {"per_second": 1000, "burst_count": 1000}
    with running_cluster(database={"name": "psycopg2", "args": {"dsn": db_dsn, "cp_max": 10}},
                         enable_media_repo=False, rc_message=unlimited,
                         rc_login={"address": unlimited, "account": unlimited}) as cluster:
        for name in SYNCHROTRONS:
            cluster.add_worker(name, "apps.synchrotron", metrics=True)
        cluster.add_worker("client_reader1", "apps.client_reader")
        cluster.add_worker("media1", "apps.media_repository", resources=("client", "media"))
        started = cluster.run("-a", cluster.dir, "start", cluster.main)
        assert started.returncode == 0, started.stdout + started.stderr
        assert len(started.stdout.splitlines()) == 5, started.stdout
        with running_haproxy(cluster) as base:
            yield cluster, base


class Device:
    """One access token syncing through HAProxy; what it received: message event IDs per room in
    order, and the latest typing users per room."""

    def __init__(self, client: AsyncClient):
        self.client = client
        self.since: str | None = None
        self.messages: dict[str, list[str]] = defaultdict(list)
        self.invited: set[str] = set()
        self.joined: set[str] = set()
        self.typing: dict[str, list[str]] = {}
        self.failures = 0
        self.collecting = False

    async def sync_once(self, timeout_ms: int = 1000) -> bool:
        """One sync from the device's own token; False (after a pause) if HAProxy or the process
        behind it failed the request, as during a restart."""
        try:
            resp = await self.client.sync(timeout=timeout_ms, since=self.since, sync_filter=SYNC_FILTER)
        except (TimeoutError, aiohttp.ClientError):  # e.g. HAProxy's HTML 503 while a backend is down
            resp = None
        if not isinstance(resp, SyncResponse):
            self.failures += 1
            await asyncio.sleep(0.2)
            return False
        self.invited |= set(resp.rooms.invite)
        self.joined |= set(resp.rooms.join)
        for room_id, room in resp.rooms.join.items():
            if self.collecting:
                assert not room.timeline.limited, f"{self.client.user_id}: a gap in {room_id} after {self.since}"
            self.messages[room_id] += [e.event_id for e in room.timeline.events if isinstance(e, RoomMessageText)]
            for event in room.ephemeral:
                if isinstance(event, TypingNoticeEvent):
                    self.typing[room_id] = event.users
        self.since = resp.next_batch
        return True

    async def sync_until(self, done, what: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, f"{self.client.user_id} never saw {what}"
            await self.sync_once()


def run(scenario):
    async def main():
        async with contextlib.AsyncExitStack() as stack:
            async def client(base: str, user: str = "") -> AsyncClient:
                c = AsyncClient(base, user, config=NIO_CONFIG)
                stack.push_async_callback(c.close)
                return c
            return await scenario(client)
    return asyncio.run(main())


async def register(new_client, base: str, prefix: str) -> Device:
    c = await new_client(base)
    resp = await c.register(f"{prefix}{next(_names)}_{int(time.time() * 1000) % 10**8}", PASSWORD)
    assert isinstance(resp, RegisterResponse), resp
    return Device(c)


async def login(new_client, base: str, user_id: str) -> Device:
    c = await new_client(base, user_id)
    resp = await c.login(PASSWORD, device_name="another device")
    assert isinstance(resp, LoginResponse), resp
    return Device(c)


async def room_with(creator: Device, members: list[Device]) -> str:
    """A room ``creator`` makes and invites ``members`` to; each sees the invite by sync and joins."""
    created = await creator.client.room_create(name="e2e")
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    for member in members:
        invited = await creator.client.room_invite(room_id, member.client.user_id)
        assert isinstance(invited, RoomInviteResponse), invited
    for member in members:
        await member.sync_until(lambda m=member: room_id in m.invited, f"the invite to {room_id}")
        joined = await member.client.join(room_id)
        assert isinstance(joined, JoinResponse), joined
    return room_id


async def send(sender: Device, room_id: str, body: str) -> str:
    """Sends until the server answers with an event ID, always under the same txn id: a retry of
    a send the server did take returns the same event instead of a second one."""
    deadline = time.monotonic() + 30
    while True:
        try:
            resp = await sender.client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body},
                                                 tx_id=body)
        except (TimeoutError, aiohttp.ClientError):
            resp = None
        if isinstance(resp, RoomSendResponse):
            return resp.event_id
        assert time.monotonic() < deadline, f"{body} was never accepted: {resp}"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def syncing(devices: list[Device]):
    """Every device syncs in a loop, each from its own token, until the block ends."""
    stop = asyncio.Event()

    async def loop(device: Device) -> None:
        while not stop.is_set():
            await device.sync_once()
    tasks = [asyncio.create_task(loop(d)) for d in devices]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def assert_received_exactly(devices: list[Device], expected: dict[str, list[str]], rooms_of) -> None:
    """Each device syncs until it has every expected message of its rooms, then twice more to show
    that nothing comes again; then it must hold exactly the expected lists, and nothing of rooms
    it is not in."""
    async def settle(device: Device) -> None:
        rooms = rooms_of(device)
        await device.sync_until(lambda: all(set(expected[r]) <= set(device.messages[r]) for r in rooms),
                                "every message", timeout_s=45)
        for _ in range(2):
            assert await device.sync_once(timeout_ms=300)
    await asyncio.gather(*(settle(d) for d in devices))
    for device in devices:
        got = {r: ids for r, ids in device.messages.items() if ids}
        assert got == {r: expected[r] for r in rooms_of(device)}, device.client.user_id


def sync_requests_served(cluster, name: str) -> float:
    """hs_http_requests_total of the /sync route on one synchrotron, every method and status."""
    text = requests.get(cluster.metrics_url(name), timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("hs_http_requests_total{") and re.search(r'route="[^"]*/sync"', line))


def test_nio_clients_through_haproxy_get_every_message_once_in_order_on_every_device(deployment):
    cluster, base = deployment

    async def scenario(new_client):
        users = [await register(new_client, base, "e2e") for _ in range(5)]
        # Three devices a user, fifteen access tokens: HAProxy hashes the token, so both
        # synchrotrons get a share (all fifteen on one is a 2**-14 chance with even hashing).
        others = [await login(new_client, base, u.client.user_id) for u in users for _ in range(2)]
        devices = users + others
        await asyncio.gather(*(d.sync_once(timeout_ms=0) for d in devices))

        everyone = await room_with(users[0], users[1:])
        few = await room_with(users[1], users[2:4])
        members = {everyone: {u.client.user_id for u in users},
                   few: {u.client.user_id for u in users[1:4]}}

        def rooms_of(device: Device) -> set[str]:
            return {r for r, ids in members.items() if device.client.user_id in ids}
        await asyncio.gather(*(d.sync_until(lambda d=d: rooms_of(d) <= d.joined, "its rooms joined")
                               for d in devices))
        for device in devices:
            device.collecting = True

        # One send at a time, so that the order of the answers is the room's order; users[0] and
        # users[4] are not in the second room and must see none of it.
        expected: dict[str, list[str]] = {everyone: [], few: []}
        async with syncing(devices):
            for round_ in range(3):
                for i, user in enumerate(users):
                    expected[everyone].append(await send(user, everyone, f"r{round_} everyone u{i} {time.time()}"))
                for i, user in enumerate(users[1:4]):
                    expected[few].append(await send(user, few, f"r{round_} few u{i} {time.time()}"))
        await assert_received_exactly(devices, expected, rooms_of)

    run(scenario)
    served = {name: sync_requests_served(cluster, name) for name in SYNCHROTRONS}
    assert all(count > 0 for count in served.values()), served


def test_nio_uploads_downloads_and_thumbnails_media_through_the_media_worker(deployment):
    # The master runs with enable_media_repo: false and serves no media path, so every media
    # answer here comes from the media_repository worker behind HAProxy.
    cluster, base = deployment
    image = io.BytesIO()
    Image.new("RGB", (640, 480), (20, 120, 220)).save(image, "PNG")
    files = {"notes.txt": (b"media through the worker\n" * 1000, "text/plain"),
             "photo.png": (image.getvalue(), "image/png")}

    async def scenario(new_client):
        device = await register(new_client, base, "media")
        uris = {}
        for name, (data, content_type) in files.items():
            resp, _ = await device.client.upload(io.BytesIO(data), content_type, name, filesize=len(data))
            assert isinstance(resp, UploadResponse), resp
            uris[name] = resp.content_uri
        for name, (data, content_type) in files.items():
            got = await device.client.download(uris[name])
            assert isinstance(got, MemoryDownloadResponse), got
            assert (got.body, got.content_type.split(";")[0]) == (data, content_type)
        server_name, media_id = uris["photo.png"][len("mxc://"):].split("/")
        thumb = await device.client.thumbnail(server_name, media_id, 96, 96, ResizingMethod.crop)
        assert isinstance(thumb, ThumbnailResponse), thumb
        assert Image.open(io.BytesIO(thumb.body)).size == (96, 96)
    run(scenario)


def test_media_worker_checks_tokens_against_the_master_at_once_and_serves_the_admin_api(deployment, db_dsn):
    cluster, base = deployment
    user = f"mediaw{next(_names)}"
    resp = requests.post(f"{base}/_matrix/client/v3/register",
                         json={"username": user, "password": PASSWORD, "auth": {"type": "m.login.dummy"}}, timeout=20)
    assert resp.status_code == 200, resp.text
    token, user_id = resp.json()["access_token"], resp.json()["user_id"]
    auth = {"Authorization": f"Bearer {token}"}
    media = f"{base}/_matrix/client/v1/media"
    # Asynchronous upload: create on the worker, PUT the bytes, download them.
    created = requests.post(f"{base}/_matrix/media/v1/create", headers=auth, timeout=20).json()
    server_name, media_id = created["content_uri"][len("mxc://"):].split("/")
    put = requests.put(f"{base}/_matrix/media/v3/upload/{server_name}/{media_id}", data=b"later bytes",
                       headers={**auth, "Content-Type": "application/octet-stream"}, timeout=20)
    assert put.status_code == 200, put.text
    assert requests.get(f"{media}/download/{server_name}/{media_id}", headers=auth, timeout=20).content == \
        b"later bytes"
    # No path parameter reaches the disk: traversal through HAProxy is a clean 404.
    for path in (f"download/{server_name}/..%2F..%2Fhomeserver.yaml", f"download/..%2F..%2Fetc/{media_id}"):
        resp = requests.get(f"{media}/{path}", headers=auth, timeout=20)
        assert (resp.status_code, resp.json()["errcode"]) == (404, "M_NOT_FOUND"), resp.text
    # The trailing segment is only the name the download is saved under.
    named = requests.get(f"{media}/download/{server_name}/{media_id}/..%2F..%2Fetc%2Fpasswd", headers=auth,
                         timeout=20)
    assert (named.status_code, named.content) == (200, b"later bytes")
    # The admin API is the media worker's too.
    query(db_dsn, "UPDATE users SET admin = TRUE WHERE user_id = %s", (user_id,))
    quarantine = requests.post(f"{base}/_synapse/admin/v1/media/quarantine/{server_name}/{media_id}",
                               headers=auth, json={}, timeout=20)
    assert quarantine.status_code == 200, quarantine.text
    assert requests.get(f"{media}/download/{server_name}/{media_id}", headers=auth, timeout=20).status_code == 404
    # A token logged out on the master fails on the worker at once.
    assert requests.post(f"{base}/_matrix/client/v3/logout", headers=auth, json={}, timeout=20).status_code == 200
    resp = requests.get(f"{media}/config", headers=auth, timeout=20)
    assert (resp.status_code, resp.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")


def test_rolling_restart_of_every_worker_then_the_master_loses_no_message_and_typing_still_works(deployment):
    cluster, base = deployment

    async def scenario(new_client):
        sender = await register(new_client, base, "rollsend")
        # Two receivers on each synchrotron, so that each restart cuts some of them off: while both
        # run, HAProxy sends a token's every /sync to the same one, found here by its counter.
        on: dict[str, list[Device]] = {name: [] for name in SYNCHROTRONS}
        for _ in range(40):
            if all(len(devices) == 2 for devices in on.values()):
                break
            device = await register(new_client, base, "rollrecv")
            before = {name: sync_requests_served(cluster, name) for name in SYNCHROTRONS}
            assert await device.sync_once(timeout_ms=0)
            [served_by] = [name for name in SYNCHROTRONS if sync_requests_served(cluster, name) > before[name]]
            if len(on[served_by]) < 2:
                on[served_by].append(device)
        assert all(len(devices) == 2 for devices in on.values()), "HAProxy sent every token to one synchrotron"
        receivers = [device for devices in on.values() for device in devices]
        await sender.sync_once(timeout_ms=0)
        room_id = await room_with(sender, receivers)
        await asyncio.gather(*(d.sync_until(lambda d=d: room_id in d.joined, "the room joined")
                               for d in (sender, *receivers)))
        for device in receivers:
            device.collecting = True

        # The master keeps typing in memory: when it restarts alone, its typers are gone, and the
        # synchrotrons must show that and then follow the new master's typing (the classic failure
        # was typing broken after a master-only restart). The typist is still typing (for two
        # minutes) when the master goes down.
        typist, watchers = receivers[0], receivers[1:]

        async def watchers_see(typing: bool) -> None:
            for watcher in watchers:
                await watcher.sync_until(
                    lambda w=watcher: (typist.client.user_id in w.typing.get(room_id, [])) == typing,
                    f"typing {typing}", timeout_s=15)

        async def type_(typing: bool) -> None:
            typed = await typist.client.room_typing(room_id, typing, timeout=120_000)
            assert isinstance(typed, RoomTypingResponse), typed
            await watchers_see(typing)
        for typing in (True, False, True):
            await type_(typing)

        sent: list[str] = []  # event IDs, in the order the server accepted them
        bodies: list[str] = []  # each one's body, also its txn id
        stop_sending = asyncio.Event()

        async def keep_sending():
            n = 0
            while not stop_sending.is_set():
                body = f"roll{n} {time.time()}"
                sent.append(await send(sender, room_id, body))
                bodies.append(body)
                n += 1
                await asyncio.sleep(0.1)

        async def traffic_flows():
            """Until a few more messages went through: every restart happens mid-traffic."""
            target = len(sent) + 3
            deadline = time.monotonic() + 30
            while len(sent) < target:
                assert time.monotonic() < deadline, "the sender is stuck"
                await asyncio.sleep(0.05)

        async def restart(name: str, *args) -> None:
            """`synctl ARGS restart`, which must leave a new process in place of the old."""
            before = cluster.record()[name]
            done = await asyncio.to_thread(cluster.run, *args, "restart", cluster.main)
            assert done.returncode == 0, done.stdout + done.stderr
            assert cluster.record()[name] not in (None, before), done.stdout

        async with syncing(receivers):
            sending = asyncio.create_task(keep_sending())
            try:
                await traffic_flows()
                for name in (*SYNCHROTRONS, "client_reader1", "media1"):
                    await restart(name, "-w", cluster.worker_file(name))
                    await traffic_flows()
                last_before = len(sent) - 1
                await restart("master")  # the master alone: `synctl restart` without -a
                await traffic_flows()
                # A client that lost the answer to a send retries it with the same txn id after the
                # restart, and gets the same event back, not a second one.
                assert await send(sender, room_id, bodies[last_before]) == sent[last_before]
            finally:
                stop_sending.set()
                await sending
        await assert_received_exactly(receivers, {room_id: sent}, lambda d: {room_id})

        await watchers_see(False)
        await type_(True)

    run(scenario)
