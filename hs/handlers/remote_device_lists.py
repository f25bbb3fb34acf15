"""Device lists of other servers' users, kept in step with their servers (server-server API
"Device Management"), so /keys/query answers for users sharing a room with ours from PostgreSQL.

Each m.device_list_update names the stream_id of the change and, as prev_id, those of the
changes before it. An update whose prev_ids are all the cached list's stream_id (or updates
already applied here) is applied as it is; any other one means we missed something, and the
whole list is fetched again with GET /user/devices/{userId} (a resync), as Synapse does. Until
the resync lands the cached list is dropped, so a query meanwhile asks the user's server. A list
first cached from a key query has no stream_id, so its first update resyncs it.

EDUs are applied on the master (hs/handlers/federation_edus.py hands them here), which also
writes the device_lists stream row that makes local clients re-query the user.
"""

import logging

import gevent

from hs.clock import now_ms
from hs.events.canonical_json import encode_canonical_json
from hs.federation.http_client import FederationRequestError
from hs.federation.server_name import quote_path_segment, server_name_of
from hs.storage.remote_device_lists import DeviceUpdate

logger = logging.getLogger(__name__)

# As Synapse: a user with more devices than this is not cached (each query asks their server).
MAX_CACHED_DEVICES = 1000
MAX_KEY_JSON_BYTES = 16 * 1024
# Updates seen, by (user_id, stream_id[, device_id]); bounded, an old one seen again costs a resync.
MAX_REMEMBERED = 10_000
CROSS_SIGNING_TYPES = ("master", "self_signing")


class BadRemoteData(Exception):
    """What another server sent is not what the spec says."""


def _bounded_add(seen: dict, key) -> None:
    if len(seen) >= MAX_REMEMBERED:
        seen.pop(next(iter(seen)))
    seen[key] = None


def checked_device_keys(keys, user_id: str, device_id: str) -> dict | None:
    """A remote device's keys as we keep them (without `unsigned`), or None if they are not the
    keys of that device. Their signatures are for the clients to check, as Synapse leaves them."""
    if not isinstance(keys, dict) or keys.get("user_id") != user_id or keys.get("device_id") != device_id:
        return None
    kept = {k: v for k, v in keys.items() if k != "unsigned"}
    try:
        if len(encode_canonical_json(kept)) > MAX_KEY_JSON_BYTES:
            return None
    except (ValueError, TypeError):
        return None
    return kept


def checked_cross_signing_key(key, user_id: str, usage: str) -> dict | None:
    if (not isinstance(key, dict) or key.get("user_id") != user_id or not isinstance(key.get("usage"), list)
            or usage not in key["usage"] or not isinstance(key.get("keys"), dict) or not key["keys"]):
        return None
    return key


def parse_user_devices(user_id: str, body) -> tuple[str, list[DeviceUpdate], dict]:
    """(stream_id, devices, {key type: cross-signing key}) of a GET /user/devices answer."""
    if not isinstance(body, dict) or body.get("user_id") != user_id:
        raise BadRemoteData("not the devices of the user asked for")
    stream_id = body.get("stream_id")
    if isinstance(stream_id, bool) or not isinstance(stream_id, (int, str)):
        raise BadRemoteData("stream_id is not an integer")
    devices = body.get("devices")
    if not isinstance(devices, list):
        raise BadRemoteData("devices is not a list")
    parsed = {}
    for device in devices:
        if not isinstance(device, dict) or not isinstance(device.get("device_id"), str):
            continue
        device_id = device["device_id"]
        name = device.get("device_display_name")
        parsed[device_id] = DeviceUpdate(device_id, False, checked_device_keys(device.get("keys"), user_id, device_id),
                                         name if isinstance(name, str) else None)
    cross_signing = {t: k for t in CROSS_SIGNING_TYPES
                     if (k := checked_cross_signing_key(body.get(f"{t}_key"), user_id, t)) is not None}
    return str(stream_id), list(parsed.values()), cross_signing


