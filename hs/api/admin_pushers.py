"""GET /_synapse/admin/v1/users/{user_id}/pushers (Synapse's admin API): a user's pushers with
their delivery bookkeeping, for server admins."""

from hs.api.app import Resource
from hs.errors import Codes, MatrixError
from hs.identifiers import user_id_parts


class UserPushersResource(Resource):
    def __init__(self, hs):
        self.admin = hs.registration_token_admin  # require_admin
        self.server_name = hs.config.server_name
        self.accounts = hs.accounts
        self.delivery = hs.push_delivery_store

    def on_get(self, req, resp, user_id):
        self.admin.require_admin(req.context.requester)
        if user_id_parts(user_id)[1] != self.server_name:
            raise MatrixError(400, Codes.UNKNOWN, "Can only look up local users")
        if self.accounts.get_user(user_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "User not found")
        states = self.delivery.get_states(user_id)
        pushers = []
        # Synapse's PusherConfig.as_dict; a pusher not yet started has no delivery state.
        for row in self.delivery.get_all_pushers(user_id):
            last_stream_ordering, last_success, failing_since = states.get((row["app_id"], row["pushkey"]),
                                                                          (None, None, None))
            pushers.append({"user_name": user_id, "kind": row["kind"], "app_id": row["app_id"],
                            "app_display_name": row["app_display_name"],
                            "device_display_name": row["device_display_name"], "pushkey": row["pushkey"],
                            "ts": row["created_ts"], "lang": row["lang"], "data": row["data"],
                            "profile_tag": row["profile_tag"] or "", "device_id": row["device_id"],
                            "enabled": True, "last_stream_ordering": last_stream_ordering,
                            "last_success": last_success, "failing_since": failing_since})
        resp.media = {"pushers": pushers, "total": len(pushers)}


def register(app, hs):
    app.add_route("/_synapse/admin/v1/users/{user_id}/pushers", UserPushersResource(hs))
