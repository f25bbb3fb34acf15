"""Filters (client-server API "Filtering"): parsing, validation and matching. Pure: no I/O.

A filter is parsed once (``parse_filter``) into immutable objects that match events quickly;
the same object may be shared by any number of requests. Events are matched in the client
format (dicts with ``type``, ``sender``, ``room_id``, ``content``).

    f = parse_filter(body)                       # FilterError on an invalid filter
    timeline = f.room.timeline                   # a RoomEventFilter
    events = timeline.filter(events, room_id=room_id)
    limit = timeline.limit_or(default=10, maximum=100)
    shown = [f.apply_event_fields(e) for e in events]

Storage that filters in SQL reads the normalised attributes instead of calling ``matches``:
``types``/``senders``/``rooms`` are None when absent (everything passes) and a tuple when given
(an empty tuple lets nothing pass); ``not_types``/``not_senders``/``not_rooms`` are tuples
(empty when absent); ``contains_url`` is None, True or False; ``wildcard_to_like`` turns a
``types`` entry into a LIKE pattern. Tuples are immutable; psycopg2 adapts only lists to
arrays, so pass ``list(f.types)`` to ``= ANY(%s)``.
"""

from collections.abc import Callable, Iterable, Mapping

from hs.events.canonical_json import decode_json
from hs.events.dotted_keys import split_dotted_key

EVENT_FORMATS = ("client", "federation")


class FilterError(ValueError):
    """The filter is invalid; the message says where and why. The API answers 400: M_BAD_JSON
    for a filter in a request body, M_INVALID_PARAM for one in a query parameter."""


class UnknownFilterError(FilterError):
    """A filter ID that names no filter of the user."""


# --- matching types with '*' wildcards ---

def _glob(pattern: str) -> Callable[[str], bool]:
    """A matcher for `pattern`, where '*' stands for any sequence of characters.

    No regex: a pattern such as '*a*a*a*a*b' makes a backtracking regex take exponential time,
    and a user's own filter must not be able to stall the process that serves them.
    Leftmost matching of each literal piece is enough for '*'-only globs, so this is linear
    in the pieces times the length.
    """
    pieces = pattern.split("*")
    prefix, middles, suffix = pieces[0], pieces[1:-1], pieces[-1]
    min_length = len(prefix) + len(suffix)

    def match(value: str) -> bool:
        if len(value) < min_length or not value.startswith(prefix) or not value.endswith(suffix):
            return False
        pos, end = len(prefix), len(value) - len(suffix)
        for piece in middles:
            found = value.find(piece, pos, end)
            if found < 0:
                return False
            pos = found + len(piece)
        return True

    return match


class _TypeSet:
    """A set of event types, some of them with '*' wildcards."""

    __slots__ = ("exact", "globs", "everything")

    def __init__(self, patterns: Iterable[str]):
        exact, globs, everything = set(), [], False
        for p in dict.fromkeys(patterns):
            if "*" in p:
                globs.append(_glob(p))
                everything = everything or p.strip("*") == ""
            else:
                exact.add(p)
        self.exact = frozenset(exact)
        self.globs = tuple(globs)
        self.everything = everything

    def __contains__(self, value) -> bool:
        if not isinstance(value, str):
            return False
        return self.everything or value in self.exact or any(g(value) for g in self.globs)


def type_matches(event_type: str, pattern: str) -> bool:
    """Whether one `types` entry matches an event type ('*' matches any sequence)."""
    return _glob(pattern)(event_type) if "*" in pattern else event_type == pattern


def wildcard_to_like(pattern: str) -> str:
    """A `types` entry as a SQL LIKE pattern (backslash is LIKE's default escape character)."""
    return pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%")


def content_has_url(content) -> bool:
    """What `contains_url` tests: a `url` key in the content. Only a string counts, as in
    Synapse (a `url` of another type is not a link to anything)."""
    return isinstance(content, Mapping) and isinstance(content.get("url"), str)


# --- validation helpers ---

