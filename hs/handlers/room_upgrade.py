"""POST /rooms/{roomId}/upgrade (client-server API "Room Upgrades", server behaviour):

1. the requester must be able to send m.room.tombstone in the old room;
2. a new room is created whose m.room.create names its predecessor;
3. the transferable state is copied (join rules, history visibility, guest access, name,
   topic, avatar, encryption, server ACL, power levels; space children of a space; bans);
4. local aliases, the canonical alias and the directory listing move to the new room;
5. the old room gets its m.room.tombstone;
6. the old room's power levels are raised so ordinary members can no longer talk or invite.

The new room is built before the tombstone is sent: a room version 12 room ID is the hash of
its create event, so it is not known earlier, and a tombstone must never point at a room that
failed to come into being.
"""

import copy
import logging

import gevent.lock

from hs.errors import Codes, MatrixError
from hs.events.power_levels import (
    TOP_LEVEL_KEYS,
    InvalidPowerLevelError,
    get_required_level,
    get_room_creators,
    get_user_power_level,
    is_valid_user_id,
    parse_power_level,
)
from hs.events.redaction import prune_event_dict
from hs.events.room_versions import get_room_version
from hs.handlers.room_creation import default_power_levels

logger = logging.getLogger(__name__)

# Copied to the new room when the old room has them (the spec's recommended list).
TRANSFERRED_STATE = ("m.room.join_rules", "m.room.history_visibility", "m.room.guest_access", "m.room.name",
                     "m.room.topic", "m.room.avatar", "m.room.encryption", "m.room.server_acl")
TOMBSTONE_BODY = "This room has been replaced"
# Room version 12 createRoom puts the tombstone above the admins' 100 (MSC4289), so that
# admins cannot make themselves creators by upgrading; an upgrade into v12 does the same.
V12_TOMBSTONE_LEVEL = 150
_STATE_DEFAULT, _BAN_DEFAULT = 50, 50


