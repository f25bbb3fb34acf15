"""/pushrules/, /pushrules/global/, /pushrules/global/{kind}/ and
/pushrules/global/{kind}/{ruleId}[/enabled|/actions]."""

from hs.api.app import Resource
from hs.api.request import json_body
from hs.api.routes import add_client_route


class PushRulesResource(Resource):
    def __init__(self, reader):
        self.reader = reader

    def on_get(self, req, resp):
        resp.media = self.reader.get_all(req.context.requester)


class GlobalRulesetResource(Resource):
    def __init__(self, reader):
        self.reader = reader

    def on_get(self, req, resp):
        resp.media = self.reader.get_all(req.context.requester)["global"]


class KindResource(Resource):
    def __init__(self, reader):
        self.reader = reader

    def on_get(self, req, resp, kind):
        resp.media = self.reader.get_kind(req.context.requester, kind)


class RuleResource(Resource):
    def __init__(self, reader, handler):
        self.reader = reader
        self.handler = handler

    def on_get(self, req, resp, kind, rule_id):
        resp.media = self.reader.get_rule(req.context.requester, kind, rule_id)

    def on_put(self, req, resp, kind, rule_id):
        self.handler.put_rule(req.context.requester, kind, rule_id, json_body(req),
                              before=req.get_param("before") or None, after=req.get_param("after") or None)
        resp.media = {}

    def on_delete(self, req, resp, kind, rule_id):
        self.handler.delete_rule(req.context.requester, kind, rule_id)
        resp.media = {}


class RuleEnabledResource(Resource):
    def __init__(self, reader, handler):
        self.reader = reader
        self.handler = handler

    def on_get(self, req, resp, kind, rule_id):
        resp.media = self.reader.get_attr(req.context.requester, kind, rule_id, "enabled")

    def on_put(self, req, resp, kind, rule_id):
        self.handler.set_enabled(req.context.requester, kind, rule_id, json_body(req))
        resp.media = {}


class RuleActionsResource(Resource):
    def __init__(self, reader, handler):
        self.reader = reader
        self.handler = handler

    def on_get(self, req, resp, kind, rule_id):
        resp.media = self.reader.get_attr(req.context.requester, kind, rule_id, "actions")

    def on_put(self, req, resp, kind, rule_id):
        self.handler.set_actions(req.context.requester, kind, rule_id, json_body(req))
        resp.media = {}


def register(app, hs):
    reader, handler = hs.push_rules_reader, hs.push_rules
    add_client_route(app, "/pushrules/", PushRulesResource(reader))
    add_client_route(app, "/pushrules/global/", GlobalRulesetResource(reader))
    add_client_route(app, "/pushrules/global/{kind}/", KindResource(reader))
    add_client_route(app, "/pushrules/global/{kind}/{rule_id}", RuleResource(reader, handler))
    add_client_route(app, "/pushrules/global/{kind}/{rule_id}/enabled", RuleEnabledResource(reader, handler))
    add_client_route(app, "/pushrules/global/{kind}/{rule_id}/actions", RuleActionsResource(reader, handler))
