"""JSON encoding and decoding as Matrix requires, and unpadded base64.

Canonical JSON is the encoding that signatures and hashes are computed over
(spec appendix "Canonical JSON"); ``encode_json`` is for everything else.
"""

import base64
import json

__all__ = [
    "decode_json",
    "encode_canonical_json",
    "encode_json",
    "unpadded_b64decode",
    "unpadded_b64encode",
    "urlsafe_unpadded_b64decode",
    "urlsafe_unpadded_b64encode",
]

# The range an IEEE double holds exactly, so every implementation agrees.
_MIN_INT = -(2**53) + 1
_MAX_INT = 2**53 - 1

_canonical_encoder = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True
)
_compact_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
# Only used when the text holds a lone surrogate, which UTF-8 cannot carry
# but a \u escape can.
_ascii_encoder = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))

# Leaves needing no check. bool is listed apart from int because it is an
# int subclass but serialises as true/false.
_PLAIN_LEAVES = frozenset((str, bool, type(None)))


def encode_canonical_json(value: object, *, strict: bool = True) -> bytes:
    """Encode ``value`` as Matrix canonical JSON (UTF-8 bytes).

    Raises ValueError for anything canonical JSON cannot represent: floats,
    integers outside [-(2**53)+1, 2**53-1], non-str object keys, lone
    surrogates, circular or absurdly deep structures.

    ``strict=False`` skips the number and key checks and so reproduces what
    Synapse (and the ``canonicaljson`` package) sign. That is what signature
    checks on events of room versions 1-5 need, as those may hold integers
    outside the range; never use it to produce new signed data.
    """
    if strict:
        try:
            _check_canonical(value)
        except RecursionError:
            raise ValueError("JSON value is circular or nested too deeply") from None
    # UnicodeEncodeError (a ValueError) here means a lone surrogate.
    return _canonical_encoder.encode(value).encode("utf-8")


def _check_canonical(value) -> None:
    # One pass in Python, then the C encoder does the real work. Only
    # containers recurse, so Python's recursion limit also stops cycles.
    t = type(value)
    if t is dict:
        for key, item in value.items():
            if type(key) is not str:
                _check_key(key)
            item_type = type(item)
            if item_type in _PLAIN_LEAVES:
                continue
            if item_type is int:
                if not _MIN_INT <= item <= _MAX_INT:
                    _reject_int(item)
                continue
            _check_canonical(item)
    elif t is list or t is tuple:
        for item in value:
            item_type = type(item)
            if item_type in _PLAIN_LEAVES:
                continue
            if item_type is int:
                if not _MIN_INT <= item <= _MAX_INT:
                    _reject_int(item)
                continue
            _check_canonical(item)
    elif t in _PLAIN_LEAVES:
        pass
    elif t is int:
        if not _MIN_INT <= value <= _MAX_INT:
            _reject_int(value)
    else:
        _check_uncommon(value)


def _check_uncommon(value) -> None:
    # Subclasses (IntEnum, StrEnum, OrderedDict...) serialise like their base.
    if isinstance(value, float):
        raise ValueError(f"floats are not allowed in canonical JSON: {value!r}")
    if isinstance(value, str):
        return
    if isinstance(value, int):
        if not _MIN_INT <= value <= _MAX_INT:
            _reject_int(value)
        return
    if isinstance(value, dict):
        _check_canonical(dict(value))
        return
    if isinstance(value, (list, tuple)):
        _check_canonical(list(value))
        return
    raise ValueError(f"cannot encode {type(value).__name__} as canonical JSON")


def _check_key(key) -> None:
    if isinstance(key, str):
        return
    raise ValueError(f"canonical JSON object keys must be str, not {type(key).__name__}: {key!r}")


def _reject_int(value):
    raise ValueError(f"integer out of canonical JSON range: {value}")


def encode_json(value: object) -> bytes:
    """Encode ``value`` as compact UTF-8 JSON. Floats are allowed, NaN is not."""
    text = _compact_encoder.encode(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate from a client's "\ud800" escape: a response must
        # still be valid UTF-8, so fall back to escaping it.
        return _ascii_encoder.encode(value).encode("ascii")


def _reject_constant(name: str):
    raise ValueError(f"invalid JSON constant: {name}")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def decode_json(data: str | bytes | bytearray | memoryview):
    """Parse JSON from str or UTF-8 bytes. Raises ValueError on bad input.

    NaN and ±Infinity are rejected as they are not JSON. Bytes must be UTF-8:
    ``json.loads`` would otherwise guess UTF-16/32 too.
    """
    if not isinstance(data, str):
        data = str(data, "utf-8")
    return _decoder.decode(data)


def unpadded_b64encode(data: bytes) -> str:
    return base64.b64encode(data).rstrip(b"=").decode("ascii")


def unpadded_b64decode(s: str | bytes) -> bytes:
    """Decode standard base64, with or without padding. ValueError on garbage."""
    if isinstance(s, bytes):
        s = s.decode("ascii")
    unpadded = s.rstrip("=")
    missing = -len(unpadded) % 4
    # b64decode ignores surplus "=", so check that any padding is exactly right.
    if len(s) != len(unpadded) and len(s) - len(unpadded) != missing:
        raise ValueError("incorrect base64 padding")
    return base64.b64decode(unpadded + "=" * missing, validate=True)


def urlsafe_unpadded_b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# base64.urlsafe_b64decode cannot validate, so map to the standard alphabet
# and validate that. "+" and "/" map to "!" so they are rejected, not accepted.
_URLSAFE_TO_STANDARD = str.maketrans({"-": "+", "_": "/", "+": "!", "/": "!"})


def urlsafe_unpadded_b64decode(s: str | bytes) -> bytes:
    """Decode URL-safe base64, with or without padding. ValueError on garbage."""
    if isinstance(s, bytes):
        s = s.decode("ascii")
    return unpadded_b64decode(s.translate(_URLSAFE_TO_STANDARD))


def json_has_nul(value) -> bool:
    """Whether a NUL character is in any string or key: PostgreSQL's text and jsonb cannot hold one."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or json_has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(json_has_nul(v) for v in value)
    return False