class RemoteDeviceLists:
    def __init__(self, store, client, device_list_writer):
        self.store = store
        self.client = client
        self.device_list_writer = device_list_writer  # None on a worker: it never applies EDUs
        self._seen_updates: dict[tuple[str, str, str], None] = {}
        self._applied: dict[tuple[str, str], None] = {}
        # Users being resynced -> whether an update came in meanwhile (then fetch once more).
        self._resyncing: dict[str, bool] = {}

    # --- m.device_list_update ----------------------------------------------------------------------

    def on_device_list_update(self, user_id: str, device_id: str, stream_id: str, prev_ids: list[str],
                              deleted: bool, keys, display_name) -> None:
        """An update from the user's server (checked by the caller: its user, sharing a room)."""
        seen = (user_id, stream_id, device_id)
        if seen in self._seen_updates:
            return
        _bounded_add(self._seen_updates, seen)
        if user_id in self._resyncing:
            self._resyncing[user_id] = True
            return
        cached, extremity = self.store.get_stream_id(user_id)
        follows = cached and extremity is not None and prev_ids and all(
            p == extremity or (user_id, p) in self._applied for p in prev_ids)
        update = DeviceUpdate(device_id, deleted, None if deleted else checked_device_keys(keys, user_id, device_id),
                              display_name if isinstance(display_name, str) else None)
        if follows and self.store.apply_updates(user_id, extremity, stream_id, [update], now_ms()):
            _bounded_add(self._applied, (user_id, stream_id))
            self.device_list_writer.user_devices_changed(user_id)
            return
        logger.info("Device list update %s of %s follows %s, not %s: resyncing", stream_id, user_id, prev_ids,
                    extremity)
        self.start_resync(user_id)

    def on_signing_key_update(self, user_id: str, keys: dict[str, dict]) -> None:
        """The user's new public cross-signing keys ({"master"|"self_signing": key})."""
        self.store.set_cross_signing_keys(user_id, {t: k for t, k in keys.items() if t in CROSS_SIGNING_TYPES},
                                          now_ms())
        self.device_list_writer.user_devices_changed(user_id)

    # --- resync --------------------------------------------------------------------------------------

    def start_resync(self, user_id: str) -> None:
        """Drops the cached list now and fetches it again in the background (the EDU that found
        the gap came in a transaction that should not wait for it)."""
        if user_id in self._resyncing:
            self._resyncing[user_id] = True
            return
        self._resyncing[user_id] = False
        self.store.forget([user_id])
        gevent.spawn(self._run_resync, user_id)

    def _run_resync(self, user_id: str) -> None:
        try:
            while True:
                self.resync(user_id)
                if not self._resyncing.get(user_id):
                    break
                self._resyncing[user_id] = False
        finally:
            self._resyncing.pop(user_id, None)
            # Whether or not it worked: clients re-query (from the cache, or the user's server).
            self.device_list_writer.user_devices_changed(user_id)

    def resync(self, user_id: str) -> None:
        """Fetches the user's whole device list and caches it (or, failing, caches nothing)."""
        try:
            body = self.client.get_json(server_name_of(user_id), f"/_matrix/federation/v1/user/devices/"
                                        f"{quote_path_segment(user_id)}")
            stream_id, devices, cross_signing = parse_user_devices(user_id, body)
        except (FederationRequestError, BadRemoteData, ValueError) as e:
            logger.info("Could not resync the device list of %s: %s", user_id, e)
            self.store.forget([user_id])
            return
        if len(devices) > MAX_CACHED_DEVICES:
            logger.warning("%s has %d devices: not caching them", user_id, len(devices))
            self.store.forget([user_id])
        else:
            self.store.replace(user_id, stream_id, devices, cross_signing.get("master"),
                               cross_signing.get("self_signing"), now_ms())
            _bounded_add(self._applied, (user_id, stream_id))
