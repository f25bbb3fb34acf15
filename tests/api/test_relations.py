"""GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]] and the
bundled aggregations of m.replace and m.reference (client-server API "Forming relationships
between events", "Event replacements", "Reference relations", "Event annotations and
reactions"), against a real server and database."""

import uuid

import jsonschema
import pytest

from hs.handlers.relations import RelationHandler
from hs.handlers.room_reads import RoomReadHandler
from hs.storage.database import Database
from hs.storage.events import EventStore
from hs.storage.relations import RelationStore
from hs.storage.rooms import RoomStore
from hs.storage.state import StateStore
from tests.api.test_response_schemas import response_schema
from tests.harness import Client, assert_error, q

RELATIONS = "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}"
RELATIONS_REL_TYPE = RELATIONS + "/{relType}"
RELATIONS_EVENT_TYPE = RELATIONS_REL_TYPE + "/{eventType}"

# The spec's ClientEvent schema, as the bundled spec inlines it in the /relations response.
CLIENT_EVENT = response_schema(RELATIONS, "GET", 200)["allOf"][1]["properties"]["chunk"]["items"]
# The spec has no schema for the aggregations; these are its prose. Event replacements,
# "Server-side aggregation of m.replace relationships": the most recent valid replacement,
# "formatted as normal". Reference relations: {"chunk": [{"event_id": ...}]}.
REPLACE_AGGREGATION = {"allOf": [CLIENT_EVENT, {
    "type": "object",
    "properties": {"content": {"type": "object", "required": ["m.new_content", "m.relates_to"]}},
}]}
REFERENCE_AGGREGATION = {
    "type": "object",
    "required": ["chunk"],
    "properties": {"chunk": {"type": "array", "items": {
        "type": "object", "required": ["event_id"], "additionalProperties": False,
        "properties": {"event_id": {"type": "string", "pattern": "^\\$"}}}}},
}


def user(homeserver, name: str) -> Client:
    return Client(homeserver).register(f"{name}{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def alice(homeserver):
    return user(homeserver, "alice")


@pytest.fixture(scope="module")
def bob(homeserver):
    return user(homeserver, "bob")


@pytest.fixture(scope="module")
def carol(homeserver):
    return user(homeserver, "carol")


def create_room(client, *invitees_who_join, version: str = "12", **body) -> str:
    resp = client.post("/createRoom", {"room_version": version, "preset": "public_chat", **body})
    assert resp.status_code == 200, resp.text
    room_id = resp.json()["room_id"]
    for other in invitees_who_join:
        join(other, room_id)
    return room_id


def join(client, room_id):
    resp = client.post(f"/rooms/{q(room_id)}/join", {})
    assert resp.status_code == 200, resp.text


def leave(client, room_id):
    resp = client.post(f"/rooms/{q(room_id)}/leave", {})
    assert resp.status_code == 200, resp.text


def put_event(client, room_id, content, event_type="m.room.message"):
    return client.put(f"/rooms/{q(room_id)}/send/{q(event_type)}/{uuid.uuid4().hex}", content)


def send(client, room_id, content=None, event_type="m.room.message") -> str:
    resp = put_event(client, room_id, content if content is not None else text("hello"), event_type)
    assert resp.status_code == 200, resp.text
    return resp.json()["event_id"]


def text(body: str, **extra) -> dict:
    return {"msgtype": "m.text", "body": body, **extra}


def relates(rel_type: str, target: str, body: str = "child", **extra) -> dict:
    return text(body, **{"m.relates_to": {"rel_type": rel_type, "event_id": target}}, **extra)


def edit(target: str, new_body: str) -> dict:
    return relates("m.replace", target, f"* {new_body}", **{"m.new_content": text(new_body)})


def reaction(target: str, key: str) -> dict:
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}


def redact(client, room_id, event_id):
    resp = client.put(f"/rooms/{q(room_id)}/redact/{q(event_id)}/{uuid.uuid4().hex}", {})
    assert resp.status_code == 200, resp.text


def relations(client, room_id, event_id, *path, **params):
    suffix = "".join("/" + q(p) for p in path)
    return client.get(f"/_matrix/client/v1/rooms/{q(room_id)}/relations/{q(event_id)}{suffix}", params=params)


def relation_ids(client, room_id, event_id, *path, **params) -> list[str]:
    resp = relations(client, room_id, event_id, *path, **params)
    assert resp.status_code == 200, resp.text
    return [e["event_id"] for e in resp.json()["chunk"]]


