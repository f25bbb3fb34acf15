"""Other servers' signing keys, and checking signatures with them
(/server-server-api#retrieving-server-keys).

A key is looked up in this process's memory, then PostgreSQL, then fetched: through each of
`trusted_key_servers` (POST /_matrix/key/v2/query), then from the server itself
(GET /_matrix/key/v2/server), as Synapse orders them. An answer counts only if its server signed
it with a key it lists, its `server_name` is the one asked about, and (for a notary with
configured `verify_keys`) the notary signed it with one of those. A key checks signatures made
until its `valid_until_ts` (at most 7 days after the fetch, as the spec requires) or, for a key
listed in `old_verify_keys`, until its `expired_ts`.
"""

import logging
import threading
from collections import OrderedDict

import nacl.signing

from hs.clock import now_ms
from hs.events.canonical_json import unpadded_b64decode
from hs.events.event_signing import required_signature_servers, verify_event_signature
from hs.events.signing import SignatureVerifyError, sign_json, verify_signed_json
from hs.federation.http_client import FederationRequestError

logger = logging.getLogger(__name__)

__all__ = ["EventSignatureError", "KeyLookupError", "Keyring", "local_key_response"]

MAX_KEY_VALIDITY_MS = 7 * 24 * 3600 * 1000
# A server whose keys could not be fetched is not asked again this soon: inbound requests
# signed with a key of a dead server would otherwise each wait for a fetch.
FAILED_FETCH_BACKOFF_MS = 30_000
_MAX_CACHED_SERVERS = 10_000


class KeyLookupError(Exception):
    """No usable key could be found or fetched."""


class EventSignatureError(Exception):
    """An event lacks a valid signature of a server that must sign it."""


def local_key_response(config, signing_keys) -> dict:
    """Our own key answer (GET /_matrix/key/v2/server), signed by every key we hold."""
    body = {
        "server_name": config.server_name,
        "valid_until_ts": now_ms() + config.key_refresh_interval_ms,
        "verify_keys": {key.key_id: {"key": key.verify_key_base64} for key in signing_keys},
        "old_verify_keys": {key_id: {"key": old["key"], "expired_ts": old["expired_ts"]}
                            for key_id, old in config.old_signing_keys.items()},
    }
    for key in signing_keys:
        sign_json(body, config.server_name, key)
    return body


