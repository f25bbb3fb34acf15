"""Which events, receipts, typing and presence an application service is sent (the spec's
"Application Service API" namespaces; Synapse's ApplicationService.is_interested_in_event).

An event goes to a service when its sender is the service's sender or in its users namespace,
when it is a member event about such a user, when its room's ID is in the rooms namespace, when
one of the room's aliases (directory aliases or m.room.canonical_alias) is in the aliases
namespace, or when any joined member of the room is in the users namespace. That last check runs
for nearly every event, so its answer is cached per room (as Synapse's
get_app_service_users_in_room) and dropped when a member event of the room goes by.
"""

from hs.caches import LruCache

MEMBER = "m.room.member"
CANONICAL_ALIAS = "m.room.canonical_alias"


class RoomAliases:
    """One scan's memo of each room's aliases: a batch reads them once per room, not per event."""

    def __init__(self, rooms, state, events):
        self._rooms = rooms
        self._state = state
        self._events = events
        self._memo: dict[str, set] = {}

    def get(self, room_id: str) -> set:
        aliases = self._memo.get(room_id)
        if aliases is None:
            aliases = set(self._rooms.get_aliases_for_room(room_id))
            ids = self._state.get_current_state_ids(room_id, [(CANONICAL_ALIAS, "")])
            stored = self._events.get_event(ids[(CANONICAL_ALIAS, "")]) if ids else None
            if stored is not None and not stored.redacted_by:
                content = stored.event.content
                aliases.update(a for a in [content.get("alias"), *(content.get("alt_aliases") or [])]
                               if isinstance(a, str))
            self._memo[room_id] = aliases
        return aliases


class AppServiceInterest:
    """`position`: the events stream position source, read before a room's members are, so a
    cached answer is known to cover every member event up to it."""

    def __init__(self, rooms, state, events, position):
        self.rooms = rooms
        self.state = state
        self.events = events
        self.position = position
        # room_id -> (events position it was read at, {service id: has a joined member in its
        # namespace}, the joined members)
        self._members = LruCache("appservice_room_members", 10_000,
                                 invalidated_by="a member event of the room passing through a scan "
                                                "(member_event_seen), when newer than the entry")

    def member_event_seen(self, room_id: str, stream_ordering: int) -> None:
        entry = self._members.get(room_id)
        if entry is not None and entry[0] < stream_ordering:
            self._members.invalidate(room_id)

    def has_member_in_namespace(self, service, room_id: str) -> bool:
        entry = self._members.get(room_id)
        if entry is None:
            at = self.position.get_current_token()
            members = list(self.rooms.get_joined_members(room_id))
            entry = (at, {}, members)
            self._members.put(room_id, entry)
        answers, members = entry[1], entry[2]
        if service.id not in answers:
            answers[service.id] = any(service.is_interested_in_user(user) for user in members)
        return answers[service.id]

    def new_aliases(self) -> RoomAliases:
        return RoomAliases(self.rooms, self.state, self.events)

    def wants_room(self, service, room_id: str, aliases: RoomAliases) -> bool:
        """Everything in the room goes to the service (its typing and receipts too)."""
        return (service.is_interested_in_room(room_id)
                or (bool(service.namespaces["aliases"]) and any(service.is_interested_in_alias(a)
                                                                for a in aliases.get(room_id)))
                or self.has_member_in_namespace(service, room_id))

    def wants_event(self, service, event, room_id: str, aliases: RoomAliases) -> bool:
        if service.is_interested_in_user(event.sender):
            return True
        if event.type == MEMBER and isinstance(event.state_key, str) and service.is_interested_in_user(event.state_key):
            return True
        return self.wants_room(service, room_id, aliases)

    def wants_presence_of(self, service, user_id: str) -> bool:
        """As Synapse: the presence of users in the namespace and of those sharing a room with one."""
        if service.is_interested_in_user(user_id):
            return True
        return any(self.has_member_in_namespace(service, room) for room in self.rooms.get_rooms_for_user(user_id))
