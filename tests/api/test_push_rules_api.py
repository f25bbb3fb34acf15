"""/pushrules/...: the ruleset a user sees, adding, ordering, enabling and deleting rules, the
spec's errors, and the m.push_rules event in /sync."""

import time

from hs.storage.database import Database
from hs.storage.push_rules import PushRuleStore
from tests.api.test_response_schemas import assert_matches_spec
from tests.api.test_sync import sync
from tests.api.test_sync_longpoll import Parked
from tests.harness import Client, assert_error, new_user, q

BASE = "/pushrules/global"


def rule_path(kind, rule_id, attr=None):
    return f"{BASE}/{kind}/{q(rule_id)}" + (f"/{attr}" if attr else "")


def put_rule(client, kind, rule_id, body, **params):
    return client.put(rule_path(kind, rule_id), body, params=params)


def ids(client, kind):
    resp = client.get(f"{BASE}/")
    assert resp.status_code == 200, resp.text
    return [r["rule_id"] for r in resp.json()[kind]]


def push_rules_events(body):
    return [e["content"] for e in body["account_data"]["events"] if e["type"] == "m.push_rules"]


def test_new_user_gets_the_predefined_rules_with_their_own_id(homeserver):
    alice = new_user(homeserver, "pr")
    resp = alice.get("/pushrules/")
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, "/_matrix/client/v3/pushrules/")
    rules = resp.json()["global"]
    assert set(rules) == {"override", "content", "room", "sender", "underride"}
    assert rules["override"][0] == {"rule_id": ".m.rule.master", "default": True, "enabled": False,
                                    "conditions": [], "actions": []}
    invite = next(r for r in rules["override"] if r["rule_id"] == ".m.rule.invite_for_me")
    assert invite["conditions"][2] == {"kind": "event_match", "key": "state_key", "pattern": alice.user_id}
    assert rules["content"] == [{"rule_id": ".m.rule.contains_user_name", "default": True, "enabled": True,
                                 "pattern": alice.user_id[1:].split(":")[0],
                                 "actions": ["notify", {"set_tweak": "sound", "value": "default"},
                                             {"set_tweak": "highlight"}]}]
    assert [r["rule_id"] for r in rules["underride"]] == [
        ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one", ".m.rule.message",
        ".m.rule.encrypted"]
    assert alice.get(f"{BASE}/").json() == rules
    assert alice.get(f"{BASE}/underride/").json() == rules["underride"]


def test_pushrules_need_an_access_token(homeserver):
    assert_error(Client(homeserver).get("/pushrules/"), 401, "M_MISSING_TOKEN")
    assert_error(Client(homeserver, "nope").get("/pushrules/"), 401, "M_UNKNOWN_TOKEN")
    assert_error(Client(homeserver).put(rule_path("override", "x"), {"actions": []}), 401, "M_MISSING_TOKEN")


def test_add_get_and_delete_a_content_rule(homeserver):
    alice = new_user(homeserver, "pr")
    resp = put_rule(alice, "content", "cake", {"pattern": "cake*lie", "actions": ["notify"]})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    rule = alice.get(rule_path("content", "cake"))
    assert rule.status_code == 200
    assert_matches_spec(rule, "/_matrix/client/v3/pushrules/global/{kind}/{ruleId}")
    assert rule.json() == {"rule_id": "cake", "default": False, "enabled": True, "pattern": "cake*lie",
                           "actions": ["notify"]}
    # User rules come before the predefined ones of their kind.
    assert ids(alice, "content") == ["cake", ".m.rule.contains_user_name"]
    assert alice.delete(rule_path("content", "cake")).status_code == 200
    assert_error(alice.get(rule_path("content", "cake")), 404, "M_NOT_FOUND")
    assert_error(alice.delete(rule_path("content", "cake")), 404, "M_NOT_FOUND")


