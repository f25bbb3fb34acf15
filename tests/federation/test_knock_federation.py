"""Knocking across servers (make_knock/send_knock, issue 10 item 5), with a real Synapse both ways:
a user knocks on a room of the other server, the host sees the knock, invites, and the knocker
joins; a knock that one of our users takes back is a leave the host sees."""

import pytest

from tests.federation_fixture import SyncWatcher, create_room, join, ok, register
from tests.harness import q


@pytest.fixture(params=["synapse_hosts", "ours_hosts"])
def host_guest(request, synapse, ours):
    return (synapse, ours) if request.param == "synapse_hosts" else (ours, synapse)


def _knock_room(host_user) -> str:
    return create_room(host_user, preset="private_chat", room_version="11", initial_state=[
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}])


def test_a_knock_is_seen_by_the_host_and_answered_with_an_invite(host_guest):
    host, guest = host_guest
    host_user, guest_user = register(host, "h"), register(guest, "g")
    room_id = _knock_room(host_user)
    ok(guest_user.post(f"/knock/{q(room_id)}", {"reason": "let me in"},
                       params={"via": host.server_name, "server_name": host.server_name}))
    knock = SyncWatcher(guest_user).wait_for(lambda body: body.get("rooms", {}).get("knock", {}).get(room_id),
                                             f"the knock on {room_id} in the knocker's sync")
    assert any(e["type"] == "m.room.join_rules" for e in knock["knock_state"]["events"])
    host_watch = SyncWatcher(host_user)
    seen = host_watch.wait_for_membership(room_id, guest_user.user_id, "knock")
    assert seen["content"].get("reason") == "let me in"

    ok(host_user.post(f"/rooms/{q(room_id)}/invite", {"user_id": guest_user.user_id}))
    SyncWatcher(guest_user).wait_for_invite(room_id)
    assert join(guest_user, room_id) == room_id
    host_watch.wait_for_membership(room_id, guest_user.user_id, "join")


def test_a_knock_taken_back_is_a_leave_the_host_sees(synapse, ours):
    # One way only: Synapse takes a knock back locally, telling no one (remote_rescind_knock:
    # it does not keep which server it knocked through); we send the leave through the room's servers.
    host, guest = synapse, ours
    host_user, guest_user = register(host, "h"), register(guest, "g")
    room_id = _knock_room(host_user)
    ok(guest_user.post(f"/knock/{q(room_id)}", {}, params={"via": host.server_name}))
    host_watch = SyncWatcher(host_user)
    host_watch.wait_for_membership(room_id, guest_user.user_id, "knock")
    ok(guest_user.post(f"/rooms/{q(room_id)}/leave", {}))
    host_watch.wait_for_membership(room_id, guest_user.user_id, "leave")
