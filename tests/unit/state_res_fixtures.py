"""Hand-built rooms for the state resolution tests.

RoomDag builds an event DAG the way a server would: each event's state before it is the
resolution (by the code under test) of the states after its prev events, and its auth events
are picked from that state with auth_rules.auth_types_for_event. Event IDs are "$" + the node
name, so the event_id tie-break follows the names; origin_server_ts counts up in the order
events are added unless a test pins it.

minimal_auth_check is a small stand-in for the authorization rules: just the rules the
scenarios exercise, so that the state resolution tests can tell a state res bug from an auth
rules bug. The same scenarios also run against the real rules (auth_rules.check_auth_rules).
"""

from hs.events.auth_rules import AuthError, auth_types_for_event
from hs.events.event import Event
from hs.events.power_levels import (
    get_named_level,
    get_required_level,
    get_room_creators,
    get_user_power_level,
)
from hs.events.room_versions import EventFormat, RoomVersion
from hs.events.state_res import resolve_state

ALICE = "@alice:example.com"
BOB = "@bob:example.com"
CHARLIE = "@charlie:example.com"
EVELYN = "@evelyn:example.com"
ZARA = "@zara:example.com"

CREATE = ("m.room.create", "")
POWER_LEVELS = ("m.room.power_levels", "")
JOIN_RULES = ("m.room.join_rules", "")
TOPIC = ("m.room.topic", "")


def member(user_id: str) -> tuple[str, str]:
    return "m.room.member", user_id


class RoomDag:
    def __init__(self, room_version: RoomVersion, auth_check=None):
        self.room_version = room_version
        self.auth_check = auth_check
        self.events: dict[str, Event] = {}
        self.state_after: dict[str, dict] = {}
        self._next_ts = 1
        self.room_id = "!CREATE" if room_version.room_id_from_create_event else "!room:example.com"

    def id(self, node: str) -> str:
        return "$" + node

    def power_levels(self, users: dict[str, int], **levels) -> dict:
        """m.room.power_levels content. v12 creators must not be listed (their power is
        unlimited), so they are left out there."""
        if self.room_version.privileged_creators:
            users = {u: level for u, level in users.items() if u != ALICE}
        return {"users": users, **levels}

    def set_power_levels(self, node, sender, users, prev, ts=None, **levels) -> Event:
        return self.add(node, sender, "m.room.power_levels", "", self.power_levels(users, **levels), prev=prev, ts=ts)

    def add(self, node, sender, event_type, state_key=None, content=None, prev=(), ts=None, rejected=None) -> Event:
        state_before = self.resolve(*prev) if prev else {}
        content = {} if content is None else content
        auth_keys = auth_types_for_event(self.room_version, event_type, state_key, sender, content)
        if self.room_version.room_id_from_create_event:
            auth_keys = set(auth_keys) - {CREATE}
        auth_ids = sorted(state_before[k] for k in auth_keys if k in state_before and event_type != "m.room.create")
        if ts is None:
            ts = self._next_ts
        self._next_ts = max(self._next_ts, ts) + 1
        event_id = self.id(node)
        pdu = {
            "type": event_type,
            "sender": sender,
            "content": content,
            "origin_server_ts": ts,
            "depth": 1 + max((self.events[self.id(p)].depth for p in prev), default=0),
            "prev_events": self._edges([self.id(p) for p in prev]),
            "auth_events": self._edges(auth_ids),
            "hashes": {"sha256": "AAAA"},
            "signatures": {},
        }
        if not (event_type == "m.room.create" and self.room_version.room_id_from_create_event):
            pdu["room_id"] = self.room_id
        if state_key is not None:
            pdu["state_key"] = state_key
        if self.room_version.event_format == EventFormat.V1:
            pdu["event_id"] = event_id
        event = Event(pdu, self.room_version, event_id, rejected_reason=rejected)
        self.events[event_id] = event
        state_after = dict(state_before)
        if state_key is not None and rejected is None:
            state_after[(event_type, state_key)] = event_id
        self.state_after[node] = state_after
        return event

    def _edges(self, event_ids: list[str]) -> list:
        if self.room_version.event_format == EventFormat.V1:
            return [[e, {"sha256": "AAAA"}] for e in event_ids]
        return event_ids

    def resolve(self, *nodes: str) -> dict:
        """The state before an event whose prev events are `nodes`."""
        states = [self.state_after[n] for n in nodes]
        if len(states) == 1:
            return dict(states[0])
        return resolve_state(self.room_version, states, self.events, auth_check=self.auth_check)

    def build_base_room(self) -> None:
        """Alice creates a public room; Bob, Charlie and Zara join; Zara says something (START).
        Alice has 100 (v12: unlimited, as the creator), everyone else 0."""
        creator = {} if self.room_version.implicit_room_creator else {"creator": ALICE}
        self.add("CREATE", ALICE, "m.room.create", "", creator)
        self.add("IMA", ALICE, "m.room.member", ALICE, {"membership": "join"}, prev=["CREATE"])
        self.add("IPOWER", ALICE, "m.room.power_levels", "", self.power_levels({ALICE: 100}), prev=["IMA"])
        self.add("IJR", ALICE, "m.room.join_rules", "", {"join_rule": "public"}, prev=["IPOWER"])
        self.add("IMB", BOB, "m.room.member", BOB, {"membership": "join"}, prev=["IJR"])
        self.add("IMC", CHARLIE, "m.room.member", CHARLIE, {"membership": "join"}, prev=["IMB"])
        self.add("IMZ", ZARA, "m.room.member", ZARA, {"membership": "join"}, prev=["IMC"])
        self.add("START", ZARA, "m.room.message", None, {"body": "start"}, prev=["IMZ"])


