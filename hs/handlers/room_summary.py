"""Room summaries (GET /room_summary, MSC3266) and the space hierarchy (GET /rooms/{roomId}/hierarchy),
and the summary fields the public room list shares with them.

A room no user of ours is in is asked of other servers (the `via` of the m.space.child event
naming it, or of the request), by hs/handlers/federation_directory.py.
"""

import re
import secrets
from dataclasses import dataclass, field

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.events.redaction import prune_event_dict
from hs.events.room_versions import get_room_version

# The state a summary reads, all with an empty state key.
SUMMARY_STATE_TYPES = ("m.room.create", "m.room.name", "m.room.topic", "m.room.canonical_alias", "m.room.avatar",
                       "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access",
                       "m.room.encryption")
SPACE_CHILD = "m.space.child"
SPACE_ROOM_TYPE = "m.space"

# As Synapse: at most this many rooms a page, and a walk can be resumed for a few minutes.
MAX_HIERARCHY_PAGE = 50
HIERARCHY_SESSION_MS = 5 * 60 * 1000
# Rooms whose state is loaded together while walking a hierarchy.
_BATCH = 50
_INVALID_ORDER = re.compile(r"[^\x20-\x7E]")


@dataclass
class RoomData:
    """What this server knows of one room's current state, as a summary needs it."""
    room_id: str
    room_version: str
    joined_members: int
    # event type -> content, for SUMMARY_STATE_TYPES (redacted events as redaction leaves them).
    contents: dict = field(default_factory=dict)
    # The raw create event content: the room type is fixed at creation.
    create_content: dict = field(default_factory=dict)
    membership: str | None = None  # the requester's
    # The m.space.child events (stored events), whatever their content.
    children: list = field(default_factory=list)

    def value(self, event_type: str, key: str):
        return self.contents.get(event_type, {}).get(key)

    @property
    def join_rule(self) -> str | None:
        rule = self.value("m.room.join_rules", "join_rule")
        return rule if isinstance(rule, str) else None

    @property
    def room_type(self) -> str | None:
        room_type = self.create_content.get("type")
        return room_type if isinstance(room_type, str) else None

    def allowed_room_ids(self) -> list[str]:
        """The rooms a restricted room's join rules let members of join from."""
        if self.join_rule not in ("restricted", "knock_restricted"):
            return []
        allow = self.value("m.room.join_rules", "allow")
        if not isinstance(allow, list):
            return []
        return [a["room_id"] for a in allow if isinstance(a, dict) and a.get("type") == "m.room_membership"
                and isinstance(a.get("room_id"), str)]


def _non_empty_str(value) -> str | None:
    return value if isinstance(value, str) and value else None


def plain_text_topic(content: dict) -> str | None:
    """The topic in plain text: `topic`, else the text/plain representation in `m.topic`."""
    topic = _non_empty_str(content.get("topic"))
    if topic is not None:
        return topic
    block = content.get("m.topic")
    texts = block.get("m.text") if isinstance(block, dict) else None
    if isinstance(texts, list):
        for text in texts:
            if isinstance(text, dict) and text.get("mimetype", "text/plain") == "text/plain":
                body = _non_empty_str(text.get("body"))
                if body is not None:
                    return body
    return None


def published_room_fields(data: RoomData) -> dict:
    """The PublishedRoomsChunk of a room (the public room list shows these); empty values are
    left out rather than sent as null."""
    entry = {"room_id": data.room_id, "num_joined_members": data.joined_members,
             "world_readable": data.value("m.room.history_visibility", "history_visibility") == "world_readable",
             "guest_can_join": data.value("m.room.guest_access", "guest_access") == "can_join"}
    optional = {
        "name": _non_empty_str(data.value("m.room.name", "name")),
        "topic": plain_text_topic(data.contents.get("m.room.topic", {})),
        "avatar_url": _non_empty_str(data.value("m.room.avatar", "url")),
        "join_rule": data.join_rule,
        "room_type": data.room_type,
    }
    alias = _non_empty_str(data.value("m.room.canonical_alias", "alias"))
    if alias is not None and alias.startswith("#"):
        optional["canonical_alias"] = alias
    entry.update({k: v for k, v in optional.items() if v is not None})
    return entry


def summary_fields(data: RoomData) -> dict:
    """The RoomSummary of a room: the published fields plus version, encryption and, for a
    restricted room, the rooms whose members may join."""
    entry = published_room_fields(data)
    entry["room_version"] = data.room_version
    algorithm = _non_empty_str(data.value("m.room.encryption", "algorithm"))
    if algorithm is not None:
        entry["encryption"] = algorithm
    allowed = data.allowed_room_ids()
    if allowed:
        entry["allowed_room_ids"] = allowed
    return entry


