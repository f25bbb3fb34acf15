"""Shared-secret registration, wire-compatible with Synapse's /_synapse/admin/v1/register,
so `register_new_matrix_user`-style scripts work unchanged."""

import hashlib
import hmac
import secrets
import time

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.storage.accounts import AccountStore

NONCE_LIFETIME_S = 60.0
# GET nonce is unauthenticated: past this many outstanding nonces the oldest are dropped, so
# asking for nonces in a loop cannot grow memory without bound.
MAX_NONCES = 10_000
# Synapse's UserTypes.ALL_USER_TYPES.
USER_TYPES = ("support", "bot")


class AdminRegistrationHandler:
    def __init__(self, config, db, hasher, registration, sessions):
        self.config = config
        self.db = db
        self.hasher = hasher
        self.registration = registration
        self.sessions = sessions
        self._nonces: dict[str, float] = {}  # nonce -> issue time (monotonic)

    def _require_secret(self) -> bytes:
        if not self.config.registration_shared_secret:
            raise MatrixError(400, Codes.UNKNOWN, "Shared secret registration is not enabled")
        return self.config.registration_shared_secret.encode("utf-8")

    def new_nonce(self) -> str:
        self._require_secret()
        now = time.monotonic()
        self._nonces = {n: t for n, t in self._nonces.items() if now - t < NONCE_LIFETIME_S}
        while len(self._nonces) >= MAX_NONCES:
            del self._nonces[next(iter(self._nonces))]  # dicts keep insertion order: the oldest
        nonce = secrets.token_hex(32)
        self._nonces[nonce] = now
        return nonce

    def register(self, body: dict) -> dict:
        secret = self._require_secret()
        fields = {}
        for key in ("nonce", "username", "password", "mac"):
            value = body.get(key)
            if not isinstance(value, str) or not value:
                raise MatrixError(400, Codes.MISSING_PARAM if value is None else Codes.BAD_JSON,
                                  f"{key} must be a non-empty string")
            fields[key] = value
        admin = body.get("admin", False)
        user_type = body.get("user_type")
        displayname = body.get("displayname")
        if not isinstance(admin, bool) or (user_type is not None and not isinstance(user_type, str)) or (
                displayname is not None and not isinstance(displayname, str)):
            raise MatrixError(400, Codes.BAD_JSON, "admin must be a boolean; user_type and displayname strings")
        if user_type is not None and user_type not in USER_TYPES:
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid user type")
        # NUL separates the fields under the MAC: one inside a field could move bytes from one
        # field to the next under the same MAC (Synapse refuses them too).
        if any("\x00" in fields[key] for key in ("username", "password")) or "\x00" in (displayname or ""):
            raise MatrixError(400, Codes.INVALID_PARAM, "username, password and displayname may not contain NUL")
        issued = self._nonces.pop(fields["nonce"], None)
        if issued is None or time.monotonic() - issued >= NONCE_LIFETIME_S:
            raise MatrixError(400, Codes.UNKNOWN, "unrecognised nonce")
        mac = hmac.new(secret, digestmod=hashlib.sha1)
        parts = [fields["nonce"], fields["username"], fields["password"], "admin" if admin else "notadmin"]
        if user_type:
            parts.append(user_type)
        mac.update(b"\x00".join(p.encode("utf-8") for p in parts))
        # Bytes: compare_digest refuses str with non-ASCII characters (a 500, not a 403).
        if not hmac.compare_digest(mac.hexdigest().encode("ascii"), fields["mac"].encode("utf-8")):
            raise MatrixError(403, Codes.FORBIDDEN, "HMAC incorrect")
        user_id = self.registration.check_username(fields["username"])
        password_hash = self.hasher.hash(fields["password"])

        def txn(cur):
            if not AccountStore.insert_user_txn(cur, user_id, password_hash, now_ms(), admin=admin,
                                                user_type=user_type,
                                                displayname=displayname or fields["username"].lower()):
                raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken.")
            return self.sessions.create_session_txn(cur, user_id, None, None, False)
        result = self.db.run_txn("admin_register", txn)
        self.sessions.devices_added(user_id)
        result["home_server"] = self.config.server_name
        return result
