"""Server ACLs (spec: event `m.room.server_acl`, the order of its five rules; appendix "Glob-style
matching"), on the spec's example content and on malformed content."""

import pytest

from hs.events.server_acl import server_allowed_by_acl

# The spec's example m.room.server_acl content (event-schemas/examples/m.room.server_acl.yaml).
SPEC_EXAMPLE = {"allow_ip_literals": False, "allow": ["*"], "deny": ["*.evil.com", "evil.com"]}


@pytest.mark.parametrize("server, allowed", [
    ("good.example.org", True),
    ("good.example.org:8448", True),
    ("evil.com", False),
    ("evil.com:8448", False),  # the port is not considered
    ("evil.com:1234", False),
    ("sub.evil.com", False),
    ("EVIL.COM", False),  # globs are case-insensitive
    ("notevil.com", True),  # "*.evil.com" needs the dot
    ("1.2.3.4", False),  # allow_ip_literals false
    ("1.2.3.4:8448", False),
    ("[::1]", False),
    ("[2001:db8::1]:8448", False),
])
def test_spec_example(server, allowed):
    assert server_allowed_by_acl(server, SPEC_EXAMPLE) is allowed


def test_ip_literals_are_allowed_unless_explicitly_false():
    for content in ({"allow": ["*"]}, {"allow": ["*"], "allow_ip_literals": True},
                    {"allow": ["*"], "allow_ip_literals": "false"}, {"allow": ["*"], "allow_ip_literals": 0}):
        assert server_allowed_by_acl("127.0.0.1:8448", content)
        assert server_allowed_by_acl("[::1]:8448", content)


def test_deny_wins_over_allow():
    content = {"allow": ["*.example.org", "a.example.org"], "deny": ["a.example.org"]}
    assert not server_allowed_by_acl("a.example.org", content)
    assert server_allowed_by_acl("b.example.org", content)


def test_missing_allow_denies_everyone():
    assert not server_allowed_by_acl("example.org", {})
    assert not server_allowed_by_acl("example.org", {"deny": []})


def test_question_mark_matches_exactly_one_character():
    content = {"allow": ["server?.example.org"]}
    assert server_allowed_by_acl("server1.example.org", content)
    assert not server_allowed_by_acl("server.example.org", content)
    assert not server_allowed_by_acl("server12.example.org", content)


def test_other_characters_are_literal():
    content = {"allow": ["a.b", "[::1]", "x+y.org"]}
    assert server_allowed_by_acl("a.b", content)
    assert not server_allowed_by_acl("axb", content)  # "." is not a regex wildcard
    assert server_allowed_by_acl("[::1]:8448", content)  # an IPv6 host keeps its brackets
    assert server_allowed_by_acl("x+y.org", content)
    assert not server_allowed_by_acl("xxy.org", content)


def test_an_ip_literal_may_be_allowed_by_glob():
    assert server_allowed_by_acl("127.0.0.1:30001", {"allow": ["127.0.0.1"]})
    assert not server_allowed_by_acl("127.0.0.2:30001", {"allow": ["127.0.0.1"]})


@pytest.mark.parametrize("content", [
    {"allow": "*"},  # not a list: empty
    {"allow": [1, None, {"a": 1}]},  # entries that are not strings match nothing
    [],  # not even an object
    None,
])
def test_malformed_content_never_raises_and_allows_nobody(content):
    assert not server_allowed_by_acl("example.org", content)


def test_malformed_deny_is_ignored():
    assert server_allowed_by_acl("example.org", {"allow": ["*"], "deny": "example.org"})
    assert server_allowed_by_acl("example.org", {"allow": ["*"], "deny": [7, "other.org"]})
