import collections
import enum
import math
import random

import canonicaljson
import pytest

from hs.events.canonical_json import (
    decode_json,
    encode_canonical_json,
    encode_json,
    unpadded_b64decode,
    unpadded_b64encode,
    urlsafe_unpadded_b64decode,
    urlsafe_unpadded_b64encode,
)

# Spec appendix "Canonical JSON", section "Examples": (input JSON, canonical output).
SPEC_EXAMPLES = [
    ("{}", "{}"),
    ('{\n    "one": 1,\n    "two": "Two"\n}', '{"one":1,"two":"Two"}'),
    ('{\n    "b": "2",\n    "a": "1"\n}', '{"a":"1","b":"2"}'),
    ('{"b":"2","a":"1"}', '{"a":"1","b":"2"}'),
    (
        """{
            "auth": {
                "success": true,
                "mxid": "@john.doe:example.com",
                "profile": {
                    "display_name": "John Doe",
                    "three_pids": [
                        {"medium": "email", "address": "john.doe@example.org"},
                        {"medium": "msisdn", "address": "123456789"}
                    ]
                }
            }
        }""",
        '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe",'
        '"three_pids":[{"address":"john.doe@example.org","medium":"email"},'
        '{"address":"123456789","medium":"msisdn"}]},"success":true}}',
    ),
    ('{\n    "a": "日本語"\n}', '{"a":"日本語"}'),
    ('{\n    "本": 2,\n    "日": 1\n}', '{"日":1,"本":2}'),
    ('{\n    "a": "\\u65E5"\n}', '{"a":"日"}'),
    ('{\n    "a": null\n}', '{"a":null}'),
]


@pytest.mark.parametrize("source, expected", SPEC_EXAMPLES)
def test_spec_examples_encode_to_the_spec_canonical_form(source, expected):
    assert encode_canonical_json(decode_json(source)) == expected.encode("utf-8")


def test_spec_negative_zero_and_large_integer_example():
    # The spec's input is {"a": -0, "b": 1e10}. Python parses -0 as the int 0,
    # but 1e10 as a float, so the integer value is used here (see the
    # float-rejection tests for the float case).
    assert decode_json('{"a": -0}') == {"a": 0}
    assert encode_canonical_json({"a": -0, "b": 10**10}) == b'{"a":0,"b":10000000000}'


def test_output_is_utf8_bytes_not_escapes():
    assert encode_canonical_json({"a": "日本語"}) == '{"a":"日本語"}'.encode("utf-8")


def test_keys_sort_by_code_point_not_utf16_code_unit():
    # U+FF61 < U+1F600 by code point, but in UTF-16 the emoji's surrogate
    # 0xD83D would sort first.
    value = {"\U0001f600": 1, "\uff61": 2}
    assert encode_canonical_json(value) == '{"\uff61":2,"\U0001f600":1}'.encode("utf-8")


def test_nested_objects_are_sorted_and_arrays_keep_order():
    value = {"z": [3, 1, {"y": 1, "x": 2}], "a": {"d": True, "c": False}}
    assert encode_canonical_json(value) == b'{"a":{"c":false,"d":true},"z":[3,1,{"x":2,"y":1}]}'


def test_string_escapes_follow_the_spec_grammar():
    # Only ", \ and control characters are escaped, using the short forms
    # where they exist and lowercase \u00XX otherwise.
    value = '\x00\x08\x0c\n\r\t\x1f"\\/\x7f\u2028'
    expected = '"\\u0000\\b\\f\\n\\r\\t\\u001f\\"\\\\/\x7f\u2028"'.encode("utf-8")
    assert encode_canonical_json(value) == expected


def test_tuples_encode_as_arrays():
    assert encode_canonical_json({"a": (1, "b")}) == b'{"a":[1,"b"]}'


