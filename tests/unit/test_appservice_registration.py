"""Application service registration files: loading, validation errors, namespace matching."""

import pytest
import yaml

from hs.config import ConfigError, load_config

REGISTRATION = {
    "id": "irc",
    "url": "http://127.0.0.1:9999",
    "as_token": "as-secret",
    "hs_token": "hs-secret",
    "sender_localpart": "ircbot",
    "namespaces": {
        "users": [{"exclusive": True, "regex": "@irc_.*:example.org"}],
        "aliases": [{"exclusive": False, "regex": "#irc_.*:example.org"}],
        "rooms": [{"exclusive": False, "regex": "!bridged.*"}],
    },
    "protocols": ["irc"],
}


def write(tmp_path, name, data) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def load_with(tmp_path, *registrations):
    paths = [write(tmp_path, f"reg{i}.yaml", reg) for i, reg in enumerate(registrations)]
    return load_config(write(tmp_path, "homeserver.yaml",
                             {"server_name": "example.org", "app_service_config_files": paths}))


def refusal(tmp_path, *registrations) -> str:
    with pytest.raises(ConfigError) as e:
        load_with(tmp_path, *registrations)
    return str(e.value)


def test_no_files_means_no_services(tmp_path):
    config = load_config(write(tmp_path, "homeserver.yaml", {"server_name": "example.org"}))
    assert config.app_services.services == []


def test_a_registration_loads_with_its_sender_and_defaults(tmp_path):
    service, = load_with(tmp_path, REGISTRATION).app_services.services
    assert (service.id, service.url, service.sender) == ("irc", "http://127.0.0.1:9999", "@ircbot:example.org")
    assert service.rate_limited is True
    assert service.receive_ephemeral is False
    assert service.protocols == ("irc",)


def test_namespaces_match_from_the_start_as_synapse_does(tmp_path):
    service, = load_with(tmp_path, REGISTRATION).app_services.services
    assert service.is_interested_in_user("@irc_alice:example.org")
    assert service.is_interested_in_user("@ircbot:example.org")  # its sender
    assert not service.is_interested_in_user("@alice:example.org")
    assert not service.is_interested_in_user("@x@irc_alice:example.org")
    assert service.is_exclusive("users", "@irc_alice:example.org")
    assert not service.is_exclusive("aliases", "#irc_chan:example.org")
    assert service.is_interested_in_alias("#irc_chan:example.org")
    assert service.is_interested_in_room("!bridged123:example.org")
    assert not service.is_interested_in_room("!other:example.org")


def test_registry_finds_services_by_token_and_exclusive_namespace(tmp_path):
    other = dict(REGISTRATION, id="slack", as_token="as-2", sender_localpart="slackbot",
                 namespaces={"users": [{"exclusive": True, "regex": "@slack_.*"}]})
    registry = load_with(tmp_path, REGISTRATION, other).app_services
    irc, slack = registry.services
    assert registry.by_as_token("as-secret") is irc
    assert registry.by_as_token("as-2") is slack
    assert registry.by_as_token("nope") is None
    assert registry.by_id("slack") is slack
    assert registry.is_reserved_for_others("users", "@irc_bob:example.org", None)
    assert registry.is_reserved_for_others("users", "@irc_bob:example.org", slack)
    assert not registry.is_reserved_for_others("users", "@irc_bob:example.org", irc)
    assert not registry.is_reserved_for_others("users", "@bob:example.org", None)


def test_unstable_receive_ephemeral_key_is_read(tmp_path):
    reg = dict(REGISTRATION, **{"de.sorunome.msc2409.push_ephemeral": True})
    service, = load_with(tmp_path, reg).app_services.services
    assert service.receive_ephemeral is True


def test_url_may_be_null_but_not_missing(tmp_path):
    service, = load_with(tmp_path, dict(REGISTRATION, url=None)).app_services.services
    assert service.url is None
    reg = dict(REGISTRATION)
    del reg["url"]
    assert "reg0.yaml: url: this key is required" in refusal(tmp_path, reg)


@pytest.mark.parametrize("change, message", [
    ({"as_token": ""}, "as_token: expected a non-empty string"),
    ({"hs_token": 5}, "hs_token: expected a string, got 5"),
    ({"url": "ftp://x"}, "url: expected an http:// or https:// URL"),
    ({"sender_localpart": "Bad Name"}, "sender_localpart: expected a user ID localpart"),
    ({"namespaces": {"users": [{"regex": "@a.*"}]}}, "namespaces.users[0].exclusive: this key is required"),
    ({"namespaces": {"users": [{"regex": "(", "exclusive": True}]}}, "namespaces.users[0].regex: expected a regular"),
    ({"namespaces": {"rooms": "!a"}}, "namespaces.rooms: expected a list"),
    ({"protocols": [""]}, "protocols[0]: expected a protocol name"),
])
def test_invalid_registrations_are_refused_naming_file_and_key(tmp_path, change, message):
    assert message in refusal(tmp_path, dict(REGISTRATION, **change))


def test_missing_namespaces_is_refused(tmp_path):
    reg = dict(REGISTRATION)
    del reg["namespaces"]
    assert "namespaces: this key is required" in refusal(tmp_path, reg)


def test_duplicate_ids_tokens_and_senders_are_refused(tmp_path):
    assert "id: the same id as" in refusal(tmp_path, REGISTRATION, dict(REGISTRATION, as_token="x",
                                                                       sender_localpart="b"))
    assert "as_token: the same as_token" in refusal(tmp_path, REGISTRATION, dict(REGISTRATION, id="b",
                                                                                  sender_localpart="b"))
    assert "sender_localpart: the same as" in refusal(tmp_path, REGISTRATION, dict(REGISTRATION, id="b",
                                                                                   as_token="x"))


def test_missing_or_broken_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: no such file"):
        load_config(write(tmp_path, "homeserver.yaml",
                          {"server_name": "example.org", "app_service_config_files": [str(tmp_path / "nope.yaml")]}))
    assert "not valid YAML" in refusal(tmp_path, "id: [")
