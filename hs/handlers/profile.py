"""Profiles: display name and avatar URL."""

from hs.errors import Codes, MatrixError
from hs.identifiers import user_id_parts

MAX_DISPLAYNAME_LENGTH = 256
MAX_AVATAR_URL_LENGTH = 1000
FIELDS = ("displayname", "avatar_url")


class ProfileHandler:
    def __init__(self, server_name, accounts):
        self.server_name = server_name
        self.accounts = accounts

    def get_profile(self, user_id: str) -> dict:
        _, server = user_id_parts(user_id)
        if server != self.server_name:
            # Remote profiles come with federation.
            raise MatrixError(404, Codes.NOT_FOUND, "Profile was not found")
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

    @staticmethod
    def _check_field(field: str) -> None:
        if field not in FIELDS:
            raise MatrixError(404, Codes.NOT_FOUND, f"Unknown profile field {field}")
