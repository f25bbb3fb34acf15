"""A fork in the room graph (issue 10, "Tests (real parts)"): a ban on Synapse races a power-level
change on our server while the two cannot reach each other; once they can, both must end with the
same current state, the one Synapse's state resolution gives.

Its own module, so the Synapse it restarts is not the one the other interop tests share.
"""

import uuid

from tests.federation_fixture import SyncWatcher, create_room, join, ok, register, send_text
from tests.harness import q, wait_for


def _state(client, room_id, event_type, state_key=""):
    resp = client.get(f"/rooms/{q(room_id)}/state/{event_type}/{q(state_key)}")
    return resp.json() if resp.status_code == 200 else None


def test_ban_racing_a_power_level_change_resolves_as_synapse_resolves_it(synapse, ours):
    host, moderator, witness = register(synapse, "h"), register(ours, "m"), register(ours, "w")
    room_id = create_room(host, preset="public_chat")
    for user in (moderator, witness):
        assert join(user, room_id, via=[synapse.server_name]) == room_id
    host_watch = SyncWatcher(host)
    host_watch.wait_for_membership(room_id, witness.user_id, "join")

    # The moderator may ban and change power levels, within its own level of 50.
    levels = ok(host.get(f"/rooms/{q(room_id)}/state/m.room.power_levels"))
    levels["users"][moderator.user_id] = 50
    levels.update(ban=50, state_default=50)
    levels.setdefault("events", {})["m.room.power_levels"] = 50
    ok(host.put(f"/rooms/{q(room_id)}/state/m.room.power_levels", levels))
    wait_for(lambda: _state(witness, room_id, "m.room.power_levels") == levels, "the new power levels on ours")

    # Partition: Synapse federates with nobody while each side writes one side of the fork.
    synapse.restart(federation_domain_whitelist=[synapse.server_name])
    ok(host.post(f"/rooms/{q(room_id)}/ban", {"user_id": moderator.user_id, "reason": "race"}))
    ok(moderator.put(f"/rooms/{q(room_id)}/state/m.room.power_levels", dict(levels, invite=50)))

    # Heal; a new event on each side points at its fork, so each server learns what it missed.
    synapse.restart(federation_domain_whitelist=None)
    send_text(host, room_id, f"after the partition {uuid.uuid4().hex}")
    send_text(witness, room_id, f"after the partition {uuid.uuid4().hex}")

    def agreed_views():
        views = [(_state(user, room_id, "m.room.power_levels"),
                  (_state(user, room_id, "m.room.member", moderator.user_id) or {}).get("membership"))
                 for user in (host, witness)]
        return views if views[0] == views[1] else None

    synapse_view, our_view = wait_for(agreed_views, "the same current state on both servers", timeout=40)
    # State resolution v2 orders the higher-powered ban first; the moderator's change then fails auth.
    assert synapse_view == (levels, "ban")
    assert our_view == synapse_view
