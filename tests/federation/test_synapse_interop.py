"""Interop with a real Synapse over TLS on loopback (issue 10, "Tests (real parts)").

Every scenario runs in both directions: `synapse_hosts` (the room lives on Synapse, our user comes
from our homeserver) and `ours_hosts` (the other way round). Both servers are driven through the
same client API with tests.harness.Client; what one side does is checked on the other side's
/sync, /messages or /profile, with deadlines instead of sleeps.
"""

import uuid

import pytest
import requests

from tests.federation_fixture import (
    SharedRoom,
    SyncWatcher,
    create_room,
    join,
    ok,
    paginate_back,
    public_room_with_alias,
    register,
    send_text,
)
from tests.harness import Client, q


@pytest.fixture(params=["synapse_hosts", "ours_hosts"])
def host_guest(request, synapse, ours):
    """(the server that hosts the room, the server whose user joins it from outside)."""
    return (synapse, ours) if request.param == "synapse_hosts" else (ours, synapse)


# --- The harness itself: Synapse is up, answers clients, and serves its key under the test CA.

def test_synapse_serves_its_key_over_tls_verified_by_the_test_ca(synapse, test_ca):
    resp = requests.get(synapse.fed_url + "/_matrix/key/v2/server", verify=test_ca.cert_path, timeout=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["server_name"] == synapse.server_name
    assert body["valid_until_ts"] > 0 and body["verify_keys"]
    assert list(body["signatures"]) == [synapse.server_name]


def test_synapse_registers_users_through_our_test_client(synapse):
    client = register(synapse, "harness")
    assert client.user_id.endswith(":" + synapse.server_name)
    assert ok(client.get("/account/whoami"))["user_id"] == client.user_id


def test_our_federation_listener_serves_our_key_over_tls_verified_by_the_test_ca(ours, test_ca):
    resp = requests.get(ours.fed_url + "/_matrix/key/v2/server", verify=test_ca.cert_path, timeout=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["server_name"] == ours.server_name
    assert list(body["signatures"]) == [ours.server_name]


# --- Joins.

def test_remote_user_joins_by_alias(host_guest):
    host, guest = host_guest
    host_user, guest_user = register(host, "h"), register(guest, "g")
    room_id, alias = public_room_with_alias(host_user, host)

    # The guest's server resolves the alias over federation (/query/directory) first.
    resolved = ok(guest_user.get(f"/directory/room/{q(alias)}"))
    assert resolved["room_id"] == room_id
    assert host.server_name in resolved["servers"]

    assert join(guest_user, alias) == room_id
    SyncWatcher(host_user).wait_for_membership(room_id, guest_user.user_id, "join")
    for side in (host_user, guest_user):
        members = ok(side.get(f"/rooms/{q(room_id)}/joined_members"))["joined"]
        assert {host_user.user_id, guest_user.user_id} <= set(members), side.server.server_name


def test_remote_user_joins_by_room_id_with_server_hints(host_guest):
    host, guest = host_guest
    host_user, guest_user = register(host, "h"), register(guest, "g")
    room_id = create_room(host_user, preset="public_chat", name="by id")

    assert join(guest_user, room_id, via=[host.server_name]) == room_id
    SyncWatcher(host_user).wait_for_membership(room_id, guest_user.user_id, "join")
    # The joiner's server has the room's state, not only the membership.
    assert ok(guest_user.get(f"/rooms/{q(room_id)}/state/m.room.name"))["name"] == "by id"
    state = ok(guest_user.get(f"/rooms/{q(room_id)}/state"))
    create_event = next(e for e in state if e["type"] == "m.room.create")
    assert create_event["sender"] == host_user.user_id


def test_second_remote_user_joins_after_the_first(host_guest):
    """The guest's server is already in the room (right after a remote join, maybe partial state)."""
    host, guest = host_guest
    room = SharedRoom(host, guest)
    second = register(guest, "g2")
    assert join(second, room.room_id, via=[host.server_name]) == room.room_id
    room.host_watch.wait_for_membership(room.room_id, second.user_id, "join")


# --- Messages.

def test_messages_flow_both_ways(host_guest):
    host, guest = host_guest
    room = SharedRoom(host, guest)

    text = f"from the host {uuid.uuid4().hex}"
    event_id = send_text(room.host_user, room.room_id, text)
    seen = room.guest_watch.wait_for_message(room.room_id, text)
    assert (seen["event_id"], seen["sender"]) == (event_id, room.host_user.user_id)

    text = f"from the guest {uuid.uuid4().hex}"
    event_id = send_text(room.guest_user, room.room_id, text)
    seen = room.host_watch.wait_for_message(room.room_id, text)
    assert (seen["event_id"], seen["sender"]) == (event_id, room.guest_user.user_id)


def test_messages_arrive_in_order(host_guest):
    host, guest = host_guest
    room = SharedRoom(host, guest)
    texts = [f"burst {i} {uuid.uuid4().hex}" for i in range(5)]
    for text in texts:
        send_text(room.host_user, room.room_id, text)
    room.guest_watch.wait_for_message(room.room_id, texts[-1])
    bodies = [e["content"].get("body") for e in reversed(paginate_back(room.guest_user, room.room_id))
              if e["type"] == "m.room.message"]
    assert bodies[-5:] == texts


# --- Invites.

def test_federated_invite_to_private_room_then_join(host_guest):
    host, guest = host_guest
    host_user, guest_user = register(host, "h"), register(guest, "g")
    room_id = create_room(host_user, preset="private_chat", name="private")
    guest_watch, host_watch = SyncWatcher(guest_user), SyncWatcher(host_user)

    ok(host_user.post(f"/rooms/{q(room_id)}/invite", {"user_id": guest_user.user_id}))
    invite = guest_watch.wait_for_invite(room_id)
    stripped = {(e["type"], e.get("state_key")): e for e in invite["invite_state"]["events"]}
    assert stripped[("m.room.member", guest_user.user_id)]["content"]["membership"] == "invite"
    assert stripped[("m.room.member", guest_user.user_id)]["sender"] == host_user.user_id
    assert stripped[("m.room.join_rules", "")]["content"]["join_rule"] == "invite"
    assert stripped[("m.room.name", "")]["content"]["name"] == "private"

    # Accepting the invite, as clients do: no server hint, the invite says where the room is.
    assert ok(guest_user.post(f"/rooms/{q(room_id)}/join", {}))["room_id"] == room_id
    host_watch.wait_for_membership(room_id, guest_user.user_id, "join")
    guest_watch.wait_for_membership(room_id, guest_user.user_id, "join")


def test_uninvited_remote_user_cannot_join_a_private_room(host_guest):
    host, guest = host_guest
    host_user, guest_user = register(host, "h"), register(guest, "g")
    room_id = create_room(host_user, preset="private_chat")
    resp = guest_user.post(f"/join/{q(room_id)}", {}, params={"server_name": host.server_name,
                                                             "via": host.server_name})
    assert resp.status_code == 403, resp.text
    assert resp.json()["errcode"] == "M_FORBIDDEN", resp.text
    members = ok(host_user.get(f"/rooms/{q(room_id)}/joined_members"))["joined"]
    assert list(members) == [host_user.user_id]


def test_remote_user_rejects_an_invite(host_guest):
    """The guest's server is not in the room, so its leave goes through make_leave/send_leave."""
    host, guest = host_guest
    host_user, guest_user = register(host, "h"), register(guest, "g")
    room_id = create_room(host_user, preset="private_chat")
    guest_watch = SyncWatcher(guest_user)
    ok(host_user.post(f"/rooms/{q(room_id)}/invite", {"user_id": guest_user.user_id}))
    guest_watch.wait_for_invite(room_id)

    ok(guest_user.post(f"/rooms/{q(room_id)}/leave", {}))
    SyncWatcher(host_user).wait_for_membership(room_id, guest_user.user_id, "leave")
    guest_watch.wait_for(lambda body: room_id in body.get("rooms", {}).get("leave", {}),
                         f"{room_id} under rooms.leave")


# --- Ephemeral: typing and receipts.

def _typing(user_id):
    return lambda e: e["type"] == "m.typing" and user_id in e["content"].get("user_ids", [])


def test_typing_seen_both_ways(host_guest):
    host, guest = host_guest
    room = SharedRoom(host, guest)
    for typist, watcher in ((room.host_user, room.guest_watch), (room.guest_user, room.host_watch)):
        ok(typist.put(f"/rooms/{q(room.room_id)}/typing/{q(typist.user_id)}", {"typing": True, "timeout": 30000}))
        watcher.wait_for_ephemeral(room.room_id, _typing(typist.user_id), f"{typist.user_id} typing")


def test_typing_stopped_is_seen_remotely(host_guest):
    host, guest = host_guest
    room = SharedRoom(host, guest)
    path = f"/rooms/{q(room.room_id)}/typing/{q(room.guest_user.user_id)}"
    ok(room.guest_user.put(path, {"typing": True, "timeout": 30000}))
    room.host_watch.wait_for_ephemeral(room.room_id, _typing(room.guest_user.user_id), "typing")
    ok(room.guest_user.put(path, {"typing": False}))
    room.host_watch.wait_for_ephemeral(
        room.room_id, lambda e: e["type"] == "m.typing" and room.guest_user.user_id not in e["content"]["user_ids"],
        "typing stopped")


def test_read_receipts_seen_both_ways(host_guest):
    host, guest = host_guest
    room = SharedRoom(host, guest)
    for sender, reader, sender_watch, reader_watch in (
            (room.host_user, room.guest_user, room.host_watch, room.guest_watch),
            (room.guest_user, room.host_user, room.guest_watch, room.host_watch)):
        text = f"read me {uuid.uuid4().hex}"
        event_id = send_text(sender, room.room_id, text)
        reader_watch.wait_for_message(room.room_id, text)
        ok(reader.post(f"/rooms/{q(room.room_id)}/receipt/m.read/{q(event_id)}", {}))
        receipt = sender_watch.wait_for_ephemeral(
            room.room_id,
            lambda e, eid=event_id, uid=reader.user_id: (
                e["type"] == "m.receipt" and uid in e["content"].get(eid, {}).get("m.read", {})),
            f"{reader.user_id}'s read receipt on {event_id}")
        assert isinstance(receipt["content"][event_id]["m.read"][reader.user_id]["ts"], int)


def test_presence_seen_both_ways(host_guest):
    """Presence goes to the servers that share a room with the user (presence is enabled on both)."""
    host, guest = host_guest
    room = SharedRoom(host, guest)
    for user, watcher in ((room.host_user, room.guest_watch), (room.guest_user, room.host_watch)):
        status = f"status {uuid.uuid4().hex[:8]}"
        ok(user.put(f"/presence/{q(user.user_id)}/status", {"presence": "online", "status_msg": status}))
        seen = watcher.wait_for(
            lambda body, uid=user.user_id, msg=status: next(
                (e for e in body.get("presence", {}).get("events", [])
                 if e["sender"] == uid and e["content"].get("status_msg") == msg), None),
            f"{user.user_id}'s presence {status!r}")
        assert seen["type"] == "m.presence"
        assert seen["content"]["presence"] == "online"


# --- History.

def test_backfill_shows_history_from_before_the_join(host_guest):
    host, guest = host_guest
    host_user, guest_user = register(host, "h"), register(guest, "g")
    room_id = create_room(host_user, preset="public_chat")  # history_visibility: shared
    texts = [f"before the join {i} {uuid.uuid4().hex}" for i in range(6)]
    for text in texts:
        send_text(host_user, room_id, text)
    assert join(guest_user, room_id, via=[host.server_name]) == room_id

    # The guest's server has only the join and the state: /messages must backfill the rest.
    events = paginate_back(guest_user, room_id)
    bodies = [e["content"].get("body") for e in reversed(events) if e["type"] == "m.room.message"]
    assert bodies == texts
    assert any(e["type"] == "m.room.member" and e["state_key"] == guest_user.user_id for e in events)


def test_history_before_the_join_stays_hidden_when_visibility_is_joined(host_guest):
    host, guest = host_guest
    host_user, guest_user = register(host, "h"), register(guest, "g")
    room_id = create_room(host_user, preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}])
    hidden = f"before the join {uuid.uuid4().hex}"
    send_text(host_user, room_id, hidden)
    assert join(guest_user, room_id, via=[host.server_name]) == room_id
    after = f"after the join {uuid.uuid4().hex}"
    send_text(host_user, room_id, after)
    SyncWatcher(guest_user).wait_for_message(room_id, after)

    bodies = [e["content"].get("body") for e in paginate_back(guest_user, room_id) if e["type"] == "m.room.message"]
    assert after in bodies
    assert hidden not in bodies


