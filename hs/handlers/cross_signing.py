"""Cross-signing (client-server API "Cross-signing"): POST /keys/device_signing/upload,
POST /keys/signatures/upload, and the master/self-signing/user-signing sections of /keys/query.

`CrossSigningReader` (any process) extends /keys/query; `CrossSigningHandler` (the master) stores
uploads. Each write marks a device list changed so that other users' clients re-query."""

from collections.abc import Callable

from hs.errors import Codes, MatrixError
from hs.events.signing import SignatureVerifyError, decode_verify_key_base64, verify_signed_json
from hs.handlers.e2e_keys import _check_no_nul, _check_size
from hs.handlers.uia import PASSWORD

KEY_TYPES = ("master", "self_signing", "user_signing")
INVALID_SIGNATURE = "M_INVALID_SIGNATURE"


def _bad(message: str, errcode: str = Codes.INVALID_PARAM) -> MatrixError:
    return MatrixError(400, errcode, message)


def _signed_part(key: dict) -> dict:
    return {k: v for k, v in key.items() if k not in ("signatures", "unsigned")}


def cross_signing_key_id(key: dict) -> tuple[str, object]:
    """(key ID, verify key) of a well-formed cross-signing key: it has exactly one ed25519 key."""
    keys = key.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        raise ValueError("keys must hold exactly one key")
    (key_id, public), = keys.items()
    algorithm, _, name = key_id.partition(":") if isinstance(key_id, str) else ("", "", "")
    if algorithm != "ed25519" or not isinstance(public, str) or name != public:
        raise ValueError("the key must be ed25519:<public key> mapped to the public key")
    return key_id, decode_verify_key_base64(algorithm, name, public)


def _verify(obj: dict, user_id: str, key: dict) -> bool:
    key_id, verify_key = cross_signing_key_id(key)
    try:
        verify_signed_json(obj, user_id, verify_key, key_id)
    except SignatureVerifyError:
        return False
    return True


def _check_key(body: dict, key_type: str, user_id: str) -> dict | None:
    key = body.get(f"{key_type}_key")
    if key is None:
        return None
    if not isinstance(key, dict):
        raise _bad(f"{key_type}_key must be an object", Codes.BAD_JSON)
    if key.get("user_id") != user_id:
        raise _bad(f"{key_type}_key.user_id must be the user uploading it")
    usage = key.get("usage")
    if not isinstance(usage, list) or key_type not in usage:
        raise _bad(f"{key_type}_key.usage must contain {key_type!r}")
    if "signatures" in key and not isinstance(key["signatures"], dict):
        raise _bad(f"{key_type}_key.signatures must be an object", Codes.BAD_JSON)
    try:
        cross_signing_key_id(key)
    except ValueError as e:
        raise _bad(f"Invalid {key_type} key: {e}") from None
    stored = {k: v for k, v in key.items() if k != "unsigned"}
    _check_no_nul(stored, f"{key_type}_key")
    _check_size(stored, f"{key_type}_key")
    return stored


class CrossSigningReader:
    def __init__(self, store):
        self.store = store

    def extend_query(self, requester_id: str, wanted: dict, response: dict) -> None:
        """Adds master_keys and self_signing_keys of every queried local user, user_signing_keys
        of the requester only (no one else may learn whom a user verified), and uploaded
        signatures; signatures of another user's key by a user-signing key are the signer's own."""
        user_ids = list(wanted)
        keys = self.store.get_keys(user_ids)
        sections = {key_type: {} for key_type in KEY_TYPES}
        for user_id, by_type in keys.items():
            for key_type, key in by_type.items():
                if key_type != "user_signing" or user_id == requester_id:
                    sections[key_type][user_id] = key
        masters = {user_id: cross_signing_key_id(k["master"])[0].partition(":")[2]
                   for user_id, k in keys.items() if "master" in k}
        for signer, signer_key_id, target_user, target_id, signature in self.store.get_signatures(user_ids):
            if signer != target_user and signer != requester_id:
                continue
            if masters.get(target_user) == target_id and target_user in sections["master"]:
                obj = sections["master"][target_user]
            else:
                obj = response["device_keys"].get(target_user, {}).get(target_id)
            if obj is not None:
                obj.setdefault("signatures", {}).setdefault(signer, {})[signer_key_id] = signature
        # Sections are optional; an empty one is left out, as before any user had such keys.
        for key_type, section in sections.items():
            if section:
                response[f"{key_type}_keys"] = section


