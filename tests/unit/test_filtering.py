"""hs/filtering.py: parsing and validating filters (client-server API "Filtering", schemas
sync_filter.yaml, event_filter.yaml, room_event_filter.yaml), matching events, event_fields
(appendices, "Dot-separated property paths") and the `filter` query parameter."""

import time

import pytest

from hs.events.dotted_keys import split_dotted_key
from hs.filtering import (
    DEFAULT_FILTER,
    EventFilter,
    FilterError,
    RoomEventFilter,
    UnknownFilterError,
    apply_event_fields,
    content_has_url,
    parse_filter,
    parse_room_event_filter,
    resolve_filter_param,
    room_event_filter_from_param,
    type_matches,
    wildcard_to_like,
)

# The request example of POST /user/{userId}/filter (filter.yaml).
SPEC_EXAMPLE = {
    "room": {
        "state": {"types": ["m.room.*"], "not_rooms": ["!726s6s6q:example.com"]},
        "timeline": {"limit": 10, "types": ["m.room.message"], "not_rooms": ["!726s6s6q:example.com"],
                     "not_senders": ["@spam:example.com"]},
        "ephemeral": {"types": ["m.receipt", "m.typing"], "not_rooms": ["!726s6s6q:example.com"],
                      "not_senders": ["@spam:example.com"]},
    },
    "presence": {"types": ["m.presence"], "not_senders": ["@alice:example.com"]},
    "event_format": "client",
    "event_fields": ["type", "content", "sender"],
}

ROOM = "!room:example.com"


def ev(type_="m.room.message", sender="@alice:example.com", room_id=ROOM, content=None, **extra):
    event = {"type": type_, "sender": sender, "content": {"body": "hi"} if content is None else content,
             **extra}
    if room_id is not None:
        event["room_id"] = room_id
    return event


def timeline(**spec) -> RoomEventFilter:
    return parse_filter({"room": {"timeline": spec}}).room.timeline


def invalid(json) -> str:
    with pytest.raises(FilterError) as info:
        parse_filter(json)
    return str(info.value)


# --- parsing ---

def test_the_empty_filter_lets_everything_through_with_client_format():
    f = parse_filter({})
    assert f.event_format == "client" and f.event_fields is None
    assert f.room.rooms is None and f.room.not_rooms == () and f.room.include_leave is False
    t = f.room.timeline
    assert (t.types, t.not_types, t.senders, t.not_senders, t.rooms, t.not_rooms) == (None, (), None, (), None, ())
    assert t.limit is None and t.contains_url is None
    assert (t.lazy_load_members, t.include_redundant_members, t.unread_thread_notifications) == (False, False, False)
    assert t.matches(ev()) and f.presence.matches({"type": "m.presence", "sender": "@a:b", "content": {}})


def test_default_filter_is_the_empty_filter():
    assert DEFAULT_FILTER.json == {}
    assert DEFAULT_FILTER.room.state.matches(ev("m.room.member", state_key="@a:b"))


def test_the_spec_example_parses_into_its_parts():
    f = parse_filter(SPEC_EXAMPLE)
    assert f.json is SPEC_EXAMPLE
    assert f.event_fields == ("type", "content", "sender")
    assert f.room.timeline.limit == 10
    assert f.room.timeline.types == ("m.room.message",)
    assert f.room.timeline.not_senders == ("@spam:example.com",)
    assert f.room.state.types == ("m.room.*",)
    assert f.room.ephemeral.types == ("m.receipt", "m.typing")
    assert f.presence.not_senders == ("@alice:example.com",)
    assert f.room.account_data.types is None


def test_room_event_filter_switches_are_read():
    t = timeline(lazy_load_members=True, include_redundant_members=True, unread_thread_notifications=True,
                 contains_url=False)
    assert (t.lazy_load_members, t.include_redundant_members, t.unread_thread_notifications) == (True, True, True)
    assert t.contains_url is False


def test_unknown_keys_are_allowed_and_kept_for_forward_compatibility():
    body = {"org.example.future": [1, 2], "room": {"timeline": {"org.matrix.labels": ["x"]}, "x": {}}}
    assert parse_filter(body).json == body


