"""PUT /rooms/{roomId}/typing/{userId}."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route
from hs.errors import Codes, MatrixError


class TypingResource(Resource):
    guest_access = frozenset({"PUT"})

    def __init__(self, handler):
        self.handler = handler

    def on_put(self, req, resp, room_id, user_id):
        body = json_body(req)
        if "typing" not in body:
            raise MatrixError(400, Codes.BAD_JSON, "Missing typing")
        self.handler.set_typing(req.context.requester, room_id, user_id, body["typing"], body.get("timeout"))
        resp.media = {}


def register(app, hs):
    add_client_route(app, "/rooms/{room_id}/typing/{user_id}", TypingResource(hs.typing))
