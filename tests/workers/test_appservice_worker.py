"""The appservice worker (a master with notify_appservices: false): it follows the events stream
and sends application services their transactions; killed with SIGKILL while the service is down
and started again, it still delivers every event exactly once, in order."""

import tempfile
import uuid

import pytest

from tests.appservice_fixture import AppServiceServer
from tests.harness import Client, create, q
from tests.workers.cluster import WorkerProcess, master_with_replication

SERVER = "test.local"


@pytest.fixture(scope="module")
def cluster(db_dsn):
    service = AppServiceServer(hs_token="hs-worker").start()
    path = service.write_registration(tempfile.mkdtemp(prefix="as-reg-"), id="bridge", as_token="as-worker",
                                      sender_localpart="bridgebot", receive_ephemeral=True,
                                      namespaces={"users": [{"regex": f"@bridge_.*:{SERVER}", "exclusive": False}]})
    master = master_with_replication(db_dsn, notify_appservices=False, app_service_config_files=[path])
    worker = WorkerProcess(master, "appservice", "as1")
    try:
        master.start()
        worker.start()
        yield master, worker, service
    finally:
        worker.stop()
        master.stop()
        service.stop()


def send(client: Client, room_id: str, body: str) -> str:
    resp = client.put(f"/rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}", {"msgtype": "m.text",
                                                                                       "body": body})
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"]


def room_event_ids(service: AppServiceServer, room_id: str) -> list:
    return [e["event_id"] for e in service.events() if e.get("room_id") == room_id]


def delivered(service: AppServiceServer, event_id: str) -> bool:
    return any(e["event_id"] == event_id for e in service.events())


def test_the_worker_sends_namespace_events_and_typing(cluster):
    master, _, service = cluster
    puppet = Client(master).register(f"bridge_{uuid.uuid4().hex[:10]}")
    room_id = create(puppet)
    sent = [send(puppet, room_id, f"hello {i}") for i in range(3)]
    service.wait_for(lambda: delivered(service, sent[-1]), timeout=60)
    assert room_event_ids(service, room_id)[-3:] == sent
    assert puppet.put(f"/rooms/{q(room_id)}/typing/{q(puppet.user_id)}", {"typing": True, "timeout": 30000}
                      ).status_code == 200
    typing = service.wait_for(lambda: [e for e in service.ephemeral()
                                       if e["type"] == "m.typing" and e["room_id"] == room_id], timeout=60)
    assert typing[0]["content"]["user_ids"] == [puppet.user_id]


def test_a_killed_worker_restarted_delivers_every_event_exactly_once(cluster):
    master, worker, service = cluster
    puppet = Client(master).register(f"bridge_{uuid.uuid4().hex[:10]}")
    room_id = create(puppet)
    marker = send(puppet, room_id, "settled")
    service.wait_for(lambda: delivered(service, marker), timeout=60)
    service.respond_with(r"^/transactions/", 503, {"errcode": "M_UNKNOWN"})
    try:
        before = [send(puppet, room_id, f"before the kill {i}") for i in range(4)]
        # A transaction is stored and being retried when the worker dies.
        service.wait_for(lambda: [r for r in service.requests_to(r"^/_matrix/app/v1/transactions/")
                                  if any(e["event_id"] in before for e in r.body["events"])], timeout=60)
        worker.kill()
        while_down = [send(puppet, room_id, f"while the worker is down {i}") for i in range(4)]
        service.clear_responses()
        worker.start()
    finally:
        service.clear_responses()
    after = send(puppet, room_id, "after the restart")
    service.wait_for(lambda: delivered(service, after), timeout=60)
    ids = room_event_ids(service, room_id)
    assert ids[ids.index(marker):] == [marker, *before, *while_down, after]
