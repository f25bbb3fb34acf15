"""ed25519 signing keys, the Synapse signing key file, and signed JSON.

Follows the spec appendix "Signing JSON". Only ``read_signing_keys`` and
``write_signing_keys`` touch the filesystem.
"""

import os
import re
import secrets
import string
import tempfile
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing

from hs.events.canonical_json import (
    encode_canonical_json,
    unpadded_b64decode,
    unpadded_b64encode,
)

__all__ = [
    "SignatureVerifyError",
    "SigningKey",
    "decode_verify_key_base64",
    "generate_signing_key",
    "read_signing_keys",
    "sign_json",
    "verify_signed_json",
    "write_signing_keys",
]

ED25519 = "ed25519"
_VERSION_RE = re.compile(r"[a-zA-Z0-9_]+")
_VERSION_ALPHABET = string.ascii_letters + string.digits


class SignatureVerifyError(Exception):
    """A JSON object lacks a valid signature by the expected key."""


@dataclass(frozen=True)
class SigningKey:
    """An ed25519 signing key and the version that names it (``ed25519:<version>``)."""

    version: str
    # repr=False keeps the secret out of logs and tracebacks.
    key: nacl.signing.SigningKey = field(repr=False)

    def __post_init__(self):
        if not _VERSION_RE.fullmatch(self.version):
            raise ValueError(
                f"invalid signing key version {self.version!r}: must match [a-zA-Z0-9_]+"
            )

    @property
    def key_id(self) -> str:
        return f"{ED25519}:{self.version}"

    @property
    def verify_key(self) -> nacl.signing.VerifyKey:
        return self.key.verify_key

    @property
    def verify_key_base64(self) -> str:
        return unpadded_b64encode(bytes(self.key.verify_key))

    def sign(self, data: bytes) -> bytes:
        """Return the raw 64-byte signature of ``data``."""
        return self.key.sign(data).signature


def generate_signing_key(version: str | None = None) -> SigningKey:
    """Make a new random key. Without a version, picks one like Synapse's ``a_AbC1``."""
    if version is None:
        version = "a_" + "".join(secrets.choice(_VERSION_ALPHABET) for _ in range(4))
    return SigningKey(version, nacl.signing.SigningKey.generate())


def read_signing_keys(path) -> list[SigningKey]:
    """Read a Synapse signing key file: lines of ``ed25519 <version> <base64 seed>``."""
    keys: list[SigningKey] = []
    # Binary, so that bad UTF-8 is reported with its line number too.
    with open(path, "rb") as f:
        for lineno, raw_line in enumerate(f, start=1):
            if not raw_line.strip():
                continue
            try:
                key = _parse_key_line(raw_line.decode("utf-8"))
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: malformed signing key line: {e}") from None
            if any(k.version == key.version for k in keys):
                raise ValueError(f"{path}:{lineno}: duplicate signing key version {key.version!r}")
            keys.append(key)
    return keys


def _parse_key_line(line: str) -> SigningKey:
    parts = line.split()
    if len(parts) != 3:
        raise ValueError(f"expected 3 space-separated fields, got {len(parts)}")
    algorithm, version, seed_b64 = parts
    if algorithm != ED25519:
        raise ValueError(f"unsupported algorithm {algorithm!r}")
    try:
        seed = unpadded_b64decode(seed_b64)
    except ValueError:
        raise ValueError("key is not valid base64") from None
    if len(seed) != 32:
        raise ValueError(f"key must be 32 bytes, got {len(seed)}")
    return SigningKey(version, nacl.signing.SigningKey(seed))


def write_signing_keys(path, keys) -> None:
    """Write ``keys`` to ``path`` in Synapse's format, readable only by the owner.

    Goes through a temporary file and a rename so that a crash never leaves a
    truncated key file, and the key is never readable by others even briefly.
    """
    text = "".join(
        f"{ED25519} {k.version} {unpadded_b64encode(bytes(k.key))}\n" for k in keys
    )
    directory = os.path.dirname(os.path.abspath(path))
    # mkstemp creates the file 0600 before any secret is written into it.
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=".signing-key-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass
        raise


def decode_verify_key_base64(algorithm: str, version: str, b64: str) -> nacl.signing.VerifyKey:
    """Decode a published public key. ``version`` is accepted for symmetry and unused."""
    if algorithm != ED25519:
        raise ValueError(f"unsupported signing key algorithm {algorithm!r}")
    key_bytes = unpadded_b64decode(b64)
    if len(key_bytes) != 32:
        raise ValueError(f"ed25519 verify key must be 32 bytes, got {len(key_bytes)}")
    return nacl.signing.VerifyKey(key_bytes)


def sign_json(obj: dict, server_name: str, key: SigningKey) -> dict:
    """Add ``server_name``'s signature with ``key`` to ``obj`` in place and return it.

    ``signatures`` and ``unsigned`` are not covered by the signature, so other
    servers can add theirs and intermediaries can annotate.
    """
    signatures = obj.pop("signatures", None)
    unsigned = obj.pop("unsigned", None)
    try:
        signature = key.sign(encode_canonical_json(obj))
    finally:
        # Restore even on failure so a rejected object is left as it was.
        if signatures is not None:
            obj["signatures"] = signatures
        if unsigned is not None:
            obj["unsigned"] = unsigned
    if signatures is None:
        signatures = obj["signatures"] = {}
    signatures.setdefault(server_name, {})[key.key_id] = unpadded_b64encode(signature)
    return obj


def verify_signed_json(
    obj: dict, server_name: str, verify_key: nacl.signing.VerifyKey, key_id: str
) -> None:
    """Raise SignatureVerifyError unless ``obj`` has a valid signature by ``key_id``.

    Checks ``signatures[server_name][key_id]`` against ``verify_key``.
    """
    try:
        signature_b64 = obj["signatures"][server_name][key_id]
    except (KeyError, TypeError):
        raise SignatureVerifyError(f"missing signature for {server_name} {key_id}") from None
    if not isinstance(signature_b64, str):
        raise SignatureVerifyError(f"signature for {server_name} {key_id} is not a string")
    try:
        signature = unpadded_b64decode(signature_b64)
    except ValueError:
        raise SignatureVerifyError(
            f"signature for {server_name} {key_id} is not valid base64"
        ) from None

    unsigned_part = {k: v for k, v in obj.items() if k != "signatures" and k != "unsigned"}
    try:
        # Lenient: events of room versions 1-5 may break the canonical JSON
        # number rules, and were signed over exactly this encoding.
        message = encode_canonical_json(unsigned_part, strict=False)
    except (ValueError, TypeError) as e:
        raise SignatureVerifyError(f"cannot encode object to check its signature: {e}") from None
    try:
        verify_key.verify(message, signature)
    except (nacl.exceptions.BadSignatureError, ValueError):
        # nacl raises ValueError for a signature of the wrong length.
        raise SignatureVerifyError(f"invalid signature for {server_name} {key_id}") from None
