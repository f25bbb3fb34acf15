"""X-Matrix request authentication (/server-server-api#request-authentication), cross-checked
with the `signedjson` library Synapse itself signs with."""

import pytest
import signedjson.key
import signedjson.sign

from hs.events.canonical_json import unpadded_b64encode
from hs.events.signing import SignatureVerifyError, generate_signing_key
from hs.federation.request_auth import (
    XMatrixAuth,
    build_authorization_header,
    parse_authorization_header,
    request_json,
    verify_request,
)

ORIGIN, DESTINATION = "127.0.0.1:8448", "[::1]:8449"
URI = "/_matrix/federation/v1/send/txn%2F1?a=b%3Ac"


def _signedjson_key(key):
    """The same key as signedjson sees it."""
    return signedjson.key.decode_signing_key_base64("ed25519", key.version, unpadded_b64encode(bytes(key.key)))


def test_the_signature_covers_the_spec_shape_and_matches_signedjson():
    key = generate_signing_key("a_1")
    content = {"pdus": [], "edus": [{"edu_type": "m.typing", "content": {"x": "é"}}]}
    header = build_authorization_header(ORIGIN, DESTINATION, key, "PUT", URI, content)
    auth = parse_authorization_header(header)
    # What Synapse would sign for the same request, with signedjson.
    expected = signedjson.sign.sign_json(
        {"method": "PUT", "uri": URI, "origin": ORIGIN, "destination": DESTINATION, "content": content},
        ORIGIN, _signedjson_key(key))
    assert auth == XMatrixAuth(ORIGIN, "ed25519:a_1", expected["signatures"][ORIGIN]["ed25519:a_1"], DESTINATION)


def test_a_request_without_a_body_signs_no_content_key():
    key = generate_signing_key("a_1")
    assert "content" not in request_json("GET", URI, ORIGIN, DESTINATION)
    auth = parse_authorization_header(build_authorization_header(ORIGIN, DESTINATION, key, "GET", URI))
    obj = {"method": "GET", "uri": URI, "origin": ORIGIN, "destination": DESTINATION,
           "signatures": {ORIGIN: {auth.key: auth.sig}}}
    signedjson.sign.verify_signed_json(obj, ORIGIN, signedjson.key.get_verify_key(_signedjson_key(key)))


def test_a_signedjson_signature_verifies_and_any_change_breaks_it():
    key = generate_signing_key("k")
    signed = signedjson.sign.sign_json(request_json("POST", URI, ORIGIN, DESTINATION, {"a": 1}), ORIGIN,
                                       _signedjson_key(key))
    auth = XMatrixAuth(ORIGIN, "ed25519:k", signed["signatures"][ORIGIN]["ed25519:k"], DESTINATION)
    verify_request(auth, "POST", URI, DESTINATION, {"a": 1}, key.verify_key)
    for method, uri, destination, content in [("PUT", URI, DESTINATION, {"a": 1}),
                                              ("POST", URI + "&x=y", DESTINATION, {"a": 1}),
                                              ("POST", URI, "evil.example", {"a": 1}),
                                              ("POST", URI, DESTINATION, {"a": 2}),
                                              ("POST", URI, DESTINATION, None)]:
        with pytest.raises(SignatureVerifyError):
            verify_request(auth, method, uri, destination, content, key.verify_key)
    with pytest.raises(SignatureVerifyError):
        verify_request(auth, "POST", URI, DESTINATION, {"a": 1}, generate_signing_key("k").verify_key)


@pytest.mark.parametrize("header, expected", [
    # Quoted values holding ':' and ',' (server names with ports), in any order, with spaces.
    ('X-Matrix origin="a.org:8448",key="ed25519:k1",sig="s,i:g",destination="b.org:1"',
     XMatrixAuth("a.org:8448", "ed25519:k1", "s,i:g", "b.org:1")),
    ('X-Matrix  destination="b.org" , sig="ABC" , key="ed25519:k" , origin="a.org"',
     XMatrixAuth("a.org", "ed25519:k", "ABC", "b.org")),
    # Unquoted tokens (older servers), a case-insensitive scheme and parameter names.
    ("x-matrix origin=a.org,key=ed25519:k,sig=ABC", None),
    ('X-MATRIX Origin=a.org,KEY="ed25519:k",Sig=ABC', XMatrixAuth("a.org", "ed25519:k", "ABC")),
    # Backslash escapes in a quoted string.
    (r'X-Matrix origin="a\"b",key="ed25519:k",sig="x\\y"', XMatrixAuth('a"b', "ed25519:k", "x\\y")),
])
def test_headers_parse(header, expected):
    if expected is None:
        # ':' is not a token character: an unquoted key with a colon is malformed.
        with pytest.raises(ValueError):
            parse_authorization_header(header)
    else:
        assert parse_authorization_header(header) == expected


@pytest.mark.parametrize("header", [
    None, "", "Bearer abc", "X-Matrix", 'X-Matrix origin="a.org",key="ed25519:k"',
    'X-Matrix origin="a.org",key="ed25519:k",sig=""', 'X-Matrix origin="a.org,key="ed25519:k",sig="x"',
    'X-Matrix origin="a.org",origin="b.org",key="ed25519:k",sig="x"', 'X-Matrix origin="a.org";key="k";sig="x"',
])
def test_malformed_headers_are_refused(header):
    with pytest.raises(ValueError):
        parse_authorization_header(header)


def test_built_headers_round_trip_values_that_need_escaping():
    key = generate_signing_key("k")
    auth = parse_authorization_header(build_authorization_header('we"ird.org', "b.org", key, "GET", "/x"))
    assert auth.origin == 'we"ird.org' and auth.destination == "b.org"
