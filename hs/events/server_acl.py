"""Server access control lists: whether an `m.room.server_acl` content lets a server take part
in a room (spec: event `m.room.server_acl`; server-server API "Server Access Control Lists").

1. No ACL event in the room's state: allowed (callers do not call us then).
2. The host is an IP literal and `allow_ip_literals` is `false`: denied.
3. The host matches a `deny` glob: denied.
4. The host matches an `allow` glob: allowed.
5. Otherwise denied: a missing `allow` is an empty list, so it shuts out every server.

The globs are matched, case-insensitively, against the host without its port ("`evil.com`,
`evil.com:8448`, and `evil.com:1234` would all match rules that apply to `evil.com`"); an IPv6
host keeps its brackets, as in the server name. Malformed content never raises: a
`allow_ip_literals` that is not a boolean means `true`, a list that is not a list is empty, an
entry that is not a string matches nothing (as Synapse reads it).
"""

import functools
import ipaddress
import re
from collections.abc import Mapping

__all__ = ["server_allowed_by_acl", "glob_to_regex"]


def server_allowed_by_acl(server_name: str, content: Mapping) -> bool:
    """Whether the server `server_name` (`host[:port]`) may take part in a room whose current
    `m.room.server_acl` has `content`."""
    host = _host(server_name)
    if not isinstance(content, Mapping):
        content = {}
    if content.get("allow_ip_literals", True) is False and _is_ip_literal(host):
        return False
    if any(_matches(host, entry) for entry in _entries(content, "deny")):
        return False
    return any(_matches(host, entry) for entry in _entries(content, "allow"))


def _host(server_name: str) -> str:
    if server_name.startswith("["):
        return server_name[:server_name.find("]") + 1] if "]" in server_name else server_name
    return server_name.partition(":")[0]


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") else host)
    except ValueError:
        # A bracketed host is an IPv6 literal, even one Python cannot parse (Synapse denies any).
        return host.startswith("[")
    return True


def _entries(content: Mapping, key: str) -> list:
    value = content.get(key, [])
    return value if isinstance(value, list) else []


def _matches(host: str, entry) -> bool:
    return isinstance(entry, str) and glob_to_regex(entry).fullmatch(host) is not None


@functools.lru_cache(maxsize=1024)
def glob_to_regex(glob: str) -> re.Pattern:
    """The appendix's glob-style matching: `*` any run of characters, `?` exactly one, anything
    else literally; case-insensitive."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob]
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)
