"""What other servers read from us: events, the state at an event, auth chains, history
(/backfill, /get_missing_events), /timestamp_to_event, and the directory and profile queries;
and the room's server ACL, which every room-scoped request (and every inbound PDU) passes.

Who may read what (as Synapse): the room-scoped reads need a user of the asking server joined
to the room now; the events served are then filtered per event by history visibility
(`visible_to_server`): one the server may not see is served redacted, so the graph stays whole.
Rejected events are never served (they are not in `events`); outliers are served by /event
and as state and auth chains, but history walks (/backfill) stay in the timeline, and there is
no state to serve at an outlier.
"""

import heapq

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.events.redaction import prune_event_dict
from hs.events.server_acl import server_allowed_by_acl
from hs.events.visibility import visible_to_server
from hs.federation.http_client import FederationHttpError, FederationRequestError
from hs.federation.server_name import server_name_of
from hs.handlers.federation_membership import federation_pdu

MAX_BACKFILL = 100  # what Synapse serves and asks for at most
MAX_MISSING = 20
ACL_KEY = ("m.room.server_acl", "")
HISTORY_KEY = ("m.room.history_visibility", "")


class FederationServing:
    def __init__(self, config, rooms, events, state, fed_store, read_store, accounts, client):
        self.server_name = config.server_name
        self.allow_profile_lookup = config.allow_profile_lookup_over_federation
        self.rooms = rooms
        self.events = events
        self.state = state
        self.fed_store = fed_store
        self.read_store = read_store
        self.accounts = accounts
        self.client = client

    # --- access -------------------------------------------------------------------------------

    def server_allowed(self, origin: str, room_id: str) -> bool:
        """Whether the room's current m.room.server_acl lets `origin` in (no ACL: yes)."""
        acl_id = self.state.get_current_state_ids(room_id, [ACL_KEY]).get(ACL_KEY)
        acl = self.events.get_event(acl_id) if acl_id is not None else None
        return acl is None or server_allowed_by_acl(origin, acl.event.content)

    def _check_acl(self, origin: str, room_id: str) -> None:
        if not self.server_allowed(origin, room_id):
            raise MatrixError(403, Codes.FORBIDDEN, "Server ACL denies your server")

    def _require_in_room(self, origin: str, room_id: str) -> None:
        """A user of the origin must be joined to the room now (Synapse's assert_host_in_room)."""
        if self.rooms.get_room(room_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        if origin not in self.rooms.get_joined_servers(room_id):
            raise MatrixError(403, Codes.FORBIDDEN, f"{origin} is not in the room")

    def _event_in_room(self, room_id: str, event_id: str):
        stored = self.events.get_event(event_id)
        if stored is None or (stored.event.room_id_in_any_version != room_id):
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown event")
        return stored

    def _for_server(self, origin: str, room_id: str, stored: list) -> list[dict]:
        """The PDUs of `stored`, each redacted unless history visibility lets the origin see it
        (at the state after the event, as Synapse judges it: the server's own join shows).
        Outliers have no state here and are served as they are."""
        groups = self.state.get_state_groups_for_events([s.event.event_id for s in stored])
        users = self.read_store.get_user_ids_of_server(room_id, origin)
        keys = [HISTORY_KEY, *(("m.room.member", u) for u in users)]
        entries = self.state.get_state_entries(list(set(groups.values())), keys)
        cited = self.events.get_events({e for state in entries.values() for e in state.values()})
        pdus = []
        for s in stored:
            pdu = federation_pdu(s)
            group = groups.get(s.event.event_id)
            if group is not None and not self._visible(entries[group], cited):
                pdu = prune_event_dict(s.event.room_version, pdu)
            pdus.append(pdu)
        return pdus

    @staticmethod
    def _visible(state: dict, cited: dict) -> bool:
        # Redaction keeps history_visibility and membership in every room version.
        history = cited.get(state.get(HISTORY_KEY))
        value = history.event.content.get("history_visibility") if history is not None else None
        memberships = [cited[e].event.membership for key, e in state.items()
                       if key[0] == "m.room.member" and e in cited]
        return visible_to_server(value if isinstance(value, str) else None, memberships)

    # --- room reads ---------------------------------------------------------------------------

    def get_event(self, origin: str, event_id: str) -> dict:
        stored = self.events.get_event(event_id)
        if stored is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown event")
        room_id = stored.event.room_id_in_any_version
        self._check_acl(origin, room_id)
        self._require_in_room(origin, room_id)
        return {"origin": self.server_name, "origin_server_ts": now_ms(),
                "pdus": self._for_server(origin, room_id, [stored])}

    def state_ids_before(self, room_id: str, event_id: str) -> tuple[list, list]:
        """(state event IDs before the event, their auth chain's IDs): "the state of the room
        at the event", which Synapse reads as the state before it, as the asker needs to check
        the event itself. 404 at an outlier, whose state we do not hold."""
        stored = self._event_in_room(room_id, event_id)
        if self.fed_store.get_known([event_id]).get(event_id) != "timeline":
            raise MatrixError(404, Codes.NOT_FOUND, f"State not known at event {event_id}")
        state = dict(self.state.get_state_ids_after_event(event_id))
        event = stored.event
        if event.is_state() and state.get(event.state_key_tuple) == event_id:
            if stored.replaces_state:
                state[event.state_key_tuple] = stored.replaces_state
            else:
                del state[event.state_key_tuple]
        ids = list(state.values())
        return ids, self._auth_chain(stored, ids)

    def _auth_chain(self, stored, event_ids: list) -> list[str]:
        """The auth chain of `event_ids` (events of `stored`'s room). From room version 12 the
        create event is every other event's implicit auth event, cited nowhere: Synapse counts
        it in, and a server checking what we serve needs it."""
        chain = self.fed_store.get_auth_chain_ids(event_ids)
        event = stored.event
        if event.room_version.room_id_from_create_event and event_ids:
            create_id = "$" + event.room_id_in_any_version[1:]
            if event_ids != [create_id]:
                chain.add(create_id)
        return sorted(chain)

    def get_state_ids(self, origin: str, room_id: str, event_id: str) -> dict:
        self._check_acl(origin, room_id)
        self._require_in_room(origin, room_id)
        ids, chain = self.state_ids_before(room_id, event_id)
        return {"pdu_ids": ids, "auth_chain_ids": chain}

    def get_state(self, origin: str, room_id: str, event_id: str) -> dict:
        self._check_acl(origin, room_id)
        self._require_in_room(origin, room_id)
        ids, chain = self.state_ids_before(room_id, event_id)
        loaded = self.events.get_events([*ids, *chain])
        return {"pdus": [federation_pdu(loaded[i]) for i in ids if i in loaded],
                "auth_chain": [federation_pdu(loaded[i]) for i in chain if i in loaded]}

    def get_event_auth(self, origin: str, room_id: str, event_id: str) -> dict:
        self._check_acl(origin, room_id)
        self._require_in_room(origin, room_id)
        stored = self._event_in_room(room_id, event_id)
        chain = self._auth_chain(stored, [event_id])
        loaded = self.events.get_events(chain)
        return {"auth_chain": [federation_pdu(loaded[i]) for i in chain if i in loaded]}

    def backfill(self, origin: str, room_id: str, from_ids: list, limit: int) -> dict:
        """From `from_ids` (included) back through prev_events, always the deepest event known
        next (newest first, ties by stream order), as Synapse walks it: at most `limit` (≤ 100)
        timeline events."""
        self._check_acl(origin, room_id)
        self._require_in_room(origin, room_id)
        limit = max(1, min(limit, MAX_BACKFILL))
        queue = [(-depth, -stream, event_id)
                 for event_id, (depth, stream) in self.read_store.get_timeline_positions(room_id, from_ids).items()]
        heapq.heapify(queue)
        found: dict[str, None] = {}
        while queue and len(found) < limit:
            _, _, event_id = heapq.heappop(queue)
            if event_id in found:
                continue
            found[event_id] = None
            for prev_id, depth, stream in self.read_store.get_timeline_prev_events(room_id, event_id,
                                                                                   limit - len(found)):
                if prev_id not in found:
                    heapq.heappush(queue, (-depth, -stream, prev_id))
        loaded = self.events.get_events(found)
        return {"origin": self.server_name, "origin_server_ts": now_ms(),
                "pdus": self._for_server(origin, room_id, [loaded[e] for e in found if e in loaded])}

    def get_missing_events(self, origin: str, room_id: str, earliest: list, latest: list, limit: int,
                           min_depth: int) -> dict:
        """The events between `earliest` and `latest` (neither included), breadth-first back
        from `latest`, none below `min_depth`, at most `limit` (≤ 20), oldest first."""
        self._check_acl(origin, room_id)
        self._require_in_room(origin, room_id)
        limit = max(1, min(limit, MAX_MISSING))
        seen = set(earliest) | set(latest)
        frontier = [p for s in self.events.get_events(latest).values()
                    if s.event.room_id_in_any_version == room_id for p in s.event.prev_event_ids]
        found = []
        while frontier and len(found) < limit:
            frontier = [e for e in dict.fromkeys(frontier) if e not in seen]
            seen.update(frontier)
            loaded = [s for s in self.events.get_events(frontier).values()
                      if s.event.room_id_in_any_version == room_id and s.event.depth >= min_depth]
            found.extend(loaded[:limit - len(found)])
            frontier = [p for s in loaded for p in s.event.prev_event_ids]
        found.sort(key=lambda s: (s.event.depth, s.stream_ordering))
        return {"events": self._for_server(origin, room_id, found)}

    def timestamp_to_event(self, origin: str, room_id: str, ts: int, direction: str) -> dict:
        """The timeline event closest to `ts` (Synapse answers any server the ACL lets in:
        an event ID and a time say nothing of the content)."""
        self._check_acl(origin, room_id)
        event_id = self.read_store.get_event_id_near_timestamp(room_id, ts, direction == "f")
        stored = self.events.get_event(event_id) if event_id is not None else None
        if stored is None:
            word = "forward" if direction == "f" else "backward"
            raise MatrixError(404, Codes.NOT_FOUND, f"Unable to find event from {ts} in {word} direction")
        return {"event_id": event_id, "origin_server_ts": stored.event.origin_server_ts}

    # --- queries ------------------------------------------------------------------------------

    def query_directory(self, alias: str) -> dict:
        found = self.rooms.get_alias(alias) if isinstance(alias, str) else None
        if found is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Room alias not found")
        room_id = found[0]
        servers = [self.server_name, *(s for s in self.rooms.get_joined_servers(room_id) if s != self.server_name)]
        return {"room_id": room_id, "servers": servers}

    def query_profile(self, user_id, field) -> dict:
        if not self.allow_profile_lookup:
            raise MatrixError(403, Codes.FORBIDDEN, "Profile lookup over federation is disabled")
        try:
            local = server_name_of(user_id) == self.server_name
        except ValueError:
            raise MatrixError(400, Codes.INVALID_PARAM, "user_id is not a user ID") from None
        if not local:
            raise MatrixError(400, Codes.INVALID_PARAM, "Not a user of this server")
        user = self.accounts.get_user(user_id)
        if user is None or user.deactivated:
            raise MatrixError(404, Codes.NOT_FOUND, "Profile was not found")
        profile = {k: v for k, v in (self.accounts.get_profile(user_id) or {}).items()
                   if k in ("displayname", "avatar_url")}
        if field is not None:
            return {field: profile[field]} if field in profile else {}
        return profile

    # --- asking other servers -----------------------------------------------------------------

    def _query(self, server: str, query_type: str, args: dict, not_found: str) -> dict:
        """A /query of another server. Every failure is a 404 naming the reason: the spec gives
        the client endpoints asking these (alias lookups, joins, profiles) no 5xx, and the
        client's request was fine (Synapse answers 502)."""
        try:
            body = self.client.get_json(server, f"/_matrix/federation/v1/query/{query_type}", args)
        except FederationHttpError as e:
            if e.status == 404:
                raise MatrixError(404, Codes.NOT_FOUND, not_found) from None
            raise MatrixError(404, Codes.NOT_FOUND, f"{server} could not answer ({e.status})") from None
        except FederationRequestError as e:
            raise MatrixError(404, Codes.NOT_FOUND, f"Could not reach {server}: {e}") from None
        if not isinstance(body, dict):
            raise MatrixError(404, Codes.NOT_FOUND, f"{server} answered the {query_type} query badly")
        return body

    def lookup_remote_alias(self, alias: str) -> tuple[str, list]:
        """(room_id, servers), from the alias's server."""
        server = server_name_of(alias)
        body = self._query(server, "directory", {"room_alias": alias}, "Room alias not found")
        room_id, servers = body.get("room_id"), body.get("servers")
        if not isinstance(room_id, str) or not isinstance(servers, list):
            raise MatrixError(404, Codes.NOT_FOUND, f"{server} answered the directory query badly")
        # The alias's server first: it just answered, so it is up and in the room.
        return room_id, list(dict.fromkeys([server, *(s for s in servers if isinstance(s, str))]))

    def remote_profile(self, user_id: str) -> dict:
        body = self._query(server_name_of(user_id), "profile", {"user_id": user_id}, "Profile was not found")
        return {k: v for k, v in body.items() if k in ("displayname", "avatar_url") and isinstance(v, str)}