# Sytest's "Check creating invalid filters returns 4xx" (tests/80torture/10filters.pl) plus the
# schemas' other types; each message names where the filter is wrong.
@pytest.mark.parametrize("body, where", [
    ({"presence": "not_an_object"}, "presence"),
    ({"room": {"timeline": "not_an_object"}}, "room.timeline"),
    ({"room": {"state": "not_an_object"}}, "room.state"),
    ({"room": {"ephemeral": "not_an_object"}}, "room.ephemeral"),
    ({"room": {"account_data": "not_an_object"}}, "room.account_data"),
    ({"room": {"timeline": {"rooms": "not_a_list"}}}, "room.timeline.rooms"),
    ({"room": {"timeline": {"not_rooms": "not_a_list"}}}, "room.timeline.not_rooms"),
    ({"room": {"timeline": {"senders": "not_a_list"}}}, "room.timeline.senders"),
    ({"room": {"timeline": {"not_senders": "not_a_list"}}}, "room.timeline.not_senders"),
    ({"room": {"timeline": {"types": "not_a_list"}}}, "room.timeline.types"),
    ({"room": {"timeline": {"not_types": "not_a_list"}}}, "room.timeline.not_types"),
    ({"room": {"timeline": {"types": [0]}}}, "room.timeline.types[0]"),
    ({"room": {"timeline": {"rooms": ["not_a_room_id"]}}}, "room.timeline.rooms[0]"),
    ({"room": {"timeline": {"senders": ["not_a_sender_id"]}}}, "room.timeline.senders[0]"),
    ({"room": "not_an_object"}, "room"),
    ({"account_data": []}, "account_data"),
    ({"room": {"rooms": ["!a:b", "#alias:b"]}}, "room.rooms[1]"),
    ({"room": {"not_rooms": ["@user:b"]}}, "room.not_rooms[0]"),
    ({"room": {"include_leave": "true"}}, "room.include_leave"),
    ({"room": {"state": {"lazy_load_members": 1}}}, "room.state.lazy_load_members"),
    ({"room": {"state": {"include_redundant_members": "yes"}}}, "room.state.include_redundant_members"),
    ({"room": {"timeline": {"unread_thread_notifications": None}}}, "room.timeline.unread_thread_notifications"),
    ({"room": {"timeline": {"contains_url": "true"}}}, "room.timeline.contains_url"),
    ({"presence": {"not_senders": ["!room:b"]}}, "presence.not_senders[0]"),
    ({"presence": {"types": None}}, "presence.types"),
    ({"event_fields": "content.body"}, "event_fields"),
    ({"event_fields": ["type", 3]}, "event_fields[1]"),
    ({"event_format": "xml"}, "event_format"),
    ({"event_format": None}, "event_format"),
])
def test_invalid_filter_is_refused_with_where_it_is_wrong(body, where):
    assert where in invalid(body)


def test_a_filter_must_be_an_object():
    for body in ([], "x", None, 3):
        assert "must be an object" in invalid(body)


# --- limit (event_filter.yaml: "must be an integer greater than 0") ---

@pytest.mark.parametrize("limit", [-1, 1.5, "10", True, None, [10]])
def test_limit_that_is_not_a_non_negative_integer_is_refused(limit):
    assert "room.timeline.limit" in invalid({"room": {"timeline": {"limit": limit}}})


def test_limit_zero_is_accepted_as_no_events():
    # Synapse and Conduit accept it; clients that only want state send it.
    assert timeline(limit=0).limit == 0


def test_limit_written_as_an_integral_float_is_an_integer():
    limit = timeline(limit=10.0).limit
    assert limit == 10 and type(limit) is int


def test_limit_or_applies_the_default_and_the_server_maximum():
    assert timeline().limit_or(default=10, maximum=100) == 10
    assert timeline(limit=5).limit_or(default=10, maximum=100) == 5
    assert timeline(limit=10 ** 12).limit_or(default=10, maximum=100) == 100
    assert parse_filter({"presence": {"limit": 3}}).presence.limit_or(default=10, maximum=100) == 3


# --- types and their wildcards ---

def test_types_absent_includes_every_type_and_empty_includes_none():
    assert timeline().matches(ev("anything.at.all"))
    empty = timeline(types=[])
    assert not empty.matches(ev("m.room.message"))
    assert empty.blocks_all() and not timeline().blocks_all()