class Keyring:
    def __init__(self, config, store, client, signing_keys):
        self.config = config
        self.server_name = config.server_name
        self.store = store
        self.client = client
        self.signing_keys = signing_keys
        self.notaries = [(s["server_name"], _decode_keys(s["verify_keys"])) for s in config.trusted_key_servers
                         if s["server_name"] != config.server_name]
        if not config.suppress_key_server_warning and any(name == "matrix.org" for name, _ in self.notaries):
            logger.warning("trusted_key_servers includes matrix.org: other servers' keys may be fetched "
                           "through it (set suppress_key_server_warning: true to silence this)")
        self._cache = OrderedDict()  # server_name -> {key_id: (VerifyKey, valid_until_ts)}
        self._failed = {}  # server_name -> time of the last failed fetch
        self._locks = {}  # server_name -> Lock: one fetch per server at a time

    def get_verify_keys(self, server_name: str, key_ids, minimum_valid_until_ms: int = 0
                        ) -> dict[str, nacl.signing.VerifyKey]:
        """Those of `key_ids` that `server_name` holds and that are valid until at least
        `minimum_valid_until_ms`, fetching what is missing; the ones that could not be found are
        left out."""
        key_ids = list(key_ids)
        if server_name == self.server_name:
            return self._own_keys(key_ids, minimum_valid_until_ms)
        found = self._known(server_name, key_ids, minimum_valid_until_ms)
        if len(found) == len(key_ids):
            return found
        lock = self._locks.setdefault(server_name, threading.Lock())
        with lock:
            # Another request may have fetched them while this one waited.
            found = self._known(server_name, key_ids, minimum_valid_until_ms, reload=True)
            missing = [key_id for key_id in key_ids if key_id not in found]
            if missing and now_ms() - self._failed.get(server_name, -FAILED_FETCH_BACKOFF_MS) \
                    >= FAILED_FETCH_BACKOFF_MS:
                if self._fetch(server_name, missing, minimum_valid_until_ms):
                    self._failed.pop(server_name, None)
                else:
                    self._failed[server_name] = now_ms()
                found = self._known(server_name, key_ids, minimum_valid_until_ms, reload=True)
        if not lock.locked():
            self._locks.pop(server_name, None)
        return found

    def verify_json_for_server(self, server_name: str, obj: dict, minimum_valid_until_ms: int = 0) -> None:
        """Raise SignatureVerifyError unless `obj` carries a valid signature of `server_name`
        (every signature by a key we could find must hold), KeyLookupError if no key of the
        ones it was signed with can be found."""
        signatures = obj.get("signatures") if isinstance(obj, dict) else None
        key_ids = _ed25519_ids(signatures.get(server_name) if isinstance(signatures, dict) else None)
        if not key_ids:
            raise SignatureVerifyError(f"not signed by {server_name}")
        keys = self.get_verify_keys(server_name, key_ids, minimum_valid_until_ms)
        if not keys:
            raise KeyLookupError(f"no valid key of {server_name} among {', '.join(key_ids)}")
        for key_id, verify_key in keys.items():
            verify_signed_json(obj, server_name, verify_key, key_id)

    def verify_event(self, room_version, pdu: dict) -> None:
        """Raise EventSignatureError unless every server that must sign `pdu` did, with a key
        valid when the event was made (room versions 5+ enforce key validity)."""
        try:
            servers = required_signature_servers(room_version, pdu)
        except ValueError as e:
            raise EventSignatureError(str(e)) from None
        minimum = 0
        if room_version.enforce_key_validity:
            minimum = pdu.get("origin_server_ts")
            if not isinstance(minimum, int) or isinstance(minimum, bool):
                raise EventSignatureError("origin_server_ts is not an integer")
        signatures = pdu.get("signatures")
        for server in sorted(servers):
            key_ids = _ed25519_ids(signatures.get(server) if isinstance(signatures, dict) else None)
            if not key_ids:
                raise EventSignatureError(f"not signed by {server}")
            keys = self.get_verify_keys(server, key_ids, minimum)
            if not keys:
                raise EventSignatureError(f"no key of {server} valid at {minimum} among {', '.join(key_ids)}")
            for key_id, verify_key in keys.items():
                try:
                    verify_event_signature(room_version, pdu, server, verify_key, key_id)
                except SignatureVerifyError as e:
                    raise EventSignatureError(str(e)) from None

    def key_responses_for_notary(self, server_name: str, key_ids, minimum_valid_until_ms: int) -> list[dict]:
        """What our notary API answers for `server_name` (before co-signing): its latest key answer,
        fetched from it again when what we hold is not valid long enough or lacks a key asked
        for; what we hold when it cannot be reached; [] when we hold nothing."""
        if server_name == self.server_name:
            return [local_key_response(self.config, self.signing_keys)]
        cached = self.store.get_response(server_name)
        if cached is not None:
            response, valid_until = cached
            held = set(response.get("verify_keys", {})) | set(response.get("old_verify_keys", {}))
            if valid_until >= minimum_valid_until_ms and set(key_ids) <= held:
                return [response]
        try:
            response = self._fetch_direct(server_name)
        except (FederationRequestError, KeyLookupError) as e:
            logger.info("notary: cannot fetch the keys of %s: %s", server_name, e)
            return [cached[0]] if cached is not None else []
        return [response]

    def _own_keys(self, key_ids, minimum_valid_until_ms: int) -> dict:
        keys = {key.key_id: key.verify_key for key in self.signing_keys if key.key_id in key_ids}
        for key_id, old in self.config.old_signing_keys.items():
            if key_id in key_ids and old["expired_ts"] >= minimum_valid_until_ms:
                keys[key_id] = nacl.signing.VerifyKey(unpadded_b64decode(old["key"]))
        return keys

    def _known(self, server_name: str, key_ids, minimum_valid_until_ms: int, reload: bool = False) -> dict:
        held = None if reload else self._cache.get(server_name)
        if held is None or any(key_id not in held for key_id in key_ids):
            held = {}
            for key_id, (key, valid_until) in self.store.get_keys(server_name).items():
                try:
                    held[key_id] = (_decode_key(key), valid_until)
                except ValueError:
                    continue
            self._remember(server_name, held)
        return {key_id: held[key_id][0] for key_id in key_ids
                if key_id in held and held[key_id][1] >= minimum_valid_until_ms}

    def _remember(self, server_name: str, held: dict) -> None:
        self._cache[server_name] = held
        self._cache.move_to_end(server_name)
        while len(self._cache) > _MAX_CACHED_SERVERS:
            self._cache.popitem(last=False)

    def _fetch(self, server_name: str, key_ids, minimum_valid_until_ms: int) -> bool:
        """Fetches `key_ids` of `server_name` through the notaries, then from the server; True if
        all were found valid long enough."""
        def satisfied():
            return len(self._known(server_name, key_ids, minimum_valid_until_ms, reload=True)) == len(key_ids)

        for notary, notary_keys in self.notaries:
            if notary == server_name:
                continue
            query = {"server_keys": {server_name: {key_id: {"minimum_valid_until_ts": minimum_valid_until_ms}
                                                   for key_id in key_ids}}}
            try:
                answer = self.client.post_json(notary, "/_matrix/key/v2/query", query)
                responses = answer.get("server_keys") if isinstance(answer, dict) else None
                if not isinstance(responses, list):
                    raise KeyLookupError("server_keys is not a list")
                for response in responses:
                    if isinstance(response, dict) and response.get("server_name") == server_name:
                        self._check_and_store(server_name, response, notary, notary_keys)
            except (FederationRequestError, KeyLookupError) as e:
                logger.info("keys of %s through notary %s: %s", server_name, notary, e)
                continue
            if satisfied():
                return True
        try:
            self._fetch_direct(server_name)
        except (FederationRequestError, KeyLookupError) as e:
            logger.info("keys of %s from itself: %s", server_name, e)
            return False
        return satisfied()

    def _fetch_direct(self, server_name: str) -> dict:
        response = self.client.get_json_unsigned(server_name, "/_matrix/key/v2/server")
        if not isinstance(response, dict):
            raise KeyLookupError("key answer is not a JSON object")
        self._check_and_store(server_name, response, server_name, None)
        return response

    def _check_and_store(self, server_name: str, response: dict, from_server: str, notary_keys) -> None:
        """Stores the keys of a key answer once it is checked; KeyLookupError if it is not valid."""
        if response.get("server_name") != server_name:
            raise KeyLookupError(f"key answer is for {response.get('server_name')!r}, not {server_name}")
        valid_until = response.get("valid_until_ts")
        if not isinstance(valid_until, int) or isinstance(valid_until, bool):
            raise KeyLookupError("valid_until_ts is not an integer")
        now = now_ms()
        current = _parse_keys(response.get("verify_keys"), None)
        old = _parse_keys(response.get("old_verify_keys"), "expired_ts")
        signatures = response.get("signatures")
        own = signatures.get(server_name) if isinstance(signatures, dict) else None
        signed_by = [key_id for key_id in _ed25519_ids(own) if key_id in current]
        if not signed_by:
            raise KeyLookupError(f"key answer of {server_name} is not signed by a key it lists")
        try:
            for key_id in signed_by:
                verify_signed_json(response, server_name, current[key_id][0], key_id)
            if notary_keys:
                if not any(_signed(response, from_server, key_id, key) for key_id, key in notary_keys.items()):
                    raise SignatureVerifyError(f"not signed by notary {from_server} with a configured key")
        except SignatureVerifyError as e:
            raise KeyLookupError(str(e)) from None
        keys = {key_id: (b64, min(valid_until, now + MAX_KEY_VALIDITY_MS)) for key_id, (_, b64, _) in
                current.items()}
        keys.update({key_id: (b64, expired) for key_id, (_, b64, expired) in old.items() if key_id not in current})
        self.store.store_response(server_name, from_server, response, valid_until, keys, now)
        self._cache.pop(server_name, None)


