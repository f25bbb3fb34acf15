"""Profiles (client-server API "Profiles"): public reads, and writes only by the owner."""

from urllib.parse import quote

import pytest
import requests

from tests.harness import Client, assert_error


@pytest.fixture(scope="module")
def alice(homeserver):
    return Client(homeserver).register("alice")


@pytest.fixture(scope="module")
def bob(homeserver):
    return Client(homeserver).register("bob")


def path_for(user_id: str, field: str | None = None) -> str:
    path = f"/profile/{quote(user_id, safe='')}"
    return f"{path}/{field}" if field else path


# --- reading ---

def test_new_user_profile_has_the_localpart_as_displayname(homeserver):
    carol = Client(homeserver).register("carol")
    resp = Client(homeserver).get(path_for(carol.user_id))
    assert resp.status_code == 200
    assert resp.json() == {"displayname": "carol"}


def test_profile_is_readable_without_a_token(alice):
    alice.put(path_for(alice.user_id, "displayname"), {"displayname": "Alice"})
    resp = Client(alice.server).get(path_for(alice.user_id))
    assert resp.status_code == 200
    assert resp.json()["displayname"] == "Alice"


def test_profile_of_unknown_local_user_is_404_not_found(homeserver):
    assert_error(Client(homeserver).get(path_for("@nobody:test.local")), 404, "M_NOT_FOUND")


def test_profile_field_of_unknown_user_is_404_not_found(homeserver):
    assert_error(Client(homeserver).get(path_for("@nobody:test.local", "displayname")), 404, "M_NOT_FOUND")


@pytest.mark.parametrize("user_id", ["alice", "alice:test.local", "@:test.local", "@alice", "@alice:",
                                     "@al ice:test.local", "@" + "a" * 260 + ":test.local"])
def test_profile_of_invalid_user_id_is_400(homeserver, user_id):
    assert_error(Client(homeserver).get(path_for(user_id)), 400, "M_INVALID_PARAM")


def test_profile_with_a_percent_encoded_user_id_works(alice):
    resp = requests.get(alice.server.url("/_matrix/client/v3/profile/%40alice%3Atest.local"), timeout=10)
    assert resp.status_code == 200
    assert "displayname" in resp.json()


@pytest.mark.parametrize("localpart", ["a/b", "x=y+z", "dots.and-dash_", "/lead/and/trail/"])
def test_user_ids_with_special_characters_work_when_percent_encoded(homeserver, localpart):
    user = Client(homeserver).register(localpart)
    resp = user.put(path_for(user.user_id, "displayname"), {"displayname": f"I am {localpart}"})
    assert resp.status_code == 200, resp.text
    assert Client(homeserver).get(path_for(user.user_id)).json()["displayname"] == f"I am {localpart}"
    assert Client(homeserver).get(path_for(user.user_id, "displayname")).json() == {
        "displayname": f"I am {localpart}"}


def test_field_that_was_never_set_is_404_not_found(bob):
    assert_error(Client(bob.server).get(path_for(bob.user_id, "avatar_url")), 404, "M_NOT_FOUND")


def test_remote_user_profile_is_404_not_found(homeserver):
    assert_error(Client(homeserver).get(path_for("@alice:elsewhere.example")), 404, "M_NOT_FOUND")


# --- writing ---

def test_set_displayname_then_read_it_back(alice):
    assert alice.put(path_for(alice.user_id, "displayname"), {"displayname": "Alice Liddell"}).json() == {}
    resp = alice.get(path_for(alice.user_id, "displayname"))
    assert resp.status_code == 200
    assert resp.json() == {"displayname": "Alice Liddell"}


def test_set_avatar_url_then_read_it_back(alice):
    resp = alice.put(path_for(alice.user_id, "avatar_url"), {"avatar_url": "mxc://test.local/abcDEF"})
    assert resp.status_code == 200
    assert resp.json() == {}
    assert alice.get(path_for(alice.user_id, "avatar_url")).json() == {"avatar_url": "mxc://test.local/abcDEF"}
    assert Client(alice.server).get(path_for(alice.user_id)).json()["avatar_url"] == "mxc://test.local/abcDEF"


def test_displayname_may_hold_any_unicode(alice):
    name = "Ålice 🐇 \u202e"
    assert alice.put(path_for(alice.user_id, "displayname"), {"displayname": name}).status_code == 200
    assert alice.get(path_for(alice.user_id, "displayname")).json() == {"displayname": name}