def test_rules_are_per_user(homeserver):
    alice, bob = new_user(homeserver, "pr"), new_user(homeserver, "pr")
    assert put_rule(alice, "room", "!r:test.local", {"actions": []}).status_code == 200
    assert ids(alice, "room") == ["!r:test.local"]
    assert ids(bob, "room") == []
    assert_error(bob.get(rule_path("room", "!r:test.local")), 404, "M_NOT_FOUND")


def test_new_rule_without_before_or_after_goes_first_and_update_keeps_its_place(homeserver):
    alice = new_user(homeserver, "pr")
    for rule_id in ("a", "b", "c"):
        assert put_rule(alice, "override", rule_id, {"conditions": [], "actions": []}).status_code == 200
    assert ids(alice, "override")[:4] == [".m.rule.master", "c", "b", "a"]
    resp = put_rule(alice, "override", "b", {"conditions": [{"kind": "event_match", "key": "type",
                                                             "pattern": "m.x"}], "actions": ["notify"]})
    assert resp.status_code == 200, resp.text
    assert ids(alice, "override")[:4] == [".m.rule.master", "c", "b", "a"]
    assert alice.get(rule_path("override", "b")).json()["conditions"] == [
        {"kind": "event_match", "key": "type", "pattern": "m.x"}]


def test_before_and_after_place_the_rule_next_to_another(homeserver):
    alice = new_user(homeserver, "pr")
    for rule_id in ("a", "b"):
        put_rule(alice, "underride", rule_id, {"conditions": [], "actions": []})
    assert ids(alice, "underride")[:2] == ["b", "a"]
    assert put_rule(alice, "underride", "c", {"conditions": [], "actions": []}, after="a").status_code == 200
    assert ids(alice, "underride")[:3] == ["b", "a", "c"]
    assert put_rule(alice, "underride", "d", {"conditions": [], "actions": []}, before="a").status_code == 200
    assert ids(alice, "underride")[:4] == ["b", "d", "a", "c"]
    # An existing rule moves; with both, `before` decides (spec setPushRule).
    resp = put_rule(alice, "underride", "b", {"conditions": [], "actions": []}, before="c", after="d")
    assert resp.status_code == 200, resp.text
    assert ids(alice, "underride")[:4] == ["d", "a", "b", "c"]


def test_before_or_after_an_unknown_or_predefined_rule_is_refused(homeserver):
    alice = new_user(homeserver, "pr")
    assert_error(put_rule(alice, "override", "x", {"conditions": [], "actions": []}, before="missing"),
                 400, "M_UNKNOWN")
    assert_error(put_rule(alice, "override", "x", {"conditions": [], "actions": []}, after=".m.rule.master"),
                 400, "M_UNKNOWN")
    assert_error(alice.get(rule_path("override", "x")), 404, "M_NOT_FOUND")


def test_bad_kinds_rule_ids_and_bodies_are_refused(homeserver):
    alice = new_user(homeserver, "pr")
    assert_error(put_rule(alice, "postcontent", "x", {"actions": []}), 400, "M_INVALID_PARAM")
    assert_error(alice.get(rule_path("bogus", "x")), 400, "M_INVALID_PARAM")
    assert_error(put_rule(alice, "override", ".m.rule.mine", {"conditions": [], "actions": []}),
                 400, "M_INVALID_PARAM")
    assert_error(put_rule(alice, "override", ".m.rule.master", {"conditions": [], "actions": []}),
                 400, "M_INVALID_PARAM")
    assert_error(put_rule(alice, "override", "back\\slash", {"conditions": [], "actions": []}),
                 400, "M_INVALID_PARAM")
    assert_error(put_rule(alice, "override", "a/b", {"conditions": [], "actions": []}), 400, "M_INVALID_PARAM")
    assert_error(put_rule(alice, "override", "x", {"conditions": []}), 400, "M_MISSING_PARAM")
    assert_error(put_rule(alice, "override", "x", {"conditions": [], "actions": ["explode"]}), 400, "M_BAD_JSON")
    assert_error(put_rule(alice, "override", "x", {"conditions": [], "actions": [{"set_tweak": "sound"}]}),
                 400, "M_BAD_JSON")
    assert_error(put_rule(alice, "override", "x", {"conditions": [{"key": "type"}], "actions": []}),
                 400, "M_BAD_JSON")
    assert_error(put_rule(alice, "override", "x", {"conditions": "all", "actions": []}), 400, "M_BAD_JSON")
    assert_error(put_rule(alice, "content", "x", {"actions": []}), 400, "M_MISSING_PARAM")
    assert_error(put_rule(alice, "content", "x", {"pattern": 5, "actions": []}), 400, "M_BAD_JSON")
    resp = alice.request("PUT", "/_matrix/client/v3" + rule_path("override", "x"), data=b"not json")
    assert_error(resp, 400, "M_NOT_JSON")
    assert [r for r in ids(alice, "override") if not r.startswith(".")] == []


