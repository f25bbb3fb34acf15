"""Send-to-device messaging (client-server API "Send-to-Device messaging"): PUT
/sendToDevice/{eventType}/{txnId} and /sync's `to_device` section. A message goes to one device
or to every device (`*`), is delivered once per `since` and deleted when the next sync
acknowledges it, comes again to a client that retries an old `since`, is capped at 100 per
response, wakes a parked sync, and is dropped with its device."""

import uuid

from hs.storage.database import Database
from hs.storage.id_generator import StreamIdGenerator
from hs.storage.to_device import STREAM_TABLES, ToDeviceStore
from tests.api.test_response_schemas import assert_matches_spec
from tests.api.test_sync import SYNC_PATH, assert_error, new_user, sync
from tests.api.test_sync_longpoll import Parked
from tests.harness import Client, q, query

SEND_PATH = "/_matrix/client/v3/sendToDevice/{eventType}/{txnId}"
PASSWORD = "correct horse battery"


def send_to_device(client, messages, event_type="org.example.ping", txn_id=None):
    return client.put(f"/sendToDevice/{q(event_type)}/{q(txn_id or uuid.uuid4().hex)}", {"messages": messages})


def to_device(body) -> list[dict]:
    return body["to_device"]["events"]


def second_device(homeserver, client) -> Client:
    return Client(homeserver).login(client.user_id.split(":")[0][1:])


def test_message_to_one_device_reaches_only_that_device(homeserver):
    alice, bob = new_user(homeserver, "td"), new_user(homeserver, "td")
    bob_laptop = second_device(homeserver, bob)
    since_phone, since_laptop = sync(bob)["next_batch"], sync(bob_laptop)["next_batch"]
    resp = send_to_device(alice, {bob.user_id: {bob.device_id: {"hello": "phone"}}}, event_type="m.room_key_request")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    assert_matches_spec(resp, SEND_PATH)
    got = bob.get("/sync", params={"since": since_phone})
    assert_matches_spec(got, SYNC_PATH)
    assert to_device(got.json()) == [{"type": "m.room_key_request", "sender": alice.user_id,
                                      "content": {"hello": "phone"}}]
    assert to_device(sync(bob_laptop, since=since_laptop)) == []


def test_wildcard_reaches_every_device_and_a_named_device_keeps_its_own_content(homeserver):
    alice, bob = new_user(homeserver, "td"), new_user(homeserver, "td")
    bob_laptop, bob_tablet = second_device(homeserver, bob), second_device(homeserver, bob)
    resp = send_to_device(alice, {bob.user_id: {"*": {"n": "all"}, bob_tablet.device_id: {"n": "tablet"}}})
    assert resp.status_code == 200, resp.text
    assert [e["content"] for e in to_device(sync(bob))] == [{"n": "all"}]
    assert [e["content"] for e in to_device(sync(bob_laptop))] == [{"n": "all"}]
    assert [e["content"] for e in to_device(sync(bob_tablet))] == [{"n": "tablet"}]


def test_retry_with_the_same_transaction_id_stores_nothing_new(homeserver):
    alice, bob = new_user(homeserver, "td"), new_user(homeserver, "td")
    messages = {bob.user_id: {bob.device_id: {"once": True}}}
    for _ in range(2):
        resp = send_to_device(alice, messages, txn_id="txn-1")
        assert resp.status_code == 200, resp.text
        assert resp.json() == {}
    assert len(to_device(sync(bob))) == 1
    # The same ID from another device of the sender is another transaction.
    assert send_to_device(second_device(homeserver, alice), messages, txn_id="txn-1").status_code == 200
    assert len(to_device(sync(bob))) == 2


def test_transaction_ids_are_forgotten_after_a_day(homeserver, db_dsn):
    alice, bob = new_user(homeserver, "td"), new_user(homeserver, "td")
    messages = {bob.user_id: {bob.device_id: {"n": 1}}}
    assert send_to_device(alice, messages, txn_id="old").status_code == 200
    query(db_dsn, "UPDATE to_device_txns SET created_ts = created_ts - 2 * 86400000 WHERE user_id = %s",
          (alice.user_id,))
    assert send_to_device(alice, messages, txn_id="old").status_code == 200
    assert len(to_device(sync(bob))) == 2


