"""The multipart/mixed body of the federation media endpoints (/server-server-api#content-repository),
both ways, streamed: a download never holds the media in memory.

    \\r\\n--B\\r\\nContent-Type: application/json\\r\\n\\r\\n{}
    \\r\\n--B\\r\\nContent-Type: image/png\\r\\nContent-Disposition: inline; filename=a.png\\r\\n\\r\\n<bytes>
    \\r\\n--B--\\r\\n

The first part is the media's metadata (always `{}` today); the second holds the bytes, or only a
`Location` header naming where to fetch them. Synapse writes (and reads) exactly this layout.
"""

import email.message
import secrets
from dataclasses import dataclass
from typing import Iterable, Iterator

CRLF = b"\r\n"
# Bounds on what precedes the media: nothing legitimate comes near them.
MAX_HEAD_BYTES = 64 * 1024
READ_SIZE = 64 * 1024


class MultipartError(ValueError):
    """The body is not the two-part multipart/mixed the spec describes (or was cut short)."""


def new_boundary() -> str:
    return secrets.token_hex(16)


def media_head(boundary: str, media_type: str | None = None, disposition: str | None = None,
               location: str | None = None) -> bytes:
    """Everything before the media's bytes: the JSON part and the second part's headers (with
    ``location``, the whole body but its closing delimiter: that part has no bytes)."""
    b = boundary.encode("ascii")
    out = [CRLF, b"--", b, CRLF, b"Content-Type: application/json", CRLF, CRLF, b"{}", CRLF, b"--", b, CRLF]
    if location is not None:
        out += [b"Location: ", location.encode("utf-8"), CRLF, CRLF]
    else:
        out += [b"Content-Type: ", (media_type or "application/octet-stream").encode("utf-8"), CRLF]
        if disposition:
            out += [b"Content-Disposition: ", disposition.encode("utf-8"), CRLF]
        out.append(CRLF)
    return b"".join(out)


def media_tail(boundary: str) -> bytes:
    return CRLF + b"--" + boundary.encode("ascii") + b"--" + CRLF


def boundary_of(content_type: str | None) -> str | None:
    """The boundary of a `multipart/mixed; boundary=...` Content-Type, else None."""
    msg = email.message.Message()
    msg["Content-Type"] = content_type or ""
    if msg.get_content_type() != "multipart/mixed":
        return None
    boundary = msg.get_param("boundary")
    return boundary if isinstance(boundary, str) and 0 < len(boundary) <= 200 else None


def filename_of(disposition: str | None) -> str | None:
    """The file name of a Content-Disposition header (RFC 6266: `filename*` first), else None."""
    if not disposition:
        return None
    msg = email.message.Message()
    msg["Content-Disposition"] = disposition
    try:
        name = msg.get_filename()
    except (LookupError, ValueError):  # an unknown charset in filename*
        return None
    return name or None


@dataclass
class MediaPart:
    """The second part's headers (lower-cased names) and its bytes, to be iterated once."""
    metadata: bytes
    headers: dict
    chunks: Iterator[bytes]

    @property
    def location(self) -> str | None:
        return self.headers.get("location")


class _Reader:
    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self.buf = b""

    def more(self) -> bool:
        for chunk in self._chunks:
            if chunk:
                self.buf += chunk
                return True
        return False

    def until(self, marker: bytes, limit: int) -> bytes:
        """Consumes and returns what comes before ``marker`` (consumed too)."""
        while True:
            at = self.buf.find(marker)
            if at >= 0:
                head, self.buf = self.buf[:at], self.buf[at + len(marker):]
                return head
            if len(self.buf) > limit or not self.more():
                raise MultipartError(f"no {marker!r} within {limit} bytes")


def read_media_part(chunks: Iterable[bytes], boundary: str) -> MediaPart:
    """Parses the JSON part and the second part's headers from ``chunks`` (the response body);
    the returned part's ``chunks`` stream its bytes and raise MultipartError if the closing
    delimiter never comes (a body cut short is not media)."""
    reader = _Reader(chunks)
    delimiter = b"--" + boundary.encode("ascii")
    # The preamble (Synapse sends an empty one, after which comes a CRLF) ends at the first delimiter.
    reader.buf = CRLF
    reader.until(CRLF + delimiter, MAX_HEAD_BYTES)
    first = _part_headers(reader)
    if (first.get("content-type") or "").split(";", 1)[0].strip().lower() != "application/json":
        raise MultipartError("the first part is not application/json")
    metadata = reader.until(CRLF + delimiter, MAX_HEAD_BYTES)
    headers = _part_headers(reader)
    return MediaPart(metadata, headers, _body(reader, CRLF + delimiter))


def _part_headers(reader: _Reader) -> dict:
    """After a delimiter: the rest of its line, then the part's header block."""
    line = reader.until(CRLF, MAX_HEAD_BYTES)
    if line.startswith(b"--"):
        raise MultipartError("the body ended before its media part")
    if line.strip(b" \t"):
        raise MultipartError("garbage after a boundary delimiter")
    reader.buf = CRLF + reader.buf  # so that an empty header block is CRLF CRLF too
    block = reader.until(CRLF + CRLF, MAX_HEAD_BYTES)
    headers = {}
    for raw in block.split(CRLF)[1:]:
        name, sep, value = raw.partition(b":")
        if not sep or not name.strip():
            raise MultipartError("a malformed part header")
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("utf-8", "replace")
    return headers


def _body(reader: _Reader, marker: bytes) -> Iterator[bytes]:
    keep = len(marker) - 1  # a marker may straddle two chunks
    while True:
        at = reader.buf.find(marker)
        if at >= 0:
            if at:
                yield reader.buf[:at]
            reader.buf = b""
            return
        if len(reader.buf) > keep:
            out, reader.buf = reader.buf[:-keep], reader.buf[-keep:]
            yield out
        if not reader.more():
            raise MultipartError("the body ended inside the media part")
