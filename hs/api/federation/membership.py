"""make_join/send_join, make_leave/send_leave, make_knock/send_knock and invite, from other servers."""

from hs.api.federation.base import FederationResource
from hs.api.request import json_body


class MakeMembershipResource(FederationResource):
    def __init__(self, handler, membership: str):
        self.handler = handler
        self.membership = membership

    def on_get(self, req, resp, room_id, user_id):
        versions = req.get_param_as_list("ver") or (["1"] if self.membership == "join" else [])
        self.handler.check_room_access(req.context.origin, room_id)
        resp.media = self.handler.on_make(self.membership, req.context.origin, room_id, user_id, versions)


class SendMembershipResource(FederationResource):
    """v2 answers the body; v1 (deprecated) wraps it as [200, body]."""

    def __init__(self, handler, membership: str, v1: bool):
        self.handler = handler
        self.membership = membership
        self.v1 = v1

    def on_put(self, req, resp, room_id, event_id):
        self.handler.check_room_access(req.context.origin, room_id)
        answer = self.handler.on_send(self.membership, req.context.origin, room_id, event_id, json_body(req))
        resp.media = [200, answer] if self.v1 else answer


class InviteResource(FederationResource):
    def __init__(self, handler, v1: bool):
        self.handler = handler
        self.v1 = v1

    def on_put(self, req, resp, room_id, event_id):
        body = json_body(req)
        if self.v1:
            # v1 sends the bare event, of a room whose version the invitee's server must guess.
            unsigned = body.get("unsigned") if isinstance(body.get("unsigned"), dict) else {}
            body = {"event": body, "room_version": "1", "invite_room_state": unsigned.get("invite_room_state", [])}
        self.handler.check_room_access(req.context.origin, room_id)
        answer = self.handler.on_invite(req.context.origin, room_id, event_id, body)
        resp.media = [200, answer] if self.v1 else answer


def register(app, hs):
    handler = hs.federation_membership
    base = "/_matrix/federation"
    for membership in ("join", "leave", "knock"):
        app.add_route(f"{base}/v1/make_{membership}/{{room_id}}/{{user_id}}", MakeMembershipResource(handler, membership))
    for membership in ("join", "leave"):
        app.add_route(f"{base}/v2/send_{membership}/{{room_id}}/{{event_id}}",
                      SendMembershipResource(handler, membership, v1=False))
        app.add_route(f"{base}/v1/send_{membership}/{{room_id}}/{{event_id}}",
                      SendMembershipResource(handler, membership, v1=True))
    # send_knock exists only as v1, and answers its body unwrapped.
    app.add_route(f"{base}/v1/send_knock/{{room_id}}/{{event_id}}", SendMembershipResource(handler, "knock", v1=False))
    app.add_route(f"{base}/v2/invite/{{room_id}}/{{event_id}}", InviteResource(handler, v1=False))
    app.add_route(f"{base}/v1/invite/{{room_id}}/{{event_id}}", InviteResource(handler, v1=True))
