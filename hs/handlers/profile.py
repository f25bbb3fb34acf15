"""Profiles: display name and avatar URL, and carrying changes into the user's rooms."""

import logging

from hs.errors import Codes, MatrixError
from hs.identifiers import user_id_parts

logger = logging.getLogger(__name__)

MAX_DISPLAYNAME_LENGTH = 256
MAX_AVATAR_URL_LENGTH = 1000
FIELDS = ("displayname", "avatar_url")


class ProfileHandler:
    def __init__(self, server_name, accounts, rooms, events, event_creation):
        self.server_name = server_name
        self.accounts = accounts
        self.rooms = rooms
        self.events = events
        self.event_creation = event_creation
        # Set by hs/server.py: fn(user_id) -> profile, asked of the user's server.
        self.remote_profile = None

    def get_profile(self, user_id: str) -> dict:
        _, server = user_id_parts(user_id)
        if server != self.server_name:
            if self.remote_profile is None:
                raise MatrixError(404, Codes.NOT_FOUND, "Profile was not found")
            return self.remote_profile(user_id)
        user = self.accounts.get_user(user_id)
        if user is None or user.deactivated:
            raise MatrixError(404, Codes.NOT_FOUND, "Profile was not found")
        return self.accounts.get_profile(user_id) or {}

    def get_field(self, user_id: str, field: str) -> dict:
        self._check_field(field)
        profile = self.get_profile(user_id)
        if field not in profile:
            raise MatrixError(404, Codes.NOT_FOUND, f"The user has no {field}")
        return {field: profile[field]}

    def set_field(self, requester, user_id: str, field: str, body: dict) -> None:
        self._check_field(field)
        user_id_parts(user_id)
        if requester.user_id != user_id:
            raise MatrixError(403, Codes.FORBIDDEN, "You may only change your own profile")
        if requester.is_guest and field == "avatar_url":
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guests may not set an avatar")
        if field not in body:
            raise MatrixError(400, Codes.MISSING_PARAM, f"Missing parameter: {field}")
        value = body[field]
        limit = MAX_DISPLAYNAME_LENGTH if field == "displayname" else MAX_AVATAR_URL_LENGTH
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise MatrixError(400, Codes.BAD_JSON, f"{field} must be a string of at most {limit} characters")
        if value is not None and "\x00" in value:
            # PostgreSQL text cannot hold NUL.
            raise MatrixError(400, Codes.INVALID_PARAM, f"{field} must not contain NUL")
        if field == "avatar_url" and value and not value.startswith("mxc://"):
            raise MatrixError(400, Codes.INVALID_PARAM, "avatar_url must be an mxc:// URI")
        self.accounts.set_profile_field(user_id, field, value or None)
        self.update_join_events(user_id)

    def update_join_events(self, user_id: str) -> None:
        """Sends a fresh join event carrying the saved profile into every room the user is
        joined to, as Synapse does: rooms show member names from member events, not from
        profiles. The profile is already saved, so a room that refuses the event is logged and
        skipped; the others and the profile change stand. One event per joined room: the cost
        grows with the user's rooms, never with the size of any room."""
        profile = self.accounts.get_profile(user_id) or {}
        for room_id in self.rooms.get_rooms_for_user(user_id):
            try:
                self._update_join_event(room_id, user_id, profile)
            except Exception:
                logger.warning("Could not update the join event of %s in %s", user_id, room_id, exc_info=True)

    def _update_join_event(self, room_id: str, user_id: str, profile: dict) -> None:
        current = self.rooms.get_membership(room_id, user_id)
        if current is None or current[0] != "join":
            return  # left since the rooms were listed
        # A leave that lands between this check and the send below would be followed by this
        # join (re-joining a public room): send() takes the room lock itself, so the check
        # cannot happen under it yet.
        stored = self.events.get_event(current[1])
        old = stored.event.content if stored is not None and stored.redacted_by is None else {}
        wanted = {k: v for k, v in profile.items() if k in FIELDS}
        if {k: old[k] for k in FIELDS if k in old} == wanted:
            return  # this room already shows the profile: no duplicate event, as Synapse skips them
        # The join's reason and its restricted-join authoriser were about joining, not about
        # this change; everything else (is_direct, custom keys) stays as it was. A redacted
        # join keeps nothing but the membership.
        content = {k: v for k, v in old.items()
                   if k not in (*FIELDS, "reason", "join_authorised_via_users_server")}
        content.update(wanted, membership="join")
        self.event_creation.send(room_id, user_id, "m.room.member", content, state_key=user_id)

    @staticmethod
    def _check_field(field: str) -> None:
        if field not in FIELDS:
            raise MatrixError(404, Codes.NOT_FOUND, f"Unknown profile field {field}")