def get_event(client, room_id, event_id) -> dict:
    resp = client.get(f"/rooms/{q(room_id)}/event/{q(event_id)}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def bundled(client, room_id, event_id) -> dict:
    return get_event(client, room_id, event_id)["unsigned"].get("m.relations", {})


def assert_spec(resp, path_template):
    assert resp.status_code == 200, resp.text
    jsonschema.validate(resp.json(), response_schema(path_template, "GET", 200),
                        cls=jsonschema.Draft202012Validator)


# --- listing children ------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1", "11", "12"])
def test_children_are_listed_most_recent_first_in_the_spec_shape(alice, version):
    room = create_room(alice, version=version)
    parent = send(alice, room)
    children = [send(alice, room, relates("org.example.rel", parent, f"child {n}")) for n in range(3)]
    send(alice, room, text("unrelated"))

    resp = relations(alice, room, parent)

    assert_spec(resp, RELATIONS)
    body = resp.json()
    assert [e["event_id"] for e in body["chunk"]] == children[::-1]
    assert body["chunk"][0]["content"]["m.relates_to"] == {"rel_type": "org.example.rel", "event_id": parent}
    assert body["chunk"][0]["room_id"] == room
    assert "next_batch" not in body and "prev_batch" not in body and "recursion_depth" not in body


def test_rel_type_in_the_path_keeps_only_that_relationship(alice):
    room = create_room(alice)
    parent = send(alice, room)
    reference = send(alice, room, relates("m.reference", parent))
    send(alice, room, relates("org.example.rel", parent))

    resp = relations(alice, room, parent, "m.reference")

    assert_spec(resp, RELATIONS_REL_TYPE)
    assert [e["event_id"] for e in resp.json()["chunk"]] == [reference]


def test_event_type_in_the_path_keeps_only_that_event_type(alice):
    room = create_room(alice)
    parent = send(alice, room)
    note = send(alice, room, reaction(parent, "x"), "org.example.note")
    thumbs = send(alice, room, reaction(parent, "👍"), "m.reaction")

    resp = relations(alice, room, parent, "m.annotation", "m.reaction")

    assert_spec(resp, RELATIONS_EVENT_TYPE)
    assert [e["event_id"] for e in resp.json()["chunk"]] == [thumbs]
    assert relation_ids(alice, room, parent, "m.annotation", "org.example.note") == [note]


def test_backward_pagination_visits_every_child_once(alice):
    room = create_room(alice)
    parent = send(alice, room)
    children = [send(alice, room, relates("org.example.rel", parent, f"child {n}")) for n in range(7)]
    seen, token, pages = [], None, []
    while True:
        params = {"limit": 3} if token is None else {"limit": 3, "from": token}
        resp = relations(alice, room, parent, **params)
        assert_spec(resp, RELATIONS)
        body = resp.json()
        pages.append(body)
        seen += [e["event_id"] for e in body["chunk"]]
        token = body.get("next_batch")
        if token is None:
            break

    assert seen == children[::-1]
    assert [len(p["chunk"]) for p in pages] == [3, 3, 1]
    # "The absence of [prev_batch] means this is the start of the result set."
    assert "prev_batch" not in pages[0]
    assert pages[1]["prev_batch"] == pages[0]["next_batch"]


def test_forward_pagination_visits_every_child_once_in_chronological_order(alice):
    room = create_room(alice)
    parent = send(alice, room)
    children = [send(alice, room, relates("org.example.rel", parent, f"child {n}")) for n in range(5)]
    seen, token = [], None
    while True:
        params = {"dir": "f", "limit": 2} | ({"from": token} if token else {})
        body = relations(alice, room, parent, **params).json()
        seen += [e["event_id"] for e in body["chunk"]]
        token = body.get("next_batch")
        if token is None:
            break

    assert seen == children


def test_to_token_bounds_the_range_and_a_reversed_range_is_empty(alice):
    # relations.yaml: "passing a from token from page 2 of the results, and a to token from
    # page 1, would return the empty set." `to` is exclusive, as on /messages: it stands for
    # the last event of a page the client already has.
    room = create_room(alice)
    parent = send(alice, room)
    children = [send(alice, room, relates("org.example.rel", parent, f"child {n}")) for n in range(7)]
    page1 = relations(alice, room, parent, limit=2).json()
    page2 = relations(alice, room, parent, limit=2, **{"from": page1["next_batch"]}).json()
    page3 = relations(alice, room, parent, limit=2, **{"from": page2["next_batch"]}).json()

    between = relation_ids(alice, room, parent, limit=10, **{"from": page1["next_batch"],
                                                            "to": page3["next_batch"]})
    forwards = relation_ids(alice, room, parent, limit=10, dir="f", **{"from": page3["next_batch"],
                                                                      "to": page1["next_batch"]})
    reversed_range = relation_ids(alice, room, parent, limit=10, **{"from": page2["next_batch"],
                                                                    "to": page1["next_batch"]})

    assert [e["event_id"] for e in page2["chunk"] + page3["chunk"]] == children[4:0:-1]
    assert between == children[4:1:-1]
    assert forwards == children[2:5]
    assert reversed_range == []


def test_a_messages_token_works_as_from(alice):
    room = create_room(alice)
    parent = send(alice, room)
    older = send(alice, room, relates("org.example.rel", parent))
    messages = alice.get(f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": 1}).json()
    newer = send(alice, room, relates("org.example.rel", parent))

    assert relation_ids(alice, room, parent, **{"from": messages["start"]}) == [older]
    assert newer not in relation_ids(alice, room, parent, **{"from": messages["start"]})


@pytest.mark.parametrize("params", [{"from": "nonsense"}, {"to": "s12_3"}, {"dir": "x"}, {"limit": "ten"},
                                    {"limit": "0"}, {"recurse": "maybe"}])
def test_bad_query_parameters_are_m_invalid_param(alice, params):
    room = create_room(alice)
    parent = send(alice, room)

    assert_error(relations(alice, room, parent, **params), 400, "M_INVALID_PARAM")


def test_unknown_parent_event_is_not_found(alice):
    room = create_room(alice)

    assert_error(relations(alice, room, "$doesnotexist"), 404, "M_NOT_FOUND")


def test_parent_in_another_room_is_not_found(alice):
    room, other = create_room(alice), create_room(alice)
    parent = send(alice, other)

    assert_error(relations(alice, room, parent), 404, "M_NOT_FOUND")


def test_non_member_of_a_private_room_gets_not_found(alice, carol):
    room = create_room(alice, preset="private_chat")
    parent = send(alice, room)
    send(alice, room, relates("org.example.rel", parent))

    assert_error(relations(carol, room, parent), 404, "M_NOT_FOUND")
    assert_error(relations(carol, "!nosuchroom:test.local", parent), 404, "M_NOT_FOUND")


def test_without_a_token_the_request_is_refused(homeserver, alice):
    room = create_room(alice)
    parent = send(alice, room)

    assert_error(relations(Client(homeserver), room, parent), 401, "M_MISSING_TOKEN")


def test_children_in_another_room_are_ignored(alice):
    # "Relationships which ... break the rules of a relationship, are simply ignored. An example
    # might be the parent and child being in different rooms."
    room, other = create_room(alice), create_room(alice)
    parent = send(alice, room)
    resp = put_event(alice, other, edit(parent, "edited from elsewhere"))
    assert resp.status_code == 200, resp.text

    assert relation_ids(alice, room, parent) == []
    assert "m.replace" not in bundled(alice, room, parent)


def test_a_redacted_child_is_no_longer_listed(alice):
    # "when a child event is redacted then the relationship is broken"
    room = create_room(alice)
    parent = send(alice, room)
    kept = send(alice, room, relates("org.example.rel", parent))
    gone = send(alice, room, relates("org.example.rel", parent))
    redact(alice, room, gone)

    assert relation_ids(alice, room, parent) == [kept]


# --- recursion ---------------------------------------------------------------------------------

def test_recurse_follows_relations_of_relations_and_reports_the_depth(alice):
    room = create_room(alice)
    parent = send(alice, room)
    chain, target = [], parent
    for n in range(4):
        target = send(alice, room, relates("m.reference", target, f"level {n + 1}"))
        chain.append(target)

    direct = relations(alice, room, parent, recurse="false").json()
    recursive = relations(alice, room, parent, recurse="true", limit=10)

    assert_spec(recursive, RELATIONS)
    assert direct["chunk"][0]["event_id"] == chain[0] and len(direct["chunk"]) == 1
    assert direct["recursion_depth"] == 1
    # "Homeservers SHOULD traverse at least 3 levels of relationships": we stop at 3.
    assert [e["event_id"] for e in recursive.json()["chunk"]] == chain[2::-1]
    assert recursive.json()["recursion_depth"] == 3


def test_recurse_applies_the_filters_at_every_level(alice, bob):
    # Relationships API: "Events that would match the filter, but whose only relation to the
    # original given event is through a non-matching intermediate event, will not be included."
    room = create_room(alice, bob)
    root = send(alice, room)
    reply = send(bob, room, relates("m.thread", root, "reply"))
    reply_edit = send(bob, room, edit(reply, "reply, edited"))
    reference = send(alice, room, relates("m.reference", root))
    reference_edit = send(alice, room, edit(reference, "reference, edited"))

    assert relation_ids(alice, room, root, recurse="true", limit=10) == [
        reference_edit, reference, reply_edit, reply]
    assert relation_ids(alice, room, root, "m.thread", recurse="true") == [reply]
    assert relation_ids(alice, room, root, "m.replace", recurse="true") == []


# --- visibility --------------------------------------------------------------------------------

def test_a_user_who_left_does_not_see_children_sent_after_leaving(alice, bob):
    room = create_room(alice, bob)
    parent = send(alice, room)
    before = send(alice, room, relates("m.reference", parent))
    leave(bob, room)
    after = send(alice, room, relates("m.reference", parent))
    edited = send(alice, room, edit(parent, "edited after bob left"))

    assert relation_ids(alice, room, parent, limit=10) == [edited, after, before]
    assert relation_ids(bob, room, parent, limit=10) == [before]
    assert bundled(bob, room, parent) == {"m.reference": {"chunk": [{"event_id": before}]}}
    assert [e["event_id"] for e in bundled(alice, room, parent)["m.reference"]["chunk"]] == [before, after]


def test_joined_history_hides_children_from_before_the_join(alice, carol):
    room = create_room(alice, initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                                              "content": {"history_visibility": "joined"}}])
    parent = send(alice, room)
    join(carol, room)

    assert_error(relations(carol, room, parent), 404, "M_NOT_FOUND")


