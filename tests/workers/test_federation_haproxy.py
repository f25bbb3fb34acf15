"""Issue 10 item 7 end to end: a real Synapse federates with our homeserver deployed with workers
(docs/workers.md, "The federation port"). `synctl -a DIR start` runs the master, two
federation_readers and a synchrotron; a real HAProxy, configured by `synctl haproxy-config
--federation-bind --federation-pem`, ends TLS on the port named in our server name and routes the
federation API to the federation_readers, each origin's /send to one of them. Our users talk to
HAProxy's client port; Synapse talks to HAProxy's federation port, verifying it under the test CA.

What each process served is read from its /metrics (tests/workers/federation_cluster.py): Synapse's
requests must have reached the federation_readers, not the master, and every /send the one instance
its origin hashes to. The processes are shared by the module's tests and stopped by pid at its end.
"""

import uuid
from collections import Counter

import pytest

from tests.federation import conftest as federation_conftest
from tests.federation_fixture import (
    SyncWatcher,
    join,
    ok,
    paginate_back,
    public_room_with_alias,
    register,
    send_text,
)
from tests.harness import q
from tests.workers.federation_cluster import federation_served, requests_served, running_federating_cluster
from tests.workers.synctl_cluster import require_haproxy

# The federation suite's fixtures: the session's test CA, and a Synapse for the module.
test_ca, synapse = federation_conftest.test_ca, federation_conftest.synapse
READERS = ("federation1", "federation2")
# A client_reader serves /messages: paging back into history we lack asks the master to backfill.
WORKERS = {**{name: "apps.federation_reader" for name in READERS}, "synchrotron1": "apps.synchrotron",
           "client_reader1": "apps.client_reader"}
SEND = "/_matrix/federation/v1/send/{txn_id}"
# The one federation route the master answers: HAProxy's health check of its federation listener.
HEALTH_CHECK = "/_matrix/federation/v1/version"


@pytest.fixture(scope="module")
def deployment(db_dsn, test_ca):
    require_haproxy()
    unlimited = {"per_second": 1000, "burst_count": 1000}
    with running_federating_cluster(db_dsn, test_ca, WORKERS, rc_message=unlimited,
                                    rc_login={"address": unlimited, "account": unlimited}) as running:
        yield running


@pytest.fixture(scope="module")
def our_room(deployment, synapse):
    """A public room on ours, with history, that a Synapse user joined by its alias: Synapse asked
    a federation_reader for the alias (/query/directory), then for make_join and send_join, the
    latter's write made by the master."""
    _, ours = deployment
    host = register(ours, "h")
    room_id, alias = public_room_with_alias(host, ours)  # history_visibility: shared
    history = [f"before the join {i} {uuid.uuid4().hex}" for i in range(4)]
    for text in history:
        send_text(host, room_id, text)
    guest = register(synapse, "g")
    assert join(guest, alias) == room_id
    host_watch, guest_watch = SyncWatcher(host), SyncWatcher(guest)
    host_watch.wait_for_membership(room_id, guest.user_id, "join")
    return {"room_id": room_id, "host": host, "guest": guest, "host_watch": host_watch,
            "guest_watch": guest_watch, "history": history}


def _typing(user_id):
    return lambda e: e["type"] == "m.typing" and user_id in e["content"].get("user_ids", [])


def test_messages_and_typing_flow_both_ways_through_haproxy(our_room):
    room_id = our_room["room_id"]
    host, guest = our_room["host"], our_room["guest"]
    host_watch, guest_watch = our_room["host_watch"], our_room["guest_watch"]

    text = f"from ours {uuid.uuid4().hex}"
    event_id = send_text(host, room_id, text)
    assert guest_watch.wait_for_message(room_id, text)["event_id"] == event_id
    # Synapse's /send reaches a federation_reader, the master persists it, the synchrotron shows it.
    text = f"from synapse {uuid.uuid4().hex}"
    event_id = send_text(guest, room_id, text)
    seen = host_watch.wait_for_message(room_id, text)
    assert (seen["event_id"], seen["sender"]) == (event_id, guest.user_id)

    for typist, watcher in ((host, guest_watch), (guest, host_watch)):
        ok(typist.put(f"/rooms/{q(room_id)}/typing/{q(typist.user_id)}", {"typing": True, "timeout": 30000}))
        watcher.wait_for_ephemeral(room_id, _typing(typist.user_id), f"{typist.user_id} typing")


