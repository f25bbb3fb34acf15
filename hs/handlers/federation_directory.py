"""Room directories and spaces across servers: our public room list and space hierarchies
served to other servers (/_matrix/federation/v1/publicRooms and /hierarchy/{roomId}), and theirs
asked for our clients (/publicRooms?server=, /hierarchy walking into rooms we are not in,
/room_summary of such a room).

As Synapse: our list is served only with allow_public_rooms_over_federation; a hierarchy shows
another server the rooms one of its users could see or join; a room we are not in is asked of
(at most three of) the servers in the `via` of the m.space.child event that names it, and the
answer is checked before use. A failure to get an answer is never a 5xx to our client: its
request was fine, so it gets the 4xx its endpoint documents.
"""

import logging
from dataclasses import dataclass

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.events.room_versions import get_room_version
from hs.federation.http_client import FederationDenied, FederationHttpError, FederationRequestError
from hs.federation.server_name import quote_path_segment
from hs.handlers.directory import parse_room_alias
from hs.handlers.room_summary import SPACE_ROOM_TYPE, child_state, summary_fields

logger = logging.getLogger(__name__)

PUBLIC_ROOMS_PATH = "/_matrix/federation/v1/publicRooms"
# As Synapse: servers asked for one room, and children summarised in one answer.
MAX_SERVERS_PER_SPACE = 3
MAX_ROOMS_PER_SPACE = 50
# The spec asks that hierarchy answers be cached "for a period of time"; Synapse keeps them 5 minutes.
HIERARCHY_CACHE_MS = 5 * 60 * 1000
_HIERARCHY_CACHE_SIZE = 1000
# Join rules under which anyone may at least ask to join (so a summary may be shown).
_OPEN_RULES = ("public", "knock", "knock_restricted")


@dataclass
class RemoteRoom:
    """A room as another server's /hierarchy described it."""
    room: dict  # its summary, without children_state
    children_state: list[dict]  # stripped m.space.child events (and whatever else it sent)
    children: dict[str, dict]  # child room ID -> summary, for the children that server has
    inaccessible: set[str]  # children no user of ours could see or join: not worth asking about


