"""Outbound federation (hs/federation/sender.py) and inbound EDUs (hs/handlers/federation_edus.py),
against a real PostgreSQL and a real peer: a small HTTPS server in this process (its own thread,
a certificate from a test CA) that plays a remote homeserver's /send, checks each request's
X-Matrix signature with our server's real key, and answers 500 or 200 as the test says.

The homeserver is built in-process (hs.server.HomeServer with the real config loader and stores)
so the test can make a remote member join a room without a second server.
"""

import os
import shutil
import tempfile
import time

import gevent
import pytest
import yaml

from hs.config import load_config
from hs.events.signing import generate_signing_key
from hs.federation.request_auth import parse_authorization_header, verify_request
from hs.handlers.auth import Requester
from hs.metrics import FederationSenderCollector
from hs.server import HomeServer
from hs.storage.database import Database
from tests.federation_fixture import TestCA
from tests.harness import free_port
from tests.harness import wait_for as harness_wait_for
from tests.json_http import QuietHandler, start_server

OURS = "ours.test"
MIN_RETRY_MS = 300
REMOTE_PRESENCE_TIMEOUT_MS = 400


class Peer:
    """A remote homeserver's /send: records each verified transaction; `status` is its answer."""

    def __init__(self, ca: TestCA, verify_key):
        self.dir = tempfile.mkdtemp(prefix="hs-test-peer-")
        cert, key = ca.issue(self.dir)
        self.port = free_port()
        self.name = f"127.0.0.1:{self.port}"
        self.verify_key = verify_key
        self.status = 200
        self.transactions = []  # (txn_id, body) of verified requests answered 200
        self.attempts = 0
        self.bad_signatures = 0
        peer = self

        class Handler(QuietHandler):
            def do_PUT(self):
                body = self.read_json()
                try:
                    auth = parse_authorization_header(self.headers.get("Authorization"))
                    assert auth.origin == OURS and auth.destination == peer.name
                    verify_request(auth, "PUT", self.path, peer.name, body, peer.verify_key)
                except Exception:
                    peer.bad_signatures += 1
                    return self.answer_json(401, {"errcode": "M_UNAUTHORIZED"})
                peer.attempts += 1
                if peer.status != 200:
                    return self.answer_json(peer.status, {"errcode": "M_UNKNOWN"})
                peer.transactions.append((self.path.rsplit("/", 1)[1], body))
                self.answer_json(200, {"pdus": {}})

        self.server = start_server(Handler, self.port, tls=(cert, key))

    def pdus(self) -> list[dict]:
        return [pdu for _, body in self.transactions for pdu in body["pdus"]]

    def edus(self, edu_type: str) -> list[dict]:
        return [edu["content"] for _, body in self.transactions for edu in body["edus"] if edu["edu_type"] == edu_type]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for(check, what: str, timeout: float = 10.0):
    # The homeserver runs in this test's own gevent hub.
    return harness_wait_for(check, what, timeout, sleep=gevent.sleep)


@pytest.fixture(scope="module")
def ca():
    ca = TestCA()
    yield ca
    ca.remove()