def test_enable_and_disable_predefined_and_own_rules(homeserver):
    alice = new_user(homeserver, "pr")
    path = rule_path("override", ".m.rule.master", "enabled")
    assert alice.get(path).json() == {"enabled": False}
    assert alice.put(path, {"enabled": True}).status_code == 200
    assert alice.get(path).json() == {"enabled": True}
    assert alice.get(rule_path("override", ".m.rule.master")).json()["enabled"] is True
    put_rule(alice, "sender", "@spam:test.local", {"actions": []})
    own = rule_path("sender", "@spam:test.local", "enabled")
    assert alice.get(own).json() == {"enabled": True}
    assert alice.put(own, {"enabled": False}).status_code == 200
    assert alice.get(own).json() == {"enabled": False}
    # Updating the rule keeps it disabled.
    put_rule(alice, "sender", "@spam:test.local", {"actions": ["notify"]})
    assert alice.get(own).json() == {"enabled": False}
    assert_error(alice.put(own, {"enabled": "no"}), 400, "M_BAD_JSON")
    assert_error(alice.put(own, {}), 400, "M_MISSING_PARAM")
    assert_error(alice.put(rule_path("sender", "@nobody:test.local", "enabled"), {"enabled": True}),
                 404, "M_NOT_FOUND")
    assert_error(alice.get(rule_path("override", ".m.rule.unknown", "enabled")), 404, "M_NOT_FOUND")


def test_set_actions_of_predefined_and_own_rules(homeserver):
    alice = new_user(homeserver, "pr")
    path = rule_path("underride", ".m.rule.message", "actions")
    assert alice.get(path).json() == {"actions": ["notify"]}
    assert alice.put(path, {"actions": []}).status_code == 200
    assert alice.get(path).json() == {"actions": []}
    put_rule(alice, "room", "!r:test.local", {"actions": []})
    own = rule_path("room", "!r:test.local", "actions")
    new = ["notify", {"set_tweak": "sound", "value": "default"}]
    assert alice.put(own, {"actions": new}).status_code == 200
    assert alice.get(own).json() == {"actions": new}
    assert_error(alice.put(own, {"actions": "notify"}), 400, "M_BAD_JSON")
    assert_error(alice.put(rule_path("room", "!none:test.local", "actions"), {"actions": []}), 404, "M_NOT_FOUND")


def test_predefined_rules_cannot_be_deleted(homeserver):
    alice = new_user(homeserver, "pr")
    assert_error(alice.delete(rule_path("override", ".m.rule.master")), 404, "M_NOT_FOUND")
    assert ids(alice, "override")[0] == ".m.rule.master"


def test_initial_sync_holds_the_push_rules(homeserver):
    alice = new_user(homeserver, "pr")
    body = sync(alice)
    assert push_rules_events(body) == [alice.get("/pushrules/").json()]
    # A filter that leaves out account data leaves them out too.
    filtered = sync(alice, filter={"account_data": {"not_types": ["m.push_rules"]}})
    assert push_rules_events(filtered) == []


def test_incremental_sync_holds_push_rules_only_when_they_changed(homeserver):
    alice = new_user(homeserver, "pr")
    since = sync(alice)["next_batch"]
    assert push_rules_events(sync(alice, since=since)) == []
    put_rule(alice, "content", "cake", {"pattern": "cake", "actions": ["notify"]})
    body = sync(alice, since=since)
    events = push_rules_events(body)
    assert len(events) == 1
    assert events[0]["global"]["content"][0]["rule_id"] == "cake"
    assert push_rules_events(sync(alice, since=body["next_batch"])) == []


