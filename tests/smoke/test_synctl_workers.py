"""`synctl -a DIR` / `-w FILE` / `status` over real processes: the master (embedded PostgreSQL), a
synchrotron and a client_reader, each its own gunicorn arbiter, as docs/workers.md sets them up.

Every pid synctl starts is recorded and stopped in the fixture's teardown whatever the test did
(tests/workers/synctl_cluster.py's running_cluster).
"""

import os
import re
import stat
import time

import pytest
import requests

from tests.harness import Client
from tests.smoke.test_synctl import Running, Synctl, _children, _cmdline, assert_exited
from tests.workers.synctl_cluster import running_cluster, running_haproxy


@pytest.fixture
def cluster():
    with running_cluster() as c:
        yield c


def test_synctl_a_starts_master_and_workers_reports_status_restarts_one_and_stops_all(cluster):
    cluster.add_worker("client_reader1", "synapse.app.client_reader")
    cluster.add_worker("synchrotron1", "apps.synchrotron")
    with open(os.path.join(cluster.dir, "0master.yaml"), "w") as f:
        f.write("worker_app: synapse.app.homeserver\n")

    started = cluster.run("-a", cluster.dir, "start", cluster.main)
    assert started.returncode == 0, started.stdout + started.stderr
    pids = cluster.record()
    assert started.stdout.splitlines() == [
        f"The homeserver is running (pid {pids['master']}) at {cluster.master_url}",
        f"Client_reader worker client_reader1 is running (pid {pids['client_reader1']}) at "
        f"{cluster.url('client_reader1')}",
        f"Synchrotron worker synchrotron1 is running (pid {pids['synchrotron1']}) at {cluster.url('synchrotron1')}",
    ]
    for name in ("client_reader1", "synchrotron1"):
        argv = _cmdline(pids[name])
        assert f"apps.{name[:-1]}:app" in argv and "--worker-connections 10000" in argv
        assert len(_children(pids[name])) == 1
        # Its own gunicorn control socket, beside its pid file.
        assert stat.S_ISSOCK(os.stat(os.path.join(cluster.dir, f"{name}.pid.ctl")).st_mode)

    # The processes serve together: an account made on the master syncs on the synchrotron.
    alice = Client(Running(cluster.master_url)).register("alice")
    synced = requests.get(cluster.url("synchrotron1") + "/_matrix/client/v3/sync", timeout=30,
                          headers={"Authorization": f"Bearer {alice.access_token}"})
    assert synced.status_code == 200, synced.text
    assert synced.json()["next_batch"]
    versions = requests.get(cluster.url("client_reader1") + "/_matrix/client/versions", timeout=5)
    assert versions.status_code == 200
    assert versions.json() == requests.get(cluster.master_url + "/_matrix/client/versions", timeout=5).json()

    status = cluster.run("-a", cluster.dir, "status", cluster.main)
    assert status.returncode == 0, status.stdout + status.stderr
    lines = status.stdout.splitlines()
    assert len(lines) == 3
    assert re.fullmatch(rf"the homeserver: running \(pid {pids['master']}\); streams: (\w+ \d+(, )?)+"
                        r"; federation: failing 0, catching_up 0, pdus_queued 0, edus_queued 0, "
                        r"failing_destinations -; pushers: running 0, failing 0, failing_for_s -", lines[0])
    for line, name in zip(lines[1:], ("client_reader worker client_reader1", "synchrotron worker synchrotron1"),
                          strict=True):
        pid = pids[name.rsplit(" ", 1)[1]]
        assert re.fullmatch(rf"{name}: running \(pid {pid}\); replication lag: (\w+ \d+(, )?)+", line), line
        assert re.search(r"\bevents \d+", line), line

    restarted = cluster.run("-w", os.path.join(cluster.dir, "synchrotron1.yaml"), "restart", cluster.main)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    after = cluster.record()
    assert restarted.stdout.splitlines() == [
        f"Stopping synchrotron worker synchrotron1 (pid {pids['synchrotron1']})...",
        "Stopped.",
        f"Synchrotron worker synchrotron1 is running (pid {after['synchrotron1']}) at {cluster.url('synchrotron1')}",
    ]
    assert_exited(pids["synchrotron1"])
    assert after["master"] == pids["master"] and after["client_reader1"] == pids["client_reader1"]
    synced = requests.get(cluster.url("synchrotron1") + "/_matrix/client/v3/sync", timeout=30,
                          headers={"Authorization": f"Bearer {alice.access_token}"})
    assert synced.status_code == 200, synced.text

    everything = [pid for p in after.values() for pid in (p, *_children(p))]
    postmaster = cluster.synctl.processes(cluster.main)["postmaster"]
    stopped = cluster.run("-a", cluster.dir, "stop", cluster.main)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert stopped.stdout.splitlines() == [
        f"Stopping synchrotron worker synchrotron1 (pid {after['synchrotron1']})...",
        f"Stopping client_reader worker client_reader1 (pid {after['client_reader1']})...",
        f"Stopping the homeserver (pid {after['master']})...",
        "Stopped.",
    ]
    for pid in (*everything, postmaster):
        assert_exited(pid)
    for name in ("client_reader1", "synchrotron1"):
        assert not os.path.exists(os.path.join(cluster.dir, f"{name}.pid"))

    down = cluster.run("-a", cluster.dir, "status", cluster.main)
    assert down.returncode == 1
    assert down.stdout.splitlines() == ["the homeserver: not running", "client_reader worker client_reader1: not running",
                                        "synchrotron worker synchrotron1: not running"]


