"""Device list tracking (client-server API "Tracking the device list for a user"): /sync's
`device_lists` and GET /keys/changes. `changed` lists the users sharing a room with the client
(and the client's own user) whose devices changed — a login, a deleted or renamed device, a key
upload — and the users who started sharing a room with it; `left` lists those who share no room
with it any more. A change wakes a parked sync, and the device_lists stream gives replication its
rows."""

import time

from hs.events.signing import generate_signing_key, sign_json
from hs.storage.database import Database
from hs.storage.device_lists import DeviceListStore
from tests.api.test_devices import delete_device
from tests.api.test_response_schemas import assert_matches_spec
from tests.api.test_sync import SYNC_PATH, assert_error, new_user, post, sync
from tests.api.test_sync_longpoll import Parked
from tests.harness import Client, create, q

CHANGES_PATH = "/keys/changes"


def device_lists(client, since) -> dict:
    return sync(client, since=since, timeout=0)["device_lists"]


def second_device(homeserver, client) -> Client:
    return Client(homeserver).login(client.user_id.split(":")[0][1:])


def room_of(homeserver, *clients) -> str:
    room_id = create(clients[0], preset="public_chat")
    for client in clients[1:]:
        post(client, f"/rooms/{q(room_id)}/join")
    return room_id


def position(token: str) -> int:
    """The device_list key of a sync token."""
    return int(token[1:].split("_")[7])


def test_a_second_device_shows_the_user_in_a_room_mates_changed_and_their_own(homeserver):
    alice, bob = new_user(homeserver, "dl"), new_user(homeserver, "dl")
    room_of(homeserver, alice, bob)
    since_bob, since_alice = sync(bob)["next_batch"], sync(alice)["next_batch"]
    second_device(homeserver, alice)
    got = bob.get("/sync", params={"since": since_bob, "timeout": 0})
    assert_matches_spec(got, SYNC_PATH)
    assert got.json()["device_lists"] == {"changed": [alice.user_id], "left": []}
    # The user's own other devices must learn of the new one too.
    assert device_lists(alice, since_alice) == {"changed": [alice.user_id], "left": []}


def test_deleting_a_device_shows_the_user_in_changed(homeserver):
    alice, bob = new_user(homeserver, "dl"), new_user(homeserver, "dl")
    room_of(homeserver, alice, bob)
    laptop = second_device(homeserver, alice)
    since = sync(bob)["next_batch"]
    assert device_lists(bob, since) == {"changed": [], "left": []}
    assert delete_device(alice, laptop.device_id).status_code == 200
    assert device_lists(bob, since) == {"changed": [alice.user_id], "left": []}


def test_logout_and_renaming_a_device_each_show_the_user_in_changed(homeserver):
    alice, bob = new_user(homeserver, "dl"), new_user(homeserver, "dl")
    room_of(homeserver, alice, bob)
    laptop = second_device(homeserver, alice)
    since = sync(bob)["next_batch"]
    resp = alice.put(f"/devices/{q(alice.device_id)}", {"display_name": "Phone"})
    assert resp.status_code == 200, resp.text
    renamed = sync(bob, since=since, timeout=0)
    assert renamed["device_lists"] == {"changed": [alice.user_id], "left": []}
    post(laptop, "/logout")
    assert device_lists(bob, renamed["next_batch"]) == {"changed": [alice.user_id], "left": []}


def test_uploading_device_keys_shows_the_user_in_changed(homeserver):
    alice, bob = new_user(homeserver, "dl"), new_user(homeserver, "dl")
    room_of(homeserver, alice, bob)
    since = sync(bob)["next_batch"]
    key = generate_signing_key(alice.device_id)
    device_keys = {"user_id": alice.user_id, "device_id": alice.device_id,
                   "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                   "keys": {f"ed25519:{alice.device_id}": key.verify_key_base64,
                            f"curve25519:{alice.device_id}": "3C5BFWi2Y8MaVvjM8M22DBmh24PmgR0nPvJOIArzgyI"}}
    resp = alice.post("/keys/upload", {"device_keys": sign_json(device_keys, alice.user_id, key)})
    assert resp.status_code == 200, resp.text
    assert device_lists(bob, since) == {"changed": [alice.user_id], "left": []}