@pytest.mark.parametrize("pattern, matching, not_matching", [
    ("m.room.*", ["m.room.message", "m.room.member", "m.room."], ["m.room", "m.roomx", "org.m.room.x"]),
    ("*.member", ["m.room.member", ".member"], ["m.room.members", "member"]),
    ("m.*.member", ["m.room.member", "m..member", "m.a.b.member"], ["m.member", "m.room.message"]),
    ("m*room*e", ["m.room.message", "mroome", "m.room.member.e"], ["m.room.members", "room.e"]),
    ("*", ["m.room.message", "", "x"], []),
    ("**", ["m.room.message", ""], []),
    ("m.room.message", ["m.room.message"], ["m.room.message2", "m.room.messag", "m.room.*"]),
    ("a*a", ["aa", "aba", "aaa"], ["a", "ab", "ba"]),
])
def test_a_star_in_types_matches_any_sequence_at_any_position(pattern, matching, not_matching):
    f = timeline(types=[pattern])
    for t in matching:
        assert f.matches(ev(t)), t
        assert type_matches(t, pattern)
    for t in not_matching:
        assert not f.matches(ev(t)), t
        assert not type_matches(t, pattern)


def test_other_regex_characters_in_types_are_literal():
    f = timeline(types=["m.room.[a-z]+", "x?y"])
    assert f.matches(ev("m.room.[a-z]+")) and f.matches(ev("x?y"))
    assert not f.matches(ev("m.room.abc")) and not f.matches(ev("xy"))


def test_not_types_wins_over_types_with_wildcards_on_both_sides():
    f = timeline(types=["m.room.*"], not_types=["m.room.mem*"])
    assert f.matches(ev("m.room.message"))
    assert not f.matches(ev("m.room.member"))
    assert not timeline(types=["m.room.message"], not_types=["m.room.message"]).matches(ev("m.room.message"))


def test_not_types_star_blocks_everything():
    f = timeline(not_types=["*"])
    assert not f.matches(ev("m.room.message")) and f.blocks_all()


def test_an_event_without_a_type_matches_no_types_entry_not_even_star():
    assert not timeline(types=["*"]).matches({"sender": "@a:b", "room_id": ROOM, "content": {}})
    assert timeline(not_types=["*"]).matches({"sender": "@a:b", "room_id": ROOM, "content": {}}) is True


def test_a_pathological_wildcard_pattern_matches_in_linear_time():
    # A backtracking regex for this pattern takes exponential time on such a type.
    f = timeline(types=["*a" * 30 + "*b"])
    start = time.monotonic()
    assert not f.matches(ev("a" * 5000))
    assert f.matches(ev("a" * 5000 + "b"))
    assert time.monotonic() - start < 0.5


# --- senders and rooms ---

def test_senders_include_only_those_listed_and_not_senders_wins():
    f = timeline(senders=["@alice:example.com", "@bob:example.com"], not_senders=["@bob:example.com"])
    assert f.matches(ev(sender="@alice:example.com"))
    assert not f.matches(ev(sender="@bob:example.com"))
    assert not f.matches(ev(sender="@carol:example.com"))
    assert timeline(senders=[]).blocks_all()


def test_senders_have_no_wildcards():
    assert not timeline(senders=["@*"]).matches(ev(sender="@alice:example.com"))
    assert timeline(not_senders=["@*"]).matches(ev(sender="@alice:example.com"))


def test_rooms_include_only_those_listed_and_not_rooms_wins():
    f = timeline(rooms=["!a:x", "!b:x"], not_rooms=["!b:x"])
    assert f.matches(ev(room_id="!a:x"))
    assert not f.matches(ev(room_id="!b:x"))
    assert not f.matches(ev(room_id="!c:x"))
    assert f.includes_room("!a:x") and not f.includes_room("!b:x")
    assert timeline(rooms=[]).blocks_all()


def test_room_of_an_event_without_room_id_is_given_by_the_caller():
    # Ephemeral and room account data events carry no room_id in /sync.
    f = parse_filter({"room": {"ephemeral": {"rooms": ["!a:x"]}}}).room.ephemeral
    typing = {"type": "m.typing", "content": {"user_ids": []}}
    assert f.matches(typing, room_id="!a:x")
    assert not f.matches(typing, room_id="!b:x")
    assert not f.matches(typing)  # no room known: not in the list
    assert f.filter([typing, typing], room_id="!a:x") == [typing, typing]


def test_an_event_filter_has_no_room_conditions():
    f = EventFilter({"types": ["m.presence"], "rooms": ["!a:x"]})
    assert f.matches({"type": "m.presence", "sender": "@a:b", "content": {}})


