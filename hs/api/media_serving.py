"""Serving media bytes safely: the headers every media response carries, Content-Disposition,
byte ranges, and streaming a file from disk (gunicorn sends it with sendfile where it can).

Media is whatever users upload, served from the homeserver's own origin: a browser must never
run it as a page of that origin. So every response is sandboxed by its CSP, never sniffed into
another type, and only types that are safe to render (Synapse's list) are shown inline.
"""

import os
import re
from urllib.parse import quote

from hs.errors import Codes, MatrixError

# Synapse's, on download and thumbnail responses (errors included).
SECURITY_HEADERS = {
    "Content-Security-Policy": ("sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf;"
                                " style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"),
    "X-Content-Security-Policy": "sandbox;",  # IE11's limited form
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow, noarchive, noimageindex",
}
# Clients may cache media for a day; "s-maxage=0,proxy-revalidate" makes a shared cache (a CDN)
# ask us again each time, so authentication still applies to every fetch.
CACHE_CONTROL = "public,max-age=86400,s-maxage=0,proxy-revalidate"

# Text types get a UTF-8 charset when they name none (Synapse's list).
TEXT_CONTENT_TYPES = frozenset({
    "text/css", "text/csv", "text/html", "text/calendar", "text/plain", "text/javascript", "application/json",
    "application/ld+json", "application/rtf", "image/svg+xml", "text/xml",
})
# The only types served `inline`; everything else (HTML, SVG, ...) is an `attachment`. Synapse's
# list, from Element's safe-to-display types; SVG is left out on purpose (it can hold script).
INLINE_CONTENT_TYPES = frozenset({
    "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave", "audio/wav", "audio/x-wav",
    "audio/x-pn-wav", "audio/flac", "audio/x-flac",
})

# RFC 2616 token characters: printable ASCII except separators.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def set_security_headers(resp) -> None:
    resp.set_headers(SECURITY_HEADERS)


def content_type(media_type: str | None) -> str:
    media_type = media_type or "application/octet-stream"
    if media_type.lower() in TEXT_CONTENT_TYPES:
        return media_type + "; charset=UTF-8"
    return media_type


def content_disposition(media_type: str | None, file_name: str | None) -> str:
    """`inline` for safe types, else `attachment`; a file name as a plain token when it is one,
    otherwise RFC 5987's filename*=utf-8''<percent-encoded>, which no name can break out of."""
    base = (media_type or "").lower().split(";", 1)[0].strip()
    disposition = "inline" if base in INLINE_CONTENT_TYPES else "attachment"
    if not file_name:
        return disposition
    if _TOKEN.fullmatch(file_name):
        return f"{disposition}; filename={file_name}"
    return f"{disposition}; filename*=utf-8''{quote(file_name.encode('utf-8'), safe='')}"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) byte positions of a single-range `Range` header, or None to send the
    whole file (no header, a syntax we do not take, several ranges: RFC 9110 lets a server
    ignore Range). 416 when the range lies outside the file."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    first_text, last_text = match.groups()
    if first_text:
        first = int(first_text)
        if last_text and int(last_text) < first:
            return None  # "bytes=5-3" is invalid, so ignored rather than unsatisfiable
        if first >= size:
            raise _unsatisfiable(size)
        return first, min(int(last_text), size - 1) if last_text else size - 1
    suffix = int(last_text)
    if suffix == 0 or size == 0:
        raise _unsatisfiable(size)
    return max(0, size - suffix), size - 1


def _unsatisfiable(size: int) -> MatrixError:
    return MatrixError(416, Codes.UNKNOWN, "Requested range not satisfiable",
                       headers={"Content-Range": f"bytes */{size}"})


def send_file(req, resp, path: str, media_type: str | None, disposition: str) -> None:
    """Streams the file at ``path`` (a single byte range of it when asked) with the media
    headers; 404 M_NOT_FOUND if it is gone (deleted since its row was read)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise MatrixError(404, Codes.NOT_FOUND, "Media not found") from None
    try:
        size = os.fstat(f.fileno()).st_size
        byte_range = parse_range(req.get_header("Range"), size)
        if byte_range is None:
            first, length = 0, size
        else:
            first, last = byte_range
            length = last - first + 1
            resp.status = 206
            resp.set_header("Content-Range", f"bytes {first}-{last}/{size}")
        resp.content_type = content_type(media_type)
        resp.set_header("Content-Disposition", disposition)
        resp.set_header("Cache-Control", CACHE_CONTROL)
        resp.set_header("Accept-Ranges", "bytes")
        if req.method == "HEAD":
            f.close()
            resp.content_length = length
            return
        f.seek(first)
        # gunicorn sends exactly Content-Length bytes from the file's position.
        resp.set_stream(f, length)
    except BaseException:
        f.close()
        raise
