"""POST /createRoom: the events of a new room, in the order the spec lists them."""

import re

from hs.errors import Codes, MatrixError
from hs.events.room_versions import get_room_version
from hs.handlers.appservice_auth import check_may_create_alias
from hs.identifiers import user_id_parts

_ALIAS_LOCALPART = re.compile(r"^[^:\s#\x00]+$")
MAX_ID_BYTES = 255  # room aliases, event types and state keys
# As Synapse's presets: in private rooms any member may invite, in public ones moderators.
PRESETS = {
    "private_chat": {"join_rule": "invite", "history_visibility": "shared", "guest_access": "can_join",
                     "invite": 0},
    "trusted_private_chat": {"join_rule": "invite", "history_visibility": "shared", "guest_access": "can_join",
                             "invite": 0},
    "public_chat": {"join_rule": "public", "history_visibility": "shared", "guest_access": "forbidden",
                    "invite": 50},
}


def default_power_levels(creator: str, privileged_creators: bool, trusted_invitees: list[str],
                         invite_level: int) -> dict:
    users = {} if privileged_creators else {creator: 100}
    for invitee in trusted_invitees:
        users[invitee] = 100
    # From v12 the tombstone level MUST be above state_default (createRoom step 3): above every
    # admin, so that only the creators, whose power is unlimited, may upgrade the room.
    tombstone = 150 if privileged_creators else 100
    return {
        "users": users, "users_default": 0,
        "events": {"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
                   "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": tombstone,
                   "m.room.server_acl": 100, "m.room.encryption": 100},
        "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": invite_level,
    }


class RoomCreationHandler:
    def __init__(self, config, rooms, creator_handler, membership, profiles):
        self.config = config
        self.rooms = rooms
        self.events = creator_handler
        self.membership = membership
        self.profiles = profiles

    def create_room(self, requester, body: dict) -> dict:
        spec = _CreateRequest(body, self.config)
        alias = None
        if spec.alias_localpart is not None:
            alias = f"#{spec.alias_localpart}:{self.config.server_name}"
            if self.rooms.get_alias(alias) is not None:
                raise MatrixError(400, Codes.ROOM_IN_USE, "Room alias already taken")
            # Before the room exists, unlike Synapse, so that a refused alias leaves no room behind.
            check_may_create_alias(self.config.app_services, requester, alias)
        creator = requester.user_id
        if creator in spec.invite:
            raise MatrixError(400, Codes.INVALID_PARAM, "You cannot invite yourself to the room you create")
        room_version = spec.room_version
        trusted = list(dict.fromkeys(spec.invite)) if spec.preset == "trusted_private_chat" else []
        create_content = {**spec.creation_content, "room_version": room_version.identifier}
        if not room_version.implicit_room_creator:
            create_content["creator"] = creator
        if room_version.privileged_creators and trusted:
            # creation_content's additional_creators and the trusted invitees, deduplicated.
            given = create_content.get("additional_creators")
            given = given if isinstance(given, list) else []
            create_content["additional_creators"] = list(dict.fromkeys([*given, *trusted]))
        preset = PRESETS[spec.preset]
        levels = default_power_levels(creator, room_version.privileged_creators,
                                      [] if room_version.privileged_creators else trusted, preset["invite"])
        levels.update(spec.power_level_override)
        if room_version.privileged_creators:
            creators = {creator, *(u for u in create_content.get("additional_creators") or () if isinstance(u, str))}
            users = levels.get("users")
            if isinstance(users, dict) and creators & set(users):
                raise MatrixError(400, Codes.INVALID_ROOM_STATE,
                                  "Room creators have unlimited power and may not be listed in power levels")
        alias_created = False
        try:
            room_id = self.events.create_room_event(
                room_version, None if room_version.room_id_from_create_event else self.events.new_room_id(),
                creator, create_content, is_public=False)

            def state(event_type, content, state_key=""):
                self.events.send(room_id, creator, event_type, content, state_key=state_key)

            state("m.room.member", self.membership.member_content(creator, "join"), creator)
            state("m.room.power_levels", levels)
            if alias is not None:
                if not self.rooms.create_alias(alias, room_id, creator):
                    raise MatrixError(400, Codes.ROOM_IN_USE, "Room alias already taken")
                alias_created = True
                state("m.room.canonical_alias", {"alias": alias})
            initial_keys = {(e["type"], e.get("state_key", "")) for e in spec.initial_state}
            for event_type, key, value in (("m.room.join_rules", "join_rule", preset["join_rule"]),
                                           ("m.room.history_visibility", "history_visibility",
                                            preset["history_visibility"]),
                                           ("m.room.guest_access", "guest_access", preset["guest_access"])):
                if (event_type, "") not in initial_keys:
                    state(event_type, {key: value})
            for event in spec.initial_state:
                state(event["type"], event["content"], event.get("state_key", ""))
            if spec.name is not None:
                state("m.room.name", {"name": spec.name})
            if spec.topic is not None:
                state("m.room.topic", {"topic": spec.topic,
                                       "m.topic": {"m.text": [{"body": spec.topic, "mimetype": "text/plain"}]}})
            for invitee in spec.invite:
                self.membership.update_membership(requester, room_id, invitee, "invite", is_direct=spec.is_direct)
        except MatrixError as e:
            # The room is left as far as it got, but the alias is freed for another try, and the
            # room was not yet published.
            if alias_created:
                self.rooms.delete_alias(alias)
            if e.status == 403 and e.errcode == Codes.FORBIDDEN:
                # The auth rules refused an event the request implied (createRoom: 400
                # M_INVALID_ROOM_STATE, e.g. power levels that lock the creator out).
                raise MatrixError(400, Codes.INVALID_ROOM_STATE, f"The requested room state is invalid: {e.message}") from None
            raise
        if spec.visibility == "public":
            self.rooms.set_public(room_id, True)
        result = {"room_id": room_id}
        if alias is not None:
            result["room_alias"] = alias
        return result


