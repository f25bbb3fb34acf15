"""Joining, leaving, inviting, kicking, banning, knocking and forgetting rooms."""

from hs.errors import Codes, MatrixError
from hs.events.power_levels import (
    InvalidPowerLevelError,
    get_named_level,
    get_room_creators,
    get_user_power_level,
    parse_power_level,
)
from hs.events.visibility import guest_may_join
from hs.identifiers import check_room_id, user_id_parts

ROOM_ID_SIGIL, ALIAS_SIGIL = "!", "#"


class MembershipHandler:
    def __init__(self, config, rooms, events, state, event_creation, accounts):
        self.server_name = config.server_name
        self.rooms = rooms
        self.events = events
        self.state = state
        self.creation = event_creation
        self.accounts = accounts
        # Alias -> (room_id, creator) or None; hs/server.py points it at the directory's, which
        # asks application services about unknown aliases in their namespaces.
        self.lookup_alias = rooms.get_alias
        # Set by hs/server.py on the master: joins, knocks, invites and leaves across servers
        # (hs/handlers/federation_membership.py), and alias -> (room_id, servers) for remote aliases.
        self.federation = None
        self.lookup_remote_alias = None

    def member_content(self, user_id: str, membership: str, reason: str | None = None, **extra) -> dict:
        content = {"membership": membership}
        if membership in ("join", "invite", "knock"):
            # A member event carries the profile, so rooms show names without profile lookups.
            profile = {}
            if user_id_parts(user_id)[1] == self.server_name:
                profile = self.accounts.get_profile(user_id) or {}
            content.update({k: v for k, v in profile.items() if k in ("displayname", "avatar_url")})
        if reason is not None:
            content["reason"] = reason
        content.update(extra)
        return content

    def resolve_room(self, room_id_or_alias: str) -> str:
        if room_id_or_alias.startswith(ROOM_ID_SIGIL):
            # Room version 12 room IDs have no server name.
            check_room_id(room_id_or_alias)
            return room_id_or_alias
        if room_id_or_alias.startswith(ALIAS_SIGIL) and ":" in room_id_or_alias and "\x00" not in room_id_or_alias:
            found = self.lookup_alias(room_id_or_alias)
            if found is None:
                raise MatrixError(404, Codes.NOT_FOUND, "Room alias not found")
            return found[0]
        raise MatrixError(400, Codes.INVALID_PARAM, f"{room_id_or_alias!r} is not a room ID or alias")

    def _require_room(self, room_id: str):
        room = self.rooms.get_room(room_id)
        if room is None:
            # Rooms on other servers are reached through federation, which comes later.
            raise MatrixError(404, Codes.NOT_FOUND, "No such room on this server")
        return room

    def _resolve_with_servers(self, room_id_or_alias: str, servers) -> tuple[str, list[str]]:
        """The room ID, and the servers that may help to reach it: the hints given, those the
        alias's server named, the alias's or room ID's own server."""
        hints = list(servers or [])
        if (room_id_or_alias.startswith(ALIAS_SIGIL) and self.lookup_remote_alias is not None
                and room_id_or_alias.partition(":")[2] not in ("", self.server_name)):
            room_id, alias_servers = self.lookup_remote_alias(room_id_or_alias)
            return room_id, [*hints, *alias_servers]
        room_id = self.resolve_room(room_id_or_alias)
        room_server = room_id.partition(":")[2]
        return room_id, [*hints, *([room_server] if room_server else [])]

    def _is_remote(self, room_id: str) -> bool:
        """Whether the room is reached over federation: no user of ours is joined to it."""
        return self.federation is not None and not self.rooms.has_local_joined_member(room_id, self.server_name)

    def _membership_servers(self, room_id: str, user_id: str) -> list[str]:
        """Servers in a room we only know by an invite or a knock: the inviter's, and those
        whose users sent the room's state the invite or knock came with."""
        current = self.rooms.get_membership(room_id, user_id)
        stored = self.events.get_event(current[1]) if current is not None else None
        if stored is None:
            return []
        unsigned = stored.event.pdu.get("unsigned") or {}
        stripped = unsigned.get("invite_room_state") or unsigned.get("knock_room_state") or []
        senders = [stored.event.sender, *(e.get("sender") for e in stripped if isinstance(e, dict))]
        servers = [s.partition(":")[2] for s in senders if isinstance(s, str) and ":" in s]
        return [s for s in dict.fromkeys(servers) if s != self.server_name]

    def join(self, requester, room_id_or_alias: str, reason: str | None = None, servers=()) -> str:
        room_id, servers = self._resolve_with_servers(room_id_or_alias, servers)
        if self._is_remote(room_id):
            servers = [*servers, *self._membership_servers(room_id, requester.user_id),
                       *self.rooms.get_joined_servers(room_id)]
            # A room of ours that no user of ours is in any more, and no other server either, is
            # joined here, where the auth rules say no.
            if any(s != self.server_name for s in servers) or self.rooms.get_room(room_id) is None:
                content = self.member_content(requester.user_id, "join", reason)
                self.federation.join_remote(requester.user_id, room_id, servers, content)
                return room_id
        self._require_room(room_id)
        if requester.is_guest and not self._guests_may_join(room_id):
            raise MatrixError(403, Codes.FORBIDDEN, "Guest access is not allowed in this room")
        extra = {}
        authoriser = self.restricted_join_authoriser(room_id, requester.user_id)
        if authoriser is not None:
            extra["join_authorised_via_users_server"] = authoriser
        self.update_membership(requester, room_id, requester.user_id, "join", reason=reason, **extra)
        return room_id

    def _guests_may_join(self, room_id: str) -> bool:
        ids = self.state.get_current_state_ids(room_id, [("m.room.guest_access", "")])
        stored = self.events.get_event(ids[("m.room.guest_access", "")]) if ids else None
        return guest_may_join(stored.effective_event.content.get("guest_access") if stored else None)

    def remove_guests_unless_allowed(self, room_id: str) -> None:
        """Guest Access: "If the m.room.guest_access event is changed to stop [guests joining],
        the server MUST set those users' m.room.member state to leave." Each guest leaves by their own
        event, as Synapse does: no power level is needed, and the decision stays with the
        guest's own server."""
        if self._guests_may_join(room_id):
            return
        for guest in self.rooms.get_joined_guests(room_id):
            self.creation.send(room_id, guest, "m.room.member", {"membership": "leave"}, state_key=guest)

    def restricted_join_authoriser(self, room_id: str, user_id: str) -> str | None:
        """For a restricted room the user may join through a room they are in: a local member
        who may invite vouches for the join (join_authorised_via_users_server)."""
        current = self.rooms.get_membership(room_id, user_id)
        if current is not None and current[0] in ("join", "invite"):
            return None
        ids = self.state.get_current_state_ids(room_id, [("m.room.join_rules", ""), ("m.room.power_levels", ""),
                                                         ("m.room.create", "")])
        loaded = {k: self.events.get_event(v).effective_event for k, v in ids.items()}
        join_rules = loaded.get(("m.room.join_rules", ""))
        if join_rules is None or join_rules.content.get("join_rule") not in ("restricted", "knock_restricted"):
            return None
        allow = join_rules.content.get("allow")
        allowed_rooms = [a.get("room_id") for a in allow if isinstance(a, dict)
                         and a.get("type") == "m.room_membership"] if isinstance(allow, list) else []
        if not any((self.rooms.get_membership(r, user_id) or ("",))[0] == "join"
                   for r in allowed_rooms if isinstance(r, str)):
            return None
        power_levels = loaded.get(("m.room.power_levels", ""))
        create = loaded[("m.room.create", "")]
        needed = get_named_level("invite", power_levels)

        def vouches(member: str) -> bool:
            try:
                local = user_id_parts(member)[1] == self.server_name
                return local and get_user_power_level(member, power_levels, create) >= needed
            except (MatrixError, InvalidPowerLevelError):
                return False

        # Those with power are the creators and the users the power levels name: each is
        # checked with one indexed lookup, so a big room costs no more than a small one.
        named = power_levels.content.get("users") if power_levels is not None else None
        candidates = [*sorted(get_room_creators(create)), *(named if isinstance(named, dict) else {})]
        for member in dict.fromkeys(candidates):
            if vouches(member) and (self.rooms.get_membership(room_id, member) or ("",))[0] == "join":
                return member
        if _users_default(power_levels) >= needed:
            # Everyone may invite (users_default): any local member will do. O(members), but
            # only for rooms whose default level may invite.
            for member in self.rooms.get_joined_members(room_id):
                if vouches(member):
                    return member
        return None

    def update_membership(self, requester, room_id: str, target: str, membership: str, *,
                          reason: str | None = None, is_direct: bool = False, **extra) -> str:
        """Sends the member event; the auth rules decide who may do what, with their reason."""
        user_id_parts(target)
        if reason is not None and not isinstance(reason, str):
            raise MatrixError(400, Codes.BAD_JSON, "reason must be a string")
        self._require_room(room_id)
        if membership == "invite" and user_id_parts(target)[1] != self.server_name and self.federation is None:
            # A ban or kick of a remote user is a local event; an invite must reach their server.
            raise MatrixError(403, Codes.FORBIDDEN, "Inviting users of other servers needs federation, "
                                                    "which is off on this server")
        if is_direct:
            extra["is_direct"] = True
        content = self.member_content(target, membership, reason, **extra)
        current = self.rooms.get_membership(room_id, target)
        if current is not None and current[0] == membership:
            # The same change again by the same user (a retried join, a second invite) is
            # answered with the event already there, not a new one in the timeline.
            stored = self.events.get_event(current[1])
            if stored is not None and stored.event.sender == requester.user_id and stored.event.content == content:
                return current[1]
        return self.creation.send(room_id, requester.user_id, "m.room.member", content, state_key=target)

    def leave(self, requester, room_id: str, reason: str | None = None) -> None:
        self._require_room(room_id)
        current = self.rooms.get_membership(room_id, requester.user_id)
        if current is None:
            raise MatrixError(403, Codes.FORBIDDEN, "You are not in this room")
        if current[0] in ("invite", "knock") and self._is_remote(room_id):
            # Rejecting an invite, or taking back a knock, in a room this server is not in: the
            # leave is made by a server that is (make_leave/send_leave).
            servers = self._membership_servers(room_id, requester.user_id)
            self.federation.leave_remote(requester.user_id, room_id, servers,
                                         self.member_content(requester.user_id, "leave", reason))
            return
        self.update_membership(requester, room_id, requester.user_id, "leave", reason=reason)

    def kick(self, requester, room_id: str, target: str, reason: str | None) -> None:
        self._require_room(room_id)
        current = self.rooms.get_membership(room_id, target)
        if current is None or current[0] not in ("join", "invite", "knock"):
            raise MatrixError(403, Codes.FORBIDDEN, "The user is not in the room")
        self.update_membership(requester, room_id, target, "leave", reason=reason)

    def unban(self, requester, room_id: str, target: str, reason: str | None) -> None:
        self._require_room(room_id)
        current = self.rooms.get_membership(room_id, target)
        if current is None or current[0] != "ban":
            raise MatrixError(403, Codes.FORBIDDEN, "The user is not banned")
        self.update_membership(requester, room_id, target, "leave", reason=reason)

    def knock(self, requester, room_id_or_alias: str, reason: str | None, servers=()) -> str:
        room_id, servers = self._resolve_with_servers(room_id_or_alias, servers)
        if self._is_remote(room_id):
            self.federation.knock_remote(requester.user_id, room_id, servers,
                                         self.member_content(requester.user_id, "knock", reason))
            return room_id
        self.update_membership(requester, room_id, requester.user_id, "knock", reason=reason)
        return room_id

    def forget(self, requester, room_id: str) -> None:
        current = self.rooms.get_membership(room_id, requester.user_id)
        if current is not None and current[0] in ("join", "invite", "knock"):
            raise MatrixError(400, Codes.UNKNOWN, "Leave the room before forgetting it")
        if current is None:
            raise MatrixError(404, Codes.NOT_FOUND, "You were never in this room")
        self.rooms.forget(requester.user_id, room_id)


def _users_default(power_levels) -> int:
    if power_levels is None:
        return 0
    try:
        return parse_power_level(power_levels.content.get("users_default", 0), power_levels.room_version)
    except InvalidPowerLevelError:
        return 0