def test_message_is_delivered_once_and_deleted_when_the_next_sync_acknowledges_it(homeserver, db_dsn):
    alice, bob = new_user(homeserver, "td"), new_user(homeserver, "td")
    since = sync(bob)["next_batch"]
    send_to_device(alice, {bob.user_id: {bob.device_id: {"n": 1}}})
    first = sync(bob, since=since)
    assert [e["content"] for e in to_device(first)] == [{"n": 1}]
    inbox = "SELECT count(*) FROM device_inbox WHERE user_id = %s"
    assert query(db_dsn, inbox, (bob.user_id,)) == [(1,)]
    second = sync(bob, since=first["next_batch"])
    assert to_device(second) == []
    assert query(db_dsn, inbox, (bob.user_id,)) == [(0,)]


def test_retrying_an_old_since_gets_the_unacknowledged_messages_again(homeserver):
    alice, bob = new_user(homeserver, "td"), new_user(homeserver, "td")
    since = sync(bob)["next_batch"]
    send_to_device(alice, {bob.user_id: {bob.device_id: {"n": 1}}})
    assert [e["content"] for e in to_device(sync(bob, since=since))] == [{"n": 1}]
    # The response was lost: the client syncs with the same since.
    assert [e["content"] for e in to_device(sync(bob, since=since))] == [{"n": 1}]


def test_more_than_a_hundred_messages_come_in_capped_responses_in_order(homeserver):
    alice, bob = new_user(homeserver, "td"), new_user(homeserver, "td")
    since = sync(bob)["next_batch"]
    for n in range(130):
        assert send_to_device(alice, {bob.user_id: {bob.device_id: {"n": n}}}).status_code == 200
    first = sync(bob, since=since, timeout=10000)
    assert [e["content"]["n"] for e in to_device(first)] == list(range(100))
    # The capped response returned at once although there is more, and the rest follows.
    second = sync(bob, since=first["next_batch"], timeout=10000)
    assert [e["content"]["n"] for e in to_device(second)] == list(range(100, 130))
    third = sync(bob, since=second["next_batch"])
    assert to_device(third) == []


def test_parked_sync_is_woken_by_a_to_device_message(homeserver):
    alice, bob = new_user(homeserver, "td"), new_user(homeserver, "td")
    since = sync(bob)["next_batch"]
    parked = Parked(bob, since=since, timeout=10000)
    parked.thread.join(0.5)
    assert parked.thread.is_alive(), "returned before anything happened"
    send_to_device(alice, {bob.user_id: {bob.device_id: {"wake": "up"}}})
    body, elapsed = parked.result()
    assert [e["content"] for e in to_device(body)] == [{"wake": "up"}]
    assert elapsed < 5, elapsed


def test_messages_to_a_deleted_device_are_dropped(homeserver, db_dsn):
    alice, bob = new_user(homeserver, "td"), new_user(homeserver, "td")
    bob_laptop = second_device(homeserver, bob)
    send_to_device(alice, {bob.user_id: {"*": {"n": 1}}})
    count = "SELECT count(*) FROM device_inbox WHERE user_id = %s AND device_id = %s"
    assert query(db_dsn, count, (bob.user_id, bob_laptop.device_id)) == [(1,)]
    assert bob_laptop.post("/logout", {}).status_code == 200
    assert query(db_dsn, count, (bob.user_id, bob_laptop.device_id)) == [(0,)]
    # A message to it now is accepted and stored for no one.
    assert send_to_device(alice, {bob.user_id: {bob_laptop.device_id: {"n": 2}}}).status_code == 200
    assert query(db_dsn, count, (bob.user_id, bob_laptop.device_id)) == [(0,)]
    assert [e["content"] for e in to_device(sync(bob))] == [{"n": 1}]


