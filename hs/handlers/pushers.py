"""Pushers (client-server API "Push Notifications"): GET /pushers and POST /pushers/set.

Only the configuration lives here; delivering to push gateways is the pusher worker's job
(a later issue). A pusher belongs to the device whose access token set it, and is removed when
that device logs out or is deleted, as Synapse does.
"""

import logging
from urllib.parse import urlsplit

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.events.canonical_json import json_has_nul

logger = logging.getLogger(__name__)

MAX_APP_ID_CHARS = 64
MAX_PUSHKEY_BYTES = 512
NOTIFY_PATH = "/_matrix/push/v1/notify"
KINDS = ("http", "email")
# Not in hs.errors.Codes: nothing else answers it until 3PIDs exist.
THREEPID_NOT_FOUND = "M_THREEPID_NOT_FOUND"

_REQUIRED_TO_SET = ("app_display_name", "device_display_name", "lang", "data")
_STRINGS = ("kind", "app_id", "pushkey", "app_display_name", "device_display_name", "profile_tag", "lang")


class PusherReader:
    def __init__(self, store):
        self.store = store

    def get_pushers(self, requester) -> list[dict]:
        return self.store.get_pushers(requester.user_id)


class PusherWriter:
    """The master's side: every change takes ids from the pushers stream."""

    def __init__(self, store, stream):
        self.store = store
        self.stream = stream
        self.threepids = None  # hs.handlers.threepids.ThreepidHandler: which addresses are bound

    def set_pusher(self, requester, body: dict) -> None:
        pusher = _validated(body)
        user_id = requester.user_id
        if pusher["kind"] is None:
            self._remove([(user_id, pusher["app_id"], pusher["pushkey"])])
            return
        bound = pusher["kind"] == "email" and self.threepids and self.threepids.is_bound(user_id, pusher["pushkey"])
        if pusher["kind"] == "email" and not bound:
            # Synapse refuses an address not bound to the account with this error.
            raise MatrixError(400, THREEPID_NOT_FOUND, "Email not found")
        if not body.get("append"):
            # The spec: other users' pushers with this app_id and pushkey go (the pushkey has
            # passed to this user, e.g. a phone that changed hands).
            self._remove(self.store.get_other_users_pushers(pusher["app_id"], pusher["pushkey"], user_id))
        with self.stream.get_next() as stream_id:
            stored = self.store.upsert_pusher(user_id, requester.device_id, pusher, stream_id, now_ms())
        if not stored:
            # The device logged out while this request was in flight.
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown access token", soft_logout=False)

    def remove_email_pushers(self, user_id: str, address: str) -> None:
        """Called when the address is unbound from the account."""
        self._remove([(user_id, p["app_id"], p["pushkey"]) for p in self.store.get_pushers(user_id)
                      if p["kind"] == "email" and p["pushkey"].lower() == address])

    def remove_pusher(self, user_id: str, app_id: str, pushkey: str) -> None:
        """One pusher goes: an email's unsubscribe link, a push gateway rejecting its pushkey."""
        self._remove([(user_id, app_id, pushkey)])

    def remove_pushers_of_deleted_devices(self, user_id: str) -> None:
        """Called after devices of the user were deleted (logout, device deletion)."""
        self._remove(self.store.get_pushers_of_deleted_devices(user_id))

    def _remove(self, keys: list) -> None:
        if not keys:
            return
        for user_id, app_id, pushkey in keys:
            logger.info("Removing pusher for app id %s, pushkey %s, user %s", app_id, pushkey, user_id)
        with self.stream.get_next_mult(len(keys)) as stream_ids:
            self.store.delete_pushers(keys, stream_ids)


def _validated(body: dict) -> dict:
    """The pusher the body describes, or the spec's 400; kind None asks for a deletion."""
    if "kind" not in body:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameters: kind")
    required = ("app_id", "pushkey") if body["kind"] is None else ("app_id", "pushkey", *_REQUIRED_TO_SET)
    missing = [key for key in required if body.get(key) is None]
    if missing:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameters: " + ", ".join(missing))
    for key in _STRINGS:
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise MatrixError(400, Codes.BAD_JSON, f"{key} must be a string")
        if value is not None and "\x00" in value:
            raise MatrixError(400, Codes.INVALID_PARAM, f"{key} must not contain NUL")
    if body.get("append") is not None and not isinstance(body["append"], bool):
        raise MatrixError(400, Codes.BAD_JSON, "append must be a boolean")
    if len(body["app_id"]) > MAX_APP_ID_CHARS:
        raise MatrixError(400, Codes.INVALID_PARAM, f"app_id must be at most {MAX_APP_ID_CHARS} characters")
    if len(body["pushkey"].encode("utf-8")) > MAX_PUSHKEY_BYTES:
        raise MatrixError(400, Codes.INVALID_PARAM, f"pushkey must be at most {MAX_PUSHKEY_BYTES} bytes")
    pusher = {key: body.get(key) for key in ("kind", "app_id", "pushkey", *_REQUIRED_TO_SET, "profile_tag")}
    if pusher["kind"] is None:
        return pusher
    if pusher["kind"] not in KINDS:
        raise MatrixError(400, Codes.INVALID_PARAM, "kind must be one of http, email or null")
    data = pusher["data"]
    if not isinstance(data, dict):
        raise MatrixError(400, Codes.BAD_JSON, "data must be an object")
    if json_has_nul(data):
        raise MatrixError(400, Codes.BAD_JSON, "Strings in data must not contain NUL")
    if pusher["kind"] == "http":
        _check_http_data(data)
    return pusher


def _check_http_data(data: dict) -> None:
    if data.get("url") is None:
        # Synapse answers M_MISSING_PARAM for this too ("Config Error: 'url' required ...").
        raise MatrixError(400, Codes.MISSING_PARAM, "data.url is required for an http pusher")
    url = data["url"]
    if not isinstance(url, str):
        raise MatrixError(400, Codes.INVALID_PARAM, "data.url must be a string")
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    # The spec asks for https; like Synapse we also accept http (local and test gateways).
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.path != NOTIFY_PATH:
        raise MatrixError(400, Codes.INVALID_PARAM, f"data.url must be an http(s) URL with the path {NOTIFY_PATH}")
    if "format" in data and data["format"] != "event_id_only":
        raise MatrixError(400, Codes.INVALID_PARAM, "data.format must be event_id_only when given")