def test_synapse_backfills_our_history_from_the_federation_readers(our_room):
    # Synapse got the room's state with send_join, not its timeline: /messages there backfills it.
    events = paginate_back(our_room["guest"], our_room["room_id"])
    bodies = [e["content"].get("body") for e in reversed(events) if e["type"] == "m.room.message"]
    assert bodies[:len(our_room["history"])] == our_room["history"]


def test_our_user_joins_a_room_on_synapse_by_alias_and_backfills_it(deployment, synapse):
    _, ours = deployment
    host, guest = register(synapse, "h"), register(ours, "g")
    room_id, alias = public_room_with_alias(host, synapse)
    history = [f"on synapse before the join {i} {uuid.uuid4().hex}" for i in range(4)]
    for text in history:
        send_text(host, room_id, text)

    assert join(guest, alias) == room_id
    SyncWatcher(host).wait_for_membership(room_id, guest.user_id, "join")
    bodies = [e["content"].get("body") for e in reversed(paginate_back(guest, room_id))
              if e["type"] == "m.room.message"]
    assert bodies == history
    # Paged through the client_reader, which had the master fetch the history.
    routes = requests_served(deployment[0], "client_reader1")
    assert any(route.endswith("/rooms/{room_id}/messages") and n > 0 for route, n in routes.items()), routes

    text = f"reply from ours {uuid.uuid4().hex}"
    send_text(guest, room_id, text)
    SyncWatcher(host).wait_for_message(room_id, text)
    text = f"answer from synapse {uuid.uuid4().hex}"
    send_text(host, room_id, text)
    SyncWatcher(guest).wait_for_message(room_id, text)


def test_the_federation_readers_served_synapse_and_one_of_them_every_send(deployment, our_room, synapse):
    cluster, _ = deployment
    # Whatever ran before: Synapse has backfilled the room (now, or in the test above, which the
    # same call then leaves alone) and sent at least one more transaction.
    paginate_back(our_room["guest"], our_room["room_id"])
    text = f"one more transaction {uuid.uuid4().hex}"
    send_text(our_room["guest"], our_room["room_id"], text)
    our_room["host_watch"].wait_for_message(our_room["room_id"], text)

    readers = {name: federation_served(cluster, name) for name in READERS}
    served = Counter()
    for routes in readers.values():
        served.update(routes)
    for route in ("/_matrix/federation/v1/query/{query_type}", "/_matrix/federation/v1/make_join/{room_id}/{user_id}",
                  "/_matrix/federation/v2/send_join/{room_id}/{event_id}", "/_matrix/federation/v1/backfill/{room_id}",
                  SEND):
        assert served[route] > 0, f"no federation_reader served {route}: {readers}"

    # The master served none of it: only HAProxy's health checks (and our own key, not the federation API).
    master = federation_served(cluster, "master")
    assert set(master) <= {HEALTH_CHECK}, master
    assert requests_served(cluster, "master").get("/_matrix/key/v2/server", 0) > 0

    # Every /send of Synapse's reached one instance; the rest of the API is spread over both.
    sends = {name: r.get(SEND, 0) for name, r in readers.items()}
    assert sorted(n > 0 for n in sends.values()) == [False, True], sends
    for name, routes in readers.items():
        assert sum(n for route, n in routes.items() if route != SEND) > 0, f"{name} served nothing but /send: {readers}"
