"""/user/{userId}/filter and /user/{userId}/filter/{filterId}."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route


class FilterUploadResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_post(self, req, resp, user_id):
        filter_id = self.handler.upload(req.context.requester, user_id, json_body(req))
        resp.media = {"filter_id": filter_id}


class FilterResource(Resource):
    def __init__(self, handler):
        self.handler = handler

    def on_get(self, req, resp, user_id, filter_id):
        resp.media = self.handler.download(req.context.requester, user_id, filter_id)


def register(app, hs):
    add_client_route(app, "/user/{user_id}/filter", FilterUploadResource(hs.filter_handler))
    add_client_route(app, "/user/{user_id}/filter/{filter_id}", FilterResource(hs.filter_handler))