def test_an_edit_sent_while_the_reader_was_away_is_not_shown_to_them(alice, carol):
    room = create_room(alice, initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                                              "content": {"history_visibility": "joined"}}])
    join(carol, room)
    original = send(alice, room)
    seen = send(alice, room, edit(original, "seen"))
    leave(carol, room)
    send(alice, room, edit(original, "edited while carol was away"))
    join(carol, room)

    assert bundled(carol, room, original)["m.replace"]["event_id"] == seen
    assert relation_ids(carol, room, original) == [seen]


# --- annotations -------------------------------------------------------------------------------

def test_annotations_are_listed_but_not_bundled(alice):
    # Event annotations, "Server-side aggregation of m.annotation relationships": not aggregated.
    room = create_room(alice)
    parent = send(alice, room)
    thumbs = send(alice, room, reaction(parent, "👍"), "m.reaction")

    assert relation_ids(alice, room, parent, "m.annotation") == [thumbs]
    assert "m.annotation" not in bundled(alice, room, parent)


def test_the_same_annotation_twice_is_m_duplicate_annotation(alice):
    room = create_room(alice)
    parent = send(alice, room)
    send(alice, room, reaction(parent, "👍"), "m.reaction")

    assert_error(put_event(alice, room, reaction(parent, "👍"), "m.reaction"), 400, "M_DUPLICATE_ANNOTATION")


