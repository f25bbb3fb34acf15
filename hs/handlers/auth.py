"""Who is calling: access tokens from requests, and password hashing."""

import logging
import secrets
from dataclasses import dataclass

import argon2
import gevent

from hs.clock import now_ms
from hs.errors import Codes, MatrixError

logger = logging.getLogger(__name__)

# Throttle writes of a device's last-seen time: one per device per interval is plenty for clients.
LAST_SEEN_INTERVAL_MS = 60_000


@dataclass(frozen=True)
class Requester:
    user_id: str
    device_id: str | None  # None: an application service acting without `device_id=`
    is_guest: bool
    access_token_id: int | None
    app_service: object = None  # the ApplicationService whose as_token made the request

    @property
    def rate_limited(self) -> bool:
        return self.app_service is None or self.app_service.rate_limited

    @property
    def txn_device_id(self) -> str:
        """Whose transaction IDs these are: the device's; '' (never a device ID) for a service
        acting without one, so its retries are still recognised."""
        return self.device_id if self.device_id is not None else ""


def new_token(prefix: str) -> str:
    """256 random bits; the prefix tells a leaked secret's kind at a glance (as GitHub's tokens do)."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


class PasswordHasher:
    """argon2id, run on gevent's thread pool: hashing takes tens of milliseconds of CPU, which
    must not stall every other request in the process (argon2-cffi releases the GIL)."""

    def __init__(self, pepper: str = "", **argon2_params):
        self.pepper = pepper
        self._hasher = argon2.PasswordHasher(**argon2_params)

    def hash(self, password: str) -> str:
        return gevent.get_hub().threadpool.apply(self._hasher.hash, (password + self.pepper,))

    def verify(self, password_hash: str | None, password: str) -> bool:
        if not password_hash:
            return False
        return gevent.get_hub().threadpool.apply(self._verify, (password_hash, password + self.pepper))

    def _verify(self, password_hash: str, password: str) -> bool:
        # In the pool's thread: an exception raised there would be printed by gevent as a crash
        # for every wrong password.
        try:
            return self._hasher.verify(password_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False


class AuthHandler:
    def __init__(self, tokens, devices, app_service_auth=None):
        self.tokens = tokens
        self.devices = devices
        self.app_service_auth = app_service_auth
        self._last_seen: dict = {}  # (user, device) -> last write ms
        # (user_id, device_id, ip, user_agent, now_ms): a worker sends it to the master instead.
        self.record_last_seen = devices.record_last_seen

    @staticmethod
    def token_from_request(req) -> str | None:
        header = req.get_header("Authorization")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise MatrixError(401, Codes.MISSING_TOKEN, "Invalid Authorization header")
            return value.strip()
        return req.get_param("access_token")

    def authenticate(self, token: str | None, req=None, *, allow_expired: bool = False) -> Requester:
        if not token:
            raise MatrixError(401, Codes.MISSING_TOKEN, "Missing access token")
        service = self.app_service_auth.service_for_token(token) if self.app_service_auth else None
        if service is not None:
            # As Synapse (track_appservice_user_ips off): a service's requests record no last-seen.
            return self.app_service_auth.requester(service, req)
        info = self.tokens.get_access_token(token)
        if info is None:
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown access token", soft_logout=False)
        now = now_ms()
        if info.valid_until_ts is not None and info.valid_until_ts < now and not allow_expired:
            # The session is alive but this token expired: the client should refresh, not log out.
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Access token has expired", soft_logout=True)
        if info.deactivated:
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "User account has been deactivated", soft_logout=False)
        if not info.used and info.refresh_token_id is not None:
            self.tokens.mark_access_token_used(info.token_id, info.refresh_token_id)
        if req is not None:
            self._record_last_seen(info.user_id, info.device_id, req, now)
        return Requester(info.user_id, info.device_id, info.is_guest, info.token_id)

    def _record_last_seen(self, user_id, device_id, req, now):
        key = (user_id, device_id)
        if now - self._last_seen.get(key, 0) < LAST_SEEN_INTERVAL_MS:
            return
        if len(self._last_seen) > 100_000:
            self._last_seen.clear()
        self._last_seen[key] = now
        self.record_last_seen(user_id, device_id, req.context.client_ip, req.user_agent, now)
