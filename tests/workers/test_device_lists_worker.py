"""The device_lists stream over real replication: a device change written on the master wakes a
room-mate's sync parked on a synchrotron, which then lists the user in `device_lists.changed`."""

import threading
import time

import pytest

from tests.harness import Client, create, new_user, q
from tests.workers.cluster import WorkerProcess, master_with_replication, on, sync, wait_caught_up


@pytest.fixture(scope="module")
def cluster(db_dsn):
    master = master_with_replication(db_dsn).start()
    workers = []
    try:
        workers.append(WorkerProcess(master, "synchrotron", "sync1").start())
        yield master, workers[0]
    finally:
        for worker in workers:
            worker.stop()
        master.stop()


def test_a_login_on_the_master_wakes_a_room_mates_sync_parked_on_the_synchrotron(cluster):
    master, synchrotron = cluster
    alice, bob = new_user(master, "dlw"), new_user(master, "dlw")
    room_id = create(alice, preset="public_chat")
    assert bob.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    wait_caught_up(master, synchrotron)
    bob_sync = on(synchrotron, bob)
    since = sync(bob_sync)["next_batch"]
    result = {}

    def parked():
        result["body"] = sync(bob_sync, since=since, timeout=20000)
        result["at"] = time.monotonic()

    thread = threading.Thread(target=parked)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive(), "returned before anything happened"
    Client(master).login(alice.user_id.split(":")[0][1:])
    logged_in_at = time.monotonic()
    thread.join(30)
    assert result["body"]["device_lists"] == {"changed": [alice.user_id], "left": []}
    assert result["at"] - logged_in_at < 2.0
    # The worker follows the stream: its position is the master's.
    wait_caught_up(master, synchrotron)
    assert synchrotron.status()["streams"]["device_lists"] > 0