def minimal_auth_check(event: Event, auth_events: dict, *, create_event: Event | None = None) -> None:
    """The authorization rules the scenarios need (/rooms/v11 and /rooms/v12 "Authorization
    rules", numbered as there): create (1), the creator's first join and public/invite joins,
    own leave, kick and ban (5), sender joined (6), required level (8), user-owned state (9)
    and power level changes (10)."""
    if event.type == "m.room.create":
        return
    rv = event.room_version
    create = create_event if rv.room_id_from_create_event else auth_events.get(CREATE)
    if create is None:
        raise AuthError("no create event")
    power_levels = auth_events.get(POWER_LEVELS)

    def level(user_id):
        return get_user_power_level(user_id, power_levels, create)

    def membership(user_id):
        ev = auth_events.get(member(user_id))
        return ev.membership if ev else "leave"

    sender = event.sender
    if event.type == "m.room.member":
        _check_membership(event, create, auth_events, level, membership)
        return
    if membership(sender) != "join":
        raise AuthError("sender not joined")
    if level(sender) < get_required_level(event.type, event.state_key, power_levels):
        raise AuthError("sender's level too low for the event type")
    if event.state_key is not None and event.state_key.startswith("@") and event.state_key != sender:
        raise AuthError("user-owned state of another user")
    if event.type == "m.room.power_levels" and power_levels is not None:
        _check_power_levels_change(power_levels.content, event.content, level(sender), sender)


def _check_membership(event, create, auth_events, level, membership):
    sender, target, new = event.sender, event.state_key, event.membership
    if new == "join":
        if event.prev_event_ids == [create.event_id] and target in get_room_creators(create):
            return
        if sender != target or membership(target) == "ban":
            raise AuthError("cannot join")
        join_rules = auth_events.get(JOIN_RULES)
        rule = join_rules.content.get("join_rule") if join_rules else "invite"
        if rule == "public" or (rule == "invite" and membership(target) in ("invite", "join")):
            return
        raise AuthError("join rule forbids join")
    power_levels = auth_events.get(POWER_LEVELS)
    if new == "leave" and sender == target:
        if membership(target) in ("invite", "join", "knock"):
            return
        raise AuthError("not in the room")
    if membership(sender) != "join":
        raise AuthError("sender not joined")
    if new == "leave":
        if membership(target) == "ban" and level(sender) < get_named_level("ban", power_levels):
            raise AuthError("cannot unban")
        if level(sender) >= get_named_level("kick", power_levels) and level(target) < level(sender):
            return
        raise AuthError("cannot kick")
    if new == "ban":
        if level(sender) >= get_named_level("ban", power_levels) and level(target) < level(sender):
            return
        raise AuthError("cannot ban")
    raise AuthError(f"membership {new!r} not covered by the minimal rules")


def _check_power_levels_change(old: dict, new: dict, sender_level, sender: str) -> None:
    for key in ("users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"):
        if old.get(key) != new.get(key):
            for value in (old.get(key), new.get(key)):
                if value is not None and value > sender_level:
                    raise AuthError(f"cannot change {key}")
    for mapping in ("events", "notifications", "users"):
        old_map, new_map = old.get(mapping, {}), new.get(mapping, {})
        for name in set(old_map) | set(new_map):
            before, after = old_map.get(name), new_map.get(name)
            if before == after:
                continue
            if before is not None:
                too_high = before > sender_level if mapping != "users" else before >= sender_level
                if too_high and not (mapping == "users" and name == sender):
                    raise AuthError(f"cannot change {mapping}[{name}]")
            if after is not None and after > sender_level:
                raise AuthError(f"cannot set {mapping}[{name}] above own level")
