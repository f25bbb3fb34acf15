import copy
import os
import re
import stat

import nacl.signing
import pytest
import signedjson.key
import signedjson.sign

from hs.events.canonical_json import unpadded_b64decode
from hs.events.signing import (
    SignatureVerifyError,
    SigningKey,
    decode_verify_key_base64,
    generate_signing_key,
    read_signing_keys,
    sign_json,
    verify_signed_json,
    write_signing_keys,
)

# Spec appendix "Cryptographic test vectors".
SPEC_SEED_B64 = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SPEC_SERVER = "domain"
SPEC_KEY_ID = "ed25519:1"
SPEC_SIG_EMPTY = "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
SPEC_SIG_ONE_TWO = "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"


@pytest.fixture
def spec_key() -> SigningKey:
    return SigningKey("1", nacl.signing.SigningKey(unpadded_b64decode(SPEC_SEED_B64)))


@pytest.fixture
def signedjson_key():
    """The same spec key, as the signedjson package represents it."""
    return signedjson.key.decode_signing_key_base64("ed25519", "1", SPEC_SEED_B64)


def test_spec_vector_signing_an_empty_object(spec_key):
    assert spec_key.key_id == SPEC_KEY_ID
    signed = sign_json({}, SPEC_SERVER, spec_key)
    assert signed == {"signatures": {"domain": {"ed25519:1": SPEC_SIG_EMPTY}}}


def test_spec_vector_signing_an_object_with_data(spec_key):
    signed = sign_json({"one": 1, "two": "Two"}, SPEC_SERVER, spec_key)
    assert signed == {
        "one": 1,
        "signatures": {"domain": {"ed25519:1": SPEC_SIG_ONE_TWO}},
        "two": "Two",
    }


@pytest.mark.parametrize(
    "obj, signature",
    [({}, SPEC_SIG_EMPTY), ({"one": 1, "two": "Two"}, SPEC_SIG_ONE_TWO)],
)
def test_spec_vectors_verify(spec_key, obj, signature):
    signed = dict(obj, signatures={"domain": {"ed25519:1": signature}})
    verify_signed_json(signed, SPEC_SERVER, spec_key.verify_key, SPEC_KEY_ID)


def test_sign_json_mutates_and_returns_the_same_dict(spec_key):
    obj = {"a": 1}
    assert sign_json(obj, SPEC_SERVER, spec_key) is obj
    assert "signatures" in obj


def test_unsigned_is_preserved_and_not_covered_by_the_signature(spec_key):
    obj = {"one": 1, "two": "Two", "unsigned": {"age_ts": 922834800000}}
    sign_json(obj, SPEC_SERVER, spec_key)
    assert obj["unsigned"] == {"age_ts": 922834800000}
    # Same signature as without unsigned: it is stripped before signing.
    assert obj["signatures"] == {"domain": {"ed25519:1": SPEC_SIG_ONE_TWO}}
    obj["unsigned"]["age"] = 5
    verify_signed_json(obj, SPEC_SERVER, spec_key.verify_key, SPEC_KEY_ID)


def test_signatures_merge_with_existing_ones(spec_key):
    other = generate_signing_key("other")
    obj = {"one": 1, "two": "Two", "signatures": {"elsewhere": {"ed25519:x": "abc"}}}
    sign_json(obj, SPEC_SERVER, other)
    sign_json(obj, SPEC_SERVER, spec_key)
    sign_json(obj, "third", spec_key)
    other_sig = obj["signatures"]["domain"]["ed25519:other"]
    assert obj["signatures"] == {
        "elsewhere": {"ed25519:x": "abc"},
        "domain": {"ed25519:other": other_sig, "ed25519:1": SPEC_SIG_ONE_TWO},
        "third": {"ed25519:1": SPEC_SIG_ONE_TWO},
    }
    verify_signed_json(obj, SPEC_SERVER, other.verify_key, other.key_id)
    verify_signed_json(obj, SPEC_SERVER, spec_key.verify_key, SPEC_KEY_ID)


def test_sign_json_leaves_object_intact_when_it_cannot_be_encoded(spec_key):
    obj = {"a": 1.5, "signatures": {"x": {}}, "unsigned": {"u": 1}}
    before = copy.deepcopy(obj)
    with pytest.raises(ValueError):
        sign_json(obj, SPEC_SERVER, spec_key)
    assert obj == before


def test_tampered_content_fails_verification(spec_key):
    obj = sign_json({"content": {"body": "hello"}, "depth": 1}, SPEC_SERVER, spec_key)
    obj["content"]["body"] = "goodbye"
    with pytest.raises(SignatureVerifyError, match="invalid signature"):
        verify_signed_json(obj, SPEC_SERVER, spec_key.verify_key, SPEC_KEY_ID)


