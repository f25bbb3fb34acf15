"""Other servers reading our directory and spaces: GET and POST /_matrix/federation/v1/publicRooms
(the POST, with a filter, is MSC2197) and GET /_matrix/federation/v1/hierarchy/{roomId}. The handler
(hs/handlers/federation_directory.py) applies allow_public_rooms_over_federation and who may see what."""

from hs.api.client.directory import public_rooms_query
from hs.api.federation.base import FederationResource
from hs.api.request import json_body, query_bool, query_int
from hs.identifiers import check_room_id


class PublicRoomsResource(FederationResource):
    def __init__(self, federation_directory):
        self.federation_directory = federation_directory

    def on_get(self, req, resp):
        self.federation_directory.check_public_rooms_allowed(req.context.origin)
        resp.media = self.federation_directory.public_rooms(
            limit=query_int(req, "limit", None, minimum=0), since=req.get_param("since"),
            include_all_networks=query_bool(req, "include_all_networks", False),
            third_party_instance_id=req.get_param("third_party_instance_id"))

    def on_post(self, req, resp):
        # Before the body is read: a server we do not serve learns nothing from its errors.
        self.federation_directory.check_public_rooms_allowed(req.context.origin)
        resp.media = self.federation_directory.public_rooms(**public_rooms_query(json_body(req, allow_empty=True)))


class HierarchyResource(FederationResource):
    def __init__(self, federation_directory):
        self.federation_directory = federation_directory

    def on_get(self, req, resp, room_id):
        check_room_id(room_id)
        resp.media = self.federation_directory.hierarchy(req.context.origin, room_id,
                                                         query_bool(req, "suggested_only", False))


def register(app, hs):
    app.add_route("/_matrix/federation/v1/publicRooms", PublicRoomsResource(hs.federation_directory))
    app.add_route("/_matrix/federation/v1/hierarchy/{room_id}", HierarchyResource(hs.federation_directory))