def parse_hierarchy_answer(room_id: str, answer) -> RemoteRoom:
    """The checked answer to GET /hierarchy/{room_id}; ValueError when it is not one (as
    Synapse, one bad child event spoils the whole answer)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("room"), dict):
        raise ValueError("'room' must be an object")
    room = dict(answer["room"])
    if room.get("room_id") != room_id:
        raise ValueError("wrong room returned in hierarchy response")
    children_state = room.pop("children_state", [])
    if not isinstance(children_state, list):
        raise ValueError("'room.children_state' must be a list")
    for event in children_state:
        content = event.get("content") if isinstance(event, dict) else None
        if (not isinstance(event, dict) or not isinstance(event.get("type"), str)
                or not isinstance(event.get("state_key"), str) or not isinstance(content, dict)
                or not isinstance(content.get("via"), list) or not all(isinstance(v, str) for v in content["via"])):
            raise ValueError("invalid event in 'children_state'")
    children = answer.get("children", [])
    inaccessible = answer.get("inaccessible_children", [])
    if not isinstance(children, list) or not all(isinstance(c, dict) for c in children):
        raise ValueError("'children' must be a list of objects")
    if not isinstance(inaccessible, list) or not all(isinstance(r, str) for r in inaccessible):
        raise ValueError("'inaccessible_children' must be a list of room IDs")
    return RemoteRoom(room, children_state, {c["room_id"]: c for c in children if isinstance(c.get("room_id"), str)},
                      set(inaccessible))


def matches_search_term(entry: dict, term: str) -> bool:
    """Synapse's filter of a list the other server would not filter: the term in the name,
    topic or canonical alias, case-insensitively."""
    term = term.upper()
    return any(isinstance(entry.get(key), str) and term in entry[key].upper()
               for key in ("name", "topic", "canonical_alias"))


class FederationDirectory:
    def __init__(self, config, rooms, summaries, directory, client):
        self.server_name = config.server_name
        self.allow_public_rooms = config.allow_public_rooms_over_federation
        self.rooms = rooms
        self.summaries = summaries
        self.directory = directory
        self.client = client
        # Set by hs/server.py: alias -> (room_id, servers), asked of the alias's server.
        self.lookup_remote_alias = None
        # (room ID, suggested_only) -> (fetched at, RemoteRoom): a walk asks again page after page.
        self._hierarchy_cache: dict[tuple[str, bool], tuple[int, RemoteRoom]] = {}

    # --- serving other servers ----------------------------------------------------------------

    def check_public_rooms_allowed(self, origin: str) -> None:
        if not self.allow_public_rooms:
            raise MatrixError(403, Codes.FORBIDDEN, f"Federation denied with {origin}.")

    def public_rooms(self, **query) -> dict:
        """Our public room list for another server (the client API's arguments, `server` aside)."""
        return self.directory.get_public_rooms(server=None, **query)

    def hierarchy(self, origin: str, room_id: str, suggested_only: bool) -> dict:
        """The room with its children's events, and the summaries of the children we are in: all
        that a user of `origin` could see or join (the asking server filters for its user)."""
        root = self.summaries.load([room_id], with_children=True).get(room_id)
        if root is None or not self._server_may_see(origin, root):
            raise MatrixError(404, Codes.NOT_FOUND, f"Unknown room: {room_id}")
        child_events = self.summaries.space_children(root, suggested_only)
        entry = summary_fields(root)
        entry["children_state"] = [child_state(c) for c in child_events]
        child_ids = [c.event.state_key for c in child_events[:MAX_ROOMS_PER_SPACE]]
        loaded = self.summaries.load(child_ids)
        children, inaccessible = [], []
        for child_id in child_ids:
            data = loaded.get(child_id)
            # A room we are not in is left for the asker to ask elsewhere.
            if data is None or self.is_remote(child_id):
                continue
            if self._server_may_see(origin, data):
                children.append(summary_fields(data))
            else:
                inaccessible.append(child_id)
        return {"room": entry, "children": children, "inaccessible_children": inaccessible}

    def _server_may_see(self, origin: str, data) -> bool:
        """Anyone may see it (free to join or knock, or world readable), or a user of `origin` is
        joined or invited, or is joined to a room whose members a restricted room lets in."""
        if self.summaries.is_accessible(data, None, set):
            return True
        if origin in self.rooms.get_servers_with_members(data.room_id, ("join", "invite")):
            return True
        version = get_room_version(data.room_version)
        if data.join_rule in ("restricted", "knock_restricted") and version is not None \
                and version.restricted_join_rule:
            return any(self.rooms.has_local_joined_member(r, origin) for r in data.allowed_room_ids())
        return False

    # --- other servers' public room lists -----------------------------------------------------

    def remote_public_rooms(self, server: str, *, limit: int | None, since: str | None,
                            search_term: str | None = None, room_types: list | None = None,
                            include_all_networks: bool = False, third_party_instance_id: str | None = None) -> dict:
        """`server`'s public room list. With a filter, POST it there (MSC2197); a server that does
        not know that endpoint gets a GET, and the first page it gives is filtered here (as Synapse)."""
        search_filter = {}
        if search_term:
            search_filter["generic_search_term"] = search_term
        if room_types is not None:
            search_filter["room_types"] = room_types
        if search_filter:
            body = {"include_all_networks": include_all_networks, "filter": search_filter}
            if third_party_instance_id is not None:
                body["third_party_instance_id"] = third_party_instance_id
            if limit:
                body["limit"] = limit
            if since:
                body["since"] = since
            try:
                return self._room_list(server, self.client.post_json(server, PUBLIC_ROOMS_PATH, body))
            except FederationHttpError as e:
                if e.status not in (404, 405) and e.errcode not in (Codes.UNRECOGNIZED, Codes.NOT_FOUND):
                    raise self._room_list_error(server, e) from None
            except FederationRequestError as e:
                raise self._room_list_error(server, e) from None
            limit = since = None
        args = {"include_all_networks": "true" if include_all_networks else "false"}
        if third_party_instance_id is not None:
            args["third_party_instance_id"] = third_party_instance_id
        if limit:
            args["limit"] = str(limit)
        if since:
            args["since"] = since
        try:
            result = self._room_list(server, self.client.get_json(server, PUBLIC_ROOMS_PATH, args))
        except FederationRequestError as e:
            raise self._room_list_error(server, e) from None
        if search_term:
            result = {"chunk": [r for r in result["chunk"] if matches_search_term(r, search_term)]}
        return result

    @staticmethod
    def _room_list(server: str, answer) -> dict:
        """The list as the client API gives it, keeping only well-formed rooms."""
        chunk = answer.get("chunk") if isinstance(answer, dict) else None
        if not isinstance(chunk, list):
            raise MatrixError(404, Codes.NOT_FOUND, f"{server} sent a room list that is not one")
        result = {"chunk": [r for r in chunk if isinstance(r, dict) and isinstance(r.get("room_id"), str)]}
        for key, kind in (("next_batch", str), ("prev_batch", str), ("total_room_count_estimate", int)):
            if isinstance(answer.get(key), kind) and not isinstance(answer[key], bool):
                result[key] = answer[key]
        return result

    @staticmethod
    def _room_list_error(server: str, error: FederationRequestError) -> MatrixError:
        # Synapse's 403 when the server refuses us; for anything else the spec gives this
        # endpoint no error, and 404 (what the client asked for is not to be had) beats a 502.
        if isinstance(error, FederationDenied) or (isinstance(error, FederationHttpError) and error.status == 403):
            return MatrixError(403, Codes.FORBIDDEN, f"You are not allowed to view the public rooms list of {server}")
        logger.info("could not get the public room list of %s: %s", server, error)
        return MatrixError(404, Codes.NOT_FOUND, f"Could not get the public room list of {server}")

    # --- other servers' rooms in spaces and summaries -----------------------------------------

    def is_remote(self, room_id: str) -> bool:
        """Whether the room is one to ask other servers about: no user of ours is in it."""
        return not self.rooms.has_local_joined_member(room_id, self.server_name)

    def remote_hierarchy(self, room_id: str, via, suggested_only: bool) -> RemoteRoom | None:
        """The room (and its children) from the first of the `via` servers that answers well."""
        key = (room_id, suggested_only)
        cached = self._hierarchy_cache.get(key)
        if cached is not None and cached[0] > now_ms() - HIERARCHY_CACHE_MS:
            return cached[1]
        servers = [s for s in list(dict.fromkeys(v for v in via if isinstance(v, str)))[:MAX_SERVERS_PER_SPACE]
                   if s != self.server_name]
        for server in servers:
            try:
                answer = self.client.get_json(server, f"/_matrix/federation/v1/hierarchy/{quote_path_segment(room_id)}",
                                              {"suggested_only": "true" if suggested_only else "false"})
                remote = parse_hierarchy_answer(room_id, answer)
            except (FederationRequestError, ValueError) as e:
                logger.info("no hierarchy of %s from %s: %s", room_id, server, e)
                continue
            if len(self._hierarchy_cache) >= _HIERARCHY_CACHE_SIZE:
                self._hierarchy_cache.clear()
            self._hierarchy_cache[key] = (now_ms(), remote)
            return remote
        return None

    def remote_accessible(self, user_id: str | None, room_id: str, room: dict, user_rooms) -> bool:
        """Whether the user may see a room another server summarised (Synapse's rules: the
        summary carries no room version, so every knock rule counts)."""
        if room.get("join_rule", "public") in _OPEN_RULES or room.get("world_readable") is True:
            return True
        if user_id is None:
            return False
        allowed = room.get("allowed_room_ids")
        if isinstance(allowed, list) and any(r in user_rooms() for r in allowed if isinstance(r, str)):
            return True
        # The user may be invited, or joined to a room our server has left.
        membership = self.rooms.get_membership(room_id, user_id)
        return membership is not None and membership[0] in ("join", "invite")

    def hierarchy_entry(self, user_id: str, room_id: str, via, suggested_only: bool, known: dict | None,
                        at_max_depth: bool, user_rooms):
        """For a walk: None when no server answered; else (the room's entry with its
        children_state, or None if the user may not see it; {child: summary} from the answer;
        children not to visit). A room its parent's answer described is not asked about again
        unless it is a space whose children the walk needs."""
        if known is not None and (known.get("room_type") != SPACE_ROOM_TYPE or at_max_depth):
            remote = RemoteRoom(known, [], {}, set())
        else:
            remote = self.remote_hierarchy(room_id, via, suggested_only)
            if remote is None:
                return None
        if not self.remote_accessible(user_id, room_id, remote.room, user_rooms):
            return None, {}, set()
        entry = dict(remote.room, children_state=remote.children_state)
        return entry, remote.children, remote.inaccessible

    def resolve_alias(self, alias: str) -> tuple[str, list]:
        """(room ID, servers in the room) of another server's alias; 404 if it is not to be had."""
        _, server_name = parse_room_alias(alias)
        if server_name == self.server_name or self.lookup_remote_alias is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Room alias not found")
        return self.lookup_remote_alias(alias)

    def remote_summary(self, user_id: str | None, room_id: str, via, user_rooms) -> dict | None:
        """GET /room_summary of a room we are not in, from the hierarchy of the `via` servers
        (as Synapse); None when none answered. 404 when the user may not see it."""
        remote = self.remote_hierarchy(room_id, via, suggested_only=True)
        if remote is None:
            return None
        if not self.remote_accessible(user_id, room_id, remote.room, user_rooms):
            raise MatrixError(404, Codes.NOT_FOUND, "Room not found or is not accessible")
        summary = dict(remote.room)
        if user_id is not None:
            membership = self.rooms.get_membership(room_id, user_id)
            summary["membership"] = membership[0] if membership is not None else "leave"
        return summary