def test_added_top_level_key_fails_verification(spec_key):
    obj = sign_json({"a": 1}, SPEC_SERVER, spec_key)
    obj["b"] = 2
    with pytest.raises(SignatureVerifyError):
        verify_signed_json(obj, SPEC_SERVER, spec_key.verify_key, SPEC_KEY_ID)


def test_wrong_verify_key_fails_verification(spec_key):
    obj = sign_json({"a": 1}, SPEC_SERVER, spec_key)
    with pytest.raises(SignatureVerifyError, match="invalid signature"):
        verify_signed_json(obj, SPEC_SERVER, generate_signing_key().verify_key, SPEC_KEY_ID)


@pytest.mark.parametrize(
    "signatures, message",
    [
        (None, "missing"),
        ({}, "missing"),
        ({"other": {"ed25519:1": SPEC_SIG_EMPTY}}, "missing"),
        ({"domain": {"ed25519:2": SPEC_SIG_EMPTY}}, "missing"),
        ({"domain": "not a dict"}, "missing"),
        ([], "missing"),
        ({"domain": {"ed25519:1": 12}}, "not a string"),
        ({"domain": {"ed25519:1": "not base64!"}}, "base64"),
        ({"domain": {"ed25519:1": "Zm9v"}}, "invalid signature"),
    ],
    ids=[
        "none",
        "empty",
        "other-server",
        "other-key",
        "server-not-object",
        "not-object",
        "not-string",
        "undecodable",
        "wrong-length",
    ],
)
def test_missing_or_malformed_signatures_fail_verification(spec_key, signatures, message):
    obj = {} if signatures is None else {"signatures": signatures}
    with pytest.raises(SignatureVerifyError, match=message):
        verify_signed_json(obj, SPEC_SERVER, spec_key.verify_key, SPEC_KEY_ID)


def test_verification_does_not_mutate_the_object(spec_key):
    obj = sign_json({"a": [1, 2], "unsigned": {"x": 1}}, SPEC_SERVER, spec_key)
    before = copy.deepcopy(obj)
    verify_signed_json(obj, SPEC_SERVER, spec_key.verify_key, SPEC_KEY_ID)
    assert obj == before


def test_our_signatures_verify_with_signedjson(spec_key, signedjson_key):
    obj = {"content": {"body": "日本語", "n": -5}, "type": "m.text", "unsigned": {"age": 3}}
    sign_json(obj, "example.org", spec_key)
    their_verify_key = signedjson.key.get_verify_key(signedjson_key)
    signedjson.sign.verify_signed_json(obj, "example.org", their_verify_key)


def test_signedjson_signatures_verify_with_ours(spec_key, signedjson_key):
    obj = {"content": {"body": "日本語", "n": -5}, "type": "m.text", "unsigned": {"age": 3}}
    signedjson.sign.sign_json(obj, "example.org", signedjson_key)
    verify_signed_json(obj, "example.org", spec_key.verify_key, SPEC_KEY_ID)


def test_signedjson_signature_over_out_of_range_integers_verifies(spec_key, signedjson_key):
    # Room versions 1-5 events can carry such integers and were signed anyway.
    obj = signedjson.sign.sign_json({"depth": 2**60}, "example.org", signedjson_key)
    verify_signed_json(obj, "example.org", spec_key.verify_key, SPEC_KEY_ID)


def test_signedjson_tampered_content_fails_with_ours(spec_key, signedjson_key):
    obj = signedjson.sign.sign_json({"a": "b"}, "example.org", signedjson_key)
    obj["a"] = "c"
    with pytest.raises(SignatureVerifyError):
        verify_signed_json(obj, "example.org", spec_key.verify_key, SPEC_KEY_ID)


def test_signing_key_exposes_public_key_like_signedjson(spec_key, signedjson_key):
    theirs = signedjson.key.encode_verify_key_base64(signedjson_key.verify_key)
    assert spec_key.verify_key_base64 == theirs
    assert len(unpadded_b64decode(spec_key.verify_key_base64)) == 32


def test_sign_returns_a_raw_64_byte_signature(spec_key):
    signature = spec_key.sign(b"{}")
    assert len(signature) == 64
    spec_key.verify_key.verify(b"{}", signature)


def test_signing_key_repr_does_not_leak_the_seed(spec_key):
    assert SPEC_SEED_B64[:20] not in repr(spec_key)
    assert "'1'" in repr(spec_key)


@pytest.mark.parametrize("version", ["", "a:b", "a b", "ä", "a-b"])
def test_invalid_key_versions_are_rejected(version):
    with pytest.raises(ValueError, match="version"):
        SigningKey(version, nacl.signing.SigningKey.generate())


