"""Login sessions: a device with an access token (and a refresh token if the client asks)."""

import secrets
import string

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.handlers.appservice_auth import APP_SERVICE_LOGIN_TYPE
from hs.handlers.auth import new_token
from hs.handlers.login_identifier import user_id_from_identifier
from hs.storage.accounts import User
from hs.storage.devices import DeviceStore
from hs.storage.tokens import TokenStore

_DEVICE_ID_ALPHABET = string.ascii_uppercase
MAX_DEVICE_ID_LENGTH = 512


def check_no_nul(**fields) -> None:
    """PostgreSQL text cannot hold NUL: a string bound for the database with one is refused
    here, as the client's mistake, rather than failing in the query as a 500."""
    for name, value in fields.items():
        if value is not None and "\x00" in value:
            raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must not contain NUL")


def new_device_id() -> str:
    return "".join(secrets.choice(_DEVICE_ID_ALPHABET) for _ in range(10))


class SessionHandler:
    def __init__(self, config, db, accounts, tokens, hasher, limiters):
        self.config = config
        self.db = db
        self.accounts = accounts
        self.tokens = tokens
        self.hasher = hasher
        self.limiters = limiters
        self._dummy_password_hash = None
        # Called with the user ID after a logout deleted devices (pushers go with their device).
        self.devices_deleted_listeners = []
        # Called with the user ID after a session's device was created (or logged in again), once
        # committed: the user's device list changed. Registration calls devices_added itself.
        self.devices_added_listeners = []

    def create_session_txn(self, cur, user_id, device_id, display_name, want_refresh) -> dict:
        """Inside the caller's transaction, so a registration and its first session commit together."""
        now = now_ms()
        device_id = device_id or new_device_id()
        DeviceStore.upsert_device_txn(cur, user_id, device_id, display_name, now)
        return self._issue_tokens_txn(cur, user_id, device_id, want_refresh, now)[0]

    def create_session(self, user_id, device_id, display_name, want_refresh) -> dict:
        result = self.db.run_txn("create_session", self.create_session_txn, user_id, device_id, display_name,
                                 want_refresh)
        self.devices_added(user_id)
        return result

    def devices_added(self, user_id: str) -> None:
        """For callers of create_session_txn, after their transaction committed."""
        for listener in self.devices_added_listeners:
            listener(user_id)

    def _issue_tokens_txn(self, cur, user_id, device_id, want_refresh, now) -> tuple[dict, int | None]:
        """The response body of a new session, and the id of its refresh token if it has one."""
        body = {"user_id": user_id, "device_id": device_id}
        refresh_id = None
        if want_refresh:
            lifetime = self.config.refreshable_access_token_lifetime_ms
            refresh_lifetime = self.config.refresh_token_lifetime_ms
            refresh_token = new_token("hsr")
            refresh_id = TokenStore.insert_refresh_token_txn(
                cur, refresh_token, user_id, device_id, now + refresh_lifetime if refresh_lifetime else None)
            body["refresh_token"] = refresh_token
        else:
            lifetime = self.config.nonrefreshable_access_token_lifetime_ms
        access_token = new_token("hsa")
        TokenStore.insert_access_token_txn(cur, access_token, user_id, device_id, now,
                                           now + lifetime if lifetime else None, refresh_id)
        body["access_token"] = access_token
        if lifetime:
            body["expires_in_ms"] = lifetime
        return body, refresh_id

    def login(self, body: dict, client_ip: str, as_token: str | None = None) -> dict:
        """``as_token``: the request's access token, which only m.login.application_service reads."""
        kind = body.get("type")
        service = self._login_service(kind, as_token)
        if service is None or service.rate_limited:
            self.limiters.login_address.check(client_ip)
        # Everything about the new session is checked before the credentials: a malformed
        # device_id must not cost the client its single-use login token.
        device_id = body.get("device_id")
        display_name = body.get("initial_device_display_name")
        if device_id is not None and (not isinstance(device_id, str) or not device_id
                                      or len(device_id) > MAX_DEVICE_ID_LENGTH):
            raise MatrixError(400, Codes.BAD_JSON, "device_id must be a non-empty string")
        if display_name is not None and not isinstance(display_name, str):
            raise MatrixError(400, Codes.BAD_JSON, "initial_device_display_name must be a string")
        check_no_nul(device_id=device_id, initial_device_display_name=display_name)
        want_refresh = body.get("refresh_token", False)
        if not isinstance(want_refresh, bool):
            raise MatrixError(400, Codes.BAD_JSON, "refresh_token must be a boolean")
        if kind == "m.login.password":
            user = self._check_password_login(body)
        elif kind == "m.login.token":
            token = body.get("token")
            if not isinstance(token, str):
                raise MatrixError(400, Codes.BAD_JSON, "token must be a string")
            user_id = self.tokens.consume_login_token(token, now_ms())
            user = self.accounts.get_user(user_id) if user_id is not None else None
            if user is None:
                raise MatrixError(403, Codes.FORBIDDEN, "Invalid login token")
        elif service is not None:
            user = self._check_app_service_login(service, body)
        else:
            raise MatrixError(400, Codes.UNKNOWN, f"Unknown login type {kind!r}")
        if user.deactivated:
            raise MatrixError(403, Codes.USER_DEACTIVATED, "This account has been deactivated")
        result = self.create_session(user.user_id, device_id, display_name, want_refresh)
        result["home_server"] = self.config.server_name
        result["well_known"] = {"m.homeserver": {"base_url": self.config.client_base_url()}}
        return result

    def _login_service(self, kind, as_token: str | None):
        """The application service logging in with m.login.application_service, or None for
        other login types."""
        if kind != APP_SERVICE_LOGIN_TYPE:
            return None
        if not as_token:
            raise MatrixError(401, Codes.MISSING_TOKEN, "m.login.application_service needs the as_token")
        service = self.config.app_services.by_as_token(as_token)
        if service is None:
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown application service token")
        return service

    def _check_app_service_login(self, service, body) -> User:
        claimed = user_id_from_identifier(body, self.config.server_name)
        if claimed is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing identifier")
        user = self.accounts.get_user(claimed)
        # As Synapse: a user outside the service's namespace and one that does not exist are both
        # refused with 403, so the login does not tell which users exist.
        if not service.can_act_as(claimed) or user is None:
            raise MatrixError(403, Codes.FORBIDDEN, "The application service cannot log in as this user")
        return user

    def _check_password_login(self, body) -> User:
        if not self.config.password_enabled:
            raise MatrixError(400, Codes.UNKNOWN, "Password login has been disabled")
        claimed = user_id_from_identifier(body, self.config.server_name)
        password = body.get("password")
        if claimed is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing identifier")
        if not isinstance(password, str):
            raise MatrixError(400, Codes.BAD_JSON, "password must be a string")
        key = claimed.lower()
        self.limiters.login_failed.check(key, consume=False)
        self.limiters.login_account.check(key)
        user = self.accounts.find_user_case_insensitive(claimed)
        if user is not None and user.deactivated:
            # Deactivation wipes the password hash, so the password cannot be checked; Synapse
            # answers M_USER_DEACTIVATED here too (the spec also allows M_FORBIDDEN).
            raise MatrixError(403, Codes.USER_DEACTIVATED, "This account has been deactivated")
        # An unknown user (or one without a password) is checked against a dummy hash, so the
        # answer takes as long as for a wrong password and does not tell which accounts exist.
        has_password = user is not None and bool(user.password_hash)
        matches = self.hasher.verify(user.password_hash if has_password else self._dummy_hash(), password)
        if not (has_password and matches):
            self.limiters.login_failed.check(key)
            raise MatrixError(403, Codes.FORBIDDEN, "Invalid username or password")
        return user

    def _dummy_hash(self) -> str:
        if self._dummy_password_hash is None:
            self._dummy_password_hash = self.hasher.hash(secrets.token_urlsafe(16))
        return self._dummy_password_hash

    def refresh(self, refresh_token: str) -> dict:
        def txn(cur):
            old = TokenStore.get_refresh_token_for_update_txn(cur, refresh_token)
            now = now_ms()
            if old is None or (old.expiry_ts is not None and old.expiry_ts < now):
                raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown refresh token", soft_logout=True)
            body, new_id = self._issue_tokens_txn(cur, old.user_id, old.device_id, True, now)
            TokenStore.replace_refresh_token_txn(cur, old, new_id)
            return body
        body = self.db.run_txn("refresh", txn)
        del body["user_id"], body["device_id"]
        return body

    def create_login_token(self, user_id: str) -> dict:
        token = new_token("hsl")
        now = now_ms()
        self.tokens.insert_login_token(token, user_id, now + self.config.login_token_timeout_ms, now)
        return {"login_token": token, "expires_in_ms": self.config.login_token_timeout_ms}

    def logout(self, requester) -> None:
        self.db.run_txn("logout", DeviceStore.delete_devices_txn, requester.user_id, [requester.device_id])
        for listener in self.devices_deleted_listeners:
            listener(requester.user_id)

    def logout_all(self, requester) -> None:
        self.db.run_txn("logout_all", DeviceStore.delete_devices_txn, requester.user_id, None)
        for listener in self.devices_deleted_listeners:
            listener(requester.user_id)