def test_a_parked_sync_wakes_when_the_rules_change(homeserver):
    alice = new_user(homeserver, "pr")
    since = sync(alice)["next_batch"]
    parked = Parked(alice, since=since, timeout=20000)
    time.sleep(0.5)
    alice.put(rule_path("override", ".m.rule.master", "enabled"), {"enabled": True})
    body, elapsed = parked.result()
    assert elapsed < 10
    events = push_rules_events(body)
    assert len(events) == 1 and events[0]["global"]["override"][0]["enabled"] is True


def test_push_rules_stream_rows_name_the_user_whose_rules_changed(homeserver, db_dsn):
    alice, bob = new_user(homeserver, "pr"), new_user(homeserver, "pr")
    db = Database(db_dsn, max_connections=1)
    try:
        store = PushRuleStore(db)
        start = db.execute("t", "SELECT COALESCE(MAX(stream_id), 0) FROM push_rules_stream")[0][0]
        put_rule(alice, "room", "!a:test.local", {"actions": []})
        put_rule(bob, "room", "!b:test.local", {"actions": []})
        alice.delete(rule_path("room", "!a:test.local"))
        rows = store.get_stream_rows(start, start + 100, 100)
        assert [r[1] for r in rows] == [{"user_id": alice.user_id}, {"user_id": bob.user_id},
                                         {"user_id": alice.user_id}]
        assert [r[0] for r in rows] == sorted(r[0] for r in rows)
        assert store.get_stream_rows(start, rows[1][0], 100) == rows[:2]
        assert store.get_stream_rows(start, start + 100, 1) == rows[:1]
        assert store.get_stream_rows(rows[0][0], rows[1][0], 100) == rows[1:2]
    finally:
        db.close()


def test_full_state_sync_resends_the_push_rules_and_the_limit_counts_them_as_oldest(homeserver):
    alice = new_user(homeserver, "pr")
    since = sync(alice)["next_batch"]
    assert len(push_rules_events(sync(alice, since=since, full_state="true"))) == 1
    assert len(push_rules_events(sync(alice, filter={"account_data": {"limit": 1}}))) == 1
    assert alice.put(f"/user/{q(alice.user_id)}/account_data/org.example.a", {"a": 1}).status_code == 200
    body = sync(alice, filter={"account_data": {"limit": 1}})
    assert [e["type"] for e in body["account_data"]["events"]] == ["org.example.a"]


def test_rules_for_users_reads_many_users_at_once_and_sees_changes(homeserver, db_dsn):
    from hs.events.push_evaluator import PushContext, evaluate
    from hs.handlers.push_rules import PushRulesReader

    alice, bob = new_user(homeserver, "pr"), new_user(homeserver, "pr")
    put_rule(alice, "room", "!quiet:test.local", {"actions": []})
    db = Database(db_dsn, max_connections=1)
    try:
        reader = PushRulesReader(PushRuleStore(db))
        rules = reader.rules_for_users([alice.user_id, bob.user_id])
        assert set(rules) == {alice.user_id, bob.user_id}
        event = {"type": "m.room.message", "room_id": "!quiet:test.local", "sender": "@c:test.local",
                 "content": {"msgtype": "m.text", "body": "hi"}}

        def actions(user):
            return evaluate(reader.rules_for_users([user.user_id])[user.user_id], event,
                            PushContext(user_id=user.user_id, member_count=3))
        assert actions(alice) is None
        assert actions(bob) == ["notify"]
        # Another process (the master) changed the rules: its stream row makes a reader invalidate.
        alice.delete(rule_path("room", "!quiet:test.local"))
        assert actions(alice) is None  # still cached
        reader.invalidate(alice.user_id)
        assert actions(alice) == ["notify"]
    finally:
        db.close()