def test_a_worker_whose_duty_the_master_holds_is_not_started(cluster):
    path = cluster.add_worker("pusher1", "apps.pusher")
    done = cluster.run("-w", path, "start", cluster.main)
    assert done.returncode == 1
    assert done.stdout == (
        f"Config error: {path}: a pusher worker cannot run while the master still does its work (start_pushers "
        f"is true, the default): set start_pushers: false in {cluster.main}, restart the master, then start this "
        "worker\n")
    assert cluster.worker_pid("pusher1") is None and cluster.synctl.pids == set()


def test_a_worker_without_a_pid_file_cannot_be_run_by_synctl(cluster):
    path = cluster.add_worker("sync1", "apps.synchrotron", worker_pid_file=None)
    done = cluster.run("-a", cluster.dir, "start", cluster.main)
    assert done.returncode == 1
    assert done.stdout == (f"Config error: {path}: worker_pid_file: this key is required to run the worker "
                           "with synctl\n")
    assert cluster.synctl.pids == set()  # checked before the master starts


def test_a_and_w_together_are_refused(cluster):
    path = cluster.add_worker("sync1", "apps.synchrotron")
    done = cluster.run("-a", cluster.dir, "-w", path, "start", cluster.main)
    assert done.returncode == 2
    assert "-a and -w do not go together" in done.stderr
    assert cluster.synctl.pids == set()


def test_a_missing_worker_directory_is_named_and_nothing_is_generated_or_started():
    synctl = Synctl()
    try:
        done = synctl.run("-a", "workers", "start")
        assert done.returncode == 1
        assert done.stdout == "Config error: workers: no such directory of worker configs\n"
        assert os.listdir(synctl.dir) == []
    finally:
        synctl.cleanup()


def test_haproxy_from_synctl_serves_the_workers_and_sends_sync_only_to_synchrotrons(cluster):
    cluster.add_worker("synchrotron1", "apps.synchrotron")
    cluster.add_worker("client_reader1", "apps.client_reader")
    started = cluster.run("-a", cluster.dir, "start", cluster.main)
    assert started.returncode == 0, started.stdout + started.stderr
    with running_haproxy(cluster) as base:
        alice = Client(Running(base)).register("alice")
        room = alice.post("/createRoom", json={}).json()["room_id"]
        # The synchrotron learns of the room over replication, a moment after the master answered.
        deadline = time.monotonic() + 10
        while True:
            synced = alice.get("/sync")
            assert synced.status_code == 200, synced.text
            if room in synced.json()["rooms"]["join"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert room in synced.json()["rooms"]["join"]

        # With the synchrotron down, /sync has nowhere to go while the master keeps serving writes.
        stopped = cluster.run("-w", os.path.join(cluster.dir, "synchrotron1.yaml"), "stop", cluster.main)
        assert stopped.returncode == 0, stopped.stdout
        assert alice.get("/sync").status_code == 503
        assert alice.post("/createRoom", json={}).status_code == 200
