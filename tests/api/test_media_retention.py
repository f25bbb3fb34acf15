"""media_retention.local_media_lifetime: the background job in the process serving media deletes
local media unused for longer than the lifetime, with its file once no media ID names the
content, and keeps what Synapse keeps (protected, quarantined, avatars, recently used)."""

import os
import time
import uuid

import pytest

from tests.api.test_admin_tokens import shared_secret_register
from tests.api.test_media_upload import content_files, download, uploaded_id
from tests.harness import assert_error, create, new_user, q, query, running_homeserver

SERVER = "test.local"
V1 = "/_synapse/admin/v1"
LIFETIME_S = 2


@pytest.fixture(scope="module")
def server(db_dsn):
    # remote_media_lifetime is accepted; it has nothing to act on until federation caches remote media.
    with running_homeserver(db_dsn, media_retention={"local_media_lifetime": f"{LIFETIME_S}s",
                                                     "remote_media_lifetime": "1s"}) as server:
        yield server


def wait_until_gone(admin, media_id: str, timeout: float = 30) -> None:
    # Polled through the admin API: a download would count as an access.
    deadline = time.monotonic() + timeout
    while admin.get(f"{V1}/media/{SERVER}/{media_id}").status_code == 200:
        assert time.monotonic() < deadline, f"retention did not delete {media_id}"
        time.sleep(0.25)


def test_media_unused_past_the_lifetime_goes_with_its_file(server):
    alice = new_user(server, "ret")
    admin = shared_secret_register(server, f"root{uuid.uuid4().hex[:6]}", admin=True)
    files = len(content_files(server))
    doomed = uploaded_id(alice, os.urandom(70))
    assert len(content_files(server)) == files + 1
    wait_until_gone(admin, doomed)
    assert_error(download(alice, doomed), 404, "M_NOT_FOUND")
    assert len(content_files(server)) == files


def test_protected_quarantined_avatar_and_recent_media_are_kept(server, db_dsn):
    alice = new_user(server, "keep")
    admin = shared_secret_register(server, f"root{uuid.uuid4().hex[:6]}", admin=True)
    files = len(content_files(server))
    protected, quarantined, avatar, room_avatar, doomed = (uploaded_id(alice, os.urandom(71)) for _ in range(5))
    shared = os.urandom(72)
    recent, doomed_copy = uploaded_id(alice, shared), uploaded_id(alice, shared)
    admin.post(f"{V1}/media/protect/{protected}", {})
    admin.post(f"{V1}/media/quarantine/{SERVER}/{quarantined}", {})
    assert alice.put(f"/profile/{q(alice.user_id)}/avatar_url", {"avatar_url": f"mxc://{SERVER}/{avatar}"}).ok
    assert alice.put(f"/rooms/{q(create(alice))}/state/m.room.avatar", {"url": f"mxc://{SERVER}/{room_avatar}"}).ok
    # Used a minute from now: still within its lifetime for the whole test.
    query(db_dsn, "UPDATE local_media SET last_access_ts = %s WHERE media_id = %s",
          (int(time.time() * 1000) + 60_000, recent))
    wait_until_gone(admin, doomed)
    wait_until_gone(admin, doomed_copy)
    time.sleep(LIFETIME_S)  # a further pass or two
    for media_id in (protected, quarantined, avatar, room_avatar, recent):
        info = admin.get(f"{V1}/media/{SERVER}/{media_id}")
        assert info.status_code == 200, (media_id, info.text)
    for media_id in (protected, avatar, room_avatar, recent):
        assert download(alice, media_id).status_code == 200
    assert download(alice, recent).content == shared  # the file `doomed_copy` shared is still there
    assert len(content_files(server)) == files + 5  # six contents uploaded; only `doomed`'s own went
