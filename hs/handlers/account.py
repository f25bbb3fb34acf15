"""The account itself: changing the password and deactivating."""

import logging

from hs.errors import Codes, MatrixError
from hs.handlers.uia import PASSWORD
from hs.storage.accounts import AccountStore
from hs.storage.devices import DeviceStore

logger = logging.getLogger(__name__)


class AccountHandler:
    def __init__(self, config, db, accounts, hasher, uia, registration, rooms, membership):
        self.config = config
        self.db = db
        self.accounts = accounts
        self.hasher = hasher
        self.uia = uia
        self.registration = registration
        self.rooms = rooms
        self.membership = membership
        self.devices_deleted_listeners = []  # called with the user ID after devices were deleted
        self.deactivated_listeners = []  # called with the user ID once the account is deactivated

    def change_password(self, req, requester, body: dict) -> None:
        if not self.config.password_enabled:
            raise MatrixError(403, Codes.FORBIDDEN, "Password changes are disabled on this server")
        new_password = body.get("new_password")
        if new_password is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: new_password")
        if not isinstance(new_password, str) or len(new_password) > 512:
            raise MatrixError(400, Codes.BAD_JSON, "new_password must be a string of at most 512 characters")
        logout_devices = body.get("logout_devices", True)
        if not isinstance(logout_devices, bool):
            raise MatrixError(400, Codes.BAD_JSON, "logout_devices must be a boolean")
        self.registration.check_password_policy(new_password)
        self.uia.check(req, body, [[PASSWORD]], user_id=requester.user_id)
        password_hash = self.hasher.hash(new_password)

        def txn(cur):
            AccountStore.set_password_hash_txn(cur, requester.user_id, password_hash)
            if logout_devices:
                # Every other session ends; the one that changed the password stays.
                DeviceStore.delete_other_devices_txn(cur, requester.user_id, requester.device_id)
        self.db.run_txn("change_password", txn)
        if logout_devices:
            self._devices_deleted(requester.user_id)

    def deactivate(self, req, requester, body: dict) -> dict:
        erase = body.get("erase", False)
        if not isinstance(erase, bool):
            raise MatrixError(400, Codes.BAD_JSON, "erase must be a boolean")
        self.uia.check(req, body, [[PASSWORD]], user_id=requester.user_id)

        def txn(cur):
            # Clears the profile too, so the leave events below carry no name.
            AccountStore.deactivate_txn(cur, requester.user_id)
            DeviceStore.delete_devices_txn(cur, requester.user_id, None)
        self.db.run_txn("deactivate", txn)
        self._devices_deleted(requester.user_id)
        for listener in self.deactivated_listeners:
            listener(requester.user_id)
        self._leave_all_rooms(requester)
        # erase=true asks that the user's messages be hidden from people who join later (Synapse
        # marks the user erased and redacts their events on read); nothing here does that yet,
        # so erase needs nothing beyond a plain deactivation for now.
        return {"id_server_unbind_result": "no-support"}

    def _devices_deleted(self, user_id: str) -> None:
        # What hangs off a device (its pushers) goes with it.
        for listener in self.devices_deleted_listeners:
            listener(user_id)

    def _leave_all_rooms(self, requester) -> None:
        """Rejects pending invites, rescinds knocks and leaves joined rooms, as Synapse does. A
        room that refuses is logged and skipped: the account is deactivated either way.
        Synchronous (Synapse parts in the background and resumes after a restart): a user in
        thousands of rooms makes this request slow, one event per room."""
        user_id = requester.user_id
        for room_id in self.rooms.get_rooms_for_user(user_id, memberships=("invite", "knock", "join")):
            try:
                self.membership.update_membership(requester, room_id, user_id, "leave")
            except Exception:
                logger.warning("Deactivated user %s could not leave %s", user_id, room_id, exc_info=True)
