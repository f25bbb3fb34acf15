"""POST /search (room_events) and /timestamp_to_event: finding events a user may read.

Both read only rooms the user is joined to, or joined and left (up to their leave), and show
an event only if RoomReadHandler.visible lets the user see it. Candidates come from SQL in
pages; those history visibility hides are skipped and the next page is read, so a page of
results is `limit` visible events when there are that many.
"""

import base64
import binascii
import json
import re
from dataclasses import dataclass

from hs.errors import Codes, MatrixError
from hs.events.redaction import prune_event_dict
from hs.filtering import FilterError, RoomEventFilter, parse_room_event_filter
from hs.handlers.room_reads import pagination_token

SEARCH_KEYS = ("content.body", "content.name", "content.topic")
ORDERS = ("rank", "recent")
GROUP_KEYS = ("room_id", "sender")
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
DEFAULT_CONTEXT = 5
MAX_CONTEXT = 100
# Candidate pages read for one response before answering with what was found and a next_batch:
# a bound on the work one request does when history visibility hides most matches.
MAX_ROUNDS = 5
TIMESTAMP_BATCH = 50
TIMESTAMP_ROUNDS = 10
_WORD = re.compile(r"\w+")


@dataclass
class RoomEventsCriteria:
    search_term: str
    keys: list[str]
    event_filter: RoomEventFilter
    order_by: str
    before_limit: int | None  # None: no event_context requested
    after_limit: int
    include_profile: bool
    include_state: bool
    group_by: list[str]


def _bad(message: str) -> MatrixError:
    return MatrixError(400, Codes.BAD_JSON, message)


def _int(obj: dict, key: str, default: int, maximum: int) -> int:
    value = obj.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{key} must be an integer")
    if value < 0:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{key} must not be negative")
    return min(value, maximum)


def parse_room_events_criteria(room_events) -> RoomEventsCriteria:
    """The `search_categories.room_events` object, checked against search.yaml."""
    if not isinstance(room_events, dict):
        raise _bad("search_categories.room_events must be an object")
    term = room_events.get("search_term")
    if term is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: search_term")
    if not isinstance(term, str):
        raise _bad("search_term must be a string")
    keys = room_events.get("keys")
    if keys is None:
        keys = list(SEARCH_KEYS)
    elif not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _bad("keys must be an array of strings")
    for key in keys:
        if key not in SEARCH_KEYS:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Unknown search key {key!r}")
    raw_filter = room_events.get("filter")
    try:
        event_filter = parse_room_event_filter({} if raw_filter is None else raw_filter)
    except FilterError as e:
        raise _bad(f"Invalid filter: {e}") from None
    order_by = room_events.get("order_by")
    if order_by is None:
        order_by = "rank"
    if order_by not in ORDERS:
        raise MatrixError(400, Codes.INVALID_PARAM, "order_by must be 'rank' or 'recent'")
    context = room_events.get("event_context")
    before_limit, after_limit, include_profile = None, DEFAULT_CONTEXT, False
    if context is not None:
        if not isinstance(context, dict):
            raise _bad("event_context must be an object")
        before_limit = _int(context, "before_limit", DEFAULT_CONTEXT, MAX_CONTEXT)
        after_limit = _int(context, "after_limit", DEFAULT_CONTEXT, MAX_CONTEXT)
        include_profile = context.get("include_profile", False)
        if not isinstance(include_profile, bool):
            raise _bad("include_profile must be a boolean")
    include_state = room_events.get("include_state", False)
    if include_state is None:
        include_state = False
    if not isinstance(include_state, bool):
        raise _bad("include_state must be a boolean")
    group_by = []
    groupings = room_events.get("groupings")
    if groupings is not None:
        if not isinstance(groupings, dict):
            raise _bad("groupings must be an object")
        groups = groupings.get("group_by", [])
        if not isinstance(groups, list):
            raise _bad("groupings.group_by must be an array")
        for group in groups:
            if not isinstance(group, dict) or not isinstance(group.get("key"), str):
                raise _bad("each groupings.group_by entry must be an object with a string key")
            if group["key"] not in GROUP_KEYS:
                raise MatrixError(400, Codes.INVALID_PARAM, "group key must be 'room_id' or 'sender'")
            if group["key"] not in group_by:
                group_by.append(group["key"])
    return RoomEventsCriteria(term, list(dict.fromkeys(keys)), event_filter, order_by, before_limit, after_limit,
                              include_profile, include_state, group_by)