class RoomUpgradeHandler:
    def __init__(self, config, rooms, events, state, creation, membership):
        self.server_name = config.server_name
        self.rooms = rooms
        self.events = events
        self.state = state
        self.creation = creation
        self.membership = membership
        # One upgrade of a room at a time in this process (the master is the only writer).
        self._upgrading: set[str] = set()
        self._lock = gevent.lock.Semaphore()

    def upgrade(self, requester, room_id: str, new_version_id, additional_creators=None) -> str:
        if not isinstance(new_version_id, str):
            raise MatrixError(400, Codes.BAD_JSON, "new_version must be a string")
        new_version = get_room_version(new_version_id)
        if new_version is None:
            raise MatrixError(400, Codes.UNSUPPORTED_ROOM_VERSION,
                              f"This server does not support room version {new_version_id!r}")
        if additional_creators is not None:
            if not isinstance(additional_creators, list) or not all(isinstance(u, str) for u in additional_creators):
                raise MatrixError(400, Codes.BAD_JSON, "additional_creators must be an array of user IDs")
            for user in additional_creators:
                if not is_valid_user_id(user):
                    raise MatrixError(400, Codes.INVALID_PARAM, f"{user!r} is not a valid user ID")
        old_room = self.rooms.get_room(room_id)
        if old_room is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        with self._lock:
            if room_id in self._upgrading:
                raise MatrixError(400, Codes.UNKNOWN, "An upgrade for this room is currently in progress")
            self._upgrading.add(room_id)
        try:
            return self._upgrade(requester.user_id, old_room, new_version, additional_creators or [])
        finally:
            self._upgrading.discard(room_id)

    # --- the steps -------------------------------------------------------------------------------

    def _upgrade(self, user_id: str, old_room, new_version, additional_creators: list[str]) -> str:
        old_id = old_room.room_id
        old_version = get_room_version(old_room.room_version)
        wanted = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.canonical_alias", ""),
                  ("m.room.member", user_id)] + [(t, "") for t in TRANSFERRED_STATE]
        old_state = self._load_state(old_id, wanted)
        create = old_state[("m.room.create", "")]
        old_levels = old_state.get(("m.room.power_levels", ""))
        member = old_state.get(("m.room.member", user_id))
        if member is None or member.membership != "join":
            raise MatrixError(403, Codes.FORBIDDEN, "You are not in this room")
        if (get_user_power_level(user_id, old_levels, create)
                < get_required_level("m.room.tombstone", "", old_levels)):
            raise MatrixError(403, Codes.FORBIDDEN, "You do not have the power to upgrade this room")

        new_creators = set()
        if new_version.privileged_creators:
            additional_creators = [u for u in dict.fromkeys(additional_creators) if u != user_id]
            new_creators = {user_id, *additional_creators}
        new_id = self._create_room(user_id, old_room, create, new_version, additional_creators)
        self.creation.send(new_id, user_id, "m.room.member", self.membership.member_content(user_id, "join"),
                           state_key=user_id)

        final_levels = self._new_power_levels(user_id, old_levels, create, old_version, new_version, new_creators)
        initial_levels = self._with_upgrader_raised(user_id, final_levels, new_version)
        self.creation.send(new_id, user_id, "m.room.power_levels", initial_levels, state_key="")

        for event_type in TRANSFERRED_STATE:
            self._copy(new_id, user_id, old_state.get((event_type, "")))
        if create.content.get("type") == "m.space":
            children = self.state.get_current_state_of_type(old_id, "m.space.child")
            for stored in self.events.get_events(children.values()).values():
                self._copy(new_id, user_id, stored.event, skip_empty=True)
        self._copy_bans(old_id, new_id, user_id, new_creators)
        if initial_levels != final_levels:
            self.creation.send(new_id, user_id, "m.room.power_levels", final_levels, state_key="")

        self._move_aliases(old_id, new_id, user_id, old_state.get(("m.room.canonical_alias", "")))
        if old_room.is_public:
            # The directory lists the room people should join, which is now the new one.
            self.rooms.set_public(old_id, False)
        self.creation.send(old_id, user_id, "m.room.tombstone",
                           {"body": TOMBSTONE_BODY, "replacement_room": new_id}, state_key="")
        self._restrict_old_room(old_id, user_id, old_levels)
        return new_id

    def _load_state(self, room_id: str, keys) -> dict:
        """The current state events for `keys`, with redacted content pruned."""
        ids = self.state.get_current_state_ids(room_id, keys)
        found = self.events.get_events(ids.values())
        out = {}
        for key, event_id in ids.items():
            stored = found.get(event_id)
            if stored is None:
                continue
            event = stored.event
            if stored.redacted_by:
                event = type(event)(prune_event_dict(event.room_version, event.pdu), event.room_version,
                                    event.event_id)
            out[key] = event
        return out

    def _create_room(self, user_id, old_room, old_create, new_version, additional_creators) -> str:
        predecessor = {"room_id": old_room.room_id}
        if not new_version.room_id_from_create_event:
            # Deprecated since v1.16 but still SHOULD be given where practical: the last event
            # of the old room before the upgrade (its tombstone comes after the new room exists).
            extremities = self.events.get_forward_extremities(old_room.room_id)
            if extremities:
                predecessor["event_id"] = max(extremities, key=lambda e: e[1])[0]
        content = {"room_version": new_version.identifier, "predecessor": predecessor}
        if not new_version.implicit_room_creator:
            content["creator"] = user_id
        if new_version.privileged_creators and additional_creators:
            content["additional_creators"] = additional_creators
        room_type = old_create.content.get("type")
        if isinstance(room_type, str):
            content["type"] = room_type
        if old_create.content.get("m.federate") is False:
            content["m.federate"] = False
        room_id = None if new_version.room_id_from_create_event else self.creation.new_room_id()
        return self.creation.create_room_event(new_version, room_id, user_id, content, is_public=old_room.is_public)

    def _new_power_levels(self, user_id, old_levels, create, old_version, new_version, new_creators) -> dict:
        if old_levels is None:
            levels = default_power_levels(user_id, new_version.privileged_creators, [], 0)
        else:
            levels = _fixed_up_levels(old_levels.content, old_version)
        users = levels.setdefault("users", {})
        if old_version.privileged_creators and not new_version.privileged_creators:
            # The old room's creators had unlimited power, which this version cannot express:
            # they keep the highest level the room uses (at least 100).
            top = max([100, *_all_levels(levels)])
            for creator in get_room_creators(create):
                if is_valid_user_id(creator):
                    users[creator] = top
        if new_version.privileged_creators:
            # Creators have unlimited power and must not be in `users` (room version 12).
            for creator in new_creators:
                users.pop(creator, None)
            if not old_version.privileged_creators:
                events = levels.setdefault("events", {})
                events["m.room.tombstone"] = max(V12_TOMBSTONE_LEVEL, events.get("m.room.tombstone", 0))
        return levels

    @staticmethod
    def _with_upgrader_raised(user_id: str, levels: dict, new_version) -> dict:
        """The power levels to start the new room with: the upgrader needs enough power to
        copy every state event and ban over; _upgrade restores the real levels afterwards."""
        if new_version.privileged_creators:
            return levels  # the upgrader created the new room, so has unlimited power there
        needed = max(levels.get("state_default", _STATE_DEFAULT), levels.get("ban", _BAN_DEFAULT),
                     max(levels.get("events", {}).values(), default=0))
        current = levels.get("users", {}).get(user_id, levels.get("users_default", 0))
        if current >= needed:
            return levels
        raised = copy.deepcopy(levels)
        raised.setdefault("users", {})[user_id] = needed
        return raised

    def _copy(self, new_id: str, user_id: str, event, *, skip_empty: bool = False) -> None:
        if event is None or (skip_empty and not event.content):
            return
        try:
            self.creation.send(new_id, user_id, event.type, copy.deepcopy(event.content), state_key=event.state_key)
        except MatrixError as e:
            # A state event the new version refuses should not stop the upgrade.
            logger.warning("Upgrade of room to %s: could not copy %s: %s", new_id, event.type, e)

    def _copy_bans(self, old_id: str, new_id: str, user_id: str, new_creators: set) -> None:
        """Bans carry over, so an upgrade is no way back in. O(number of bans)."""
        ban_ids = self.rooms.get_member_event_ids(old_id, memberships=["ban"])
        for stored in self.events.get_events(ban_ids).values():
            target = stored.event.state_key
            if target in new_creators or target == user_id:
                continue
            content = {"membership": "ban"}
            reason = stored.event.content.get("reason")
            if isinstance(reason, str) and not stored.redacted_by:
                content["reason"] = reason
            try:
                self.creation.send(new_id, user_id, "m.room.member", content, state_key=target)
            except MatrixError as e:
                logger.warning("Upgrade of room to %s: could not ban %s: %s", new_id, target, e)

    def _move_aliases(self, old_id: str, new_id: str, user_id: str, canonical) -> None:
        for alias in self.rooms.get_aliases_for_room(old_id):
            found = self.rooms.get_alias(alias)
            if found is None or found[0] != old_id:
                continue
            self.rooms.delete_alias(alias)
            if not self.rooms.create_alias(alias, new_id, found[1]):
                logger.warning("Upgrade of %s: alias %s was taken while moving it", old_id, alias)
        if canonical is None:
            return
        suffix = ":" + self.server_name
        old_content = copy.deepcopy(canonical.content)
        new_content = {}
        alias = old_content.get("alias")
        if isinstance(alias, str) and alias.endswith(suffix):
            new_content["alias"] = alias
            old_content.pop("alias")
        alt = old_content.get("alt_aliases")
        if isinstance(alt, list):
            local = [a for a in alt if isinstance(a, str) and a.endswith(suffix)]
            if local:
                new_content["alt_aliases"] = local
                remaining = [a for a in alt if a not in local]
                if remaining:
                    old_content["alt_aliases"] = remaining
                else:
                    old_content.pop("alt_aliases")
        if not new_content:
            return
        for room_id, content in ((new_id, new_content), (old_id, old_content)):
            try:
                self.creation.send(room_id, user_id, "m.room.canonical_alias", content, state_key="")
            except MatrixError as e:
                logger.warning("Upgrade of %s: could not update the canonical alias in %s: %s", old_id, room_id, e)

    def _restrict_old_room(self, old_id: str, user_id: str, old_levels) -> None:
        """Ordinary members of the old room may no longer send or invite: events_default and
        invite go up to max(50, users_default + 1), as Synapse does."""
        if old_levels is None:
            return
        content = copy.deepcopy(old_levels.content)
        version = old_levels.room_version
        users_default = _level_or(content.get("users_default"), 0, version)
        restricted = max(50, users_default + 1)
        changed = False
        for key in ("events_default", "invite"):
            if _level_or(content.get(key), 0, version) < restricted:
                content[key] = restricted
                changed = True
        if not changed:
            return
        try:
            self.creation.send(old_id, user_id, "m.room.power_levels", content, state_key="")
        except MatrixError as e:
            logger.warning("Upgrade of %s: could not restrict the old room's power levels: %s", old_id, e)


