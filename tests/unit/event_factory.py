"""Build rooms of Event objects for the authorization rule tests.

The PDUs have the shape of their room version (edge format, event ID format, no room_id on a
v12 create event, room ID derived from the create event in v12) but are not hashed or signed:
the auth rules do not look at either, apart from the signature presence rule 5.2.
"""

import itertools

from hs.events.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from hs.events.event import Event
from hs.events.power_levels import server_name_of
from hs.events.room_versions import KNOWN_ROOM_VERSIONS, EventFormat

ALL_VERSIONS = [str(n) for n in range(1, 13)]
CREATOR = "@creator:origin.example"

_ids = itertools.count(1)


class Room:
    """A room's state, built up event by event. `send` auth-checks against the state; `force`
    puts an event into the state without checks (for setting a scene)."""

    def __init__(self, version: str, creator: str = CREATOR, *, create_content: dict | None = None):
        self.version = KNOWN_ROOM_VERSIONS[str(version)]
        self.state: dict[tuple[str, str], Event] = {}
        self.last_event_id: str | None = None
        content = {"room_version": self.version.identifier}
        if not self.version.implicit_room_creator:
            content["creator"] = creator
        content.update(create_content or {})
        # v12: set once the create event exists, as its ID names the room.
        self.room_id: str | None = None
        if not self.version.room_id_from_create_event:
            self.room_id = "!room:" + server_name_of(creator)
        self.create = self.force(self.event("m.room.create", creator, content, state_key="", prev_events=[]))
        if self.version.room_id_from_create_event:
            self.room_id = "!" + self.create.event_id[1:]

    def event(
        self,
        event_type: str,
        sender: str,
        content: dict | None = None,
        *,
        state_key: str | None = None,
        prev_events: list[str] | None = None,
        **fields,
    ) -> Event:
        """A new event on top of the room's latest one, citing its auth events from the state."""
        content = content if content is not None else {}
        event_id = self._new_event_id(sender)
        pdu = {
            "type": event_type,
            "sender": sender,
            "content": content,
            "origin_server_ts": 1_700_000_000_000 + next(_ids),
            "depth": len(self.state) + 1,
            "signatures": {server_name_of(sender): {"ed25519:1": "sig"}},
        }
        if not (event_type == "m.room.create" and self.version.room_id_from_create_event):
            pdu["room_id"] = self.room_id
        if state_key is not None:
            pdu["state_key"] = state_key
        if prev_events is None:
            prev_events = [self.last_event_id] if self.last_event_id else []
        auth_types = auth_types_for_event(self.version, event_type, state_key, sender, content)
        auth_ids = [self.state[key].event_id for key in sorted(auth_types) if key in self.state]
        pdu["prev_events"] = self._edges(prev_events)
        pdu["auth_events"] = self._edges(auth_ids)
        if self.version.event_format == EventFormat.V1:
            pdu["event_id"] = event_id
        pdu.update(fields)
        return Event(pdu, self.version, event_id)

    def force(self, event: Event) -> Event:
        if event.is_state():
            self.state[event.state_key_tuple] = event
        self.last_event_id = event.event_id
        return event

    def check(self, event: Event) -> None:
        """check_auth_rules against the current state (the create event passed as v12 wants)."""
        auth_events = {key: e for key, e in self.state.items() if key != ("m.room.create", "")}
        if not self.version.room_id_from_create_event:
            auth_events[("m.room.create", "")] = self.create
        check_auth_rules(event, auth_events, create_event=self.create)

    def allows(self, event: Event) -> bool:
        try:
            self.check(event)
        except AuthError:
            return False
        return True

    def send(self, event: Event) -> Event:
        self.check(event)
        return self.force(event)

    # Scene-setting shortcuts: these go through `force`, not the rules.
    def set_member(self, user_id: str, membership: str, *, sender: str | None = None, **content) -> Event:
        return self.force(self.member(user_id, membership, sender=sender, **content))

    def set_power_levels(self, content: dict) -> Event:
        return self.force(self.event("m.room.power_levels", self.creator, content, state_key=""))

    def set_join_rule(self, join_rule: str, **content) -> Event:
        content = {"join_rule": join_rule, **content}
        return self.force(self.event("m.room.join_rules", self.creator, content, state_key=""))

    def member(self, user_id: str, membership: str, *, sender: str | None = None, **content) -> Event:
        content = {"membership": membership, **content}
        return self.event("m.room.member", sender or user_id, content, state_key=user_id)

    @property
    def creator(self) -> str:
        return self.create.sender

    def _new_event_id(self, sender: str) -> str:
        n = next(_ids)
        if self.version.event_format == EventFormat.V1:
            return f"$ev{n}:{server_name_of(sender)}"
        return f"$EvEnT{n:06d}abcdefghijklmnopqrstuvwxyzABCDEFG"

    def _edges(self, event_ids: list[str]) -> list:
        if self.version.event_format == EventFormat.V1:
            return [[event_id, {"sha256": "aGFzaA"}] for event_id in event_ids]
        return list(event_ids)


def standard_room(
    version: str,
    *,
    join_rule: str = "public",
    users: dict[str, int] | None = None,
    members: tuple[str, ...] = (),
    power_levels: dict | None = None,
    create_content: dict | None = None,
) -> Room:
    """create, the creator's join, power levels, join rules, then `members` joined.

    The creator is given 100 in `users` before v12 (as createRoom does); in v12 creators may
    not be listed and have unlimited power anyway.
    """
    room = Room(version, create_content=create_content)
    room.force(room.member(room.creator, "join"))
    levels_users = {} if room.version.privileged_creators else {room.creator: 100}
    levels_users.update(users or {})
    content = {
        "users": levels_users,
        "users_default": 0,
        "events": {},
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0,
    }
    content.update(power_levels or {})
    room.set_power_levels(content)
    room.set_join_rule(join_rule)
    for user_id in members:
        room.set_member(user_id, "join")
    return room
