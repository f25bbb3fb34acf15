"""Dotted key paths into event JSON, as filters' `event_fields` and push rules' `key` write them."""

from functools import lru_cache


@lru_cache(maxsize=1024)
def split_dotted_key(path: str) -> tuple[str, ...]:
    """'content.m\\.relates_to' -> ('content', 'm.relates_to'). '\\.' is a literal dot and '\\\\'
    a literal backslash; any other backslash stays as it is ('\\x' is backslash and x)."""
    parts, current, i, n = [], [], 0, len(path)
    while i < n:
        c = path[i]
        if c == "\\" and i + 1 < n and path[i + 1] in ".\\":
            current.append(path[i + 1])
            i += 2
            continue
        if c == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    parts.append("".join(current))
    return tuple(parts)
