"""Application services on the client API: who a request with an `as_token` acts as (identity
assertion with `user_id=` and `device_id=`), registering users in a service's namespace, and the
exclusive namespaces everyone else must keep out of (M_EXCLUSIVE).
"""

import logging
import re
import time

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.handlers.auth import AuthHandler, Requester
from hs.identifiers import MAX_USER_ID_LENGTH
from hs.storage.accounts import AccountStore

logger = logging.getLogger(__name__)

APP_SERVICE_LOGIN_TYPE = "m.login.application_service"
UNKNOWN_DEVICE = "M_UNKNOWN_DEVICE"
# MSC3202's name for `device_id=` (Matrix 1.17, MSC4326), still sent by bridges built before it.
_UNSTABLE_DEVICE_ID = "org.matrix.msc3202.device_id"
# The grammar of new user IDs (appendices: user identifiers). Unlike users, services may register
# localparts starting with '_' or all digits: bridges' namespaces (`_discord_.*`) need them.
_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")


def check_may_create_alias(registry, requester, alias: str) -> None:
    """400 M_EXCLUSIVE unless `requester` may create (or, a service, delete) `alias`. As
    Synapse: a service only in its own alias namespace; a user in none a service holds
    exclusively, unless the user is that service's sender."""
    service = requester.app_service
    if service is not None:
        if not service.is_interested_in_alias(alias):
            raise MatrixError(400, Codes.EXCLUSIVE, "This application service has not reserved this kind of alias.")
    elif any(s.sender != requester.user_id for s in registry.exclusive_owners("aliases", alias)):
        raise MatrixError(400, Codes.EXCLUSIVE, "This alias is reserved by an application service.")


class AppServiceAuth:
    def __init__(self, server_name: str, registry, db, accounts, devices):
        self.server_name = server_name
        self.registry = registry
        self.db = db
        self.accounts = accounts
        self.devices = devices
        self.api = None  # the AppServiceApi (set by the HomeServer)
        # Called with a service after it answered a ping: a scheduler may retry its transactions now.
        self.ping_listeners = []

    def service_for_token(self, token: str):
        return self.registry.by_as_token(token) if self.registry.services else None

    def requester(self, service, req):
        """The Requester of a request carrying `service`'s as_token (Synapse's
        get_appservice_user): its sender, or the `user_id=` it may act as; with `device_id=`,
        that user's existing device."""
        user_id = req.get_param("user_id") if req is not None else None
        if user_id is None:
            user_id = service.sender
        elif user_id != service.sender:
            if not service.can_act_as(user_id):
                raise MatrixError(403, Codes.FORBIDDEN,
                                  f"Application service cannot masquerade as this user ({user_id}).")
            if not self.accounts.user_exists(user_id):
                raise MatrixError(403, Codes.FORBIDDEN,
                                  f"Application service has not registered this user ({user_id})")
        device_id = None
        if req is not None:
            device_id = req.get_param("device_id") or req.get_param(_UNSTABLE_DEVICE_ID)
        if device_id is not None and self.devices.get_device(user_id, device_id) is None:
            # Synapse's answer (MSC4326 leaves creating the device to PUT /devices/{deviceId}).
            raise MatrixError(400, UNKNOWN_DEVICE, f"Application service trying to use a device that doesn't "
                                                   f"exist ('{device_id}' for {user_id})")
        return Requester(user_id, device_id, False, None, app_service=service)

    def ensure_senders_exist(self) -> None:
        """Creates each service's sender user if missing (the master, at start-up), so that it
        has a profile and can be invited, joined and looked up like any user. Synapse leaves it
        unregistered (synapse#11040); Dendrite creates it, as here."""
        for service in self.registry.services:
            if not self.accounts.user_exists(service.sender):
                localpart = service.sender[1:].split(":", 1)[0]
                self.db.run_txn("appservice_sender", AccountStore.insert_user_txn, service.sender, None, now_ms(),
                                appservice_id=service.id, displayname=localpart)
                logger.info("Created the sender %s of application service %s", service.sender, service.id)

    # --- exclusive namespaces ----------------------------------------------------------------

    def check_user_id_not_exclusive(self, user_id: str, service=None) -> None:
        """400 M_EXCLUSIVE when another service (than `service`; None: an ordinary user) holds
        `user_id` in an exclusive namespace."""
        if self.registry.is_reserved_for_others("users", user_id, service):
            raise MatrixError(400, Codes.EXCLUSIVE, "This user ID is reserved by an application service.")

    # --- ping ----------------------------------------------------------------------------------

    @staticmethod
    def ping_target(requester, appservice_id: str):
        """The service POST /appservice/{appserviceId}/ping may ping: the caller's own."""
        service = requester.app_service
        if service is None:
            raise MatrixError(403, Codes.FORBIDDEN, "Only application services can use the /appservice/ping endpoint")
        if service.id != appservice_id:
            raise MatrixError(403, Codes.FORBIDDEN, "Mismatching application service ID in path")
        return service

    def ping(self, service, transaction_id: str | None) -> int:
        """Calls the service's /ping; the duration in ms. Errors are appservice_ping.yaml's
        (AppServiceError carries them)."""
        start = time.monotonic()
        self.api.ping(service, transaction_id)
        for listener in self.ping_listeners:
            listener(service)
        return int((time.monotonic() - start) * 1000)

    # --- registration ------------------------------------------------------------------------

    def registering_service(self, req, username: str | None):
        """(service, user_id) for POST /register with type m.login.application_service: no UIA,
        the as_token is the authentication, and the username must be in the service's users
        namespace (and in no other service's exclusive one)."""
        token = AuthHandler.token_from_request(req)
        if not token:
            raise MatrixError(401, Codes.MISSING_TOKEN,
                              f"The as_token must be given to register with {APP_SERVICE_LOGIN_TYPE}")
        service = self.service_for_token(token)
        if service is None:
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown as_token", soft_logout=False)
        if username is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: username")
        user_id = f"@{username}:{self.server_name}"
        if not _LOCALPART.fullmatch(username) or len(user_id.encode()) > MAX_USER_ID_LENGTH:
            raise MatrixError(400, Codes.INVALID_USERNAME,
                              "User ID must be made of a-z, 0-9 and '=_-./+', at most 255 bytes in all")
        if not service.can_act_as(user_id):
            raise MatrixError(400, Codes.EXCLUSIVE, "Invalid user localpart for this application service.")
        self.check_user_id_not_exclusive(user_id, service)
        return service, user_id
