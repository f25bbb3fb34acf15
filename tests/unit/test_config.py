"""Loading and validating homeserver.yaml (hs/config.py).

Every refusal is worded for the admin who has to fix the file: it names the file, the key path
(`listeners[0].port`) and what was expected, so these tests compare whole messages.
"""

import logging
import os

import psycopg2.extensions
import pytest
import yaml

from hs.config import (
    ConfigError,
    HomeServerConfig,
    Listener,
    PasswordPolicy,
    RateLimit,
    load_config,
)
from hs.logging_setup import setup_logging

MINIMAL = {"server_name": "example.org"}


def write(tmp_path, data, name="homeserver.yaml") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def load(tmp_path, data) -> HomeServerConfig:
    return load_config(write(tmp_path, data))


def refusal(tmp_path, data) -> str:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    prefix = f"{path}: "
    assert str(e.value).startswith(prefix), str(e.value)
    return str(e.value)[len(prefix):]


def http_listener(**overrides) -> dict:
    return {"port": 8008, "type": "http", "bind_addresses": ["127.0.0.1"],
            "resources": [{"names": ["client"]}], **overrides}


def test_a_config_with_only_server_name_loads_with_defaults_beside_the_file(tmp_path, monkeypatch):
    # Relative paths are resolved against the config's directory, not the current directory.
    monkeypatch.chdir("/")
    config = load(tmp_path, MINIMAL)
    assert config.server_name == "example.org"
    assert config.config_path == str(tmp_path / "homeserver.yaml")
    assert config.data_dir == str(tmp_path / "data")
    assert config.pid_file == str(tmp_path / "homeserver.pid")
    assert config.log_file == str(tmp_path / "homeserver.log")
    assert config.media_store_path == str(tmp_path / "media_store")
    assert config.signing_key_path == str(tmp_path / "example.org.signing.key")
    assert config.log_config is None
    assert config.listeners == [Listener("http", 8008, ["127.0.0.1"], {"client", "federation"}, False, False)]
    assert config.client_base_url() == "http://127.0.0.1:8008/"
    assert config.public_baseurl is None
    assert config.database_dsn is None  # the embedded PostgreSQL
    assert config.database_max_connections == 10
    assert config.max_upload_size == 50 * 1024 * 1024
    assert config.max_request_body_size == 10 * 1024 * 1024
    assert config.default_room_version == "12"
    assert config.presence_enabled is True
    assert config.allow_guest_access is False
    assert config.enable_registration is False
    assert config.registration_requires_token is False
    assert config.registration_shared_secret is None
    assert config.password_enabled is True
    assert config.password_pepper == ""
    assert config.password_policy == PasswordPolicy()
    assert config.refreshable_access_token_lifetime_ms == 5 * 60_000
    assert config.refresh_token_lifetime_ms is None
    assert config.nonrefreshable_access_token_lifetime_ms is None
    assert config.ui_auth_session_lifetime_ms == 15 * 60_000
    assert config.key_refresh_interval_ms == 86_400_000
    assert config.login_token_enabled is False
    assert config.rc_message == RateLimit(0.2, 10)
    assert config.rc_registration == RateLimit(0.17, 3)
    assert config.rc_login_address == config.rc_login_account == config.rc_login_failed_attempts == RateLimit(0.17, 3)


def test_absolute_paths_are_kept_as_written(tmp_path):
    config = load(tmp_path, {**MINIMAL, "data_dir": "/srv/hs/data", "pid_file": "/run/hs.pid",
                             "log_config": "log.yaml"})
    assert (config.data_dir, config.pid_file) == ("/srv/hs/data", "/run/hs.pid")
    assert config.log_config == str(tmp_path / "log.yaml")