def _level_or(value, default: int, room_version) -> int:
    if value is None:
        return default
    try:
        return parse_power_level(value, room_version)
    except InvalidPowerLevelError:
        return default


def _fixed_up_levels(content: dict, room_version) -> dict:
    """Power levels content with every level a JSON integer (rooms before v10 allow "50"), and
    entries the new room's auth rules would refuse (non-integer levels, invalid user IDs) left
    out. Other keys are kept as they are."""
    out = copy.deepcopy(content)
    for key in TOP_LEVEL_KEYS:
        if key in out:
            try:
                out[key] = parse_power_level(out[key], room_version)
            except InvalidPowerLevelError:
                del out[key]
    for section in ("users", "events", "notifications"):
        value = out.get(section)
        if value is None:
            continue
        if not isinstance(value, dict):
            del out[section]
            continue
        fixed = {}
        for key, level in value.items():
            if section == "users" and not is_valid_user_id(key):
                continue
            try:
                fixed[key] = parse_power_level(level, room_version)
            except InvalidPowerLevelError:
                continue
        out[section] = fixed
    return out


def _all_levels(levels: dict) -> list[int]:
    found = [v for k, v in levels.items() if k in TOP_LEVEL_KEYS and isinstance(v, int)]
    for section in ("users", "events"):
        found += [v for v in levels.get(section, {}).values() if isinstance(v, int)]
    return found
