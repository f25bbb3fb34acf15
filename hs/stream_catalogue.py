"""The streams the master replicates, each with how to read its rows between two positions and
what a worker does with rows it applied (docs/replication.md has the table).

Built the same way in every process from its HomeServer: on the master the positions are the
writers' id generators and `on_rows` is never called; on a worker they are ReplicatedPositions.
"""

from hs.streams import Stream

MEMBER = "m.room.member"


def build_catalogue(hs) -> list[Stream]:
    notifier = hs.notifier

    def on_events(token, rows):
        users = set()
        for row in rows:
            if row["type"] == MEMBER and row["state_key"]:
                # An invitee or a joiner elsewhere is not yet among the room's waiters.
                users.add(row["state_key"])
                hs.membership_changes.record(row["state_key"], token, row["room_id"])
        notifier.notify(users=users, rooms={row["room_id"] for row in rows})

    def wake_users(token, rows):
        notifier.notify(users={row["user_id"] for row in rows})

    def wake_rooms(token, rows):
        notifier.notify(rooms={row["room_id"] for row in rows})

    def on_presence(token, rows):
        # Everyone joined to a room with the user shares a room with them.
        users = {row["user_id"] for row in rows}
        rooms = {room for user in users for room in hs.rooms.get_rooms_for_user(user)}
        notifier.notify(users=users, rooms=rooms)

    def on_push_rules(token, rows):
        for row in rows:
            hs.push_rules_reader.invalidate(row["user_id"])
        wake_users(token, rows)

    return [
        Stream("events", hs.event_stream, hs.events.get_stream_rows, on_events),
        Stream("account_data", hs.account_data_stream, hs.account_data_store.get_stream_rows, wake_users),
        Stream("receipts", hs.receipt_stream, hs.receipt_store.get_stream_rows, wake_rooms),
        Stream("typing", hs.typing.position, hs.typing.get_rows, lambda token, rows: hs.typing.apply_rows(token, rows),
               in_memory=True),
        Stream("presence", hs.presence_stream, hs.presence_store.get_stream_rows, on_presence),
        Stream("to_device", hs.to_device_stream, hs.to_device_store.get_stream_rows, wake_users),
        Stream("push_rules", hs.push_rules_stream, hs.push_rule_store.get_stream_rows, on_push_rules),
        Stream("pushers", hs.pusher_stream, hs.pusher_store.get_stream_rows),
        # As presence: whoever shares a room with the user may track their device list.
        Stream("device_lists", hs.device_list_stream, hs.device_list_store.get_stream_rows, on_presence),
    ]