# --- next_batch ----------------------------------------------------------------------------------

def encode_batch(order_by: str, position: tuple, group: tuple[str, str] | None) -> str:
    token = {"o": order_by, "p": list(position)}
    if group is not None:
        token["g"] = list(group)
    raw = json.dumps(token, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_batch(token: str, order_by: str) -> tuple[tuple, tuple[str, str] | None]:
    """(position, group restriction) of a next_batch this server handed out for the same order."""
    invalid = MatrixError(400, Codes.INVALID_PARAM, "Invalid next_batch")
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid from None
    if not isinstance(data, dict) or data.get("o") != order_by:
        raise invalid
    position = data.get("p")
    size = 2 if order_by == "rank" else 1
    if (not isinstance(position, list) or len(position) != size
            or not isinstance(position[-1], int) or isinstance(position[-1], bool)):
        raise invalid
    if size == 2 and (not isinstance(position[0], (int, float)) or isinstance(position[0], bool)):
        raise invalid
    group = data.get("g")
    if group is not None:
        if (not isinstance(group, list) or len(group) != 2 or group[0] not in GROUP_KEYS
                or not isinstance(group[1], str)):
            raise invalid
        group = (group[0], group[1])
    return tuple(position), group


def tsquery_for(lexemes: list[str]) -> str:
    """A tsquery text matching every lexeme as a prefix. The lexemes come from to_tsvector, and
    each is quoted, so no user input is ever parsed as tsquery syntax."""
    return " & ".join("'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "':*" for lexeme in lexemes)


def _hit_position(hit, order_by: str) -> tuple:
    return (hit.rank, hit.stream_ordering) if order_by == "rank" else (hit.stream_ordering,)


class SearchHandler:
    def __init__(self, store, events, state, reads):
        self.store = store
        self.events = events
        self.state = state
        self.reads = reads

    # --- POST /search ------------------------------------------------------------------------------

    def search(self, requester, body: dict, next_batch: str | None) -> dict:
        categories = body.get("search_categories")
        if categories is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: search_categories")
        if not isinstance(categories, dict):
            raise _bad("search_categories must be an object")
        if categories.get("room_events") is None:
            return {"search_categories": {}}
        criteria = parse_room_events_criteria(categories["room_events"])
        return {"search_categories": {"room_events": self._room_events(requester, criteria, next_batch)}}

    def _room_events(self, requester, criteria: RoomEventsCriteria, next_batch: str | None) -> dict:
        user_id = requester.user_id
        event_filter = criteria.event_filter
        cursor, group = decode_batch(next_batch, criteria.order_by) if next_batch is not None else (None, None)
        rooms = [r for r in self.store.searchable_rooms(user_id) if event_filter.includes_room(r.room_id)]
        senders = event_filter.senders
        if group is not None and group[0] == "room_id":
            rooms = [r for r in rooms if r.room_id == group[1]]
        elif group is not None:
            senders = (group[1],) if senders is None or group[1] in senders else ()
        empty = {"count": 0, "results": [], "highlights": []}
        if criteria.group_by:
            empty["groups"] = {key: {} for key in criteria.group_by}
        if criteria.include_state:
            empty["state"] = {}
        # NUL cannot reach PostgreSQL text; as a separator it changes nothing about the words.
        lexemes = self.store.query_lexemes(criteria.search_term.replace("\x00", " "))
        if not lexemes or not rooms or senders == () or event_filter.blocks_all():
            return empty
        tsquery = tsquery_for(lexemes)
        sql_filter = {"types": event_filter.types, "not_types": event_filter.not_types, "senders": senders,
                      "not_senders": event_filter.not_senders, "contains_url": event_filter.contains_url}
        limit = event_filter.limit_or(DEFAULT_LIMIT, MAX_LIMIT)
        count = self.store.count_events(rooms, tsquery, keys=criteria.keys, **sql_filter)

        found, cursor, more = self._visible_hits(user_id, rooms, tsquery, criteria, cursor, limit, sql_filter)
        stored = self.events.get_events([hit.event_id for hit, _ in found])
        serialized = self._serialize(requester, [(hit, stored[hit.event_id]) for hit, _ in found])
        results = []
        for hit, access in found:
            result = {"rank": hit.rank, "result": serialized[hit.event_id]}
            if criteria.before_limit is not None:
                result["context"] = self._context(requester, hit, stored[hit.event_id], access, criteria)
            results.append(result)
        body = {"count": count, "results": results,
                "highlights": _highlights(lexemes, [stored[hit.event_id] for hit, _ in found])}
        batch = encode_batch(criteria.order_by, cursor, group) if more else None
        if batch is not None:
            body["next_batch"] = batch
        if criteria.group_by:
            body["groups"] = self._groups(found, criteria, cursor if more else None)
        if criteria.include_state:
            room_ids = dict.fromkeys(hit.room_id for hit, _ in found)
            body["state"] = {room_id: self.reads.get_state(requester, room_id) for room_id in room_ids}
        return body

    def _visible_hits(self, user_id, rooms, tsquery, criteria, cursor, limit, sql_filter):
        """Up to `limit` (hit, access) pairs the user may see, the position reached, and
        whether more candidates may follow it."""
        found = []
        if limit == 0:
            return found, cursor, False
        accesses: dict = {}
        batch_size = max(limit, DEFAULT_LIMIT)
        for _ in range(MAX_ROUNDS):
            hits = self.store.search_events(rooms, tsquery, keys=criteria.keys, order_by=criteria.order_by,
                                            after=cursor, limit=batch_size, **sql_filter)
            visible = self._visible_ids(user_id, hits, accesses)
            for i, hit in enumerate(hits):
                cursor = _hit_position(hit, criteria.order_by)
                if hit.event_id in visible:
                    found.append((hit, accesses[hit.room_id]))
                    if len(found) == limit:
                        return found, cursor, i < len(hits) - 1 or len(hits) == batch_size
            if len(hits) < batch_size:
                return found, cursor, False
        return found, cursor, True

    def _visible_ids(self, user_id: str, hits, accesses: dict) -> set[str]:
        stored = self.events.get_events([hit.event_id for hit in hits])
        by_room: dict[str, list] = {}
        for hit in hits:
            if hit.event_id in stored:
                by_room.setdefault(hit.room_id, []).append(stored[hit.event_id])
        visible = set()
        for room_id, items in by_room.items():
            if room_id not in accesses:
                try:
                    accesses[room_id] = self.reads.access(user_id, room_id)
                except MatrixError:
                    accesses[room_id] = None  # left and forgotten, or gone, since the room list was read
            access = accesses[room_id]
            if access is not None:
                visible.update(s.event.event_id for s in self.reads.visible(user_id, items, access))
        return visible

    def _serialize(self, requester, pairs) -> dict[str, dict]:
        by_room: dict[str, list] = {}
        for hit, stored in pairs:
            by_room.setdefault(hit.room_id, []).append(stored)
        out = {}
        for room_id, items in by_room.items():
            for stored, event in zip(items, self.reads.serialize(items, room_id, requester), strict=True):
                out[stored.event.event_id] = event
        return out

    def _context(self, requester, hit, stored, access, criteria: RoomEventsCriteria) -> dict:
        user_id = requester.user_id
        room_id = hit.room_id
        f = criteria.event_filter
        args = {"types": f.types, "not_types": f.not_types or None, "senders": f.senders,
                "not_senders": f.not_senders or None, "contains_url": f.contains_url}
        position = (stored.topological_ordering, stored.stream_ordering)
        before = self.events.get_room_events_page(room_id, from_pos=position, to_pos=None, backwards=True,
                                                  limit=criteria.before_limit, **args) if criteria.before_limit else []
        after = self.events.get_room_events_page(room_id, from_pos=position, to_pos=None, backwards=False,
                                                 limit=criteria.after_limit, **args) if criteria.after_limit else []
        if access.until is not None:
            after = [s for s in after if (s.topological_ordering, s.stream_ordering) <= access.until]
        before = self.reads.visible(user_id, before, access)
        after = self.reads.visible(user_id, after, access)
        start = before[-1] if before else stored
        end = after[-1] if after else stored
        context = {"events_before": self.reads.serialize(before, room_id, requester),
                   "events_after": self.reads.serialize(after, room_id, requester),
                   "start": pagination_token((start.topological_ordering, start.stream_ordering)),
                   "end": pagination_token((end.topological_ordering, end.stream_ordering))}
        if criteria.include_profile:
            context["profile_info"] = self._profiles(room_id, [stored, *before, *after], end)
        return context

    def _profiles(self, room_id: str, shown, last) -> dict:
        """The senders' display names and avatars as the room knew them at the last event shown
        (the spec's "historic profile information")."""
        state_ids = self.state.get_state_ids_after_event(last.event.event_id)
        senders = dict.fromkeys(s.event.sender for s in shown)
        member_ids = {u: state_ids[("m.room.member", u)] for u in senders if ("m.room.member", u) in state_ids}
        found = self.events.get_events(member_ids.values())
        profiles = {}
        for user_id, event_id in member_ids.items():
            member = found.get(event_id)
            if member is None:
                continue
            content = member.event.content
            if member.redacted_by:
                content = prune_event_dict(member.event.room_version, member.event.pdu).get("content", {})
            profiles[user_id] = {k: content[k] for k in ("displayname", "avatar_url")
                                 if isinstance(content.get(k), str)}
        return profiles

    @staticmethod
    def _groups(found, criteria: RoomEventsCriteria, cursor) -> dict:
        groups = {}
        for key in criteria.group_by:
            by_value: dict[str, dict] = {}
            for hit, _ in found:
                value = hit.room_id if key == "room_id" else hit.sender
                entry = by_value.get(value)
                if entry is None:
                    entry = by_value[value] = {"results": [], "order": len(by_value) + 1}
                    if cursor is not None:
                        entry["next_batch"] = encode_batch(criteria.order_by, cursor, (key, value))
                entry["results"].append(hit.event_id)
            groups[key] = by_value
        return groups

    # --- GET /timestamp_to_event -------------------------------------------------------------------

    def event_at_timestamp(self, requester, room_id: str, ts: int, direction: str) -> dict:
        """The visible event closest to `ts`: the first at or after it (direction "f") or the
        last at or before it ("b")."""
        user_id = requester.user_id
        access = self.reads.access(user_id, room_id)
        forwards = direction == "f"
        upto = access.until[1] if access.until is not None else None
        cursor = None
        for _ in range(TIMESTAMP_ROUNDS):
            rows = self.store.event_ids_near_timestamp(room_id, ts, forwards, after=cursor, upto_stream=upto,
                                                       limit=TIMESTAMP_BATCH)
            stored = self.events.get_events([row[0] for row in rows])
            candidates = [stored[row[0]] for row in rows if row[0] in stored]
            visible = self.reads.visible(user_id, candidates, access)
            if visible:
                first = visible[0].event
                return {"event_id": first.event_id, "origin_server_ts": first.origin_server_ts}
            if len(rows) < TIMESTAMP_BATCH:
                break
            cursor = (rows[-1][1], rows[-1][2])
        word = "forward" if forwards else "backward"
        raise MatrixError(404, Codes.NOT_FOUND, f"Unable to find event from {ts} in {word} direction")


def _highlights(lexemes: list[str], shown) -> list[str]:
    """The query's words, and the words of the results they matched as prefixes ("hel" also
    highlights "hello"), so a client can mark what was found."""
    words = set(lexemes)
    for stored in shown:
        content = stored.event.content
        for field in ("body", "name", "topic"):
            text = content.get(field)
            if isinstance(text, str):
                for word in _WORD.findall(text.lower()):
                    if any(word.startswith(lexeme) for lexeme in lexemes):
                        words.add(word)
    return sorted(words)

