"""Device keys, one-time keys and fallback keys (client-server API "End-to-End Encryption"):
POST /keys/upload, /keys/query, /keys/claim, and /sync's key counts.

`E2eKeysReader` (any process) answers queries and /sync's counts; `E2eKeysHandler` (the master)
stores uploads and hands out claimed keys. Users of other servers are asked about through
`remote` (hs/handlers/e2e_federation.py, set by hs/server.py); servers that fail are reported
in `failures`, as Synapse does."""

import logging
from collections.abc import Callable

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.events.canonical_json import encode_canonical_json
from hs.events.signing import SignatureVerifyError, decode_verify_key_base64, verify_signed_json
from hs.identifiers import user_id_parts
from hs.storage.e2e_keys import KeyConflict

logger = logging.getLogger(__name__)

# Olm accounts hold at most 100 (libolm) or 50 (vodozemac) one-time keys and clients upload half
# of that at a time; these limits leave room for any client while keeping a device from filling
# the database with keys no one can use.
MAX_ONE_TIME_KEYS_PER_UPLOAD = 200
MAX_ONE_TIME_KEYS_PER_DEVICE = 1000
MAX_KEY_JSON_BYTES = 16 * 1024
MAX_KEY_ID_LENGTH = 255
# How long a query or claim waits for other servers without the request's `timeout` (Synapse's).
DEFAULT_REMOTE_TIMEOUT_MS = 10_000


def _bad(message: str, errcode: str = Codes.BAD_JSON) -> MatrixError:
    return MatrixError(400, errcode, message)


def _check_no_nul(value, where: str) -> None:
    """PostgreSQL's jsonb cannot hold U+0000, and no key needs it."""
    if isinstance(value, str):
        if "\x00" in value:
            raise _bad(f"{where} contains a NUL character")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_no_nul(k, where)
            _check_no_nul(v, where)
    elif isinstance(value, list):
        for v in value:
            _check_no_nul(v, where)


def _check_size(value, where: str) -> None:
    try:
        size = len(encode_canonical_json(value))
    except (ValueError, TypeError):
        raise _bad(f"{where} is not valid canonical JSON") from None
    if size > MAX_KEY_JSON_BYTES:
        raise MatrixError(413, Codes.TOO_LARGE, f"{where} exceeds {MAX_KEY_JSON_BYTES} bytes")


def _split_key_id(full_id, where: str) -> tuple[str, str]:
    algorithm, sep, key_id = full_id.partition(":") if isinstance(full_id, str) else ("", "", "")
    if not sep or not algorithm or not key_id or len(full_id) > MAX_KEY_ID_LENGTH:
        raise _bad(f"{where}: key ID {full_id!r} is not <algorithm>:<key_id>", Codes.INVALID_PARAM)
    return algorithm, key_id


def _parse_keys(body: dict, name: str) -> list[tuple[str, str, object]]:
    """(algorithm, key_id, key) of a one_time_keys or fallback_keys map: each key is a string or
    an object with a string `key` (the signed form)."""
    keys = body.get(name)
    if keys is None:
        return []
    if not isinstance(keys, dict):
        raise _bad(f"{name} must be an object")
    parsed = []
    for full_id, key in keys.items():
        algorithm, key_id = _split_key_id(full_id, name)
        if not isinstance(key, str) and not (isinstance(key, dict) and isinstance(key.get("key"), str)):
            raise _bad(f"{name}.{full_id} must be a string or an object with a string key")
        _check_no_nul([full_id, key], f"{name}.{full_id}")
        _check_size(key, f"{name}.{full_id}")
        parsed.append((algorithm, key_id, key))
    return parsed


