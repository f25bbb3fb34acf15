"""Joining a big room through Synapse (issue 11): 2,000 members on our server A, Synapse joins it,
and a user of our second server B joins it through Synapse alone, so Synapse answers send_join with
the whole state and auth chain, which B checks and stores (in batches of 500) before talking in
the room. bench/federation_join.py times the same with 20,000 messages of history, and a local
user's sends during the join."""

import uuid

from bench.room_size import Api, create_users, join_room, run_concurrently
from tests.federation_fixture import SyncWatcher, create_room, join, ok, register, send_text
from tests.harness import q, wait_for

MEMBERS = 2000


def test_a_2000_member_room_is_joined_whole_through_synapse(ours, synapse, ours_b):
    host_user = register(ours, "h")
    room_id = create_room(host_user, preset="public_chat")
    tokens = create_users(ours.config["database"]["args"]["dsn"],
                          [f"member{uuid.uuid4().hex[:6]}{i}" for i in range(MEMBERS)], ours.server_name)
    api = Api(ours.base_url)
    run_concurrently(list(tokens.values()), lambda token: join_room(api, token, room_id))
    assert join(register(synapse, "s"), room_id, via=[ours.server_name]) == room_id

    guest = register(ours_b, "g")

    def joined_through_synapse():
        # Synapse joins with partial state and refuses make_join until its state is whole.
        resp = guest.post(f"/join/{q(room_id)}", {}, params={"via": synapse.server_name})
        return resp.status_code == 200
    wait_for(joined_through_synapse, "a join through Synapse", timeout=60, interval=1)
    members = ok(guest.get(f"/rooms/{q(room_id)}/joined_members"))["joined"]
    assert len(members) == MEMBERS + 3 and set(tokens) <= set(members)
    text = f"hello to all {MEMBERS} {uuid.uuid4().hex}"
    send_text(guest, room_id, text)
    SyncWatcher(host_user).wait_for_message(room_id, text)