@pytest.fixture(scope="module")
def hs(db_dsn, ca):
    directory = tempfile.mkdtemp(prefix="hs-test-sender-")
    config = {
        "server_name": OURS, "data_dir": directory, "signing_key_path": os.path.join(directory, "signing.key"),
        "listeners": [{"port": free_port(), "type": "http", "bind_addresses": ["127.0.0.1"],
                       "resources": [{"names": ["client"]}]}],
        "database": {"name": "psycopg2", "args": {"dsn": db_dsn, "cp_max": 5}},
        "federation_ip_range_blacklist": [], "federation_custom_ca_list": [ca.cert_path],
        "trusted_key_servers": [], "suppress_key_server_warning": True,
        "federation": {"destination_min_retry_interval": f"{MIN_RETRY_MS}ms", "destination_retry_multiplier": 2,
                       "destination_max_retry_interval": "5s", "client_timeout": "5s"},
        "presence": {"federation_timeout": f"{REMOTE_PRESENCE_TIMEOUT_MS}ms"},
    }
    path = os.path.join(directory, "homeserver.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    db = Database(db_dsn, max_connections=5)
    server = HomeServer(load_config(path), db, [generate_signing_key()])
    yield server
    db.close()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def peer(hs, ca):
    peer = Peer(ca, hs.signing_keys[0].key.verify_key)
    yield peer
    peer.stop()


def make_user(hs, localpart: str, device_id: str = "DEV") -> Requester:
    user_id = f"@{localpart}:{OURS}"

    def txn(cur):
        hs.accounts.insert_user_txn(cur, user_id, None, 0)
        hs.devices.upsert_device_txn(cur, user_id, device_id, None, 0)
    hs.db.run_txn("test_make_user", txn)
    return Requester(user_id, device_id, False, None)


@pytest.fixture(scope="module")
def room(hs, peer):
    """A public room of @alice here with @bob of the peer joined; then the sender starts."""
    alice = make_user(hs, "alice")
    room_id = hs.room_creation.create_room(alice, {"preset": "public_chat"})["room_id"]
    bob = f"@bob:{peer.name}"
    hs.event_creation.send(room_id, bob, "m.room.member", {"membership": "join"}, state_key=bob)
    hs.federation_sender.start()
    return alice, bob, room_id


def say(hs, alice, room_id, text) -> str:
    return hs.event_creation.send(room_id, alice.user_id, "m.room.message", {"msgtype": "m.text", "body": text})


def retry_row(hs, destination):
    rows = hs.db.execute("t", "SELECT failure_ts, retry_interval, last_successful_stream_ordering FROM destinations"
                              " WHERE destination = %s", (destination,))
    return rows[0]


def test_our_events_reach_the_peer_in_order_signed(hs, peer, room):
    alice, _, room_id = room
    # A first message opens the way (key fetch, TLS): if that first attempt fails on a loaded
    # machine, the queue rightly catches up with the newest event only, which is this one.
    say(hs, alice, room_id, "warm-up")
    wait_for(lambda: peer.pdus(), "the first PDU", timeout=30)
    peer.transactions.clear()
    sent = [say(hs, alice, room_id, f"m{i}") for i in range(3)]
    wait_for(lambda: len(peer.pdus()) >= 3, "three PDUs")
    bodies = [pdu["content"]["body"] for pdu in peer.pdus()]
    assert bodies == ["m0", "m1", "m2"]
    assert all(pdu["sender"] == alice.user_id and "unsigned" not in pdu for pdu in peer.pdus())
    assert peer.bad_signatures == 0
    txn_ids = [int(t) for t, _ in peer.transactions]
    assert txn_ids == sorted(set(txn_ids))
    assert all(body["origin"] == OURS and isinstance(body["origin_server_ts"], int) for _, body in peer.transactions)
    assert len(sent) == 3


def test_a_failing_peer_backs_off_then_catches_up_with_the_newest_event(hs, peer, room):
    alice, _, room_id = room
    peer.transactions.clear()
    peer.status = 500
    say(hs, alice, room_id, "lost-1")
    wait_for(lambda: hs.federation_sender.status()["destinations_failing"], "the peer to be failing")
    failing = hs.federation_sender.status()["destinations_failing"][0]
    assert failing["destination"] == peer.name and 0 < failing["retry_in_ms"] <= MIN_RETRY_MS
    # The operator's view: /metrics names the failing destination, and synctl status too.
    families = {f.name: f for f in FederationSenderCollector(hs.federation_sender).collect()}
    assert families["hs_federation_destinations_failing"].samples[0].value == 1
    assert [s.labels["destination"] for s in families["hs_federation_destination_retry_in_seconds"].samples] == [
        peer.name]
    assert hs.federation_sender.status_summary()["failing_destinations"].startswith(f"{peer.name} (for ")
    assert retry_row(hs, peer.name)[1] == MIN_RETRY_MS
    attempts = peer.attempts
    say(hs, alice, room_id, "lost-2")
    newest = say(hs, alice, room_id, "newest")
    # Nothing is tried before the backoff ends; then the retry fails and the wait doubles.
    wait_for(lambda: peer.attempts > attempts, "a retry")
    wait_for(lambda: retry_row(hs, peer.name)[1] == 2 * MIN_RETRY_MS, "the interval to double")
    assert peer.transactions == []
    # The peer comes back and contacts us: no waiting, and only the room's newest event is sent.
    peer.status = 200
    hs.federation_sender.wake_destination(peer.name)
    wait_for(lambda: peer.pdus(), "catch-up")
    assert [pdu["content"]["body"] for pdu in peer.pdus()] == ["newest"]
    wait_for(lambda: not hs.federation_sender.status()["destinations_failing"], "the backoff to clear")
    failure_ts, interval, last_successful = retry_row(hs, peer.name)
    assert failure_ts is None and interval == 0
    assert last_successful == hs.events.get_event(newest).stream_ordering
    # And the queue is back to sending each event.
    say(hs, alice, room_id, "after")
    wait_for(lambda: [p["content"]["body"] for p in peer.pdus()] == ["newest", "after"], "the next event")


def test_typing_and_public_receipts_go_out_private_ones_do_not(hs, peer, room):
    alice, _, room_id = room
    peer.transactions.clear()
    hs.typing.set_typing(alice, room_id, alice.user_id, True, 10_000)
    wait_for(lambda: peer.edus("m.typing"), "m.typing")
    assert peer.edus("m.typing") == [{"room_id": room_id, "user_id": alice.user_id, "typing": True}]
    event_id = say(hs, alice, room_id, "read me")
    hs.receipts.send_receipt(alice, room_id, "m.read.private", event_id, {})
    hs.receipts.send_receipt(alice, room_id, "m.read", event_id, {})
    wait_for(lambda: peer.edus("m.receipt"), "m.receipt")
    [receipt] = peer.edus("m.receipt")
    assert receipt[room_id]["m.read"][alice.user_id]["event_ids"] == [event_id]
    assert "m.read.private" not in receipt[room_id]


def test_to_device_waits_in_the_database_while_the_peer_is_down(hs, peer, room):
    alice, bob, _ = room
    peer.transactions.clear()
    peer.status = 500
    hs.send_to_device.send(alice, "m.test", "txn1", {"messages": {bob: {"BOBDEV": {"n": 1}}}})
    hs.send_to_device.send(alice, "m.test", "txn2", {"messages": {bob: {"*": {"n": 2}}}})
    wait_for(lambda: hs.federation_sender.status()["destinations_failing"], "the peer to be failing")
    assert hs.federation_sender.store.count_outbox() == 2
    peer.status = 200
    hs.federation_sender.wake_destination(peer.name)
    wait_for(lambda: len(peer.edus("m.direct_to_device")) == 2, "both to-device EDUs")
    first, second = peer.edus("m.direct_to_device")
    assert first["messages"] == {bob: {"BOBDEV": {"n": 1}}} and second["messages"] == {bob: {"*": {"n": 2}}}
    assert first["sender"] == alice.user_id and first["type"] == "m.test"
    assert first["message_id"] != second["message_id"]
    wait_for(lambda: hs.federation_sender.store.count_outbox() == 0, "the outbox to empty")


def test_device_list_updates_carry_stream_and_prev_ids(hs, peer, room):
    alice, _, _ = room
    peer.transactions.clear()
    hs.device_list_writer.user_devices_changed(alice.user_id)
    hs.device_list_writer.user_devices_changed(alice.user_id)
    wait_for(lambda: len(peer.edus("m.device_list_update")) == 2, "two device list updates")
    first, second = peer.edus("m.device_list_update")
    assert first["user_id"] == alice.user_id and first["device_id"] == "DEV" and first["deleted"] is False
    assert second["prev_id"] == [first["stream_id"]] and second["stream_id"] > first["stream_id"]


# --- inbound EDUs ------------------------------------------------------------------------------------


def test_inbound_typing_from_the_users_server_only(hs, peer, room):
    alice, bob, room_id = room
    edus = hs.federation_edus
    edus.on_edu("evil.test", "m.typing", {"room_id": room_id, "user_id": bob, "typing": True})
    assert bob not in hs.typing._typing.get(room_id, set())
    edus.on_edu(peer.name, "m.typing", {"room_id": room_id, "user_id": bob, "typing": "yes"})
    edus.on_edu(peer.name, "m.typing", "not an object")
    edus.on_edu(peer.name, "m.unknown", {"whatever": 1})
    edus.on_edu(peer.name, "m.typing", {"room_id": room_id, "user_id": bob, "typing": True})
    assert bob in hs.typing._typing[room_id]
    edus.on_edu(peer.name, "m.typing", {"room_id": room_id, "user_id": bob, "typing": False})
    assert bob not in hs.typing._typing.get(room_id, set())


def test_inbound_receipt_is_stored_for_the_remote_user(hs, peer, room):
    alice, bob, room_id = room
    event_id = say(hs, alice, room_id, "seen by bob")
    hs.federation_edus.on_edu(peer.name, "m.receipt", {room_id: {"m.read": {
        bob: {"event_ids": [event_id], "data": {"ts": 123}},
        f"@mallory:{OURS}": {"event_ids": [event_id], "data": {"ts": 1}}}}})
    rows = hs.receipt_store.get_changes([room_id], None, hs.receipt_stream.get_current_token(), alice.user_id,
                                        ("m.read",))
    readers = {row[2]: (row[4], row[5]) for row in rows}
    assert readers[bob] == (event_id, {"ts": 123})
    assert f"@mallory:{OURS}" not in readers


def test_inbound_to_device_is_delivered_once(hs, peer, room):
    alice, bob, _ = room
    content = {"sender": bob, "type": "m.room_key_request", "message_id": "abc",
               "messages": {alice.user_id: {"*": {"hello": 1}}, f"@x:{peer.name}": {"D": {}}}}
    hs.federation_edus.on_edu(peer.name, "m.direct_to_device", content)
    hs.federation_edus.on_edu(peer.name, "m.direct_to_device", content)
    messages = hs.to_device_store.get_messages(alice.user_id, "DEV", 0, hs.to_device_stream.get_current_token(), 100)
    assert [m for _, m in messages] == [{"type": "m.room_key_request", "sender": bob, "content": {"hello": 1}}]
    hs.federation_edus.on_edu("evil.test", "m.direct_to_device", dict(content, message_id="other"))
    assert len(hs.to_device_store.get_messages(alice.user_id, "DEV", 0,
                                               hs.to_device_stream.get_current_token(), 100)) == 1


def test_inbound_presence_device_lists_and_signing_keys(hs, peer, room):
    _, bob, _ = room
    hs.federation_edus.on_edu(peer.name, "m.presence", {"push": [
        {"user_id": bob, "presence": "online", "last_active_ago": 1000, "currently_active": True},
        {"user_id": bob, "presence": "dancing"}]})
    stored = hs.presence_store.get(bob)
    assert stored.state == "online" and stored.currently_active
    before = hs.device_list_stream.get_current_token()
    hs.federation_edus.on_edu(peer.name, "m.device_list_update",
                              {"user_id": bob, "device_id": "BOBDEV", "stream_id": 7, "prev_id": [], "deleted": False})
    # No prev_id: bob's list is fetched again (the peer serves none), then marked changed.
    wait_for(lambda: hs.device_list_store.get_stream_rows(before, hs.device_list_stream.get_current_token(),
                                                          None) == [(before + 1, {"user_id": bob})],
             "bob's device list marked changed")
    remote_lists = hs.remote_device_lists.store
    remote_lists.replace(bob, "7", [], None, None, 0)  # as if the resync had worked
    master = {"user_id": bob, "usage": ["master"], "keys": {"ed25519:abc": "abc"}}
    hs.federation_edus.on_edu(peer.name, "m.signing_key_update", {"user_id": bob, "master_key": master})
    assert remote_lists.get_cached([bob])[bob].master_key == master
    hs.federation_edus.on_edu(peer.name, "m.signing_key_update",
                              {"user_id": bob, "master_key": dict(master, user_id="@other:x")})
    assert remote_lists.get_cached([bob])[bob].master_key == master


def test_a_remote_user_whose_server_goes_quiet_is_offline_after_the_federation_timeout(hs, peer, room):
    _, bob, _ = room
    hs.federation_edus.on_edu(peer.name, "m.presence", {"push": [
        {"user_id": bob, "presence": "online", "last_active_ago": 0, "currently_active": True}]})
    hs.presence_writer.check_timeouts()
    assert hs.presence_store.get(bob).state == "online"
    time.sleep(REMOTE_PRESENCE_TIMEOUT_MS / 1000 + 0.1)
    hs.presence_writer.check_timeouts()
    stored = hs.presence_store.get(bob)
    assert stored.state == "offline" and not stored.currently_active
