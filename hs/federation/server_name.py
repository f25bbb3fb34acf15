"""Server names (appendices: server name): `host[:port]`, the host a DNS name, an IPv4 literal
or a bracketed IPv6 literal."""

import ipaddress
from urllib.parse import quote

from hs.config import is_valid_server_name


def parse_server_name(name: str) -> tuple[str, int | None]:
    """(host, port or None). An IPv6 host keeps its brackets, as it is written in a URL and a Host
    header. Raises ValueError for anything outside the grammar."""
    if not isinstance(name, str) or not is_valid_server_name(name):
        raise ValueError(f"invalid server name {name!r}")
    if name.startswith("["):
        host, _, rest = name.partition("]")
        host += "]"
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"invalid IPv6 literal in server name {name!r}") from None
        port = rest[1:] if rest else None
    else:
        host, _, port = name.partition(":")
    return host, int(port) if port else None


def ip_literal(host: str) -> str | None:
    """The address if `host` (as parse_server_name gives it) is an IP literal, else None."""
    try:
        return str(ipaddress.ip_address(host[1:-1] if host.startswith("[") else host))
    except ValueError:
        return None


def server_name_of(identifier: str) -> str:
    """The server part of a user ID, alias, room ID (before v12) or event ID (v1, v2): everything
    after the FIRST ':', since the server name itself may carry a port. Raises ValueError when there
    is none."""
    if not isinstance(identifier, str):
        raise ValueError(f"not an identifier: {identifier!r}")
    _, sep, server_name = identifier.partition(":")
    if not sep or not server_name:
        raise ValueError(f"identifier has no server name: {identifier!r}")
    return server_name


def quote_path_segment(segment: str) -> str:
    """One path segment of a federation URL, percent-encoded ('/' and ':' too)."""
    return quote(segment, safe="")
