"""Synapse's admin API for registration tokens: create, list, read, update, delete."""

import re
import secrets
import string

from hs.clock import now_ms
from hs.errors import Codes, MatrixError

_TOKEN = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
_ALPHABET = string.ascii_letters + string.digits + "._~-"


def _non_negative_int_or_none(body, key):
    value = body.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise MatrixError(400, Codes.INVALID_PARAM, f"{key} must be a non-negative integer or null")
    return value


class RegistrationTokenAdminHandler:
    def __init__(self, accounts, registration_tokens):
        self.accounts = accounts
        self.registration_tokens = registration_tokens

    def require_admin(self, requester) -> None:
        user = self.accounts.get_user(requester.user_id)
        if user is None or not user.admin:
            raise MatrixError(403, Codes.FORBIDDEN, "You are not a server admin")

    def create(self, body: dict) -> dict:
        uses_allowed = _non_negative_int_or_none(body, "uses_allowed")
        expiry_time = _non_negative_int_or_none(body, "expiry_time")
        if expiry_time is not None and expiry_time < now_ms():
            raise MatrixError(400, Codes.INVALID_PARAM, "expiry_time must not be in the past")
        token = body.get("token")
        if token is None:
            length = body.get("length", 16)
            if isinstance(length, bool) or not isinstance(length, int) or not 0 < length <= 64:
                raise MatrixError(400, Codes.INVALID_PARAM, "length must be an integer from 1 to 64")
            token = "".join(secrets.choice(_ALPHABET) for _ in range(length))
        elif not isinstance(token, str) or not _TOKEN.match(token):
            raise MatrixError(400, Codes.INVALID_PARAM,
                              "token must be 1 to 64 characters from A-Z, a-z, 0-9, '.', '_', '~' and '-'")
        created = self.registration_tokens.create(token, uses_allowed, expiry_time)
        if created is None:
            raise MatrixError(400, Codes.INVALID_PARAM, "Token already in use")
        return created

    def get(self, token: str) -> dict:
        found = self.registration_tokens.get(token)
        if found is None:
            raise MatrixError(404, Codes.NOT_FOUND, "No such registration token")
        return found

    def list(self, valid: bool | None) -> dict:
        return {"registration_tokens": self.registration_tokens.list(valid, now_ms())}

    def update(self, token: str, body: dict) -> dict:
        changes = {key: _non_negative_int_or_none(body, key) for key in ("uses_allowed", "expiry_time") if key in body}
        if not changes:
            return self.get(token)
        updated = self.registration_tokens.update(token, changes)
        if updated is None:
            raise MatrixError(404, Codes.NOT_FOUND, "No such registration token")
        return updated

    def delete(self, token: str) -> None:
        if not self.registration_tokens.delete(token):
            raise MatrixError(404, Codes.NOT_FOUND, "No such registration token")
