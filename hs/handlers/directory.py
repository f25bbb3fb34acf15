"""Room aliases, the room directory (which rooms are published, and the public room list) and
the check that an m.room.canonical_alias event names aliases of its own room.

Another server's aliases are looked up over federation and cannot be created here (an invalid
parameter); its public room list is asked of it (hs/handlers/federation_directory.py).
"""

import logging
import re

from hs.config import is_valid_server_name
from hs.errors import Codes, MatrixError
from hs.events.power_levels import (
    InvalidPowerLevelError,
    get_required_level,
    get_user_power_level,
)
from hs.handlers.appservice_auth import check_may_create_alias
from hs.handlers.room_summary import event_content, published_room_fields

logger = logging.getLogger(__name__)

MAX_ALIAS_LENGTH = 255  # bytes, sigil and server name included (appendices: room aliases)
DEFAULT_PUBLIC_ROOMS_PAGE = 100
MAX_PUBLIC_ROOMS_PAGE = 500
_WHITESPACE = re.compile(r"\s")
_TOKEN = re.compile(r"^([np])(\d+)_(!.+)$")


def parse_room_alias(alias) -> tuple[str, str]:
    """(localpart, server_name) of a room alias, else 400 M_INVALID_PARAM. The localpart may
    hold any code point but ':' and NUL (appendices: room aliases)."""
    if not isinstance(alias, str) or not alias.startswith("#") or ":" not in alias:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Room alias {alias!r} is invalid")
    localpart, server_name = alias[1:].split(":", 1)
    if (not localpart or "\x00" in localpart or not is_valid_server_name(server_name)
            or len(alias.encode("utf-8", "surrogatepass")) > MAX_ALIAS_LENGTH
            or any(0xD800 <= ord(c) <= 0xDFFF for c in localpart)):
        raise MatrixError(400, Codes.INVALID_PARAM, f"Room alias {alias!r} is invalid")
    return localpart, server_name