class CrossSigningHandler:
    def __init__(self, store, e2e_key_store, uia):
        self.store = store
        self.e2e_key_store = e2e_key_store
        self.uia = uia
        # Callables taking a user_id, called after that user's cross-signing keys or signatures
        # changed (their device list changed, for others' clients).
        self.keys_changed_listeners: list[Callable[[str], None]] = []

    def upload_signing_keys(self, req, requester, body: dict) -> None:
        user_id = requester.user_id
        new = {t: k for t in KEY_TYPES if (k := _check_key(body, t, user_id)) is not None}
        stored = self.store.get_keys([user_id]).get(user_id, {})
        master = new.get("master") or stored.get("master")
        for key_type in ("self_signing", "user_signing"):
            if key_type in new:
                if master is None:
                    raise _bad(f"No master key to check the {key_type} key against", Codes.MISSING_PARAM)
                if not _verify(new[key_type], user_id, master):
                    raise _bad(f"The {key_type} key is not signed by the master key", INVALID_SIGNATURE)
        # The spec lets a first upload (no master key yet) skip user-interactive auth; as
        # Synapse, re-uploading the stored keys unchanged is also harmless.
        if "master" in stored and any(stored.get(t) != k for t, k in new.items()):
            self.uia.check(req, body, [[PASSWORD]], user_id=user_id)
        if not new:
            return
        self.store.set_keys(user_id, new)
        self._changed(user_id)

    def upload_signatures(self, requester, body: dict) -> dict:
        user_id = requester.user_id
        _check_no_nul(body, "signatures")
        if not all(isinstance(v, dict) for v in body.values()):
            raise _bad("Each user's entry must map key IDs to signed objects", Codes.BAD_JSON)
        rows: list[tuple[str, str, str, str, str]] = []
        failures: dict[str, dict] = {}
        changed: set[str] = set()
        for target_user, objects in body.items():
            target_keys = self.store.get_keys([target_user]).get(target_user, {})
            for target_id, signed in objects.items():
                try:
                    found = self._check_signature(user_id, target_user, target_id, signed, target_keys)
                except MatrixError as e:
                    failures.setdefault(target_user, {})[target_id] = e.to_json()
                    continue
                rows.extend(found)
                changed.add(target_user if target_user == user_id else user_id)
        if rows:
            self.store.add_signatures(rows)
            for changed_user in changed:
                self._changed(changed_user)
        return {"failures": failures}

    def _check_signature(self, user_id, target_user, target_id, signed, target_keys) -> list[tuple]:
        if not isinstance(signed, dict) or not isinstance(signed.get("signatures"), dict):
            raise _bad("The signed object must be an object with signatures", Codes.BAD_JSON)
        master = target_keys.get("master")
        is_master = master is not None and cross_signing_key_id(master)[0] == f"ed25519:{target_id}"
        own = self.store.get_keys([user_id]).get(user_id, {})
        if target_user != user_id:
            # Another user's master key, signed by the requester's user-signing key.
            if not is_master:
                raise MatrixError(404, Codes.NOT_FOUND, "Only another user's master key may be signed")
            signer_type = "user_signing"
            signers = {k: v for k, v in own.items() if k == signer_type}
            target = master
        elif is_master:
            # The requester's master key, signed by one of their devices.
            target = master
            signers = {f"ed25519:{d}": keys for d, (keys, _) in
                       self.e2e_key_store.get_device_keys(user_id, None).items()}
        else:
            # One of the requester's devices, signed by their self-signing key.
            devices = self.e2e_key_store.get_device_keys(user_id, [target_id])
            if target_id not in devices:
                raise MatrixError(404, Codes.NOT_FOUND, f"Unknown device or key {target_id}")
            target = devices[target_id][0]
            signers = {k: v for k, v in own.items() if k == "self_signing"}
        if _signed_part(signed) != _signed_part(target):
            raise _bad("The signed object does not match the stored key", INVALID_SIGNATURE)
        return self._verified(user_id, target_user, target_id, signed, signers, is_master and target_user == user_id)

    @staticmethod
    def _verified(user_id, target_user, target_id, signed, signers, by_device) -> list[tuple]:
        by_user = signed["signatures"].get(user_id)
        if not isinstance(by_user, dict):
            raise _bad(f"No signature by {user_id}", INVALID_SIGNATURE)
        rows = []
        for key_id, signature in by_user.items():
            if by_device:
                device = signers.get(key_id)
                if device is None or key_id == f"ed25519:{target_id}":
                    continue
                public = device.get("keys", {}).get(key_id)
                try:
                    verify_key = decode_verify_key_base64("ed25519", key_id, public)
                    verify_signed_json(signed, user_id, verify_key, key_id)
                except (ValueError, TypeError, SignatureVerifyError):
                    raise _bad(f"Invalid signature by {key_id}", INVALID_SIGNATURE) from None
            else:
                signer = next((k for k in signers.values() if cross_signing_key_id(k)[0] == key_id), None)
                if signer is None:
                    continue
                if not _verify(signed, user_id, signer):
                    raise _bad(f"Invalid signature by {key_id}", INVALID_SIGNATURE)
            rows.append((user_id, key_id, target_user, target_id, signature))
        if not rows:
            raise MatrixError(404, Codes.NOT_FOUND, "No signature by a key that may sign this key")
        return rows

    def _changed(self, user_id: str) -> None:
        for listener in self.keys_changed_listeners:
            listener(user_id)
