"""Membership: join, invite, leave, forget, kick, ban, unban, knock, and /joined_rooms."""

from hs.api.app import Resource
from hs.api.request import field, json_body
from hs.api.routes import add_client_route
from hs.errors import Codes, MatrixError
from hs.identifiers import check_room_id


def _reason(body: dict) -> str | None:
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise MatrixError(400, Codes.BAD_JSON, "reason must be a string")
    return reason


class JoinResource(Resource):
    """POST /join/{roomIdOrAlias} and POST /rooms/{roomId}/join."""

    # Guests may join rooms whose guest_access is can_join (checked by the handler).
    guest_access = frozenset({"POST"})

    def __init__(self, membership):
        self.membership = membership

    def on_post(self, req, resp, room_id_or_alias):
        body = json_body(req, allow_empty=True)
        room_id = self.membership.join(req.context.requester, room_id_or_alias, _reason(body),
                                       servers=_server_hints(req))
        resp.media = {"room_id": room_id}

    def on_post_room(self, req, resp, room_id):
        check_room_id(room_id)
        self.on_post(req, resp, room_id)


def _server_hints(req) -> list[str]:
    """The servers to join a remote room through: `via` (v1.12) and the older `server_name`."""
    return [s for key in ("via", "server_name") for s in req.get_param_as_list(key) or []
            if isinstance(s, str) and s]


class KnockResource(Resource):
    def __init__(self, membership):
        self.membership = membership

    def on_post(self, req, resp, room_id_or_alias):
        body = json_body(req, allow_empty=True)
        resp.media = {"room_id": self.membership.knock(req.context.requester, room_id_or_alias, _reason(body),
                                                       servers=_server_hints(req))}


class MembershipActionResource(Resource):
    """invite, kick, ban and unban: an action on another user, with an optional reason."""

    def __init__(self, membership, action: str):
        self.membership = membership
        self.action = action

    def on_post(self, req, resp, room_id):
        check_room_id(room_id)
        body = json_body(req)
        if self.action == "invite" and "user_id" not in body and "id_server" in body:
            raise MatrixError(403, Codes.FORBIDDEN, "Third-party invites are not supported")
        target = field(body, "user_id", str)
        reason = _reason(body)
        requester = req.context.requester
        if self.action == "invite":
            self.membership.update_membership(requester, room_id, target, "invite", reason=reason)
        elif self.action == "kick":
            self.membership.kick(requester, room_id, target, reason)
        elif self.action == "ban":
            self.membership.update_membership(requester, room_id, target, "ban", reason=reason)
        else:
            self.membership.unban(requester, room_id, target, reason)
        resp.media = {}


class LeaveResource(Resource):
    guest_access = frozenset({"POST"})

    def __init__(self, membership):
        self.membership = membership

    def on_post(self, req, resp, room_id):
        check_room_id(room_id)
        self.membership.leave(req.context.requester, room_id, _reason(json_body(req, allow_empty=True)))
        resp.media = {}


class ForgetResource(Resource):
    def __init__(self, membership):
        self.membership = membership

    def on_post(self, req, resp, room_id):
        check_room_id(room_id)
        self.membership.forget(req.context.requester, room_id)
        resp.media = {}


class JoinedRoomsResource(Resource):
    def __init__(self, rooms):
        self.rooms = rooms

    def on_get(self, req, resp):
        resp.media = {"joined_rooms": self.rooms.get_rooms_for_user(req.context.requester.user_id)}


def register(app, hs):
    join = JoinResource(hs.membership)
    add_client_route(app, "/join/{room_id_or_alias}", join)
    for prefix in ("/_matrix/client/r0", "/_matrix/client/v3"):
        app.add_route(prefix + "/rooms/{room_id}/join", join, suffix="room")
    add_client_route(app, "/knock/{room_id_or_alias}", KnockResource(hs.membership))
    for action in ("invite", "kick", "ban", "unban"):
        add_client_route(app, f"/rooms/{{room_id}}/{action}", MembershipActionResource(hs.membership, action))
    add_client_route(app, "/rooms/{room_id}/leave", LeaveResource(hs.membership))
    add_client_route(app, "/rooms/{room_id}/forget", ForgetResource(hs.membership))
    add_client_route(app, "/joined_rooms", JoinedRoomsResource(hs.rooms))
