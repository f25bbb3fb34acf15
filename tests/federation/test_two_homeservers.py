"""Two instances of our homeserver federating over TLS on loopback, each trusting only the test
CA (issue 10, "Tests (real parts)"): the core flow, in both directions."""

import uuid

import pytest

from tests.federation_fixture import (
    SharedRoom,
    SyncWatcher,
    create_room,
    join,
    ok,
    public_room_with_alias,
    register,
    send_text,
)
from tests.harness import q


@pytest.fixture(params=["a_hosts", "b_hosts"])
def host_guest(request, ours, ours_b):
    return (ours, ours_b) if request.param == "a_hosts" else (ours_b, ours)


def test_each_server_answers_the_others_signed_profile_query(ours, ours_b):
    """The query is signed by the asker and verified by the owner with the asker's key, fetched
    over TLS under the test CA: it works only if keys, signing and TLS work both ways."""
    for asker, owner in ((ours, ours_b), (ours_b, ours)):
        user, remote = register(asker, "a"), register(owner, "r")
        name = f"Remote Person {uuid.uuid4().hex[:6]}"
        ok(remote.put(f"/profile/{q(remote.user_id)}/displayname", {"displayname": name}))
        assert ok(user.get(f"/profile/{q(remote.user_id)}/displayname")) == {"displayname": name}


def test_remote_user_joins_by_alias(host_guest):
    host, guest = host_guest
    host_user, guest_user = register(host, "h"), register(guest, "g")
    room_id, alias = public_room_with_alias(host_user, host)
    assert join(guest_user, alias) == room_id
    SyncWatcher(host_user).wait_for_membership(room_id, guest_user.user_id, "join")
    members = ok(guest_user.get(f"/rooms/{q(room_id)}/joined_members"))["joined"]
    assert {host_user.user_id, guest_user.user_id} <= set(members)


def test_messages_flow_both_ways(host_guest):
    host, guest = host_guest
    room = SharedRoom(host, guest)
    for sender, watcher in ((room.host_user, room.guest_watch), (room.guest_user, room.host_watch)):
        text = f"hello from {sender.user_id} {uuid.uuid4().hex}"
        event_id = send_text(sender, room.room_id, text)
        seen = watcher.wait_for_message(room.room_id, text)
        assert (seen["event_id"], seen["sender"]) == (event_id, sender.user_id)


def test_federated_invite_to_private_room_then_join(host_guest):
    host, guest = host_guest
    host_user, guest_user = register(host, "h"), register(guest, "g")
    room_id = create_room(host_user, preset="private_chat")
    guest_watch = SyncWatcher(guest_user)
    ok(host_user.post(f"/rooms/{q(room_id)}/invite", {"user_id": guest_user.user_id}))
    invite = guest_watch.wait_for_invite(room_id)
    member = next(e for e in invite["invite_state"]["events"]
                  if e["type"] == "m.room.member" and e["state_key"] == guest_user.user_id)
    assert member["content"]["membership"] == "invite"

    assert ok(guest_user.post(f"/rooms/{q(room_id)}/join", {}))["room_id"] == room_id
    SyncWatcher(host_user).wait_for_membership(room_id, guest_user.user_id, "join")


def test_leave_is_seen_by_the_other_side(host_guest):
    host, guest = host_guest
    room = SharedRoom(host, guest)
    ok(room.guest_user.post(f"/rooms/{q(room.room_id)}/leave", {}))
    room.host_watch.wait_for_membership(room.room_id, room.guest_user.user_id, "leave")
    assert room.guest_user.user_id not in ok(room.host_user.get(f"/rooms/{q(room.room_id)}/joined_members"))["joined"]