def _check_device_keys(device_keys, user_id: str, device_id: str) -> dict:
    """The device keys to store (without `unsigned`): for this user and device, and self-signed
    with the device's ed25519 key, as the spec requires clients to check."""
    if not isinstance(device_keys, dict):
        raise _bad("device_keys must be an object")
    # Synapse's errors for keys of another user or device.
    if device_keys.get("user_id") != user_id:
        raise _bad("Provided `user_id` in `device_keys` does not match that of the authenticated user")
    if device_keys.get("device_id") != device_id:
        raise _bad("Provided `device_id` in `device_keys` does not match that of the authenticated user device")
    algorithms, keys = device_keys.get("algorithms"), device_keys.get("keys")
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise _bad("device_keys.algorithms must be an array of strings")
    if not isinstance(keys, dict) or not all(isinstance(k, str) for k in keys.values()):
        raise _bad("device_keys.keys must be an object of strings")
    if not isinstance(device_keys.get("signatures"), dict):
        raise _bad("device_keys.signatures must be an object")
    for full_id in keys:
        if _split_key_id(full_id, "device_keys.keys")[1] != device_id:
            raise _bad(f"device_keys.keys: {full_id!r} is not a key of device {device_id}", Codes.INVALID_PARAM)
    stored = {k: v for k, v in device_keys.items() if k != "unsigned"}
    _check_no_nul(stored, "device_keys")
    _check_size(stored, "device_keys")
    ed25519_id = f"ed25519:{device_id}"
    if ed25519_id not in keys:
        raise _bad(f"device_keys.keys has no {ed25519_id} key", Codes.INVALID_PARAM)
    try:
        verify_key = decode_verify_key_base64("ed25519", device_id, keys[ed25519_id])
        verify_signed_json(stored, user_id, verify_key, ed25519_id)
    except (ValueError, SignatureVerifyError) as e:
        raise _bad(f"device_keys are not signed by their {ed25519_id} key: {e}", Codes.INVALID_PARAM) from None
    return stored


def _user_server(user_id) -> str:
    return user_id_parts(user_id)[1]


def _timeout_s(body: dict, ceiling_ms: int) -> float:
    timeout = body.get("timeout", DEFAULT_REMOTE_TIMEOUT_MS)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise _bad("timeout must be a non-negative integer")
    return max(min(timeout, ceiling_ms), 1) / 1000


def _merge_remote(response: dict, remote: dict) -> None:
    """Adds the sections answered for other servers' users to a /keys/query response."""
    response["device_keys"].update(remote["device_keys"])
    response["failures"].update(remote["failures"])
    for section in ("master_keys", "self_signing_keys"):
        if remote.get(section):
            response.setdefault(section, {}).update(remote[section])


