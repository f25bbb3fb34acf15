"""Server names (appendices: server name) and the server part of identifiers."""

import pytest

from hs.federation.server_name import ip_literal, parse_server_name, quote_path_segment, server_name_of


@pytest.mark.parametrize("name, parsed", [
    ("matrix.org", ("matrix.org", None)),
    ("matrix.org:8888", ("matrix.org", 8888)),
    ("1.2.3.4", ("1.2.3.4", None)),
    ("127.0.0.1:18611", ("127.0.0.1", 18611)),
    ("[1234:5678::abcd]", ("[1234:5678::abcd]", None)),
    ("[::1]:5678", ("[::1]", 5678)),
    ("localhost:8448", ("localhost", 8448)),
])
def test_valid_names_split_into_host_and_port(name, parsed):
    assert parse_server_name(name) == parsed


@pytest.mark.parametrize("name", [
    "", "matrix.org:", "matrix.org:0", "matrix.org:65536", "matrix.org:-1", "[::1", "[not:an:ip]", "::1",
    "a b.org", "matrix.org:80:80", "exa_mple.org", None, 5,
])
def test_invalid_names_raise(name):
    with pytest.raises(ValueError):
        parse_server_name(name)


@pytest.mark.parametrize("host, address", [
    ("1.2.3.4", "1.2.3.4"), ("[::1]", "::1"), ("[2001:DB8::1]", "2001:db8::1"), ("matrix.org", None),
    ("1.2.3", None),
])
def test_ip_literals_are_recognised(host, address):
    assert ip_literal(host) == address


@pytest.mark.parametrize("identifier, server", [
    ("@alice:127.0.0.1:18611", "127.0.0.1:18611"),
    ("#room:example.org", "example.org"),
    ("!abc:[::1]:8448", "[::1]:8448"),
    ("$event:example.org:8448", "example.org:8448"),
])
def test_the_server_is_everything_after_the_first_colon(identifier, server):
    assert server_name_of(identifier) == server


@pytest.mark.parametrize("identifier", ["@alice", "@alice:", "!opaqueroomv12", None])
def test_an_identifier_without_a_server_raises(identifier):
    with pytest.raises(ValueError):
        server_name_of(identifier)


def test_path_segments_encode_slashes_and_colons():
    assert quote_path_segment("@a/b:127.0.0.1:8448") == "%40a%2Fb%3A127.0.0.1%3A8448"