def test_messages_to_remote_users_are_accepted_and_dropped(homeserver):
    alice, bob = new_user(homeserver, "td"), new_user(homeserver, "td")
    resp = send_to_device(alice, {"@someone:elsewhere.example": {"DEV": {"n": 1}},
                                  bob.user_id: {bob.device_id: {"n": 2}}})
    assert resp.status_code == 200, resp.text
    assert [e["content"] for e in to_device(sync(bob))] == [{"n": 2}]


def test_invalid_user_ids_are_skipped_and_the_other_recipients_served(homeserver):
    # As Synapse (DeviceMessageHandler.send_device_message): invalid recipients are ignored.
    alice, bob = new_user(homeserver, "td"), new_user(homeserver, "td")
    messages = {user_id: {"D": {"n": 0}} for user_id in ["bob", "@nocolon", "@:server", "@a b:server"]}
    messages[bob.user_id] = {bob.device_id: {"n": 1}}
    resp = send_to_device(alice, messages)
    assert resp.status_code == 200, resp.text
    assert [e["content"] for e in to_device(sync(bob))] == [{"n": 1}]


def test_bad_requests_are_refused_with_the_spec_errors(homeserver):
    alice, bob = new_user(homeserver, "td"), new_user(homeserver, "td")
    path = "/sendToDevice/org.example.ping/"
    assert_error(alice.put(path + "t1", {}), 400, "M_MISSING_PARAM")
    for i, messages in enumerate([[], "x", {bob.user_id: []}, {bob.user_id: {bob.device_id: "x"}},
                                  {bob.user_id: {bob.device_id: [1]}}, {bob.user_id: {"": {}}},
                                  {bob.user_id: {bob.device_id: {"k": "nul\x00"}}}]):
        assert_error(alice.put(path + f"b{i}", {"messages": messages}), 400, "M_BAD_JSON")
    assert_error(alice.put(path + "x", [1]), 400, "M_BAD_JSON")
    assert_error(alice.put(path + "t%00", {"messages": {}}), 400, "M_INVALID_PARAM")
    assert_error(Client(homeserver).put(path + "t2", {"messages": {}}), 401, "M_MISSING_TOKEN")
    assert to_device(sync(bob)) == []


def test_stream_rows_name_the_recipient_device_of_each_message(homeserver, db_dsn):
    alice, bob = new_user(homeserver, "td"), new_user(homeserver, "td")
    before = query(db_dsn, "SELECT stream_id FROM to_device_stream_position")[0][0]
    send_to_device(alice, {bob.user_id: {bob.device_id: {"n": 1}}})
    send_to_device(alice, {alice.user_id: {alice.device_id: {"n": 2}}})
    db = Database(db_dsn, max_connections=1)
    try:
        store = ToDeviceStore(db)
        rows = store.get_stream_rows(before, before + 2, 10)
        assert rows == [(before + 1, {"user_id": bob.user_id, "device_id": bob.device_id}),
                        (before + 2, {"user_id": alice.user_id, "device_id": alice.device_id})]
        assert store.get_stream_rows(before, before + 2, 1) == rows[:1]
        assert store.get_stream_rows(before, before + 2, None) == rows  # the catalogue's "no limit"
        assert store.get_stream_rows(before + 1, before + 2, 10) == rows[1:]
    finally:
        db.close()


def test_stream_position_survives_the_deletion_of_every_delivered_message(homeserver, db_dsn):
    """A restarted server must not hand out an id a client has acknowledged: the next message
    would be deleted unseen by the client's next sync."""
    alice, bob = new_user(homeserver, "td"), new_user(homeserver, "td")
    send_to_device(alice, {bob.user_id: {bob.device_id: {"n": 1}}})
    first = sync(bob)
    acknowledged = int(first["next_batch"][1:].split("_")[6])
    sync(bob, since=first["next_batch"])
    assert query(db_dsn, "SELECT count(*) FROM device_inbox WHERE stream_id >= %s", (acknowledged,)) == [(0,)]
    db = Database(db_dsn, max_connections=1)
    try:
        restarted = StreamIdGenerator(db, "device_inbox", "stream_id", extra_tables=STREAM_TABLES)
        assert restarted.get_current_token() >= acknowledged
    finally:
        db.close()
