"""POST /rooms/{roomId}/upgrade."""

from hs.api.app import Resource
from hs.api.request import field, json_body
from hs.api.routes import add_client_route
from hs.identifiers import check_room_id


class UpgradeRoomResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_post(self, req, resp, room_id):
        check_room_id(room_id)
        body = json_body(req)
        new_version = field(body, "new_version", str)
        additional_creators = field(body, "additional_creators", list, None)
        replacement = self.handler.upgrade(req.context.requester, room_id, new_version, additional_creators)
        resp.media = {"replacement_room": replacement}


def register(app, hs):
    add_client_route(app, "/rooms/{room_id}/upgrade", UpgradeRoomResource(hs.room_upgrades))
