"""Registration: who may register, with which username, and the first session."""

import re

from hs.clock import now_ms
from hs.errors import Codes, InteractiveAuthRequired, MatrixError
from hs.handlers.appservice_auth import APP_SERVICE_LOGIN_TYPE
from hs.handlers.sessions import MAX_DEVICE_ID_LENGTH, check_no_nul, new_device_id
from hs.handlers.uia import DUMMY, REGISTRATION_TOKEN
from hs.identifiers import check_new_localpart
from hs.storage.accounts import AccountStore
from hs.storage.registration_tokens import RegistrationTokenStore

_SYMBOL = re.compile(r"[^a-zA-Z0-9]")


class RegistrationHandler:
    def __init__(self, config, db, accounts, hasher, sessions, uia, limiters, app_service_auth=None):
        self.config = config
        self.app_service_auth = app_service_auth
        self.db = db
        self.accounts = accounts
        self.hasher = hasher
        self.sessions = sessions
        self.uia = uia
        self.limiters = limiters

    def flows(self) -> list[list[str]]:
        if self.config.registration_requires_token:
            return [[REGISTRATION_TOKEN]]
        return [[DUMMY]]

    def check_username(self, username: str) -> str:
        localpart = username.lower()
        check_new_localpart(localpart, self.config.server_name)
        user_id = f"@{localpart}:{self.config.server_name}"
        if self.app_service_auth is not None:
            self.app_service_auth.check_user_id_not_exclusive(user_id)
        if self.accounts.user_exists(user_id):
            raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken.")
        return user_id

    def check_password_policy(self, password: str) -> None:
        policy = self.config.password_policy
        problems = [
            (len(password) < policy.minimum_length,
             f"Password must be at least {policy.minimum_length} characters long"),
            (policy.require_digit and not any(c.isdigit() for c in password), "Password must contain a digit"),
            (policy.require_symbol and not _SYMBOL.search(password), "Password must contain a symbol"),
            (policy.require_lowercase and not any(c.islower() for c in password),
             "Password must contain a lowercase letter"),
            (policy.require_uppercase and not any(c.isupper() for c in password),
             "Password must contain an uppercase letter"),
        ]
        for failed, message in problems:
            if failed:
                raise MatrixError(400, Codes.WEAK_PASSWORD, message)

    def register(self, req, body: dict, kind: str) -> dict:
        if kind == "guest":
            self.limiters.registration.check(req.context.client_ip)
            return self._register_guest(body)
        if kind != "user":
            raise MatrixError(400, Codes.INVALID_PARAM, "kind must be user or guest")
        if body.get("type") == APP_SERVICE_LOGIN_TYPE and self.app_service_auth is not None:
            return self._register_appservice_user(req, body)
        # The limit counts registrations and failed stages, not requests: a UIA exchange takes
        # several requests per account, so here it is only asked.
        self.limiters.registration.check(req.context.client_ip, consume=False)
        if not self.config.enable_registration:
            raise MatrixError(403, Codes.FORBIDDEN, "Registration has been disabled")
        username, password, device_id, display_name, inhibit_login, want_refresh = self._parse(body)
        # Check what can be checked before asking the client to authenticate, so that a taken
        # name or weak password is reported before the client spends effort on UIA stages.
        user_id = self.check_username(username) if username is not None else None
        if password is not None:
            self.check_password_policy(password)
        elif self.config.password_enabled and body.get("auth") is not None:
            # A body with no `auth` may just be asking for the flows (clients send `{}` for that);
            # once a stage is attempted, the password must be there before the session is spent.
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: password")
        try:
            results = self.uia.check(req, body, self.flows())
        except InteractiveAuthRequired as e:
            if "errcode" in e.body:
                # A failed stage costs like a registration: registration tokens are secrets, and
                # guessing them through the stage must be no cheaper than through /validity.
                self._charge_registration(req.context.client_ip)
            raise
        self.limiters.registration.check(req.context.client_ip)
        password_hash = self.hasher.hash(password) if password is not None else None
        registration_token = results.get(REGISTRATION_TOKEN)
        if user_id is None:
            user_id = self._generated_user_id()

        def txn(cur):
            if registration_token is not None and not RegistrationTokenStore.consume_txn(
                    cur, registration_token, now_ms()):
                raise MatrixError(401, Codes.UNAUTHORIZED, "Invalid registration token")
            if not AccountStore.insert_user_txn(cur, user_id, password_hash, now_ms(),
                                                displayname=user_id[1:].split(":", 1)[0]):
                raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken.")
            if inhibit_login:
                return {"user_id": user_id}
            return self.sessions.create_session_txn(cur, user_id, device_id, display_name, want_refresh)
        result = self.db.run_txn("register", txn)
        if not inhibit_login:
            self.sessions.devices_added(user_id)
        result["home_server"] = self.config.server_name
        return result

    def _register_appservice_user(self, req, body) -> dict:
        # As Synapse: open to services whether or not registration is enabled, without UIA.
        username, _, device_id, display_name, inhibit_login, want_refresh = self._parse(body)
        service, user_id = self.app_service_auth.registering_service(req, username)
        if service.rate_limited:
            self.limiters.registration.check(req.context.client_ip, consume=False)
        # Synapse marks a user as the service's only when its namespace there is exclusive.
        owner = service.id if service.is_exclusive("users", user_id) else None

        def txn(cur):
            if not AccountStore.insert_user_txn(cur, user_id, None, now_ms(), appservice_id=owner,
                                                displayname=username):
                raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken.")
            if inhibit_login:
                return {"user_id": user_id}
            return self.sessions.create_session_txn(cur, user_id, device_id, display_name, want_refresh)
        result = self.db.run_txn("register_appservice_user", txn)
        if not inhibit_login:
            self.sessions.devices_added(user_id)
        result["home_server"] = self.config.server_name
        return result

    def _charge_registration(self, client_ip) -> None:
        try:
            self.limiters.registration.check(client_ip)
        except MatrixError:
            pass  # already out of tokens: the next request is refused up front

    def _generated_user_id(self) -> str:
        # Registration without a username: a random lower-case localpart that is not numeric.
        return f"@{new_device_id().lower()}:{self.config.server_name}"

    def _register_guest(self, body) -> dict:
        if not self.config.allow_guest_access:
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guest access is disabled")
        # The spec: for guests every parameter but initial_device_display_name is ignored, and
        # the server picks the device ID.
        display_name = body.get("initial_device_display_name")
        if not isinstance(display_name, str) or "\x00" in display_name:
            display_name = None
        user_id = f"@{self.accounts.next_guest_localpart()}:{self.config.server_name}"

        def txn(cur):
            AccountStore.insert_user_txn(cur, user_id, None, now_ms(), is_guest=True)
            return self.sessions.create_session_txn(cur, user_id, None, display_name, False)
        result = self.db.run_txn("register_guest", txn)
        self.sessions.devices_added(user_id)
        result["home_server"] = self.config.server_name
        return result

    @staticmethod
    def _parse(body):
        def optional(key, kind, name):
            value = body.get(key)
            if value is not None and not isinstance(value, kind):
                raise MatrixError(400, Codes.BAD_JSON, f"{key} must be {name}")
            return value
        username = optional("username", str, "a string")
        password = optional("password", str, "a string")
        device_id = optional("device_id", str, "a string")
        display_name = optional("initial_device_display_name", str, "a string")
        inhibit_login = optional("inhibit_login", bool, "a boolean") or False
        want_refresh = optional("refresh_token", bool, "a boolean") or False
        if device_id is not None and not 0 < len(device_id) <= MAX_DEVICE_ID_LENGTH:
            raise MatrixError(400, Codes.BAD_JSON, "device_id must be a non-empty string")
        check_no_nul(device_id=device_id, initial_device_display_name=display_name)
        if password is not None and len(password) > 512:
            raise MatrixError(400, Codes.BAD_JSON, "Password too long")
        return username, password, device_id, display_name, inhibit_login, want_refresh
