"""The account itself: changing the password and deactivating."""

from hs.errors import Codes, MatrixError
from hs.handlers.uia import PASSWORD
from hs.storage.accounts import AccountStore
from hs.storage.devices import DeviceStore


class AccountHandler:
    def __init__(self, config, db, accounts, hasher, uia, registration):
        self.config = config
        self.db = db
        self.accounts = accounts
        self.hasher = hasher
        self.uia = uia
        self.registration = registration

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

    def deactivate(self, req, requester, body: dict) -> dict:
        erase = body.get("erase", False)
        if not isinstance(erase, bool):
            raise MatrixError(400, Codes.BAD_JSON, "erase must be a boolean")
        self.uia.check(req, body, [[PASSWORD]], user_id=requester.user_id)

        def txn(cur):
            AccountStore.deactivate_txn(cur, requester.user_id)
            DeviceStore.delete_devices_txn(cur, requester.user_id, None)
        self.db.run_txn("deactivate", txn)
        return {"id_server_unbind_result": "no-support"}
