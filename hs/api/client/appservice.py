"""What only application services call on the client API: POST /appservice/{appserviceId}/ping
and their published room lists, /directory/list/appservice/{networkId}/{roomId}."""

from hs.api.app import Resource
from hs.api.request import field, json_body
from hs.api.routes import add_client_route
from hs.errors import Codes, MatrixError
from hs.identifiers import check_room_id


class PingResource(Resource):
    def __init__(self, app_service_auth):
        self.app_service_auth = app_service_auth

    def on_post(self, req, resp, appservice_id):
        service = self.app_service_auth.ping_target(req.context.requester, appservice_id)
        # The body is required, but may be {} (transaction_id is optional).
        transaction_id = field(json_body(req), "transaction_id", str, None)
        resp.media = {"duration_ms": self.app_service_auth.ping(service, transaction_id)}


class AppServiceDirectoryListResource(Resource):
    def __init__(self, directory):
        self.directory = directory

    def on_put(self, req, resp, network_id, room_id):
        check_room_id(room_id)
        visibility = field(json_body(req), "visibility", str)
        if visibility not in ("public", "private"):
            raise MatrixError(400, Codes.INVALID_PARAM, "visibility must be public or private")
        self.directory.set_appservice_visibility(req.context.requester, network_id, room_id, visibility)
        resp.media = {}

    def on_delete(self, req, resp, network_id, room_id):
        # Synapse's: the same as PUT with "private" (the spec has only PUT).
        check_room_id(room_id)
        self.directory.set_appservice_visibility(req.context.requester, network_id, room_id, "private")
        resp.media = {}


def register(app, hs):
    add_client_route(app, "/appservice/{appservice_id}/ping", PingResource(hs.app_service_auth),
                     prefixes=("/_matrix/client/v1",))
    add_client_route(app, "/directory/list/appservice/{network_id}/{room_id}",
                     AppServiceDirectoryListResource(hs.directory))