def test_a_stranger_does_not_see_a_device_change(homeserver):
    alice, stranger = new_user(homeserver, "dl"), new_user(homeserver, "dl")
    create(alice)
    create(stranger)
    since = sync(stranger)["next_batch"]
    second_device(homeserver, alice)
    assert device_lists(stranger, since) == {"changed": [], "left": []}


def test_a_joiner_appears_in_changed_for_the_members_and_they_for_the_joiner(homeserver):
    alice, bob, carol = (new_user(homeserver, "dl") for _ in range(3))
    room_id = room_of(homeserver, alice, bob)
    since = {c.user_id: sync(c)["next_batch"] for c in (alice, bob, carol)}
    post(carol, f"/rooms/{q(room_id)}/join")
    assert device_lists(alice, since[alice.user_id]) == {"changed": [carol.user_id], "left": []}
    assert device_lists(bob, since[bob.user_id]) == {"changed": [carol.user_id], "left": []}
    assert device_lists(carol, since[carol.user_id]) == {
        "changed": sorted([alice.user_id, bob.user_id, carol.user_id]), "left": []}


def test_an_invitee_appears_in_changed_for_the_members_but_their_device_changes_do_not(homeserver):
    """As Synapse: room keys may be shared with invitees, so the client fetches their keys once;
    sharing a room (for later device changes) takes a join."""
    alice, bob, carol = (new_user(homeserver, "dl") for _ in range(3))
    room_id = room_of(homeserver, alice, bob)
    since = sync(bob)["next_batch"]
    post(alice, f"/rooms/{q(room_id)}/invite", {"user_id": carol.user_id})
    invited = sync(bob, since=since, timeout=0)
    assert invited["device_lists"] == {"changed": [carol.user_id], "left": []}
    second_device(homeserver, carol)
    assert device_lists(bob, invited["next_batch"]) == {"changed": [], "left": []}


def test_a_profile_change_is_not_a_join(homeserver):
    """A member event from join to join (a new display name) starts no sharing."""
    alice, bob = new_user(homeserver, "dl"), new_user(homeserver, "dl")
    room_of(homeserver, alice, bob)
    since = sync(bob)["next_batch"]
    resp = alice.put(f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Alice Again"})
    assert resp.status_code == 200, resp.text
    assert device_lists(bob, since) == {"changed": [], "left": []}


def test_leaving_the_only_shared_room_puts_each_in_the_others_left(homeserver):
    alice, bob = new_user(homeserver, "dl"), new_user(homeserver, "dl")
    room_id = room_of(homeserver, alice, bob)
    since_alice, since_bob = sync(alice)["next_batch"], sync(bob)["next_batch"]
    post(bob, f"/rooms/{q(room_id)}/leave")
    assert device_lists(alice, since_alice) == {"changed": [], "left": [bob.user_id]}
    assert device_lists(bob, since_bob) == {"changed": [], "left": [alice.user_id]}


def test_leaving_one_room_while_sharing_another_is_not_left(homeserver):
    alice, bob = new_user(homeserver, "dl"), new_user(homeserver, "dl")
    room_id = room_of(homeserver, alice, bob)
    room_of(homeserver, alice, bob)
    since = sync(alice)["next_batch"]
    post(bob, f"/rooms/{q(room_id)}/leave")
    assert device_lists(alice, since) == {"changed": [], "left": []}


def test_initial_sync_lists_no_device_changes(homeserver):
    alice, bob = new_user(homeserver, "dl"), new_user(homeserver, "dl")
    room_of(homeserver, alice, bob)
    second_device(homeserver, alice)
    assert sync(bob)["device_lists"] == {"changed": [], "left": []}


def test_a_device_change_wakes_a_room_mates_parked_sync(homeserver):
    alice, bob = new_user(homeserver, "dl"), new_user(homeserver, "dl")
    room_of(homeserver, alice, bob)
    since = sync(bob)["next_batch"]
    parked = Parked(bob, since=since, timeout=10000)
    time.sleep(0.5)
    assert parked.thread.is_alive(), "returned before anything happened"
    second_device(homeserver, alice)
    body, elapsed = parked.result()
    assert body["device_lists"] == {"changed": [alice.user_id], "left": []}
    assert elapsed < 5, elapsed
    assert position(body["next_batch"]) > position(since)


def test_keys_changes_between_two_sync_tokens(homeserver):
    alice, bob, carol = (new_user(homeserver, "dl") for _ in range(3))
    room_id = room_of(homeserver, alice, bob, carol)
    start = sync(alice)["next_batch"]
    second_device(homeserver, bob)
    post(carol, f"/rooms/{q(room_id)}/leave")
    end = sync(alice, since=start, timeout=0)["next_batch"]
    second_device(homeserver, alice)  # after `to`: not listed
    resp = alice.get(CHANGES_PATH, params={"from": start, "to": end})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"changed": [bob.user_id], "left": [carol.user_id]}
    assert_matches_spec(resp, "/_matrix/client/v3/keys/changes")
    # Nothing between a token and itself.
    assert alice.get(CHANGES_PATH, params={"from": end, "to": end}).json() == {"changed": [], "left": []}


