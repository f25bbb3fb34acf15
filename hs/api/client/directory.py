"""Room aliases (/directory/room, /rooms/{roomId}/aliases) and the published room directory
(/directory/list/room, /publicRooms)."""

from hs.api.app import Resource
from hs.api.request import field, json_body, query_int
from hs.api.routes import add_client_route
from hs.errors import Codes, MatrixError
from hs.identifiers import check_room_id


class AliasResource(Resource):
    # Resolving an alias needs no account (the spec gives GET no security).
    public = frozenset({"GET"})

    def __init__(self, directory):
        self.directory = directory

    def on_get(self, req, resp, room_alias):
        resp.media = self.directory.get_alias(room_alias)

    def on_put(self, req, resp, room_alias):
        body = json_body(req)
        room_id = field(body, "room_id", str)
        check_room_id(room_id)
        self.directory.create_alias(req.context.requester, room_alias, room_id)
        resp.media = {}

    def on_delete(self, req, resp, room_alias):
        self.directory.delete_alias(req.context.requester, room_alias)
        resp.media = {}


class RoomAliasesResource(Resource):
    def __init__(self, directory):
        self.directory = directory

    def on_get(self, req, resp, room_id):
        check_room_id(room_id)
        resp.media = {"aliases": self.directory.get_local_aliases(req.context.requester, room_id)}


class DirectoryListResource(Resource):
    public = frozenset({"GET"})

    def __init__(self, directory):
        self.directory = directory

    def on_get(self, req, resp, room_id):
        check_room_id(room_id)
        resp.media = self.directory.get_visibility(room_id)

    def on_put(self, req, resp, room_id):
        check_room_id(room_id)
        visibility = field(json_body(req, allow_empty=True), "visibility", str, "public")
        if visibility not in ("public", "private"):
            raise MatrixError(400, Codes.INVALID_PARAM, "visibility must be public or private")
        self.directory.set_visibility(req.context.requester, room_id, visibility)
        resp.media = {}


def public_rooms_query(body: dict) -> dict:
    """The arguments of a POST /publicRooms body (also what other servers POST us)."""
    limit = field(body, "limit", int, None)
    if limit is not None and limit < 0:
        raise MatrixError(400, Codes.INVALID_PARAM, "limit must not be negative")
    room_filter = field(body, "filter", dict, {})
    room_types = room_filter.get("room_types")
    if room_types is not None and (not isinstance(room_types, list)
                                   or not all(t is None or isinstance(t, str) for t in room_types)):
        raise MatrixError(400, Codes.BAD_JSON, "filter.room_types must be an array of strings and nulls")
    return {"limit": limit, "since": field(body, "since", str, None),
            "search_term": field(room_filter, "generic_search_term", str, None), "room_types": room_types,
            "include_all_networks": field(body, "include_all_networks", bool, False),
            "third_party_instance_id": field(body, "third_party_instance_id", str, None)}


class PublicRoomsResource(Resource):
    # GET is open to anyone (the spec gives it no security); POST, with a filter, needs a token.
    optional_auth = frozenset({"GET"})
    guest_access = frozenset({"GET", "POST"})

    def __init__(self, directory):
        self.directory = directory

    def on_get(self, req, resp):
        server = req.get_param("server")
        if server and server != self.directory.server_name and req.context.requester is None:
            # As Synapse: our own list is open, but asking another server for its list needs an account.
            raise MatrixError(401, Codes.MISSING_TOKEN, "Missing access token")
        resp.media = self.directory.get_public_rooms(server=server,
                                                     limit=query_int(req, "limit", None, minimum=0),
                                                     since=req.get_param("since"))

    def on_post(self, req, resp):
        resp.media = self.directory.get_public_rooms(server=req.get_param("server"),
                                                     **public_rooms_query(json_body(req, allow_empty=True)))


def register(app, hs):
    add_client_route(app, "/directory/room/{room_alias}", AliasResource(hs.directory))
    add_client_route(app, "/rooms/{room_id}/aliases", RoomAliasesResource(hs.directory))
    add_client_route(app, "/directory/list/room/{room_id}", DirectoryListResource(hs.directory))
    add_client_route(app, "/publicRooms", PublicRoomsResource(hs.directory))