class DirectoryHandler:
    def __init__(self, config, rooms, state, events, event_creation, accounts, directory_store, summaries):
        self.server_name = config.server_name
        self.rooms = rooms
        self.state = state
        self.events = events
        self.event_creation = event_creation
        self.accounts = accounts
        self.store = directory_store
        self.summaries = summaries
        event_creation.add_content_check("m.room.canonical_alias", self.check_canonical_alias)
        # Application services asked about an unknown alias in their namespace (set by hs/server.py).
        self.app_services = None
        self.appservice_api = None
        # Set by hs/server.py: alias -> (room_id, servers), asked of the alias's server.
        self.lookup_remote_alias = None
        # Set by hs/server.py: another server's public room list (hs/handlers/federation_directory.py).
        self.remote_public_rooms = None

    # --- helpers -------------------------------------------------------------------------------

    def _is_admin(self, user_id: str) -> bool:
        user = self.accounts.get_user(user_id)
        return bool(user and user.admin)

    def _require_room(self, room_id: str):
        room = self.rooms.get_room(room_id)
        if room is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Room not found")
        return room

    def _local_alias(self, alias: str) -> str:
        """The alias, if it is one of ours; 400 M_INVALID_PARAM for another server's."""
        _, server_name = parse_room_alias(alias)
        if server_name != self.server_name:
            raise MatrixError(400, Codes.INVALID_PARAM, "Room alias must be on this server")
        return alias

    def _is_room_moderator(self, room_id: str, user_id: str) -> bool:
        """Joined, with the power to send m.room.canonical_alias: who Synapse lets edit the
        room's directory entry and delete others' aliases of it."""
        membership = self.rooms.get_membership(room_id, user_id)
        if membership is None or membership[0] != "join":
            return False
        ids = self.state.get_current_state_ids(room_id, [("m.room.create", ""), ("m.room.power_levels", "")])
        loaded = self.events.get_events(ids.values())
        create = loaded.get(ids.get(("m.room.create", "")))
        levels = loaded.get(ids.get(("m.room.power_levels", "")))
        if create is None:
            return False
        levels_event = levels.event if levels is not None else None
        try:
            return (get_user_power_level(user_id, levels_event, create.event)
                    >= get_required_level("m.room.canonical_alias", "", levels_event))
        except InvalidPowerLevelError:
            return False

    # --- aliases -------------------------------------------------------------------------------

    def create_alias(self, requester, alias: str, room_id: str) -> None:
        self._local_alias(alias)
        if _WHITESPACE.search(alias):
            raise MatrixError(400, Codes.INVALID_PARAM, "Room aliases may not contain whitespace")
        self._require_room(room_id)
        check_may_create_alias(self.app_services, requester, alias)
        membership = self.rooms.get_membership(room_id, requester.user_id)
        # As Synapse, a service need not be in the room (its namespace is its authority).
        if (membership is None or membership[0] != "join") and not self._is_admin(requester.user_id) \
                and requester.app_service is None:
            raise MatrixError(403, Codes.FORBIDDEN, "You must be in the room to create an alias for it")
        if not self.rooms.create_alias(alias, room_id, requester.user_id):
            # The spec's error for a taken alias (PUT /directory/room: 409 M_UNKNOWN).
            raise MatrixError(409, Codes.UNKNOWN, f"Room alias {alias} already exists")

    def lookup_local_alias(self, alias: str) -> tuple[str, str] | None:
        """The alias's (room_id, creator); for an unknown alias in an application service's
        namespace the service is asked first (GET /_matrix/app/v1/rooms/{alias}), and may create
        the room, as Synapse's query_room_alias_exists."""
        found = self.rooms.get_alias(alias)
        if found is not None or self.app_services is None:
            return found
        for service in self.app_services.services:
            if service.url and service.is_interested_in_alias(alias) and self.appservice_api.query_alias(service,
                                                                                                          alias):
                found = self.rooms.get_alias(alias)
                if found is not None:
                    return found
        return None

    def get_alias(self, alias: str) -> dict:
        _, server_name = parse_room_alias(alias)
        if server_name != self.server_name and self.lookup_remote_alias is not None:
            room_id, servers = self.lookup_remote_alias(alias)
            return {"room_id": room_id, "servers": list(dict.fromkeys(servers))}
        found = self.lookup_local_alias(alias) if server_name == self.server_name else None
        if found is None:
            raise MatrixError(404, Codes.NOT_FOUND, f"Room alias {alias} not found")
        room_id = found[0]
        others = [s for s in self.store.get_joined_servers(room_id) if s != self.server_name]
        return {"room_id": room_id, "servers": [self.server_name, *others]}

    def delete_alias(self, requester, alias: str) -> None:
        self._local_alias(alias)
        found = self.rooms.get_alias(alias)
        if found is None:
            raise MatrixError(404, Codes.NOT_FOUND, f"Room alias {alias} not found")
        room_id, creator = found
        user_id = requester.user_id
        if requester.app_service is not None:
            # As Synapse: a service deletes any alias of its namespace, and none outside it.
            check_may_create_alias(self.app_services, requester, alias)
        elif creator != user_id and not self._is_admin(user_id) and not self._is_room_moderator(room_id, user_id):
            raise MatrixError(403, Codes.FORBIDDEN, "You may not delete this alias")
        else:
            check_may_create_alias(self.app_services, requester, alias)
        if not self.rooms.delete_alias(alias):
            raise MatrixError(404, Codes.NOT_FOUND, f"Room alias {alias} not found")
        self._drop_from_canonical_alias(room_id, user_id, alias)

    def _drop_from_canonical_alias(self, room_id: str, user_id: str, alias: str) -> None:
        """The spec lets a server take a deleted alias out of m.room.canonical_alias; as Synapse,
        the deletion stands even when the user may not send that event."""
        ids = self.state.get_current_state_ids(room_id, [("m.room.canonical_alias", "")])
        stored = self.events.get_event(ids[("m.room.canonical_alias", "")]) if ids else None
        if stored is None:
            return
        content = dict(event_content(stored))
        changed = False
        if content.get("alias") == alias:
            del content["alias"]
            changed = True
        alt = content.get("alt_aliases")
        if isinstance(alt, list) and alias in alt:
            content["alt_aliases"] = [a for a in alt if a != alias]
            if not content["alt_aliases"]:
                del content["alt_aliases"]
            changed = True
        if changed:
            try:
                self.event_creation.send(room_id, user_id, "m.room.canonical_alias", content, state_key="")
            except MatrixError as e:
                logger.info("Alias %s deleted, but m.room.canonical_alias of %s left as it was: %s",
                            alias, room_id, e)

    def get_local_aliases(self, requester, room_id: str) -> list[str]:
        """Members, anyone for a world-readable room, and server admins may list them."""
        user_id = requester.user_id
        if self.rooms.get_room(room_id) is None:
            # As Synapse: unknown rooms and rooms the user is not in look the same.
            raise MatrixError(403, Codes.FORBIDDEN, "You are not in this room")
        membership = self.rooms.get_membership(room_id, user_id)
        if (membership is None or membership[0] != "join") and not self._is_admin(user_id):
            ids = self.state.get_current_state_ids(room_id, [("m.room.history_visibility", "")])
            stored = self.events.get_event(ids[("m.room.history_visibility", "")]) if ids else None
            if stored is None or stored.event.content.get("history_visibility") != "world_readable":
                raise MatrixError(403, Codes.FORBIDDEN, "You are not in this room")
        return self.rooms.get_aliases_for_room(room_id)

    # --- m.room.canonical_alias ----------------------------------------------------------------

    def check_canonical_alias(self, room_id: str, sender: str, content: dict) -> None:
        """Aliases a new m.room.canonical_alias event adds must be valid and, when they are
        ours, point at the room (PUT /rooms/{roomId}/state: "servers SHOULD validate"). Those
        already in the current event are not checked again, so removing aliases always works.
        Another server's alias cannot be checked without federation, and is accepted."""
        if self.rooms.get_room(room_id) is None:
            return  # the send itself answers 404
        ids = self.state.get_current_state_ids(room_id, [("m.room.canonical_alias", "")])
        current = self.events.get_event(ids[("m.room.canonical_alias", "")]) if ids else None
        old = event_content(current) if current is not None else {}
        old_alt = old.get("alt_aliases") if isinstance(old.get("alt_aliases"), list) else []

        alias = content.get("alias")
        new_aliases = []
        if alias is not None and alias != "":
            if not isinstance(alias, str):
                raise MatrixError(400, Codes.INVALID_PARAM, "alias must be a string")
            if alias != old.get("alias"):
                new_aliases.append(alias)
        alt = content.get("alt_aliases")
        if alt is not None:
            if not isinstance(alt, list) or not all(isinstance(a, str) for a in alt):
                raise MatrixError(400, Codes.INVALID_PARAM, "alt_aliases must be a list of strings")
            new_aliases += [a for a in dict.fromkeys(alt) if a not in old_alt]
        for new_alias in new_aliases:
            _, server_name = parse_room_alias(new_alias)
            if server_name != self.server_name:
                continue
            found = self.rooms.get_alias(new_alias)
            if found is None or found[0] != room_id:
                raise MatrixError(400, Codes.BAD_ALIAS, f"The alias {new_alias} does not point to this room")

    # --- the room directory --------------------------------------------------------------------

    def get_visibility(self, room_id: str) -> dict:
        room = self._require_room(room_id)
        return {"visibility": "public" if room.is_public else "private"}

    def set_appservice_visibility(self, requester, network_id: str, room_id: str, visibility: str) -> None:
        """PUT/DELETE /directory/list/appservice/{networkId}/{roomId}: the room in (or out of)
        the requesting service's list for that network. As Synapse, the network need not be
        one the service declared."""
        if requester.app_service is None:
            raise MatrixError(403, Codes.FORBIDDEN, "Only application services can edit the appservice published "
                                                    "room list")
        self._require_room(room_id)
        self.store.set_appservice_room_published(requester.app_service.id, network_id, room_id,
                                                 visibility == "public")

    def set_visibility(self, requester, room_id: str, visibility: str) -> None:
        self._require_room(room_id)
        user_id = requester.user_id
        if not self._is_admin(user_id) and not self._is_room_moderator(room_id, user_id):
            raise MatrixError(403, Codes.FORBIDDEN, "You need to be a moderator of the room to publish it or "
                                                    "take it out of the room directory")
        self.rooms.set_public(room_id, visibility == "public")

    def get_public_rooms(self, *, server: str | None, limit: int | None, since: str | None,
                         search_term: str | None = None, room_types: list | None = None,
                         include_all_networks: bool = False, third_party_instance_id: str | None = None) -> dict:
        if server is not None and server != self.server_name:
            if not is_valid_server_name(server):
                raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid server name {server!r}")
            if self.remote_public_rooms is None:
                raise MatrixError(404, Codes.NOT_FOUND, f"Could not get the public room list of {server}")
        if include_all_networks and third_party_instance_id is not None:
            raise MatrixError(400, Codes.INVALID_PARAM, "include_all_networks cannot be used with "
                                                        "third_party_instance_id")
        if server is not None and server != self.server_name:
            return self.remote_public_rooms(server, limit=limit, since=since, search_term=search_term,
                                            room_types=room_types, include_all_networks=include_all_networks,
                                            third_party_instance_id=third_party_instance_id)
        # Which published list: the server's (default), a service's network, or all of them.
        network = "all" if include_all_networks else None
        if third_party_instance_id is not None:
            # Synapse's instance IDs are "{appservice_id}|{network_id}" (see hs/handlers/thirdparty.py);
            # any other names no network, whose list is empty.
            network = tuple(third_party_instance_id.split("|")) if third_party_instance_id.count("|") == 1 \
                else ("", "")
        # No limit (or 0, which Synapse also takes as none) is a page of the default size.
        limit = DEFAULT_PUBLIC_ROOMS_PAGE if not limit else min(limit, MAX_PUBLIC_ROOMS_PAGE)
        forwards, bound = True, None
        if since is not None:
            match = _TOKEN.match(since)
            if not match:
                raise MatrixError(400, Codes.INVALID_PARAM, "Invalid pagination token")
            forwards, bound = match.group(1) == "n", (int(match.group(2)), match.group(3))
        search_term = search_term.strip() if search_term else None
        # One more than asked tells whether another page follows.
        page, total = self.store.get_public_rooms_page(limit=limit + 1, bound=bound, forwards=forwards,
                                                       search_term=search_term or None, room_types=room_types,
                                                       network=network)
        more = len(page) > limit
        if more:
            page = page[:limit] if forwards else page[1:]
        body = {"chunk": self._chunk(page), "total_room_count_estimate": total}
        if page:
            # Tokens are positions in the list order (joined members, room ID): stable while
            # rooms come and go, and a page never repeats or skips a room that stays put.
            first, last = page[0], page[-1]
            # Going back from a token, the rooms the token came from follow this page.
            has_next = more if forwards else True
            has_prev = bound is not None if forwards else more
            if has_next:
                body["next_batch"] = f"n{last[1]}_{last[0]}"
            if has_prev:
                body["prev_batch"] = f"p{first[1]}_{first[0]}"
        return body

    def _chunk(self, page: list[tuple[str, int]]) -> list[dict]:
        data = self.summaries.load([room_id for room_id, _ in page])
        chunk = []
        for room_id, joined in page:
            if room_id in data:
                # The count the page was ordered by, so that the order shown is the order used.
                data[room_id].joined_members = joined
                chunk.append(published_room_fields(data[room_id]))
        return chunk