def test_setting_another_users_displayname_is_403_forbidden(alice, bob):
    resp = alice.put(path_for(bob.user_id, "displayname"), {"displayname": "Hacked"})
    assert_error(resp, 403, "M_FORBIDDEN")
    assert Client(bob.server).get(path_for(bob.user_id)).json()["displayname"] != "Hacked"


def test_setting_another_users_avatar_is_403_forbidden(alice, bob):
    resp = alice.put(path_for(bob.user_id, "avatar_url"), {"avatar_url": "mxc://evil/x"})
    assert_error(resp, 403, "M_FORBIDDEN")
    assert "avatar_url" not in Client(bob.server).get(path_for(bob.user_id)).json()


def test_setting_own_name_with_a_differently_cased_user_id_is_forbidden(alice):
    resp = alice.put(path_for("@ALICE:test.local", "displayname"), {"displayname": "Shouting"})
    assert_error(resp, 403, "M_FORBIDDEN")


def test_setting_a_profile_needs_a_token(alice):
    resp = Client(alice.server).put(path_for(alice.user_id, "displayname"), {"displayname": "Anon"})
    assert_error(resp, 401, "M_MISSING_TOKEN")


def test_missing_displayname_field_is_400_missing_param(alice):
    assert_error(alice.put(path_for(alice.user_id, "displayname"), {}), 400, "M_MISSING_PARAM")


def test_missing_avatar_url_field_is_400_missing_param(alice):
    resp = alice.put(path_for(alice.user_id, "avatar_url"), {"displayname": "wrong field"})
    assert_error(resp, 400, "M_MISSING_PARAM")


@pytest.mark.parametrize("value", [42, True, ["Alice"], {"name": "Alice"}])
def test_displayname_of_wrong_type_is_400_bad_json(alice, value):
    assert_error(alice.put(path_for(alice.user_id, "displayname"), {"displayname": value}), 400, "M_BAD_JSON")


@pytest.mark.parametrize("value", [42, False, ["mxc://a/b"]])
def test_avatar_url_of_wrong_type_is_400_bad_json(alice, value):
    assert_error(alice.put(path_for(alice.user_id, "avatar_url"), {"avatar_url": value}), 400, "M_BAD_JSON")


def test_too_long_displayname_is_400_and_keeps_the_old_one(alice):
    alice.put(path_for(alice.user_id, "displayname"), {"displayname": "Short"})
    assert_error(alice.put(path_for(alice.user_id, "displayname"), {"displayname": "x" * 257}), 400, "M_BAD_JSON")
    assert alice.get(path_for(alice.user_id, "displayname")).json() == {"displayname": "Short"}


def test_displayname_at_the_limit_is_accepted(alice):
    assert alice.put(path_for(alice.user_id, "displayname"), {"displayname": "x" * 256}).status_code == 200


@pytest.mark.parametrize("url", ["https://example.org/a.png", "mxc:/test.local/x", "MXC://test.local/x",
                                 "javascript:alert(1)", "test.local/abc"])
def test_avatar_url_that_is_not_mxc_is_400(alice, url):
    assert_error(alice.put(path_for(alice.user_id, "avatar_url"), {"avatar_url": url}), 400, "M_INVALID_PARAM")


def test_nul_character_in_displayname_is_400_invalid_param(alice):
    # As for device names at login: PostgreSQL text cannot hold NUL.
    resp = alice.put(path_for(alice.user_id, "displayname"), {"displayname": "a\u0000b"})
    assert_error(resp, 400, "M_INVALID_PARAM")


def test_unknown_profile_field_is_404(alice):
    resp = alice.put(path_for(alice.user_id, "favourite_colour"), {"favourite_colour": "blue"})
    assert resp.status_code == 404


def test_body_that_is_not_an_object_is_400_bad_json(alice):
    resp = requests.put(alice.server.url(f"/_matrix/client/v3{path_for(alice.user_id, 'displayname')}"),
                        data=b'["Alice"]', headers={"Authorization": f"Bearer {alice.access_token}"}, timeout=10)
    assert_error(resp, 400, "M_BAD_JSON")


def test_clearing_the_displayname_with_null_removes_it(homeserver):
    dave = Client(homeserver).register("dave")
    assert dave.put(path_for(dave.user_id, "displayname"), {"displayname": None}).status_code == 200
    assert Client(homeserver).get(path_for(dave.user_id)).json() == {}
    assert_error(Client(homeserver).get(path_for(dave.user_id, "displayname")), 404, "M_NOT_FOUND")
