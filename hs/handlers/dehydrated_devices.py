"""Dehydrated devices (MSC3814, as Synapse and Element implement it): a device a client keeps in
the user's account, encrypted, so that room keys sent while the user has no other device are
not lost. A later login fetches it (GET), rehydrates it locally, reads the to-device messages
it received (its events), and replaces it (PUT) or deletes it (DELETE).

The dehydrated device is an ordinary device with no access token: its keys are uploaded through
E2eKeysHandler (the same checks as /keys/upload), /keys/query and /keys/claim serve it, others
send it to-device messages, GET /devices lists it and DELETE /devices/{id} deletes it (the MSC
and Synapse agree on all of these). The `dehydrated: true` flag is the client's to put in the
device keys it signs; the server stores the keys as signed.

As the MSC says (and unlike /sync), reading the events deletes nothing: a rehydration that is
cut short can be started again. The messages go with the device when it is replaced or deleted.
"""

from dataclasses import replace

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.events.canonical_json import json_has_nul
from hs.handlers.devices import MAX_DISPLAY_NAME_LENGTH
from hs.handlers.sessions import MAX_DEVICE_ID_LENGTH, check_no_nul
from hs.storage.dehydrated_devices import DehydratedDeviceGone, DeviceIdInUse

KEY_FIELDS = ("device_keys", "one_time_keys", "fallback_keys")
DEFAULT_EVENTS_LIMIT = 100  # Synapse's default
MAX_EVENTS_LIMIT = 1000


def _string(body: dict, name: str, required: bool) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise MatrixError(400, Codes.MISSING_PARAM, f"Missing parameter: {name}")
        return None
    if not isinstance(value, str):
        raise MatrixError(400, Codes.BAD_JSON, f"{name} must be a string")
    return value


def _parse_next_batch(token: str | None) -> int:
    """Our tokens are Synapse's: "d" and a to_device stream position."""
    if token is None:
        return 0
    digits = token[1:]
    if not token.startswith("d") or not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid next_batch token {token!r}")
    return int(digits)


def _gone() -> MatrixError:
    return MatrixError(409, Codes.UNKNOWN, "The dehydrated device was deleted while it was being uploaded")


class DehydratedDeviceHandler:
    def __init__(self, store, devices, e2e_keys, inbox, to_device_stream):
        self.store = store
        self.devices = devices  # DeviceStore
        self.e2e_keys = e2e_keys  # E2eKeysHandler: the key upload, its checks and its announcement
        self.inbox = inbox  # ToDeviceStore
        self.to_device_stream = to_device_stream
        # Called with the user ID after a dehydrated device was deleted or replaced (its device
        # list changed); the key upload announces the new device itself.
        self.devices_changed_listeners = []

    def get(self, requester) -> dict:
        found = self.store.get(requester.user_id)
        if found is None:
            raise MatrixError(404, Codes.NOT_FOUND, "No dehydrated device available")
        return {"device_id": found[0], "device_data": found[1]}

    def put(self, requester, body: dict) -> dict:
        user_id = requester.user_id
        device_id = _string(body, "device_id", required=True)
        if not device_id or len(device_id) > MAX_DEVICE_ID_LENGTH:
            raise MatrixError(400, Codes.INVALID_PARAM,
                              f"device_id must be a non-empty string of at most {MAX_DEVICE_ID_LENGTH} characters")
        display_name = _string(body, "initial_device_display_name", required=False)
        if display_name is not None and len(display_name) > MAX_DISPLAY_NAME_LENGTH:
            raise MatrixError(400, Codes.BAD_JSON,
                              f"initial_device_display_name may be at most {MAX_DISPLAY_NAME_LENGTH} characters")
        check_no_nul(device_id=device_id, initial_device_display_name=display_name)
        device_data = body.get("device_data")
        if device_data is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: device_data")
        if not isinstance(device_data, dict) or not isinstance(device_data.get("algorithm"), str):
            raise MatrixError(400, Codes.BAD_JSON, "device_data must be an object with a string algorithm")
        if json_has_nul(device_data):
            raise MatrixError(400, Codes.BAD_JSON, "device_data must not contain NUL characters")
        # The MSC makes device keys required: a dehydrated device no one can encrypt to is useless.
        if body.get("device_keys") is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: device_keys")

        try:
            replaced = self.store.create_device(user_id, device_id, display_name, now_ms())
        except DeviceIdInUse:
            raise MatrixError(400, Codes.INVALID_PARAM,
                              f"device_id {device_id} is in use by another of your devices") from None
        try:
            self.e2e_keys.upload(replace(requester, device_id=device_id),
                                 {name: body[name] for name in KEY_FIELDS if name in body})
        except Exception as e:
            # Keys refused (nothing of them stored): the half-made device goes, and the previous
            # dehydrated device stays, unless it had this very ID and was replaced already.
            self.devices.delete_devices(user_id, [device_id])
            if replaced:
                self._changed(user_id)
            if isinstance(e, MatrixError) and e.errcode == Codes.UNKNOWN_TOKEN:
                raise _gone() from None  # the upload found the device deleted, not the caller's token
            raise
        try:
            previous = self.store.set_dehydrated(user_id, device_id, device_data)
        except DehydratedDeviceGone:
            raise _gone() from None
        if previous is not None:
            self._changed(user_id)
        return {"device_id": device_id}

    def delete(self, requester) -> dict:
        device_id = self.store.delete(requester.user_id)
        if device_id is None:
            raise MatrixError(404, Codes.NOT_FOUND, "No dehydrated device available")
        self._changed(requester.user_id)
        return {"device_id": device_id}

    def events(self, requester, device_id: str, next_batch: str | None, limit: int) -> tuple[list[dict], str, bool]:
        """(the messages after `next_batch`, oldest first, at most `limit`; the token for the
        next page; whether there may be more)."""
        found = self.store.get(requester.user_id)
        # As Synapse: 403 whether there is no dehydrated device or the ID is another one.
        if found is None:
            raise MatrixError(403, Codes.FORBIDDEN, "No dehydrated device exists")
        if found[0] != device_id:
            raise MatrixError(403, Codes.FORBIDDEN, "You may only fetch messages for your dehydrated device")
        limit = min(limit, MAX_EVENTS_LIMIT)
        now = self.to_device_stream.get_current_token()
        # A token beyond the stream (not one of ours) reads nothing rather than overflow a bigint.
        since = min(_parse_next_batch(next_batch), now)
        rows = self.inbox.get_messages(requester.user_id, device_id, since, now, limit)
        position = rows[-1][0] if len(rows) == limit else now
        return [message for _, message in rows], f"d{position}", position != now

    def _changed(self, user_id: str) -> None:
        for listener in self.devices_changed_listeners:
            listener(user_id)