def child_state(stored) -> dict:
    """An m.space.child event as /hierarchy shows it: stripped, with its origin_server_ts."""
    event = stored.event
    return {"type": event.type, "state_key": event.state_key, "content": event.content, "sender": event.sender,
            "origin_server_ts": event.origin_server_ts}


def event_content(stored) -> dict:
    """An event's content as its redaction, if any, left it."""
    if stored.redacted_by:
        return prune_event_dict(stored.event.room_version, stored.event.pdu).get("content", {})
    return stored.event.content


class RoomSummaryHandler:
    def __init__(self, rooms, events, directory_store):
        self.rooms = rooms
        self.events = events
        self.store = directory_store
        # Set by hs/server.py: other servers' rooms (hs/handlers/federation_directory.py).
        self.federation = None

    # --- loading -------------------------------------------------------------------------------

    def load(self, room_ids: list[str], user_id: str | None = None, *,
             with_children: bool = False) -> dict[str, RoomData]:
        """RoomData of the rooms this server has, from a handful of queries for all of them."""
        room_ids = list(dict.fromkeys(room_ids))
        info = self.store.get_rooms_info(room_ids)
        known = [r for r in room_ids if r in info]
        state = self.store.get_current_state_ids_for_rooms(known, list(SUMMARY_STATE_TYPES), member=user_id,
                                                           child_type=SPACE_CHILD if with_children else None)
        loaded = self.events.get_events([eid for ids in state.values() for eid in ids.values()])
        result = {}
        for room_id in known:
            room_version, joined = info[room_id]
            data = RoomData(room_id, room_version, joined)
            for (event_type, _), event_id in state[room_id].items():
                stored = loaded.get(event_id)
                if stored is None:
                    continue
                if event_type == SPACE_CHILD:
                    data.children.append(stored)
                elif event_type == "m.room.member":
                    data.membership = event_content(stored).get("membership")
                else:
                    data.contents[event_type] = event_content(stored)
                    if event_type == "m.room.create":
                        data.create_content = stored.event.content
            result[room_id] = data
        return result

    # --- who may see a room ------------------------------------------------------------------

    def is_accessible(self, data: RoomData, user_id: str | None, user_rooms) -> bool:
        """Whether the user may see the room's summary (client-server API, "Spaces": joined,
        invited, free to join or knock, a member of a room a restricted room allows, or the
        room is world readable). `user_rooms` gives the user's joined rooms, when asked."""
        version = get_room_version(data.room_version)
        rule = data.join_rule
        if (rule == "public" or (rule == "knock" and version is not None and version.knocking)
                or (rule == "knock_restricted" and version is not None and version.knock_restricted_join_rule)):
            return True
        if data.value("m.room.history_visibility", "history_visibility") == "world_readable":
            return True
        if user_id is None:
            return False
        if data.membership in ("join", "invite"):
            return True
        if rule in ("restricted", "knock_restricted") and version is not None and version.restricted_join_rule:
            allowed = data.allowed_room_ids()
            return bool(allowed) and any(r in user_rooms() for r in allowed)
        return False

    def _user_rooms(self, user_id: str | None):
        """A function giving the user's joined rooms, read once and only if needed."""
        cache = []

        def get() -> set[str]:
            if not cache:
                cache.append(set(self.rooms.get_rooms_for_user(user_id)) if user_id else set())
            return cache[0]
        return get

    # --- GET /room_summary ---------------------------------------------------------------------

    def get_summary(self, requester, room_id_or_alias: str, via=()) -> dict:
        user_id = requester.user_id if requester is not None else None
        room_id, via = self._resolve(room_id_or_alias, list(via))
        data = self.load([room_id], user_id).get(room_id)
        if self.federation is not None and (data is None or self.federation.is_remote(room_id)):
            # What we know of a room we are not in may be stale: the `via` servers are asked first.
            summary = self.federation.remote_summary(user_id, room_id, via, self._user_rooms(user_id))
            if summary is not None:
                return summary
        if data is None or not self.is_accessible(data, user_id, self._user_rooms(user_id)):
            raise MatrixError(404, Codes.NOT_FOUND, "Room not found or is not accessible")
        summary = summary_fields(data)
        if user_id is not None:
            summary["membership"] = data.membership or "leave"
        return summary

    def _resolve(self, room_id_or_alias: str, via: list) -> tuple[str, list]:
        """(room ID, servers to ask about it): another server's alias names some."""
        if room_id_or_alias.startswith("#"):
            found = self.rooms.get_alias(room_id_or_alias)
            if found is None and self.federation is not None:
                room_id, servers = self.federation.resolve_alias(room_id_or_alias)
                return room_id, [*via, *servers]
            if found is None:
                raise MatrixError(404, Codes.NOT_FOUND, "Room alias not found")
            return found[0], via
        if not room_id_or_alias.startswith("!") or len(room_id_or_alias) < 2:
            raise MatrixError(400, Codes.INVALID_PARAM, f"{room_id_or_alias!r} is not a room ID or alias")
        return room_id_or_alias, via

    # --- GET /rooms/{roomId}/hierarchy ---------------------------------------------------------

    def get_hierarchy(self, requester, room_id: str, *, suggested_only: bool, max_depth: int | None,
                      limit: int | None, from_token: str | None) -> dict:
        """A depth-first walk of the space tree from `room_id`, one page at a time, as Synapse
        walks it: rooms the user may not see are left out (with their children), and each room
        appears once however many spaces list it."""
        user_id = requester.user_id
        user_rooms = self._user_rooms(user_id)
        root = self.load([room_id], user_id, with_children=True).get(room_id)
        if root is None or not self.is_accessible(root, user_id, user_rooms):
            raise MatrixError(403, Codes.FORBIDDEN, "You may not view this room, or it is not known to this server")
        loaded: dict[str, RoomData | None] = {room_id: root}
        if from_token is not None:
            session = self.store.get_hierarchy_session(from_token, now_ms() - HIERARCHY_SESSION_MS)
            if (session is None or session["user_id"] != user_id or session["room_id"] != room_id
                    or session["suggested_only"] != suggested_only or session["max_depth"] != max_depth):
                raise MatrixError(400, Codes.INVALID_PARAM, "Unknown pagination token, or suggested_only or "
                                                            "max_depth changed during pagination")
            queue = [tuple(entry) for entry in session["room_queue"]]
            processed = set(session["processed_rooms"])
        else:
            queue = [(room_id, [], 0)]
            processed = set()
        limit = MAX_HIERARCHY_PAGE if limit is None else min(limit, MAX_HIERARCHY_PAGE)

        rooms = []
        while queue and len(rooms) < limit:
            # The summary the parent's server gave, if any, is the fourth item.
            child_id, via, depth, *known = queue.pop()
            if child_id in processed:
                continue
            processed.add(child_id)
            if child_id not in loaded:
                # The next rooms of the walk are on top of the stack: load them together.
                upcoming = [r for r, *_ in reversed(queue) if r not in loaded and r not in processed]
                wanted = list(dict.fromkeys([child_id, *upcoming]))[:_BATCH]
                found = self.load(wanted, user_id, with_children=True)
                loaded.update((r, found.get(r)) for r in wanted)
            data = loaded.pop(child_id)
            found = None
            if self.federation is not None and (data is None or self.federation.is_remote(child_id)):
                # A room we are not in, as the `via` servers describe it; None if none answered.
                found = self.federation.hierarchy_entry(user_id, child_id, via, suggested_only,
                                                        known[0] if known else None,
                                                        max_depth is not None and depth >= max_depth, user_rooms)
            if found is None and data is not None and self.is_accessible(data, user_id, user_rooms):
                entry = summary_fields(data)
                entry["children_state"] = [child_state(c) for c in self.space_children(data, suggested_only)]
                found = entry, {}, set()
            if found is None or found[0] is None:
                continue  # unknown, or the user may not see it
            entry, child_summaries, skipped = found
            rooms.append(entry)
            if max_depth is None or depth < max_depth:
                # Pushed in reverse so that the first child is visited next.
                queue.extend((c["state_key"], c["content"]["via"], depth + 1, child_summaries.get(c["state_key"]))
                             for c in reversed(entry["children_state"])
                             if c["type"] == SPACE_CHILD and c["state_key"] not in skipped)

        result = {"rooms": rooms}
        if queue:
            token = secrets.token_urlsafe(16)
            now = now_ms()
            self.store.save_hierarchy_session(token, user_id, room_id, suggested_only, max_depth,
                                              [list(entry) for entry in queue], sorted(processed),
                                              now, now - HIERARCHY_SESSION_MS)
            result["next_batch"] = token
        return result

    @staticmethod
    def space_children(data: RoomData, suggested_only: bool) -> list:
        """The room's children in the spec's order ("Ordering of children within a space"):
        by `order`, then by the m.space.child event's origin_server_ts, then by room ID. Only
        a space has children; a child without a valid `via` is not one."""
        if data.room_type != SPACE_ROOM_TYPE:
            return []
        children = []
        for stored in data.children:
            if stored.redacted_by:
                continue
            content = stored.event.content
            via = content.get("via")
            if not isinstance(via, list) or not via or not all(isinstance(v, str) for v in via):
                continue
            if suggested_only and content.get("suggested") is not True:
                continue
            children.append(stored)

        def key(stored):
            order = stored.event.content.get("order")
            if not isinstance(order, str) or len(order) > 50 or _INVALID_ORDER.search(order):
                order = None
            return order is None, order or "", stored.event.origin_server_ts, stored.event.state_key
        return sorted(children, key=key)