def test_another_key_or_another_user_may_annotate_again(alice, bob):
    room = create_room(alice, bob)
    parent = send(alice, room)
    send(alice, room, reaction(parent, "👍"), "m.reaction")

    assert put_event(alice, room, reaction(parent, "👎"), "m.reaction").status_code == 200
    assert put_event(bob, room, reaction(parent, "👍"), "m.reaction").status_code == 200


def test_a_redacted_annotation_may_be_sent_again(alice):
    # "unless the first event has been redacted"
    room = create_room(alice)
    parent = send(alice, room)
    first = send(alice, room, reaction(parent, "👍"), "m.reaction")
    redact(alice, room, first)

    assert put_event(alice, room, reaction(parent, "👍"), "m.reaction").status_code == 200


# --- m.replace ---------------------------------------------------------------------------------

def test_the_most_recent_edit_is_bundled_whole_and_the_content_is_left_intact(alice):
    room = create_room(alice)
    original = send(alice, room, text("I really like cake"))
    send(alice, room, edit(original, "I really like chocolate cake"))
    latest = send(alice, room, edit(original, "I really like carrot cake"))

    event = get_event(alice, room, original)

    replacement = event["unsigned"]["m.relations"]["m.replace"]
    jsonschema.validate(replacement, REPLACE_AGGREGATION)
    assert replacement["event_id"] == latest
    assert replacement["content"]["m.new_content"] == text("I really like carrot cake")
    assert replacement["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": original}
    # "servers should not replace the content with that of the replacement event"
    assert event["content"] == text("I really like cake")