# --- Profiles.

def test_remote_profile_lookup(host_guest):
    """A user of one server looks up a user of the other, with no room shared."""
    owner_server, asker_server = host_guest
    owner, asker = register(owner_server, "p"), register(asker_server, "a")
    name = f"Remote Person {uuid.uuid4().hex[:6]}"
    ok(owner.put(f"/profile/{q(owner.user_id)}/displayname", {"displayname": name}))

    assert ok(asker.get(f"/profile/{q(owner.user_id)}"))["displayname"] == name
    assert ok(asker.get(f"/profile/{q(owner.user_id)}/displayname")) == {"displayname": name}


def test_remote_profile_of_unknown_user_is_not_found(host_guest):
    owner_server, asker_server = host_guest
    asker = register(asker_server, "a")
    resp = asker.get(f"/profile/{q('@nobody' + uuid.uuid4().hex[:8] + ':' + owner_server.server_name)}")
    assert resp.status_code == 404, resp.text
    assert resp.json()["errcode"] == "M_NOT_FOUND", resp.text


# --- Leaving.

def test_leave_is_seen_by_the_other_side(host_guest):
    host, guest = host_guest
    room = SharedRoom(host, guest)
    ok(room.guest_user.post(f"/rooms/{q(room.room_id)}/leave", {}))
    room.host_watch.wait_for_membership(room.room_id, room.guest_user.user_id, "leave")
    members = ok(room.host_user.get(f"/rooms/{q(room.room_id)}/joined_members"))["joined"]
    assert room.guest_user.user_id not in members

    # And a host user's leave reaches the guest's server, which is still in the room.
    stayer = register(guest, "g2")
    join(stayer, room.room_id, via=[host.server_name])
    stayer_watch = SyncWatcher(stayer)
    stayer_watch.wait_for_membership(room.room_id, stayer.user_id, "join")
    ok(room.host_user.post(f"/rooms/{q(room.room_id)}/leave", {}))
    stayer_watch.wait_for_membership(room.room_id, room.host_user.user_id, "leave")


def test_client_works_against_both_servers(synapse, ours):
    """Guards the assumption every test here rests on: one client speaks to both."""
    for server in (synapse, ours):
        versions = ok(Client(server).get("/_matrix/client/versions"))["versions"]
        assert "v1.1" in versions, server.server_name