def _signed(obj: dict, server_name: str, key_id: str, key: nacl.signing.VerifyKey) -> bool:
    try:
        verify_signed_json(obj, server_name, key, key_id)
    except SignatureVerifyError:
        return False
    return True


def _ed25519_ids(signatures) -> list[str]:
    if not isinstance(signatures, dict):
        return []
    return sorted(key_id for key_id in signatures if isinstance(key_id, str) and key_id.startswith("ed25519:"))


def _parse_keys(section, expiry_field: str | None) -> dict:
    """{key_id: (VerifyKey, base64, expired_ts or None)} of the ed25519 keys in `section`;
    malformed entries are skipped, as keys of algorithms we do not know."""
    keys = {}
    if not isinstance(section, dict):
        return keys
    for key_id, entry in section.items():
        if not isinstance(key_id, str) or not key_id.startswith("ed25519:") or not isinstance(entry, dict):
            continue
        b64 = entry.get("key")
        expired = entry.get(expiry_field) if expiry_field else None
        if expiry_field and (not isinstance(expired, int) or isinstance(expired, bool)):
            continue
        try:
            keys[key_id] = (_decode_key(b64), b64, expired)
        except (ValueError, TypeError):
            continue
    return keys


def _decode_key(b64) -> nacl.signing.VerifyKey:
    raw = unpadded_b64decode(b64)
    if len(raw) != 32:
        raise ValueError("an ed25519 key is 32 bytes")
    return nacl.signing.VerifyKey(raw)


def _decode_keys(verify_keys) -> dict | None:
    if not verify_keys:
        return None
    return {key_id: _decode_key(b64) for key_id, b64 in verify_keys.items()}