@pytest.mark.parametrize("version", ["1", "11"])
def test_edits_are_bundled_in_older_room_versions(alice, version):
    room = create_room(alice, version=version)
    original = send(alice, room)
    latest = send(alice, room, edit(original, "edited"))

    assert bundled(alice, room, original)["m.replace"]["event_id"] == latest


def test_edits_are_bundled_on_messages_context_and_relations(alice):
    room = create_room(alice)
    original = send(alice, room)
    latest = send(alice, room, edit(original, "edited"))
    reference = send(alice, room, relates("m.reference", original))
    reference_of_reference = send(alice, room, relates("m.reference", reference))

    messages = alice.get(f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": 10}).json()["chunk"]
    context = alice.get(f"/rooms/{q(room)}/context/{q(original)}").json()["event"]
    listed = relations(alice, room, original, "m.reference").json()["chunk"]

    by_id = {e["event_id"]: e for e in messages}
    assert by_id[original]["unsigned"]["m.relations"]["m.replace"]["event_id"] == latest
    assert context["unsigned"]["m.relations"]["m.replace"]["event_id"] == latest
    # a child listed by /relations carries its own aggregations
    assert [e["event_id"] for e in listed] == [reference]
    assert listed[0]["unsigned"]["m.relations"] == {"m.reference": {"chunk": [{"event_id": reference_of_reference}]}}


def test_an_edit_by_another_user_is_not_bundled(alice, bob):
    room = create_room(alice, bob)
    original = send(alice, room)
    send(bob, room, edit(original, "bob's version"))

    assert "m.replace" not in bundled(alice, room, original)


def test_an_edit_that_changes_the_event_type_is_not_bundled(alice):
    room = create_room(alice)
    original = send(alice, room)
    send(alice, room, edit(original, "as a note"), "org.example.note")

    assert "m.replace" not in bundled(alice, room, original)


def test_an_edit_without_new_content_is_ignored_in_favour_of_an_older_valid_one(alice):
    room = create_room(alice)
    original = send(alice, room)
    valid = send(alice, room, edit(original, "valid"))
    send(alice, room, relates("m.replace", original, "* no new content"))

    assert bundled(alice, room, original)["m.replace"]["event_id"] == valid


def test_an_encrypted_edit_needs_no_cleartext_new_content(alice):
    # m.new_content of an encrypted replacement is inside the ciphertext.
    room = create_room(alice)
    original = send(alice, room, {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AAAA"}, "m.room.encrypted")
    latest = send(alice, room, {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "BBBB",
                                "m.relates_to": {"rel_type": "m.replace", "event_id": original}},
                  "m.room.encrypted")

    assert bundled(alice, room, original)["m.replace"]["event_id"] == latest


def test_an_edit_of_an_edit_is_not_bundled(alice):
    room = create_room(alice)
    original = send(alice, room)
    first_edit = send(alice, room, edit(original, "edited"))
    send(alice, room, edit(first_edit, "edited edit"))

    assert "m.relations" not in get_event(alice, room, first_edit)["unsigned"]


def test_a_state_event_is_not_edited(alice):
    room = create_room(alice)
    resp = alice.put(f"/rooms/{q(room)}/state/org.example.state/key", {"body": "state"})
    state_event = resp.json()["event_id"]
    send(alice, room, edit(state_event, "edited"), "org.example.state")

    assert "m.relations" not in get_event(alice, room, state_event)["unsigned"]


def test_redacting_the_latest_edit_reverts_to_the_one_before(alice):
    # Redactions of edited events: "if it was the most recent edit, the event is in effect
    # reverted to its content before the redacted edit".
    room = create_room(alice)
    original = send(alice, room)
    first = send(alice, room, edit(original, "first"))
    second = send(alice, room, edit(original, "second"))
    redact(alice, room, second)

    assert bundled(alice, room, original)["m.replace"]["event_id"] == first
    redact(alice, room, first)
    assert "m.replace" not in bundled(alice, room, original)


def test_a_redacted_original_bundles_no_edit(alice):
    # "If the original event is redacted, any m.replace relationship should not be bundled"
    room = create_room(alice)
    original = send(alice, room)
    send(alice, room, edit(original, "edited"))
    redact(alice, room, original)

    event = get_event(alice, room, original)

    assert event["content"] == {}
    assert "m.replace" not in event["unsigned"].get("m.relations", {})


# --- m.reference -------------------------------------------------------------------------------

def test_references_are_bundled_as_a_chunk_of_event_ids(alice, bob):
    room = create_room(alice, bob)
    parent = send(alice, room)
    one = send(alice, room, relates("m.reference", parent))
    two = send(bob, room, relates("m.reference", parent))

    aggregation = bundled(alice, room, parent)["m.reference"]

    jsonschema.validate(aggregation, REFERENCE_AGGREGATION)
    assert aggregation == {"chunk": [{"event_id": one}, {"event_id": two}]}


def test_an_event_nobody_related_to_has_no_m_relations(alice):
    room = create_room(alice)
    parent = send(alice, room)
    send(alice, room, reaction(parent, "👍"), "m.reaction")

    assert "m.relations" not in get_event(alice, room, parent)["unsigned"]


# --- cost --------------------------------------------------------------------------------------

class CountingDatabase(Database):
    """Records the queries run, except while `counting` is off."""

    def __init__(self, dsn):
        super().__init__(dsn, max_connections=2)
        self.queries: list[str] = []
        self.counting = True

    def execute(self, desc, sql, params=()):
        if self.counting:
            self.queries.append(desc)
        return super().execute(desc, sql, params)


class CountingReads(RoomReadHandler):
    """Counts calls of `visible` and leaves its queries out of the database's count: its cost
    per event is RoomReadHandler's (reported to its owner); what is measured here is that the
    aggregations call it a fixed number of times per page."""

    def __init__(self, db, rooms, events, state):
        super().__init__(rooms, events, state)
        self.db = db
        self.visible_calls = 0

    def visible(self, user_id, stored, access):
        self.visible_calls += 1
        self.db.counting = False
        try:
            return super().visible(user_id, stored, access)
        finally:
            self.db.counting = True


class Reader:
    def __init__(self, client):
        self.user_id, self.device_id = client.user_id, client.device_id
        self.txn_device_id = client.device_id


def related_page(alice, bob, size: int) -> list[str]:
    room = create_room(alice, bob)
    ids = []
    for n in range(size):
        parent = send(alice, room, text(f"parent {n}"))
        send(alice, room, edit(parent, f"parent {n}, edited"))
        send(alice, room, relates("m.reference", parent))
        root = send(bob, room, text(f"root {n}"))
        reply = send(alice, room, relates("m.thread", root, f"reply to {n}"))
        send(alice, room, edit(reply, f"reply to {n}, edited"))
        ids += [parent, root, send(alice, room, text(f"plain {n}"))]
    return ids


def aggregation_cost(db_dsn, client, event_ids) -> tuple[list[str], int, dict]:
    db = CountingDatabase(db_dsn)
    try:
        state = StateStore(db)
        events = EventStore(db, state)
        reads = CountingReads(db, RoomStore(db), events, state)
        handler = RelationHandler(RelationStore(db), events, reads)
        result = handler.bundled_aggregations(event_ids, Reader(client))
        return db.queries, reads.visible_calls, result
    finally:
        db.close()


def test_aggregations_of_a_page_cost_the_same_queries_whatever_its_size(db_dsn, alice, bob):
    small_page, large_page = related_page(alice, bob, 2), related_page(alice, bob, 12)

    small_queries, small_visible_calls, small = aggregation_cost(db_dsn, alice, small_page)
    large_queries, large_visible_calls, large = aggregation_cost(db_dsn, alice, large_page)

    assert len(small) == 4 and len(large) == 24
    assert all("m.replace" in large[eid]["m.thread"]["latest_event"]["unsigned"]["m.relations"]
               for eid in large if "m.thread" in large[eid])
    assert len(large_queries) == len(small_queries) <= 20, large_queries
    assert large_visible_calls == small_visible_calls <= 3