class _CreateRequest:
    """The body of a createRoom request, checked field by field."""

    def __init__(self, body: dict, config):
        def optional(key, kind, name):
            value = body.get(key)
            if value is not None and not isinstance(value, kind):
                raise MatrixError(400, Codes.BAD_JSON, f"{key} must be {name}")
            return value

        version_id = optional("room_version", str, "a string")
        if version_id is None:
            version_id = config.default_room_version
        self.room_version = get_room_version(version_id)
        if self.room_version is None:
            raise MatrixError(400, Codes.UNSUPPORTED_ROOM_VERSION, f"Room version {version_id!r} is not supported")
        self.visibility = _default(optional("visibility", str, "a string"), "private")
        if self.visibility not in ("public", "private"):
            raise MatrixError(400, Codes.INVALID_PARAM, "visibility must be public or private")
        self.preset = _default(optional("preset", str, "a string"),
                               "public_chat" if self.visibility == "public" else "private_chat")
        if self.preset not in PRESETS:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Unknown preset {self.preset!r}")
        self.alias_localpart = optional("room_alias_name", str, "a string")
        if self.alias_localpart is not None:
            if not _ALIAS_LOCALPART.fullmatch(self.alias_localpart):
                raise MatrixError(400, Codes.INVALID_PARAM,
                                  "room_alias_name may not contain ':', '#', NUL or whitespace")
            if len(f"#{self.alias_localpart}:{config.server_name}".encode()) > MAX_ID_BYTES:
                raise MatrixError(400, Codes.INVALID_PARAM, f"Room aliases may be at most {MAX_ID_BYTES} bytes")
        self.name = optional("name", str, "a string")
        self.topic = optional("topic", str, "a string")
        self.is_direct = optional("is_direct", bool, "a boolean") or False
        self.invite = optional("invite", list, "an array of user IDs") or []
        for user_id in self.invite:
            if not isinstance(user_id, str):
                raise MatrixError(400, Codes.BAD_JSON, "invite must be an array of user IDs")
            user_id_parts(user_id)
        self.creation_content = optional("creation_content", dict, "an object") or {}
        self.power_level_override = optional("power_level_content_override", dict, "an object") or {}
        self.initial_state = optional("initial_state", list, "an array of state events") or []
        for event in self.initial_state:
            if (not isinstance(event, dict) or not isinstance(event.get("type"), str)
                    or not isinstance(event.get("content"), dict)
                    or not isinstance(event.get("state_key", ""), str)):
                raise MatrixError(400, Codes.BAD_JSON, "initial_state entries need a type and a content object")
            if event["type"] in ("m.room.create", "m.room.member"):
                raise MatrixError(400, Codes.BAD_JSON, f"initial_state may not contain {event['type']}")
            for value in (event["type"], event.get("state_key", "")):
                # Checked here, before the room exists, rather than half way through making it.
                if "\x00" in value or len(value.encode()) > MAX_ID_BYTES:
                    raise MatrixError(400, Codes.BAD_JSON, "initial_state types and state keys must be at most "
                                                           f"{MAX_ID_BYTES} bytes, without NUL")


def _default(value, default):
    return default if value is None else value