def _check_object(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise FilterError(f"{where} must be an object")
    return value


def _string_list(obj: dict, key: str, where: str, prefix: str | None = None) -> tuple[str, ...] | None:
    if key not in obj:
        return None
    value = obj[key]
    if not isinstance(value, list):
        raise FilterError(f"{where}{key} must be an array of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise FilterError(f"{where}{key}[{i}] must be a string")
        if prefix is not None and not item.startswith(prefix):
            kind = "user ID" if prefix == "@" else "room ID"
            raise FilterError(f"{where}{key}[{i}] must be a {kind} (starting with '{prefix}')")
    return tuple(value)


def _bool(obj: dict, key: str, where: str) -> bool | None:
    if key not in obj:
        return None
    value = obj[key]
    if not isinstance(value, bool):
        raise FilterError(f"{where}{key} must be a boolean")
    return value


def _limit(obj: dict, where: str) -> int | None:
    if "limit" not in obj:
        return None
    value = obj["limit"]
    # JSON Schema's "integer" takes 10.0 too; bool is an int subclass in Python but not in JSON.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FilterError(f"{where}limit must be an integer")
    # The spec asks clients for a limit above 0; 0 is accepted (as Synapse and Conduit do):
    # bots send it to skip history, and "no events" is a well-defined answer.
    if value < 0:
        raise FilterError(f"{where}limit must not be negative")
    return value


# --- the filter classes ---

class EventFilter:
    """EventFilter: which events of a kind (presence, account data) to include.

    `not_*` lists win over the positive lists: an event matching both is excluded.
    """

    __slots__ = ("json", "limit", "types", "not_types", "senders", "not_senders",
                 "_types", "_not_types", "_senders", "_not_senders")

    def __init__(self, json: dict, where: str = ""):
        _check_object(json, where.rstrip(".") or "filter")
        self.json = json
        self.limit = _limit(json, where)
        self.types = _string_list(json, "types", where)
        self.not_types = _string_list(json, "not_types", where) or ()
        self.senders = _string_list(json, "senders", where, "@")
        self.not_senders = _string_list(json, "not_senders", where, "@") or ()
        self._types = None if self.types is None else _TypeSet(self.types)
        self._not_types = _TypeSet(self.not_types) if self.not_types else None
        self._senders = None if self.senders is None else frozenset(self.senders)
        self._not_senders = frozenset(self.not_senders)

    def limit_or(self, default: int, maximum: int) -> int:
        """The number of events to return: the filter's limit (or `default`), at most `maximum`."""
        return min(default if self.limit is None else self.limit, maximum)

    def blocks_all(self) -> bool:
        """True when no event can match: the caller may skip fetching them at all."""
        return (self.types == () or self.senders == ()
                or (self._not_types is not None and self._not_types.everything))

    def matches_values(self, event_type, sender, room_id=None, content=None) -> bool:
        """`matches` for callers that hold the fields rather than a client-format dict."""
        if self._not_types is not None and event_type in self._not_types:
            return False
        if self._types is not None and event_type not in self._types:
            return False
        if sender in self._not_senders:
            return False
        if self._senders is not None and sender not in self._senders:
            return False
        return True

    def matches(self, event: Mapping, room_id: str | None = None) -> bool:
        """Whether the filter lets `event` (client format) through. `room_id` names the room of
        an event that does not carry one (ephemeral and room account data events); without
        either, an event fails a `rooms` list."""
        content = event.get("content")
        sender = event.get("sender")
        if sender is None and isinstance(content, Mapping):
            # m.presence events in older formats carried the user in content.user_id.
            sender = content.get("user_id")
        event_room = event.get("room_id")
        # Only strings can match; anything else (say a malformed account data event) is absent,
        # and must not reach a set lookup, where an unhashable value would raise.
        return self.matches_values(event.get("type"), sender if isinstance(sender, str) else None,
                                   event_room if isinstance(event_room, str) else room_id, content)

    def filter(self, events: Iterable[Mapping], room_id: str | None = None) -> list:
        """The events that match, in order. `limit` is not applied: it is the caller's page size."""
        return [e for e in events if self.matches(e, room_id)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.json!r})"


class RoomEventFilter(EventFilter):
    """RoomEventFilter: EventFilter plus rooms, `contains_url` and the lazy-loading switches."""

    __slots__ = ("rooms", "not_rooms", "contains_url", "lazy_load_members", "include_redundant_members",
                 "unread_thread_notifications", "_rooms", "_not_rooms")

    def __init__(self, json: dict, where: str = ""):
        super().__init__(json, where)
        self.rooms = _string_list(json, "rooms", where, "!")
        self.not_rooms = _string_list(json, "not_rooms", where, "!") or ()
        self.contains_url = _bool(json, "contains_url", where)
        self.lazy_load_members = bool(_bool(json, "lazy_load_members", where))
        self.include_redundant_members = bool(_bool(json, "include_redundant_members", where))
        self.unread_thread_notifications = bool(_bool(json, "unread_thread_notifications", where))
        self._rooms = None if self.rooms is None else frozenset(self.rooms)
        self._not_rooms = frozenset(self.not_rooms)

    def blocks_all(self) -> bool:
        return super().blocks_all() or self.rooms == ()

    def includes_room(self, room_id: str) -> bool:
        return room_id not in self._not_rooms and (self._rooms is None or room_id in self._rooms)

    def matches_values(self, event_type, sender, room_id=None, content=None) -> bool:
        if room_id in self._not_rooms:
            return False
        if self._rooms is not None and room_id not in self._rooms:
            return False
        if self.contains_url is not None and content_has_url(content) != self.contains_url:
            return False
        return super().matches_values(event_type, sender, room_id, content)


class RoomFilter:
    """RoomFilter: which rooms, and which events of each part of a room in /sync.

    `rooms`/`not_rooms` here apply before the per-part filters; `filter_rooms` and
    `includes_room` apply them to the rooms a sync would otherwise show.
    """

    __slots__ = ("json", "rooms", "not_rooms", "include_leave", "ephemeral", "state", "timeline",
                 "account_data", "_rooms", "_not_rooms")

    def __init__(self, json: dict, where: str = "room."):
        _check_object(json, where.rstrip("."))
        self.json = json
        self.rooms = _string_list(json, "rooms", where, "!")
        self.not_rooms = _string_list(json, "not_rooms", where, "!") or ()
        self.include_leave = bool(_bool(json, "include_leave", where))
        self.ephemeral = RoomEventFilter(json.get("ephemeral", {}), f"{where}ephemeral.")
        self.state = RoomEventFilter(json.get("state", {}), f"{where}state.")
        self.timeline = RoomEventFilter(json.get("timeline", {}), f"{where}timeline.")
        self.account_data = RoomEventFilter(json.get("account_data", {}), f"{where}account_data.")
        self._rooms = None if self.rooms is None else frozenset(self.rooms)
        self._not_rooms = frozenset(self.not_rooms)

    def includes_room(self, room_id: str) -> bool:
        return room_id not in self._not_rooms and (self._rooms is None or room_id in self._rooms)

    def filter_rooms(self, room_ids: Iterable[str]) -> list[str]:
        """The rooms this filter lets through, in the given order."""
        return [r for r in room_ids if self.includes_room(r)]

    def blocks_all(self) -> bool:
        return self.rooms == ()

    def __repr__(self) -> str:
        return f"RoomFilter({self.json!r})"


class Filter:
    """The top-level filter (the spec's "Filter" in sync_filter.yaml), as stored and as /sync
    takes it. `json` is the filter exactly as the client sent it."""

    __slots__ = ("json", "event_fields", "event_format", "presence", "account_data", "room", "_field_paths")

    def __init__(self, json: dict):
        _check_object(json, "filter")
        self.json = json
        self.event_fields = _string_list(json, "event_fields", "")
        self.event_format = json.get("event_format", "client")
        if self.event_format not in EVENT_FORMATS:
            raise FilterError("event_format must be 'client' or 'federation'")
        self.presence = EventFilter(json.get("presence", {}), "presence.")
        self.account_data = EventFilter(json.get("account_data", {}), "account_data.")
        self.room = RoomFilter(json.get("room", {}), "room.")
        self._field_paths = tuple(split_dotted_key(f) for f in self.event_fields or ())

    def apply_event_fields(self, event: dict) -> dict:
        """`event` cut down to `event_fields` (the whole event when the filter names none)."""
        return _only_paths(event, self._field_paths) if self._field_paths else event

    def __repr__(self) -> str:
        return f"Filter({self.json!r})"


def parse_filter(json) -> Filter:
    """The top-level filter from its JSON (a dict); FilterError when invalid. Unknown keys are
    allowed and kept, as the spec's schemas allow them (forward compatibility)."""
    return Filter(json)


def parse_room_event_filter(json) -> RoomEventFilter:
    """A RoomEventFilter on its own, as /messages and /context take it."""
    return RoomEventFilter(json)


DEFAULT_FILTER = parse_filter({})


# --- filters in query parameters ---

def _decode_param(raw: str) -> dict:
    try:
        value = decode_json(raw)
    except (ValueError, RecursionError):
        raise FilterError("filter is not valid JSON") from None
    if not isinstance(value, dict):
        raise FilterError("filter must be a JSON object")
    return value


def resolve_filter_param(raw: str, load_by_id: Callable[[str], dict | None]) -> Filter:
    """The `filter` parameter of /sync: inline JSON when it starts with '{', else a filter ID
    that `load_by_id` looks up (None when the user has no such filter → UnknownFilterError)."""
    if raw.startswith("{"):
        return parse_filter(_decode_param(raw))
    stored = load_by_id(raw)
    if stored is None:
        raise UnknownFilterError(f"no filter with ID {raw!r}")
    return parse_filter(stored)


def room_event_filter_from_param(raw: str) -> RoomEventFilter:
    """The `filter` parameter of /messages and /context: a RoomEventFilter as JSON."""
    return parse_room_event_filter(_decode_param(raw))


# --- event_fields: dot-separated property paths (appendices, "Dot-separated property paths") ---

def apply_event_fields(event: dict, fields) -> dict:
    """`event` with only the properties that `fields` (dot-separated paths) name; all of it
    when `fields` is empty or None. The result shares values with `event`: do not mutate it."""
    if not fields:
        return event
    return _only_paths(event, tuple(split_dotted_key(f) for f in fields))


def _only_paths(event: dict, paths: tuple[tuple[str, ...], ...]) -> dict:
    out: dict = {}
    for path in paths:
        src, dst = event, out
        for depth, key in enumerate(path):
            if not isinstance(src, Mapping) or key not in src:
                break
            value = src[key]
            if depth == len(path) - 1:
                dst[key] = value
                break
            existing = dst.get(key)
            if existing is value:
                break  # a shorter path already took the whole of this object
            if not isinstance(value, Mapping):
                break
            if existing is None:
                # Only create the parent when the leaf exists, so a missing path adds nothing.
                if not _has_path(value, path[depth + 1:]):
                    break
                existing = dst[key] = {}
            src, dst = value, existing
    return out


def _has_path(obj, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj:
            return False
        obj = obj[key]
    return True
