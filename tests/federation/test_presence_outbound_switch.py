"""`presence.federation_outbound: false` (issue 11: a switch to turn outbound presence off for big
deployments): our users' presence stays home, while other servers' presence still arrives. Two of
our servers over TLS: A with the switch off, B as usual."""

import time
import uuid

import pytest

from tests.federation_fixture import FederatingHomeserver, SharedRoom, ok
from tests.harness import q


@pytest.fixture(scope="module")
def quiet(db_dsn, test_ca):
    server = FederatingHomeserver(db_dsn, test_ca, presence={"federation_outbound": False})
    try:
        yield server.start()
    finally:
        server.stop()


def _presence_seen(watcher, user_id, status, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = watcher.next_batch(500)
        for event in body.get("presence", {}).get("events", []):
            if event["sender"] == user_id and event["content"].get("status_msg") == status:
                return True
    return False


def test_presence_is_received_but_not_sent(quiet, ours_b):
    room = SharedRoom(quiet, ours_b)
    theirs = f"from B {uuid.uuid4().hex[:8]}"
    ok(room.guest_user.put(f"/presence/{q(room.guest_user.user_id)}/status",
                           {"presence": "online", "status_msg": theirs}))
    assert _presence_seen(room.host_watch, room.guest_user.user_id, theirs, timeout=20)
    # Received: so A's own change, made now, would have arrived in the same time; it does not.
    ours = f"from A {uuid.uuid4().hex[:8]}"
    ok(room.host_user.put(f"/presence/{q(room.host_user.user_id)}/status",
                          {"presence": "online", "status_msg": ours}))
    assert not _presence_seen(room.guest_watch, room.host_user.user_id, ours, timeout=5)
