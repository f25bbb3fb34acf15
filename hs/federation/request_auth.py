"""Request authentication between servers (/server-server-api#request-authentication).

A request carries `Authorization: X-Matrix origin=...,destination=...,key=...,sig=...`; `sig` is
the origin's signature of the canonical JSON of {method, uri, origin, destination[, content]},
`uri` being the path and query exactly as sent. Pure: building, parsing and checking the header;
finding the verify key is the keyring's job.
"""

import re
from dataclasses import dataclass

import nacl.signing

from hs.events.signing import SigningKey, sign_json, verify_signed_json

__all__ = ["XMatrixAuth", "build_authorization_header", "parse_authorization_header", "request_json",
           "verify_request"]

_SCHEME = "x-matrix"
# RFC 9110 auth-param: a token name, '=', a token or a quoted-string (backslash escapes a character).
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*(,|$)', re.DOTALL)
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True)
class XMatrixAuth:
    origin: str
    key: str
    sig: str
    destination: str | None = None


def request_json(method: str, uri: str, origin: str, destination: str, content=None) -> dict:
    """What the signature covers. `content` is the parsed JSON body, or None when there is none."""
    obj = {"method": method, "uri": uri, "origin": origin, "destination": destination}
    if content is not None:
        obj["content"] = content
    return obj


def build_authorization_header(origin: str, destination: str, signing_key: SigningKey, method: str, uri: str,
                               content=None) -> str:
    signed = sign_json(request_json(method, uri, origin, destination, content), origin, signing_key)
    sig = signed["signatures"][origin][signing_key.key_id]
    params = {"origin": origin, "destination": destination, "key": signing_key.key_id, "sig": sig}
    # Always quoted: server names hold ':' (a port), which a token cannot carry.
    return "X-Matrix " + ",".join(f'{name}="{_quote(value)}"' for name, value in params.items())


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def parse_authorization_header(header: str | None) -> XMatrixAuth:
    """The X-Matrix credentials of an Authorization header. Raises ValueError if it is missing,
    of another scheme, malformed, or lacks origin, key or sig."""
    if not header:
        raise ValueError("missing Authorization header")
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != _SCHEME:
        raise ValueError("Authorization header is not X-Matrix")
    params = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if not match or match.end() == pos:
            raise ValueError("malformed X-Matrix parameters")
        name = match.group(1).lower()
        value = _UNESCAPE.sub(r"\1", match.group(2)) if match.group(2) is not None else match.group(3)
        if name in params:
            raise ValueError(f"X-Matrix parameter {name} given twice")
        params[name] = value
        pos = match.end()
    missing = [name for name in ("origin", "key", "sig") if not params.get(name)]
    if missing:
        raise ValueError(f"X-Matrix header lacks {', '.join(missing)}")
    return XMatrixAuth(params["origin"], params["key"], params["sig"], params.get("destination"))


def verify_request(auth: XMatrixAuth, method: str, uri: str, destination: str, content,
                   verify_key: nacl.signing.VerifyKey) -> None:
    """Raise SignatureVerifyError unless `auth.sig` is the origin's signature of this request
    with `verify_key` (the key `auth.key` names). `destination` is our own server name: the
    signature covers it even when an older server leaves it out of the header."""
    obj = request_json(method, uri, auth.origin, destination, content)
    obj["signatures"] = {auth.origin: {auth.key: auth.sig}}
    verify_signed_json(obj, auth.origin, verify_key, auth.key)
