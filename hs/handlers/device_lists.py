"""Device list tracking (client-server API "Tracking the device list for a user"): which users a
client must refetch device keys for (`changed`) and which it may stop tracking (`left`), for
/sync's `device_lists` and GET /keys/changes.

The master writes a row of the device_lists stream whenever a user's device list changes (a
device added, deleted or renamed, its keys uploaded); any process reads the rules below from
PostgreSQL. As Synapse, `changed` also lists everyone who started sharing a room with the user
(their keys were never fetched) and is not trimmed of users the client already tracked, which
costs a client one needless key query at worst.
"""

from hs.streams import StreamToken

JOIN = "join"
# As Synapse: an invitee (or a knocker) may be sent room keys, so the client fetches their keys.
NEWLY_SHARING = ("join", "invite", "knock")


class DeviceListWriter:
    """The master's side: one stream row per change, and a wake-up for everyone who may be
    tracking the user (the user's other devices and whoever shares a room with them)."""

    def __init__(self, store, stream, write_notifier, rooms):
        self.store = store
        self.stream = stream
        self.write_notifier = write_notifier
        self.rooms = rooms
        # Called with (user_id, stream_id) after each change (the federation sender announces
        # those of local users to the servers sharing a room with them).
        self.changed_listeners = []

    def user_devices_changed(self, user_id: str) -> None:
        """Also for a user of another server whose list changed (an m.device_list_update EDU)."""
        rooms = self.rooms.get_rooms_for_user(user_id)
        with self.stream.get_next() as stream_id:
            self.store.add_change(stream_id, user_id)
            self.write_notifier.written(stream_id, users=[user_id], rooms=rooms)
        for listener in self.changed_listeners:
            listener(user_id, stream_id)


class DeviceListReader:
    def __init__(self, store):
        self.store = store
        # hs/handlers/sync_rooms.py MembershipChanges, set by the composition root where known.
        self.membership_changes = None

    def changes(self, user_id: str, since: StreamToken, upto: StreamToken, joined_room_ids=None) -> dict:
        """{"changed", "left"} (sorted user IDs) for what happened in (since, upto]:
        - changed: users sharing a joined room with `user_id` now (and the user itself) whose
          device list changed; users who joined (or were invited to, or knocked on) a room the
          user is in; every member of a room the user joined;
        - left: users who no longer share any joined room with `user_id` after a membership
          change in the range (they left a shared room, or the user left a room they are in).
        Membership is read as of `upto`; "share a room now" from the current state."""
        changed: set[str] = set()
        left: set[str] = set()
        if since.device_list < upto.device_list:
            changed |= self.store.get_changed_users_sharing_a_room(user_id, since.device_list, upto.device_list)
        if since.room < upto.room and not self._no_member_changes(user_id, since.room, joined_room_ids):
            rows = self.store.get_membership_changes(user_id, since.room, upto.room)
            joined_at_upto = {room_id for room_id, member, _, after in rows if member == user_id and after == JOIN}
            rooms_joined, rooms_left = [], []
            for room_id, member, before, after in rows:
                if member == user_id:
                    if before != JOIN and after == JOIN:
                        rooms_joined.append(room_id)
                    elif before == JOIN and after != JOIN:
                        rooms_left.append(room_id)
                elif before == JOIN and after != JOIN:
                    left.add(member)
                elif after in NEWLY_SHARING and after != before and room_id in joined_at_upto:
                    changed.add(member)
            changed |= self.store.get_joined_members(rooms_joined)
            left |= self.store.get_joined_members(rooms_left)
            # An invitee who left another room is still to be tracked, as in Synapse.
            left -= changed | {user_id}
            left -= self.store.get_users_sharing_a_room(user_id, sorted(left))
        return {"changed": sorted(changed), "left": sorted(left)}

    def _no_member_changes(self, user_id: str, since: int, joined_room_ids) -> bool:
        """True when the membership query could only find nothing: the user's memberships did not
        change after `since` (so the rooms they are joined to now, `joined_room_ids`, are the ones
        they were joined to then) and no member event came into those rooms. What a /sync woken
        by a message asks, for every parked client."""
        known = self.membership_changes
        return (known is not None and joined_room_ids is not None and known.unchanged_after(user_id, since)
                and known.rooms_unchanged_after(joined_room_ids, since))
