"""Server-side key backups (client-server API "Server-side key backups"): a user's backup
versions under /room_keys/version and the room keys in them under /room_keys/keys.

The keys are opaque to the server: room IDs are not checked against the user's rooms, and
session_data is stored as sent. Only the current version (the newest not deleted) takes
uploads; reads and deletes may name any version that still exists. Every version belongs to
one user, and every query carries the requester's user ID, so no one sees another's backup.
"""

from hs.errors import Codes, MatrixError
from hs.events.canonical_json import json_has_nul
from hs.storage.key_backup import RoomKey

WRONG_ROOM_KEYS_VERSION = "M_WRONG_ROOM_KEYS_VERSION"


def should_replace(stored: RoomKey, new: RoomKey) -> bool:
    """The m.megolm_backup.v1 rule: a verified key beats an unverified one; between equally
    verified keys the lower first_message_index wins, then the lower forwarded_count. A tie
    keeps the stored key. (Synapse lets a lower index replace a verified key with an unverified
    one; the spec's order does not.)"""
    def rank(key):
        return not key.is_verified, key.first_message_index, key.forwarded_count
    return rank(new) < rank(stored)


def _not_found(version: str) -> MatrixError:
    return MatrixError(404, Codes.NOT_FOUND, f"Unknown backup version {version!r}")


def _check_auth_data(body: dict) -> dict:
    auth_data = body.get("auth_data")
    if auth_data is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: auth_data")
    if not isinstance(auth_data, dict):
        raise MatrixError(400, Codes.BAD_JSON, "auth_data must be an object")
    if json_has_nul(auth_data):
        raise MatrixError(400, Codes.BAD_JSON, "auth_data must not contain NUL characters")
    return auth_data


def _check_algorithm(body: dict) -> str:
    algorithm = body.get("algorithm")
    if algorithm is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: algorithm")
    if not isinstance(algorithm, str) or not algorithm or "\x00" in algorithm:
        raise MatrixError(400, Codes.BAD_JSON, "algorithm must be a non-empty string")
    return algorithm


class KeyBackupHandler:
    def __init__(self, store):
        self.store = store

    def create_version(self, user_id: str, body: dict) -> str:
        algorithm, auth_data = _check_algorithm(body), _check_auth_data(body)
        return self.store.create_version(user_id, algorithm, auth_data)

    def get_version(self, user_id: str, version: str | None) -> dict:
        info = self.store.get_version(user_id, version)
        if info is None:
            if version is None:
                raise MatrixError(404, Codes.NOT_FOUND, "No current backup version")
            raise _not_found(version)
        return info

    def update_version(self, user_id: str, version: str, body: dict) -> None:
        """Only auth_data changes; the body repeats the algorithm (and may repeat the version)."""
        algorithm, auth_data = _check_algorithm(body), _check_auth_data(body)
        if "version" in body and body["version"] != version:
            raise MatrixError(400, Codes.INVALID_PARAM, "The version in the body does not match the path")
        stored = self.get_version(user_id, version)
        if stored["algorithm"] != algorithm:
            raise MatrixError(400, Codes.INVALID_PARAM, "The algorithm does not match the backup's")
        # A version deleted between the read and the write is simply not found.
        if not self.store.update_auth_data(user_id, version, auth_data):
            raise _not_found(version)

    def delete_version(self, user_id: str, version: str) -> None:
        if not self.store.delete_version(user_id, version):
            raise _not_found(version)

    def upload_keys(self, user_id: str, version: str, keys: list[tuple[str, str, RoomKey]]) -> dict:
        result = self.store.upload_keys(user_id, version, keys, should_replace)
        if not result.stored:
            if not result.version_exists:
                raise _not_found(version)
            raise MatrixError(403, WRONG_ROOM_KEYS_VERSION,
                              f"Wrong backup version: the current one is {result.current_version}",
                              current_version=result.current_version)
        return {"etag": str(result.etag), "count": result.count}

    def get_keys(self, user_id: str, version: str, room_id: str | None = None,
                 session_id: str | None = None) -> dict:
        """{"rooms": {...}} for the whole backup, {"sessions": {...}} for a room (empty when it
        has no keys), the key itself for a session (404 when there is none), as Synapse does."""
        rows = self.store.get_keys(user_id, version, room_id, session_id)
        if rows is None:
            raise _not_found(version)
        if session_id is not None:
            if not rows:
                raise MatrixError(404, Codes.NOT_FOUND, "No backed up key for this session")
            return rows[0][2].to_json()
        rooms: dict = {}
        for row_room_id, row_session_id, key in rows:
            rooms.setdefault(row_room_id, {"sessions": {}})["sessions"][row_session_id] = key.to_json()
        if room_id is not None:
            return rooms.get(room_id, {"sessions": {}})
        return {"rooms": rooms}

    def delete_keys(self, user_id: str, version: str, room_id: str | None = None,
                    session_id: str | None = None) -> dict:
        result = self.store.delete_keys(user_id, version, room_id, session_id)
        if result is None:
            raise _not_found(version)
        etag, count = result
        return {"etag": str(etag), "count": count}