def test_presence_without_sender_is_matched_on_content_user_id():
    f = parse_filter({"presence": {"not_senders": ["@spam:x"]}}).presence
    assert not f.matches({"type": "m.presence", "content": {"user_id": "@spam:x", "presence": "online"}})
    assert f.matches({"type": "m.presence", "content": {"user_id": "@ok:x", "presence": "online"}})


def test_malformed_sender_or_room_id_counts_as_absent():
    f = timeline(not_senders=["@spam:x"], not_rooms=["!bad:x"])
    assert f.matches({"type": "m.room.message", "sender": {"x": 1}, "room_id": ["!a:x"], "content": {}})
    assert not timeline(senders=["@a:x"]).matches({"type": "t", "sender": ["@a:x"], "content": {}})


def test_account_data_without_sender_fails_a_senders_list():
    f = parse_filter({"account_data": {"senders": ["@a:x"]}}).account_data
    assert not f.matches({"type": "m.direct", "content": {}})


def test_room_filter_selects_rooms_before_the_part_filters():
    room = parse_filter({"room": {"rooms": ["!a:x", "!b:x", "!c:x"], "not_rooms": ["!c:x"],
                                  "include_leave": True}}).room
    assert room.filter_rooms(["!c:x", "!b:x", "!z:x", "!a:x"]) == ["!b:x", "!a:x"]
    assert room.includes_room("!a:x") and not room.includes_room("!c:x")
    assert room.include_leave is True
    assert parse_filter({"room": {"rooms": []}}).room.blocks_all()
    assert parse_filter({}).room.filter_rooms(["!a:x"]) == ["!a:x"]


# --- contains_url ---

def test_contains_url_true_keeps_only_events_with_a_url():
    f = timeline(contains_url=True)
    assert f.matches(ev(content={"msgtype": "m.image", "url": "mxc://x/y"}))
    assert not f.matches(ev(content={"body": "no url"}))


def test_contains_url_false_drops_events_with_a_url():
    f = timeline(contains_url=False)
    assert not f.matches(ev(content={"url": "mxc://x/y"}))
    assert f.matches(ev(content={"body": "no url"}))


def test_contains_url_absent_ignores_urls():
    f = timeline()
    assert f.matches(ev(content={"url": "mxc://x/y"})) and f.matches(ev(content={}))


def test_only_a_string_url_counts_as_a_url():
    assert content_has_url({"url": "mxc://x/y"}) and content_has_url({"url": ""})
    assert not content_has_url({"url": 3}) and not content_has_url({"url": None})
    assert not content_has_url({"file": {"url": "mxc://x/y"}}) and not content_has_url("not a dict")


# --- filter() and the spec example as a whole ---

def test_filter_keeps_order_and_does_not_apply_limit():
    f = timeline(types=["m.room.message"], limit=1)
    events = [ev(body=i) if i % 2 else ev("m.room.member", body=i) for i in range(6)]
    assert [e["body"] for e in f.filter(events)] == [1, 3, 5]


def test_spec_example_timeline_keeps_messages_outside_the_excluded_room_and_sender():
    t = parse_filter(SPEC_EXAMPLE).room.timeline
    assert t.matches(ev())
    assert not t.matches(ev(room_id="!726s6s6q:example.com"))
    assert not t.matches(ev(sender="@spam:example.com"))
    assert not t.matches(ev("m.room.member"))


def test_matches_values_is_matches_for_callers_holding_fields():
    t = timeline(types=["m.room.*"], contains_url=True, rooms=["!a:x"])
    assert t.matches_values("m.room.message", "@a:x", "!a:x", {"url": "mxc://a/b"})
    assert not t.matches_values("m.room.message", "@a:x", "!a:x", {})
    assert not t.matches_values("m.room.message", "@a:x", "!b:x", {"url": "mxc://a/b"})


# --- what storage reads to filter in SQL ---

def test_normalised_lists_for_storage():
    t = timeline(types=["m.room.*", "m.room.*"], senders=["@a:x"], contains_url=True)
    assert t.types == ("m.room.*", "m.room.*") and t.not_types == () and t.senders == ("@a:x",)
    assert t.not_senders == () and t.contains_url is True


def test_wildcard_to_like_escapes_like_metacharacters():
    assert wildcard_to_like("m.room.*") == "m.room.%"
    assert wildcard_to_like("a_b%c\\d*") == "a\\_b\\%c\\\\d%"


# --- event_fields (appendices, "Dot-separated property paths") ---