class E2eKeysReader:
    def __init__(self, server_name: str, store):
        self.server_name = server_name
        self.store = store
        # Callables (requester_user_id, {local user_id: [device_id] or None}, response) that add
        # their own sections to a /keys/query response (cross-signing keys).
        self.query_extenders: list[Callable[[str, dict, dict], None]] = []
        self.remote = None  # E2eFederation: other servers' users
        self.remote_timeout_ceiling_ms = DEFAULT_REMOTE_TIMEOUT_MS

    def query(self, requester, body: dict) -> dict:
        wanted = body.get("device_keys")
        if not isinstance(wanted, dict):
            raise _bad("device_keys must be an object") if wanted is not None else \
                MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: device_keys")
        timeout_s = _timeout_s(body, self.remote_timeout_ceiling_ms)
        local: dict[str, list[str] | None] = {}
        remote: dict[str, list[str]] = {}
        for user_id, device_ids in wanted.items():
            if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
                raise _bad(f"device_keys.{user_id} must be an array of device IDs")
            _check_no_nul(device_ids, f"device_keys.{user_id}")
            if _user_server(user_id) != self.server_name:
                remote[user_id] = device_ids
                continue
            local[user_id] = device_ids or None  # [] asks for every device
        response = self.query_local(requester.user_id, local)
        if remote:
            _merge_remote(response, self.remote.query_devices(remote, timeout_s))
        return response

    def query_local(self, requester_id: str | None, local: dict[str, list[str] | None],
                    include_display_names: bool = True) -> dict:
        """The response for local users ({user_id: device IDs or None for all}); a requester of
        None (another server) sees no one's user-signing key."""
        device_keys: dict[str, dict] = {}
        for user_id, device_ids in local.items():
            found = device_keys[user_id] = {}
            for device_id, (keys, display_name) in self.store.get_device_keys(user_id, device_ids).items():
                # As Synapse: the display name only when there is one.
                if not include_display_names:
                    display_name = None
                keys["unsigned"] = {} if display_name is None else {"device_display_name": display_name}
                found[device_id] = keys
        response = {"device_keys": device_keys, "failures": {}}
        for extend in self.query_extenders:
            extend(requester_id, local, response)
        return response

    def sync_counts(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        """/sync's device_one_time_keys_count and device_unused_fallback_key_types."""
        return self.store.get_key_counts(user_id, device_id)


class E2eKeysHandler:
    def __init__(self, server_name: str, store):
        self.server_name = server_name
        self.store = store
        # Callables taking a user_id, called after an upload changed that user's device keys.
        self.device_keys_changed_listeners: list[Callable[[str], None]] = []
        self.remote = None  # E2eFederation: other servers' users
        self.remote_timeout_ceiling_ms = DEFAULT_REMOTE_TIMEOUT_MS

    def upload(self, requester, body: dict) -> dict:
        user_id, device_id = requester.user_id, requester.device_id
        if device_id is None:  # an application service acting as a user, with no device_id=
            raise MatrixError(400, Codes.MISSING_PARAM, "To upload keys, you must pass device_id")
        device_keys = body.get("device_keys")
        if device_keys is not None:
            device_keys = _check_device_keys(device_keys, user_id, device_id)
        one_time_keys = _parse_keys(body, "one_time_keys")
        if len(one_time_keys) > MAX_ONE_TIME_KEYS_PER_UPLOAD:
            raise MatrixError(413, Codes.TOO_LARGE,
                              f"At most {MAX_ONE_TIME_KEYS_PER_UPLOAD} one-time keys may be uploaded at once")
        fallback_keys = _parse_keys(body, "fallback_keys")
        algorithms = [algorithm for algorithm, _, _ in fallback_keys]
        if len(set(algorithms)) != len(algorithms):
            raise _bad("fallback_keys may hold one key per algorithm", Codes.INVALID_PARAM)
        try:
            changed, counts = self.store.upload(user_id, device_id, device_keys, one_time_keys, fallback_keys,
                                                now_ms(), MAX_ONE_TIME_KEYS_PER_DEVICE)
        except KeyConflict as e:
            raise self._conflict_error(e.what, device_id) from None
        if changed:
            for listener in self.device_keys_changed_listeners:
                listener(user_id)
        return {"one_time_key_counts": counts}

    @staticmethod
    def _conflict_error(what: str, device_id: str) -> MatrixError:
        if what == "device":
            # The device was deleted while this request ran; its token went with it.
            return MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown access token")
        if what == "device_keys":
            return _bad(f"Device {device_id} already has different device keys; a device's keys cannot change",
                        Codes.INVALID_PARAM)
        if what == "one_time_keys_limit":
            return _bad(f"A device may hold at most {MAX_ONE_TIME_KEYS_PER_DEVICE} unclaimed one-time keys",
                        Codes.INVALID_PARAM)
        # Synapse's answer for a key ID reused with another key (its errcode: M_UNKNOWN).
        return MatrixError(400, Codes.UNKNOWN, f"One time key {what} already exists with different content")

    def claim(self, requester, body: dict) -> dict:
        wanted_by_user = body.get("one_time_keys")
        if not isinstance(wanted_by_user, dict):
            raise _bad("one_time_keys must be an object") if wanted_by_user is not None else \
                MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: one_time_keys")
        timeout_s = _timeout_s(body, self.remote_timeout_ceiling_ms)
        wanted: list[tuple[str, str, str]] = []
        remote: dict[str, dict[str, dict]] = {}
        for user_id, by_device in wanted_by_user.items():
            if not isinstance(by_device, dict) or not all(isinstance(a, str) for a in by_device.values()):
                raise _bad(f"one_time_keys.{user_id} must map device IDs to algorithms")
            _check_no_nul(by_device, f"one_time_keys.{user_id}")
            server_name = _user_server(user_id)
            if server_name != self.server_name:
                remote.setdefault(server_name, {})[user_id] = by_device
                continue
            wanted.extend((user_id, device_id, algorithm) for device_id, algorithm in by_device.items())
        one_time_keys = self.claim_local(wanted)
        failures: dict[str, dict] = {}
        if remote:
            remote_keys, failures = self.remote.claim(remote, timeout_s)
            one_time_keys.update(remote_keys)
        return {"one_time_keys": one_time_keys, "failures": failures}

    def claim_local(self, wanted: list[tuple[str, str, str]]) -> dict[str, dict]:
        """{user_id: {device_id: {"<algorithm>:<key_id>": key}}} for (user_id, device_id, algorithm)
        of local users: a one-time key each, else the fallback key."""
        one_time_keys: dict[str, dict] = {}
        if wanted:
            for (user_id, device_id), (algorithm, key_id, key) in self.store.claim(wanted).items():
                one_time_keys.setdefault(user_id, {})[device_id] = {f"{algorithm}:{key_id}": key}
        return one_time_keys