@pytest.mark.parametrize("data, message", [
    # Types of top-level keys.
    ({}, "server_name: this key is required"),
    ({"server_name": 123}, "server_name: expected a string, got 123"),
    ({**MINIMAL, "enable_registration": "yes"}, "enable_registration: expected true or false, got 'yes'"),
    ({**MINIMAL, "presence": True}, "presence: expected a mapping, got bool"),
    ({**MINIMAL, "presence": {"enabled": 1}}, "presence.enabled: expected true or false, got 1"),
    ({**MINIMAL, "registration_shared_secret": 42}, "registration_shared_secret: expected a string, got 42"),
    # Server names (spec appendix "Server Name": host, optional port).
    ({"server_name": "bad name"},
     "server_name: expected a server name such as example.org or example.org:8448, got 'bad name'"),
    ({"server_name": "example.org\n"},
     "server_name: expected a server name such as example.org or example.org:8448, got 'example.org\\n'"),
    ({"server_name": "example.org:99999"},
     "server_name: expected a server name such as example.org or example.org:8448, got 'example.org:99999'"),
    ({"server_name": "@alice:example.org"},
     "server_name: expected a server name such as example.org or example.org:8448, got '@alice:example.org'"),
    ({**MINIMAL, "public_baseurl": "matrix.example.org"},
     "public_baseurl: expected an http:// or https:// URL, got 'matrix.example.org'"),
    # Listeners.
    ({**MINIMAL, "listeners": "8008"}, "listeners: expected a list, got '8008'"),
    ({**MINIMAL, "listeners": ["8008"]}, "listeners[0]: expected a mapping, got str"),
    ({**MINIMAL, "listeners": [http_listener(port="8008")]}, "listeners[0].port: expected an integer, got '8008'"),
    ({**MINIMAL, "listeners": [http_listener(port=True)]}, "listeners[0].port: expected an integer, got True"),
    ({**MINIMAL, "listeners": [http_listener(port=0)]}, "listeners[0].port: expected a port between 1 and 65535, got 0"),
    ({**MINIMAL, "listeners": [http_listener(port=65536)]},
     "listeners[0].port: expected a port between 1 and 65535, got 65536"),
    ({**MINIMAL, "listeners": [http_listener(), http_listener(type="websocket", port=9000)]},
     "listeners[1].type: expected http, replication or metrics, got 'websocket'"),
    ({**MINIMAL, "listeners": [http_listener(bind_addresses=["localhost"])]},
     "listeners[0].bind_addresses: expected IP addresses such as 127.0.0.1 or ::1, got 'localhost'"),
    ({**MINIMAL, "listeners": [http_listener(bind_addresses=[127])]},
     "listeners[0].bind_addresses: expected IP addresses such as 127.0.0.1 or ::1, got 127"),
    ({**MINIMAL, "listeners": [http_listener(bind_addresses=[])]},
     "listeners[0].bind_addresses: expected at least one IP address such as 127.0.0.1, got []"),
    ({**MINIMAL, "listeners": [http_listener(), http_listener(resources=[{"names": ["federation"]}])]},
     "listeners[1].bind_addresses: expected an address and port no other listener uses (8008), got '127.0.0.1'"),
    ({**MINIMAL, "listeners": [http_listener(resources=[{"names": ["client", "webclient"]}])]},
     "listeners[0].resources[0].names: expected names among client, federation, keys, media, metrics, openid, "
     "replication, got 'webclient'"),
    ({**MINIMAL, "listeners": [http_listener(resources=[{"names": [{"client": True}]}])]},
     "listeners[0].resources[0].names: expected names among client, federation, keys, media, metrics, openid, "
     "replication, got {'client': True}"),
    ({**MINIMAL, "listeners": [http_listener(resources=[{"compress": False}])]},
     "listeners[0].resources[0].names: this key is required"),
    ({**MINIMAL, "listeners": [http_listener(tls=True)]},
     "listeners: at least one listener of type http without tls is required"),
    ({**MINIMAL, "listeners": [http_listener(x_forwarded="true")]},
     "listeners[0].x_forwarded: expected true or false, got 'true'"),
    # Database.
    ({**MINIMAL, "database": "postgres://localhost/hs"}, "database: expected a mapping, got str"),
    ({**MINIMAL, "database": {"name": "mysql"}},
     "database.name: expected psycopg2 (this homeserver runs on PostgreSQL only), got 'mysql'"),
    ({**MINIMAL, "database": {"name": "psycopg2", "args": {"user": "synapse", "host": "db"}}},
     "database.args.database: this key is required"),
    ({**MINIMAL, "database": {"name": "psycopg2"}}, "database.args.database: this key is required"),
    ({**MINIMAL, "database": {"name": "psycopg2", "args": {"database": "hs", "port": [5432]}}},
     "database.args.port: expected a string, got [5432]"),
    ({**MINIMAL, "database": {"name": "psycopg2", "args": {"database": "hs", "cp_max": 0}}},
     "database.args.cp_max: expected an integer of at least 1, got 0"),
    ({**MINIMAL, "database": {"name": "psycopg2", "args": {"dsn": 5}}}, "database.args.dsn: expected a string, got 5"),
    # Room versions.
    ({**MINIMAL, "default_room_version": "13"},
     "default_room_version: expected one of 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, got '13'"),
    ({**MINIMAL, "default_room_version": 1.5}, "default_room_version: expected a room version such as \"12\", got 1.5"),
    # Sizes.
    ({**MINIMAL, "max_upload_size": "abc"},
     "max_upload_size: expected a size such as 50M or a number of bytes, got 'abc'"),
    ({**MINIMAL, "max_upload_size": "50X"},
     "max_upload_size: expected a size such as 50M or a number of bytes, got '50X'"),
    ({**MINIMAL, "max_upload_size": -1}, "max_upload_size: expected a size such as 50M or a number of bytes, got -1"),
    ({**MINIMAL, "max_request_body_size": 1.5},
     "max_request_body_size: expected a size such as 50M or a number of bytes, got 1.5"),
    ({**MINIMAL, "max_upload_size": True},
     "max_upload_size: expected a size such as 50M or a number of bytes, got True"),
    # Durations.
    ({**MINIMAL, "key_refresh_interval": "5 minutes"},
     "key_refresh_interval: expected a duration such as 30s, 5m, 1h or 7d, got '5 minutes'"),
    ({**MINIMAL, "key_refresh_interval": "1.5h"},
     "key_refresh_interval: expected a duration such as 30s, 5m, 1h or 7d, got '1.5h'"),
    ({**MINIMAL, "refresh_token_lifetime": -5},
     "refresh_token_lifetime: expected a duration such as 30s, 5m, 1h or 7d, got -5"),
    ({**MINIMAL, "ui_auth": {"session_lifetime": "soon"}},
     "ui_auth.session_lifetime: expected a duration such as 30s, 5m, 1h or 7d, got 'soon'"),
    # Rate limits.
    ({**MINIMAL, "rc_message": {"per_second": "fast"}}, "rc_message.per_second: expected a number, got 'fast'"),
    ({**MINIMAL, "rc_message": {"per_second": -1}}, "rc_message.per_second: expected a number of at least 0, got -1.0"),
    ({**MINIMAL, "rc_login": {"address": {"burst_count": 1.5}}},
     "rc_login.address.burst_count: expected an integer, got 1.5"),
    ({**MINIMAL, "rc_login": {"failed_attempts": {"burst_count": 0}}},
     "rc_login.failed_attempts.burst_count: expected an integer of at least 1, got 0"),
    ({**MINIMAL, "rc_registration": [1, 2]}, "rc_registration: expected a mapping, got list"),
    # Password policy.
    ({**MINIMAL, "password_config": {"policy": {"minimum_length": "ten"}}},
     "password_config.policy.minimum_length: expected an integer, got 'ten'"),
    ({**MINIMAL, "password_config": {"enabled": "only_for_reauth"}},
     "password_config.enabled: expected true or false, got 'only_for_reauth'"),
    ({**MINIMAL, "password_config": {"pepper": 7}}, "password_config.pepper: expected a string, got 7"),
])
def test_a_refusal_names_the_file_the_key_path_and_what_was_expected(tmp_path, data, message):
    assert refusal(tmp_path, data) == message