@pytest.mark.parametrize("path, parts", [
    ("content.body", ("content", "body")),
    # "a property m.relates_to in the content would be expressed as content.m\.relates_to"
    ("content.m\\.relates_to", ("content", "m.relates_to")),
    # "a content property named m\foo would be expressed as content.m\\foo"
    ("content.m\\\\foo", ("content", "m\\foo")),
    # "a \x would be treated as a literal backslash followed by 'x'"
    ("content.\\x", ("content", "\\x")),
    ("type", ("type",)),
    ("a\\\\.b", ("a\\", "b")),
    ("trailing\\", ("trailing\\",)),
])
def test_dot_separated_paths_split_on_unescaped_dots(path, parts):
    assert split_dotted_key(path) == parts


EVENT = {
    "type": "m.room.message", "sender": "@alice:example.com", "event_id": "$e", "room_id": ROOM,
    "content": {"body": "hi", "msgtype": "m.text", "m.relates_to": {"rel_type": "m.thread", "event_id": "$t"},
                "m\\foo": 1, "\\x": 2},
    "unsigned": {"age": 5},
}


def test_event_fields_of_the_spec_example_keep_type_content_and_sender():
    f = parse_filter(SPEC_EXAMPLE)
    assert f.apply_event_fields(EVENT) == {"type": EVENT["type"], "content": EVENT["content"],
                                          "sender": EVENT["sender"]}


def test_event_fields_pick_nested_properties_with_escaped_names():
    out = apply_event_fields(EVENT, ["content.m\\.relates_to.rel_type", "content.m\\\\foo", "content.\\x"])
    assert out == {"content": {"m.relates_to": {"rel_type": "m.thread"}, "m\\foo": 1, "\\x": 2}}


def test_event_fields_absent_or_empty_keep_the_whole_event():
    assert apply_event_fields(EVENT, None) is EVENT
    assert apply_event_fields(EVENT, []) is EVENT
    assert parse_filter({}).apply_event_fields(EVENT) is EVENT


def test_event_fields_naming_missing_properties_add_nothing():
    out = apply_event_fields(EVENT, ["content.nope.deeper", "content.body.not_an_object", "missing", "event_id"])
    assert out == {"event_id": "$e"}


def test_event_fields_with_a_path_and_its_parent_keep_the_whole_parent():
    for fields in (["content", "content.body"], ["content.body", "content"]):
        assert apply_event_fields(EVENT, fields) == {"content": EVENT["content"]}, fields
    assert EVENT["content"]["body"] == "hi" and "m.relates_to" in EVENT["content"]


def test_event_fields_leave_the_event_unchanged():
    before = repr(EVENT)
    apply_event_fields(EVENT, ["content.m\\.relates_to.event_id", "unsigned.age"])
    assert repr(EVENT) == before


# --- the filter query parameter ---

def test_inline_json_filter_parameter_is_parsed_without_lookup():
    def load(_):
        raise AssertionError("inline filters are not looked up")
    f = resolve_filter_param('{"room": {"timeline": {"limit": 3}}}', load)
    assert f.room.timeline.limit == 3


def test_filter_id_parameter_is_looked_up_by_the_raw_string():
    seen = []

    def load(filter_id):
        seen.append(filter_id)
        return {"presence": {"types": []}}
    f = resolve_filter_param("7", load)
    assert seen == ["7"] and f.presence.blocks_all()


def test_unknown_filter_id_parameter_raises_unknown_filter_error():
    with pytest.raises(UnknownFilterError):
        resolve_filter_param("7", lambda _: None)


@pytest.mark.parametrize("raw", ['{"room": ', "{'room': {}}", '{"room": {"rooms": "x"}}', '{"a": NaN}'])
def test_bad_inline_filter_parameter_raises_filter_error(raw):
    with pytest.raises(FilterError):
        resolve_filter_param(raw, lambda _: None)


def test_room_event_filter_parameter_of_messages():
    f = room_event_filter_from_param('{"contains_url": true, "types": ["m.room.*"], "limit": 2}')
    assert isinstance(f, RoomEventFilter) and f.contains_url is True and f.limit == 2
    assert f.matches(ev(content={"url": "mxc://a/b"}))
    for raw in ("[]", "nope", '{"contains_url": "yes"}'):
        with pytest.raises(FilterError):
            room_event_filter_from_param(raw)
    assert parse_room_event_filter({}).matches(ev())
