"""Reporting content: POST /rooms/{roomId}/report and /rooms/{roomId}/report/{eventId}."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route
from hs.identifiers import check_event_id, check_room_id


class ReportEventResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_post(self, req, resp, room_id, event_id):
        check_room_id(room_id)
        check_event_id(event_id)
        self.handler.report_event(req.context.requester, room_id, event_id, json_body(req))
        resp.media = {}


class ReportRoomResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_post(self, req, resp, room_id):
        check_room_id(room_id)
        self.handler.report_room(req.context.requester, room_id, json_body(req))
        resp.media = {}


def register(app, hs):
    add_client_route(app, "/rooms/{room_id}/report/{event_id}", ReportEventResource(hs.reports))
    add_client_route(app, "/rooms/{room_id}/report", ReportRoomResource(hs.reports))