def test_keys_changes_rejects_bad_tokens_and_needs_from_and_a_login(homeserver):
    alice = new_user(homeserver, "dl")
    good = sync(alice)["next_batch"]
    assert_error(alice.get(CHANGES_PATH, params={"to": good}), 400, "M_MISSING_PARAM")
    assert_error(alice.get(CHANGES_PATH, params={"from": "nonsense", "to": good}), 400, "M_INVALID_PARAM")
    assert_error(alice.get(CHANGES_PATH, params={"from": good, "to": "s1_x"}), 400, "M_INVALID_PARAM")
    assert_error(Client(homeserver).get(CHANGES_PATH, params={"from": good, "to": good}), 401, "M_MISSING_TOKEN")


def test_stream_rows_list_each_change_in_order(homeserver, db_dsn):
    alice, bob = new_user(homeserver, "dl"), new_user(homeserver, "dl")
    before = position(sync(alice)["next_batch"])
    second_device(homeserver, bob)
    second_device(homeserver, alice)
    db = Database(db_dsn, max_connections=1)
    try:
        store = DeviceListStore(db)
        rows = store.get_stream_rows(before, before + 2, 10)
        assert rows == [(before + 1, {"user_id": bob.user_id}), (before + 2, {"user_id": alice.user_id})]
        assert store.get_stream_rows(before, before + 2, 1) == rows[:1]
        assert store.get_stream_rows(before, before + 2, None) == rows
        assert store.get_stream_rows(before + 1, before + 2, 10) == rows[1:]
        # Rows sharing an id are one batch: a limit never splits them.
        store.add_change(before + 2, bob.user_id)
        batch = sorted([(before + 2, {"user_id": alice.user_id}), (before + 2, {"user_id": bob.user_id})],
                       key=lambda row: row[1]["user_id"])
        assert store.get_stream_rows(before + 1, before + 2, 1) == batch
    finally:
        db.close()


def test_a_join_in_a_room_the_sync_filter_leaves_out_is_still_a_device_list_change(homeserver):
    # device_lists are about users, not rooms: a filter naming other rooms does not hide them.
    alice, bob, carol = (new_user(homeserver, "dl") for _ in range(3))
    shown, hidden = room_of(homeserver, alice, bob), room_of(homeserver, alice, bob)
    only_shown = {"room": {"rooms": [shown]}}
    since = sync(bob, filter=only_shown)["next_batch"]
    post(carol, f"/rooms/{q(hidden)}/join")
    body = sync(bob, since=since, filter=only_shown, timeout=0)
    assert body["device_lists"] == {"changed": [carol.user_id], "left": []}
