"""What other servers read from us: events, the state at an event, auth chains, history
(/backfill, /get_missing_events), and the directory and profile queries."""

from hs.errors import Codes, MatrixError
from hs.federation.http_client import FederationHttpError, FederationRequestError
from hs.federation.server_name import server_name_of
from hs.handlers.federation_membership import federation_pdu

MAX_BACKFILL = 100
MAX_MISSING = 20


class FederationServing:
    def __init__(self, config, rooms, events, state, fed_store, accounts, client):
        self.server_name = config.server_name
        self.allow_profile_lookup = config.allow_profile_lookup_over_federation
        self.rooms = rooms
        self.events = events
        self.state = state
        self.fed_store = fed_store
        self.accounts = accounts
        self.client = client

    # --- room reads ---------------------------------------------------------------------------

    def _require_in_room(self, origin: str, room_id: str) -> None:
        """The origin must share the room: a user of it joined (or invited or knocking, for the
        membership dances)."""
        if self.rooms.get_room(room_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        if origin not in self.rooms.get_servers_with_members(room_id, ("join", "invite", "knock")):
            raise MatrixError(403, Codes.FORBIDDEN, f"{origin} is not in the room")

    def _event_in_room(self, room_id: str, event_id: str):
        stored = self.events.get_event(event_id)
        if stored is None or (stored.event.room_id_in_any_version != room_id):
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown event")
        return stored

    def get_event(self, origin: str, event_id: str) -> dict:
        stored = self.events.get_event(event_id)
        if stored is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown event")
        self._require_in_room(origin, stored.event.room_id_in_any_version)
        return {"origin": self.server_name, "origin_server_ts": _now(), "pdus": [federation_pdu(stored)]}

    def state_ids_before(self, room_id: str, event_id: str) -> tuple[list, list]:
        """(state event IDs before the event, their auth chain's IDs)."""
        stored = self._event_in_room(room_id, event_id)
        state = dict(self.state.get_state_ids_after_event(event_id))
        event = stored.event
        if event.is_state() and state.get(event.state_key_tuple) == event_id:
            if stored.replaces_state:
                state[event.state_key_tuple] = stored.replaces_state
            else:
                del state[event.state_key_tuple]
        ids = list(state.values())
        return ids, sorted(self.fed_store.get_auth_chain_ids(ids))

    def get_state_ids(self, origin: str, room_id: str, event_id: str) -> dict:
        self._require_in_room(origin, room_id)
        ids, chain = self.state_ids_before(room_id, event_id)
        return {"pdu_ids": ids, "auth_chain_ids": chain}

    def get_state(self, origin: str, room_id: str, event_id: str) -> dict:
        self._require_in_room(origin, room_id)
        ids, chain = self.state_ids_before(room_id, event_id)
        loaded = self.events.get_events([*ids, *chain])
        return {"pdus": [federation_pdu(loaded[i]) for i in ids if i in loaded],
                "auth_chain": [federation_pdu(loaded[i]) for i in chain if i in loaded]}

    def get_event_auth(self, origin: str, room_id: str, event_id: str) -> dict:
        self._require_in_room(origin, room_id)
        stored = self._event_in_room(room_id, event_id)
        chain = self.fed_store.get_auth_chain_ids([stored.event.event_id])
        loaded = self.events.get_events(chain)
        return {"auth_chain": [federation_pdu(loaded[i]) for i in sorted(chain) if i in loaded]}

    def backfill(self, origin: str, room_id: str, from_ids: list, limit: int) -> dict:
        """Breadth-first back from `from_ids` (included), the deepest first."""
        self._require_in_room(origin, room_id)
        limit = max(1, min(limit, MAX_BACKFILL))
        found, frontier, seen = [], list(from_ids), set()
        while frontier and len(found) < limit:
            loaded = self.events.get_events([e for e in frontier if e not in seen])
            seen.update(frontier)
            batch = sorted((s for s in loaded.values() if s.event.room_id_in_any_version == room_id),
                           key=lambda s: -s.event.depth)
            found.extend(batch[:limit - len(found)])
            frontier = [p for s in batch for p in s.event.prev_event_ids if p not in seen]
        return {"origin": self.server_name, "origin_server_ts": _now(),
                "pdus": [federation_pdu(s) for s in found]}

    def get_missing_events(self, origin: str, room_id: str, earliest: list, latest: list, limit: int,
                           min_depth: int) -> dict:
        """The events between `earliest` and `latest` (neither included), oldest first."""
        self._require_in_room(origin, room_id)
        limit = max(1, min(limit, MAX_MISSING))
        seen = set(earliest) | set(latest)
        frontier = [p for s in self.events.get_events(latest).values() for p in s.event.prev_event_ids]
        found = []
        while frontier and len(found) < limit:
            frontier = [e for e in dict.fromkeys(frontier) if e not in seen]
            seen.update(frontier)
            loaded = [s for s in self.events.get_events(frontier).values()
                      if s.event.room_id_in_any_version == room_id and s.event.depth >= min_depth]
            found.extend(loaded[:limit - len(found)])
            frontier = [p for s in loaded for p in s.event.prev_event_ids]
        found.sort(key=lambda s: (s.event.depth, s.stream_ordering))
        return {"events": [federation_pdu(s) for s in found]}

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

    def lookup_remote_alias(self, alias: str) -> tuple[str, list]:
        server = server_name_of(alias)
        try:
            body = self.client.get_json(server, "/_matrix/federation/v1/query/directory", {"room_alias": alias})
        except FederationHttpError as e:
            if e.status == 404:
                raise MatrixError(404, Codes.NOT_FOUND, "Room alias not found") from None
            raise MatrixError(502, Codes.UNKNOWN, f"{server} could not resolve the alias") from None
        except FederationRequestError as e:
            raise MatrixError(502, Codes.UNKNOWN, f"Could not reach {server}: {e}") from None
        room_id, servers = body.get("room_id"), body.get("servers")
        if not isinstance(room_id, str) or not isinstance(servers, list):
            raise MatrixError(502, Codes.UNKNOWN, f"{server} answered the alias query badly")
        return room_id, [server, *(s for s in servers if isinstance(s, str))]

    def remote_profile(self, user_id: str) -> dict:
        server = server_name_of(user_id)
        try:
            body = self.client.get_json(server, "/_matrix/federation/v1/query/profile", {"user_id": user_id})
        except FederationHttpError as e:
            if 400 <= e.status < 500:
                raise MatrixError(404, Codes.NOT_FOUND, "Profile was not found") from None
            raise MatrixError(502, Codes.UNKNOWN, f"{server} could not answer") from None
        except FederationRequestError as e:
            raise MatrixError(502, Codes.UNKNOWN, f"Could not reach {server}: {e}") from None
        if not isinstance(body, dict):
            raise MatrixError(502, Codes.UNKNOWN, f"{server} answered the profile query badly")
        return {k: v for k, v in body.items() if k in ("displayname", "avatar_url") and isinstance(v, str)}


def _now() -> int:
    from hs.clock import now_ms
    return now_ms()