def test_subclasses_of_json_types_encode_like_their_base():
    class Level(enum.IntEnum):
        HIGH = 100

    class Name(str):
        pass

    value = collections.OrderedDict([(Name("b"), Level.HIGH), ("a", [Name("x")])])
    assert encode_canonical_json(value) == b'{"a":["x"],"b":100}'


def test_booleans_are_not_treated_as_integers():
    assert encode_canonical_json([True, False, None]) == b"[true,false,null]"


def test_integer_range_limits_are_accepted():
    value = {"max": 2**53 - 1, "min": -(2**53) + 1}
    assert encode_canonical_json(value) == b'{"max":9007199254740991,"min":-9007199254740991}'


@pytest.mark.parametrize(
    "value",
    [2**53, -(2**53), {"a": 2**53}, [-(2**53)], {"a": [{"b": 2**64}]}],
    ids=["max+1", "min-1", "in-object", "in-array", "deep"],
)
def test_integers_outside_the_safe_range_are_rejected(value):
    with pytest.raises(ValueError, match="range"):
        encode_canonical_json(value)


@pytest.mark.parametrize(
    "value",
    [1.0, 1.5, -0.0, 1e10, {"a": 1.0}, [0.5], {"a": {"b": [2.0]}}],
    ids=["1.0", "1.5", "-0.0", "1e10", "in-object", "in-array", "deep"],
)
def test_floats_are_rejected_even_when_integral(value):
    with pytest.raises(ValueError, match="float"):
        encode_canonical_json(value)


def test_exponent_numbers_from_the_wire_are_floats_and_are_rejected():
    with pytest.raises(ValueError):
        encode_canonical_json(decode_json('{"b": 1e10}'))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, {"a": [math.nan]}])
def test_nan_and_infinity_are_rejected(value):
    with pytest.raises(ValueError):
        encode_canonical_json(value)


@pytest.mark.parametrize("value", [{1: "a"}, {"a": {None: 1}}, [{("t",): 1}], {True: 1}])
def test_non_string_keys_are_rejected(value):
    with pytest.raises(ValueError, match="keys must be str"):
        encode_canonical_json(value)


@pytest.mark.parametrize("value", [b"bytes", {"a": {1, 2}}, [object()]])
def test_unsupported_types_are_rejected(value):
    with pytest.raises(ValueError):
        encode_canonical_json(value)


def test_lone_surrogates_are_rejected():
    with pytest.raises(ValueError):
        encode_canonical_json({"a": decode_json('"\\ud800"')})


def test_circular_structures_are_rejected_not_looped_on():
    value: dict = {}
    value["self"] = [value]
    with pytest.raises(ValueError):
        encode_canonical_json(value)


def test_lenient_mode_matches_synapse_for_out_of_range_numbers():
    # Old room versions hold such values; their signatures are over this encoding.
    value = {"big": 2**60, "f": 1.5, "neg": -(2**70)}
    assert encode_canonical_json(value, strict=False) == canonicaljson.encode_canonical_json(value)


_CHARS = 'aZ09 "\\/\x00\x01\x1f\x7f\u00e9\u2028\u65e5\uffff\U0001f600\n\t'


def _random_string(rng: random.Random) -> str:
    return "".join(rng.choice(_CHARS) for _ in range(rng.randrange(8)))


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(7 if depth < 4 else 5)
    if kind == 0:
        return _random_string(rng)
    if kind == 1:
        return rng.randint(-(2**53) + 1, 2**53 - 1)
    if kind == 2:
        return rng.randint(-100, 100)
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return _random_string(rng)
    if kind == 5:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {_random_string(rng): _random_value(rng, depth + 1) for _ in range(rng.randrange(6))}


def test_matches_the_canonicaljson_package_on_random_nested_data():
    rng = random.Random(20240611)
    for _ in range(500):
        value = {"root": _random_value(rng)}
        assert encode_canonical_json(value) == canonicaljson.encode_canonical_json(value), value


def test_encode_json_is_compact_unsorted_utf8_and_allows_floats():
    assert encode_json({"b": 1.5, "a": "日"}) == '{"b":1.5,"a":"日"}'.encode("utf-8")


