"""Reading what a client sent: bodies and parameters, with the spec's errors for bad input."""

import json
import re

import falcon
from gunicorn.http.errors import ParseException

from hs.errors import Codes, MatrixError
from hs.events.canonical_json import decode_json

_MISSING = object()
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_body(req: falcon.Request, limit: int) -> bytes:
    """The raw body, refused with M_TOO_LARGE past `limit` without reading more than limit+1 bytes."""
    return b"".join(body_chunks(req, limit, chunk_size=limit + 1))


def body_chunks(req: falcon.Request, limit: int, chunk_size: int = 1 << 16):
    """The body as an iterator of chunks of at most `chunk_size` bytes, for bodies too big to
    hold in memory. M_TOO_LARGE (413) at once when Content-Length says more than `limit`, else
    as soon as more than `limit` bytes have arrived (having read at most limit+1)."""
    length = req.content_length
    if length is not None and length > limit:
        raise MatrixError(413, Codes.TOO_LARGE, f"Request body exceeds {limit} bytes")
    if length is None and "chunked" in (req.get_header("Transfer-Encoding") or "").lower():
        # Falcon's bounded_stream takes a missing Content-Length as an empty body; gunicorn's
        # own input stream decodes the chunks and ends where the body does.
        stream = req.stream
    else:
        stream = req.bounded_stream

    def chunks():
        size = 0
        while True:
            try:
                chunk = stream.read(min(chunk_size, limit + 1 - size))
            except (OSError, ParseException):
                # The client went away mid-body (gunicorn's NoMoreData is an OSError) or its
                # chunked encoding is broken: its fault, and nothing was stored.
                raise MatrixError(400, Codes.UNKNOWN, "Incomplete or malformed request body") from None
            if not chunk:
                if length is not None and size < length:
                    # WSGI streams end quietly at EOF: a short body would pass for a whole one.
                    raise MatrixError(400, Codes.UNKNOWN, "Incomplete or malformed request body")
                return
            size += len(chunk)
            if size > limit:
                raise MatrixError(413, Codes.TOO_LARGE, f"Request body exceeds {limit} bytes")
            yield chunk

    return chunks()


def json_body(req: falcon.Request, *, allow_empty: bool = False) -> dict:
    """The body as a JSON object (M_NOT_JSON if it is not JSON, M_BAD_JSON if not an object)."""
    data = read_body(req, req.context.max_body_size)
    if not data.strip():
        if allow_empty:
            return {}
        raise MatrixError(400, Codes.NOT_JSON, "Content not JSON.")
    try:
        body = decode_json(data)
        lone_surrogate = _SURROGATE_ESCAPE.search(data) is not None and _has_lone_surrogate(body)
    except ValueError:
        raise MatrixError(400, Codes.NOT_JSON, "Content not JSON.") from None
    except RecursionError:
        raise MatrixError(400, Codes.BAD_JSON, "JSON is nested too deeply.") from None
    if lone_surrogate:
        # A \ud800 escape parses, but no UTF-8 text (nor PostgreSQL) can hold what it gives.
        raise MatrixError(400, Codes.NOT_JSON, "Content not JSON: lone surrogate in a string.")
    if not isinstance(body, dict):
        raise MatrixError(400, Codes.BAD_JSON, "Content must be a JSON object.")
    return body


_TYPE_NAMES = {str: "a string", bool: "a boolean", int: "an integer", dict: "an object", list: "an array"}


def field(body: dict, key: str, kind, default=_MISSING):
    """One field of a JSON body: M_MISSING_PARAM when absent and required, M_BAD_JSON when mistyped."""
    if key not in body or body[key] is None:
        if default is _MISSING:
            raise MatrixError(400, Codes.MISSING_PARAM, f"Missing parameter: {key}")
        return default
    value = body[key]
    bad_int = kind is int and isinstance(value, bool)
    if bad_int or not isinstance(value, kind):
        name = _TYPE_NAMES.get(kind, getattr(kind, "__name__", str(kind)))
        raise MatrixError(400, Codes.BAD_JSON, f"{key} must be {name}")
    return value


def query_int(req: falcon.Request, name: str, default=None, *, minimum=None, maximum=None):
    raw = req.get_param(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must be an integer") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name} is out of range")
    return value


def query_bool(req: falcon.Request, name: str, default: bool = False) -> bool:
    raw = req.get_param(name)
    if raw is None:
        return default
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must be true or false")