def test_generated_keys_get_synapse_style_versions_and_are_distinct():
    a, b = generate_signing_key(), generate_signing_key()
    assert re.fullmatch(r"a_[A-Za-z0-9]{4}", a.version)
    assert a.key_id == f"ed25519:{a.version}"
    assert a.verify_key_base64 != b.verify_key_base64


def test_generate_signing_key_with_explicit_version():
    key = generate_signing_key("auto_1")
    assert key.key_id == "ed25519:auto_1"
    obj = sign_json({"x": True}, "hs", key)
    verify_signed_json(obj, "hs", key.verify_key, key.key_id)


def test_decode_verify_key_base64_round_trips(spec_key):
    verify_key = decode_verify_key_base64("ed25519", "1", spec_key.verify_key_base64)
    assert bytes(verify_key) == bytes(spec_key.verify_key)
    verify_signed_json(sign_json({}, "s", spec_key), "s", verify_key, SPEC_KEY_ID)


def test_decode_verify_key_base64_rejects_unknown_algorithm(spec_key):
    with pytest.raises(ValueError, match="algorithm"):
        decode_verify_key_base64("curve25519", "1", spec_key.verify_key_base64)


@pytest.mark.parametrize("b64", ["Zm9v", "not base64!"])
def test_decode_verify_key_base64_rejects_bad_key_data(b64):
    with pytest.raises(ValueError):
        decode_verify_key_base64("ed25519", "1", b64)


def test_key_file_round_trip(tmp_path, spec_key):
    path = tmp_path / "signing.key"
    keys = [spec_key, generate_signing_key()]
    write_signing_keys(path, keys)
    read_back = read_signing_keys(path)
    assert [k.version for k in read_back] == [k.version for k in keys]
    assert [bytes(k.key) for k in read_back] == [bytes(k.key) for k in keys]


def test_key_file_uses_synapse_line_format(tmp_path, spec_key):
    path = tmp_path / "signing.key"
    write_signing_keys(str(path), [spec_key])
    # The spec's seed has non-zero trailing bits; it re-encodes canonically.
    assert path.read_text() == "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0\n"


def test_key_file_is_only_readable_by_owner(tmp_path, spec_key):
    path = tmp_path / "signing.key"
    path.write_text("old")
    os.chmod(path, 0o644)
    write_signing_keys(path, [spec_key])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(tmp_path) == ["signing.key"]


def test_key_files_interoperate_with_signedjson(tmp_path, spec_key, signedjson_key):
    ours = tmp_path / "ours.key"
    write_signing_keys(ours, [spec_key])
    with open(ours) as f:
        (theirs_read,) = signedjson.key.read_signing_keys(f)
    assert theirs_read.version == "1"
    assert bytes(theirs_read) == bytes(spec_key.key)

    theirs = tmp_path / "theirs.key"
    with open(theirs, "w") as f:
        signedjson.key.write_signing_keys(f, [signedjson_key])
    (ours_read,) = read_signing_keys(theirs)
    assert ours_read.key_id == SPEC_KEY_ID
    assert bytes(ours_read.key) == bytes(signedjson_key)


def test_non_utf8_key_file_line_is_reported_with_its_line_number(tmp_path):
    path = tmp_path / "signing.key"
    path.write_bytes(b"ed25519 1 " + SPEC_SEED_B64.encode() + b"\ned25519 \xff x\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:2:")):
        read_signing_keys(path)


def test_blank_lines_in_key_file_are_ignored(tmp_path):
    path = tmp_path / "signing.key"
    path.write_text(f"\ned25519 1 {SPEC_SEED_B64}\n\n")
    (key,) = read_signing_keys(path)
    assert key.key_id == SPEC_KEY_ID


@pytest.mark.parametrize(
    "line, reason",
    [
        ("ed25519 1", "3 space-separated fields"),
        (f"ed25519 1 {SPEC_SEED_B64} extra", "3 space-separated fields"),
        (f"rsa 1 {SPEC_SEED_B64}", "unsupported algorithm"),
        ("ed25519 1 not*base64", "not valid base64"),
        ("ed25519 1 Zm9v", "32 bytes"),
        (f"ed25519 a-b {SPEC_SEED_B64}", "version"),
        (f"ed25519 1 {SPEC_SEED_B64}", "duplicate"),
    ],
    ids=["few-fields", "many-fields", "algorithm", "base64", "length", "version", "duplicate"],
)
def test_malformed_key_file_lines_name_the_file_and_line(tmp_path, line, reason):
    path = tmp_path / "signing.key"
    path.write_text(f"ed25519 1 {SPEC_SEED_B64}\n{line}\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:2:") + ".*" + reason):
        read_signing_keys(path)