def test_a_database_named_sqlite3_is_refused_with_the_way_out(tmp_path):
    assert refusal(tmp_path, {**MINIMAL, "database": {"name": "sqlite3", "args": {"database": "homeserver.db"}}}) == (
        "database.name: SQLite is not supported, this homeserver runs on PostgreSQL only: set name: psycopg2 "
        "and its args, or remove the database section to use the embedded PostgreSQL in data_dir")


def test_a_top_level_that_is_not_a_mapping_is_refused(tmp_path):
    assert refusal(tmp_path, "- server_name: example.org\n") == "top level: expected a mapping, got list"


def test_an_empty_file_asks_for_server_name(tmp_path):
    assert refusal(tmp_path, "") == "server_name: this key is required"


def test_invalid_yaml_is_refused_with_the_parser_position(tmp_path):
    message = refusal(tmp_path, "server_name: example.org\nlisteners: [\n")
    assert message.startswith("not valid YAML: ")
    assert "line 3" in message


def test_a_missing_file_is_refused_with_how_to_write_one(tmp_path):
    path = str(tmp_path / "nowhere.yaml")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"{path}: no such file (run `synctl generate --server-name NAME` to write one)"


def test_a_directory_in_place_of_the_file_is_refused_as_unreadable(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(str(tmp_path))
    assert str(e.value) == f"{tmp_path}: cannot read it: Is a directory"


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "homeserver.yaml"
    path.write_bytes(b"server_name: caf\xe9.org\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    assert str(e.value).startswith(f"{path}: not UTF-8 text: ")


def test_unknown_keys_are_warned_about_and_ignored(tmp_path, caplog):
    path = write(tmp_path, {**MINIMAL, "report_stats": True, "url_preview_ip_range_blacklist": [], "worker_app": "x", 5: "x"})
    with caplog.at_level(logging.WARNING, logger="hs.config"):
        config = load_config(path)
    assert config.server_name == "example.org"
    # worker_* keys belong to worker files laid over this one: not unknown.
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: 5 is not used by this homeserver; ignored",
        f"{path}: report_stats is not used by this homeserver; ignored",
        f"{path}: url_preview_ip_range_blacklist is not used by this homeserver; ignored",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_a_known_config_logs_no_warning(tmp_path, caplog):
    with caplog.at_level(logging.DEBUG, logger="hs.config"):
        load(tmp_path, {**MINIMAL, "enable_registration": True, "rc_message": {"per_second": 1}})
    assert caplog.records == []


@pytest.mark.parametrize("written, size", [
    ("50M", 50 * 1024 * 1024), ("10K", 10 * 1024), ("1G", 1024 ** 3), ("10kB", 10 * 1024), (" 7 ", 7),
    (1024, 1024), (0, 0), (None, 50 * 1024 * 1024),
])
def test_sizes_are_bytes_or_k_m_g_suffixed(tmp_path, written, size):
    assert load(tmp_path, {**MINIMAL, "max_upload_size": written}).max_upload_size == size


@pytest.mark.parametrize("written, ms", [
    ("5m", 300_000), ("1h", 3_600_000), ("30s", 30_000), ("250ms", 250), ("7d", 604_800_000),
    ("1w", 604_800_000), ("1y", 31_536_000_000), (3000, 3000), (0, 0),
])
def test_durations_are_milliseconds_or_unit_suffixed(tmp_path, written, ms):
    config = load(tmp_path, {**MINIMAL, "key_refresh_interval": written, "ui_auth": {"session_lifetime": written}})
    assert config.key_refresh_interval_ms == ms
    assert config.ui_auth_session_lifetime_ms == ms


def test_a_null_token_lifetime_means_no_expiry_and_other_null_durations_the_default(tmp_path):
    config = load(tmp_path, {**MINIMAL, "refreshable_access_token_lifetime": None, "key_refresh_interval": None,
                             "ui_auth": {"session_lifetime": None}})
    assert config.refreshable_access_token_lifetime_ms is None
    assert config.key_refresh_interval_ms == 86_400_000
    assert config.ui_auth_session_lifetime_ms == 15 * 60_000


def test_presence_timeouts_default_to_synapses_and_can_be_shortened(tmp_path):
    config = load(tmp_path, MINIMAL)
    assert (config.presence_idle_timeout_ms, config.presence_sync_online_timeout_ms) == (300_000, 30_000)
    config = load(tmp_path, {**MINIMAL, "presence": {"enabled": False, "idle_timeout": "2s",
                                                     "sync_online_timeout": 500}})
    assert config.presence_enabled is False
    assert (config.presence_idle_timeout_ms, config.presence_sync_online_timeout_ms) == (2000, 500)
    assert "presence.idle_timeout: expected a duration" in refusal(tmp_path, {**MINIMAL,
                                                                              "presence": {"idle_timeout": "soon"}})


def test_rate_limit_sections_are_read_and_missing_fields_default(tmp_path):
    config = load(tmp_path, {**MINIMAL, "rc_message": {"per_second": 2, "burst_count": 20},
                             "rc_registration": {"burst_count": 1},
                             "rc_login": {"address": {"per_second": 0.5}, "failed_attempts": {"per_second": 0}}})
    assert config.rc_message == RateLimit(2.0, 20)
    assert isinstance(config.rc_message.per_second, float)
    assert config.rc_registration == RateLimit(0.17, 1)
    assert config.rc_login_address == RateLimit(0.5, 3)
    assert config.rc_login_account == RateLimit(0.17, 3)
    assert config.rc_login_failed_attempts == RateLimit(0.0, 3)


def test_a_password_policy_section_applies_its_rules(tmp_path):
    config = load(tmp_path, {**MINIMAL, "password_config": {"pepper": "p3pper", "policy": {
        "enabled": True, "minimum_length": 10, "require_digit": True, "require_uppercase": True}}})
    assert config.password_policy == PasswordPolicy(minimum_length=10, require_digit=True, require_uppercase=True)
    assert config.password_pepper == "p3pper"
    assert config.password_enabled is True


def test_a_disabled_password_policy_applies_no_rule(tmp_path):
    config = load(tmp_path, {**MINIMAL, "password_config": {"policy": {"enabled": False, "minimum_length": 10}}})
    assert config.password_policy == PasswordPolicy()


def test_a_password_policy_without_enabled_is_off_as_in_synapse(tmp_path):
    config = load(tmp_path, {**MINIMAL, "password_config": {"policy": {"minimum_length": 10}}})
    assert config.password_policy == PasswordPolicy()


def test_password_login_is_off_when_either_synapse_switch_is_off(tmp_path):
    assert load(tmp_path, {**MINIMAL, "password_config": {"enabled": False}}).password_enabled is False
    assert load(tmp_path, {**MINIMAL, "password_config": {"localdb_enabled": False}}).password_enabled is False


def test_database_args_become_a_libpq_dsn_whatever_characters_they_hold(tmp_path):
    args = {"user": "syn apse", "password": "it's a \\secret", "database": "hs", "host": "db.example.org",
            "port": 5433, "sslmode": "require", "cp_max": 4}
    config = load(tmp_path, {**MINIMAL, "database": {"name": "psycopg2", "args": args}})
    assert psycopg2.extensions.parse_dsn(config.database_dsn) == {
        "user": "syn apse", "password": "it's a \\secret", "dbname": "hs", "host": "db.example.org",
        "port": "5433", "sslmode": "require"}
    assert config.database_max_connections == 4


def test_a_database_dsn_is_used_as_written(tmp_path):
    config = load(tmp_path, {**MINIMAL, "database": {"args": {"dsn": "dbname=hs host=/run/postgresql"}}})
    assert config.database_dsn == "dbname=hs host=/run/postgresql"


def test_listeners_are_read_with_their_resources_and_bind_address(tmp_path):
    config = load(tmp_path, {**MINIMAL, "listeners": [
        http_listener(port=8080, bind_addresses=["::1", "127.0.0.1"], x_forwarded=True,
                      resources=[{"names": ["client"]}, {"names": ["federation", "keys"]}]),
        {"port": 9093, "type": "replication", "bind_address": "127.0.0.1"},
    ]})
    assert config.listeners == [
        Listener("http", 8080, ["::1", "127.0.0.1"], {"client", "federation", "keys"}, True, False),
        Listener("replication", 9093, ["127.0.0.1"], set(), False, False),
    ]
    assert config.client_base_url() == "http://[::1]:8080/"


def test_a_config_without_an_http_listener_is_refused(tmp_path):
    assert refusal(tmp_path, {**MINIMAL, "listeners": [{"port": 9093, "type": "replication"}]}) == (
        "listeners: at least one listener of type http is required")


def test_server_names_with_ports_and_ip_literals_are_accepted(tmp_path):
    for name in ("example.org:8448", "127.0.0.1", "[::1]:8448", "localhost"):
        assert load(tmp_path, {"server_name": name}).server_name == name


def test_public_baseurl_gains_a_trailing_slash_and_is_the_client_base_url(tmp_path):
    config = load(tmp_path, {**MINIMAL, "public_baseurl": "https://matrix.example.org"})
    assert config.public_baseurl == config.client_base_url() == "https://matrix.example.org/"


def test_a_log_config_that_is_not_a_logging_dict_is_a_config_error(tmp_path):
    config = load(tmp_path, {**MINIMAL, "log_config": "log.yaml"})
    (tmp_path / "log.yaml").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        setup_logging(config)
    assert str(e.value).startswith(f"{tmp_path / 'log.yaml'}: cannot set up logging: ")
    (tmp_path / "log.yaml").write_text("version: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        setup_logging(config)
    assert str(e.value) == f"{tmp_path / 'log.yaml'}: cannot set up logging: Unsupported version: 2"


def test_a_missing_log_config_is_a_config_error(tmp_path):
    config = load(tmp_path, {**MINIMAL, "log_config": "missing.yaml"})
    with pytest.raises(ConfigError) as e:
        setup_logging(config)
    assert str(e.value).startswith(f"{tmp_path / 'missing.yaml'}: cannot set up logging: ")
    assert "No such file" in str(e.value)
    assert os.path.exists(config.config_path)