def test_encode_json_rejects_nan():
    with pytest.raises(ValueError):
        encode_json({"a": math.nan})


def test_encode_json_escapes_lone_surrogates_to_stay_valid_utf8():
    value = {"a": decode_json('"\\ud800"'), "b": "日"}
    encoded = encode_json(value)
    encoded.decode("utf-8")
    assert decode_json(encoded) == value


@pytest.mark.parametrize(
    "data",
    [b'{"a":[1,2.5,"\xc3\xa9"]}', '{"a":[1,2.5,"é"]}', bytearray(b'{"a":[1,2.5,"\xc3\xa9"]}')],
)
def test_decode_json_accepts_utf8_bytes_and_str(data):
    assert decode_json(data) == {"a": [1, 2.5, "é"]}


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_decode_json_rejects_non_json_constants(constant):
    with pytest.raises(ValueError, match="constant"):
        decode_json('{"a": [%s]}' % constant)


@pytest.mark.parametrize(
    "data",
    [b'{"a": "\xff"}', '{"a": 1}'.encode("utf-16"), b"{", b"", b"[1,]", b"{'a': 1}"],
    ids=["invalid-utf8", "utf16", "truncated", "empty", "trailing-comma", "single-quotes"],
)
def test_decode_json_rejects_invalid_input(data):
    with pytest.raises(ValueError):
        decode_json(data)


# Spec appendix "Unpadded Base64".
B64_EXAMPLES = [
    (b"", ""),
    (b"f", "Zg"),
    (b"fo", "Zm8"),
    (b"foo", "Zm9v"),
    (b"foob", "Zm9vYg"),
    (b"fooba", "Zm9vYmE"),
    (b"foobar", "Zm9vYmFy"),
]


@pytest.mark.parametrize("raw, encoded", B64_EXAMPLES)
def test_unpadded_base64_spec_examples(raw, encoded):
    assert unpadded_b64encode(raw) == encoded
    assert unpadded_b64decode(encoded) == raw


@pytest.mark.parametrize("padded, raw", [("Zg==", b"f"), ("Zm8=", b"fo"), ("Zm9v", b"foo")])
def test_unpadded_b64decode_also_accepts_padding(padded, raw):
    assert unpadded_b64decode(padded) == raw


@pytest.mark.parametrize(
    "garbage",
    ["Zm9v!", "Z", "Zm9vY", "Zm9v=", "Zg=", "Zg===", " Zm9v", "Zm 9v", "Zé", "Zg==Zg", "-_8"],
)
def test_unpadded_b64decode_rejects_garbage(garbage):
    with pytest.raises(ValueError):
        unpadded_b64decode(garbage)


def test_standard_and_urlsafe_alphabets_differ_only_in_two_characters():
    raw = b"\xfb\xff\xbf"
    assert unpadded_b64encode(raw) == "+/+/"
    assert urlsafe_unpadded_b64encode(raw) == "-_-_"
    assert urlsafe_unpadded_b64decode("-_-_") == raw
    assert urlsafe_unpadded_b64encode(b"\xfb\xff") == "-_8"
    assert urlsafe_unpadded_b64decode("-_8=") == b"\xfb\xff"


@pytest.mark.parametrize("garbage", ["+/8", "ab!c", "Z"])
def test_urlsafe_b64decode_rejects_garbage_and_the_standard_alphabet(garbage):
    with pytest.raises(ValueError):
        urlsafe_unpadded_b64decode(garbage)


def test_base64_round_trips_every_length():
    rng = random.Random(7)
    for length in range(64):
        raw = rng.randbytes(length)
        assert "=" not in unpadded_b64encode(raw)
        assert unpadded_b64decode(unpadded_b64encode(raw)) == raw
        assert urlsafe_unpadded_b64decode(urlsafe_unpadded_b64encode(raw)) == raw
