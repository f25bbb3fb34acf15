"""`synctl generate` (hs/config_generate.py): a config load_config accepts as written, a signing
key, and files holding secrets readable by their owner only."""

import os
import stat

import pytest

from hs.config import load_config
from hs.config_generate import generate
from hs.events.signing import read_signing_keys


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    """A umask that would leave new files world-readable: the modes must not depend on it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_a_generated_config_loads_with_its_server_name_port_and_data_dir(tmp_path):
    path = tmp_path / "conf" / "homeserver.yaml"
    generate("example.org", str(path), str(tmp_path / "store"), 8118)
    config = load_config(str(path))
    assert config.server_name == "example.org"
    assert [(lst.type, lst.port, lst.bind_addresses, lst.resources) for lst in config.listeners] == [
        ("http", 8118, ["127.0.0.1"], {"client", "federation"})]
    assert config.data_dir == str(tmp_path / "store")
    assert config.pid_file == str(tmp_path / "store" / "homeserver.pid")
    assert config.log_file == str(tmp_path / "store" / "homeserver.log")
    assert config.media_store_path == str(tmp_path / "store" / "media_store")
    assert config.signing_key_path == str(tmp_path / "conf" / "example.org.signing.key")
    assert config.database_dsn is None  # the README path: embedded PostgreSQL
    assert config.enable_registration is True
    assert len(config.registration_shared_secret) >= 32
    assert os.path.isdir(config.data_dir)


def test_the_data_dir_defaults_to_data_beside_the_config_and_the_port_to_8008(tmp_path):
    generate("localhost", str(tmp_path / "homeserver.yaml"))
    config = load_config(str(tmp_path / "homeserver.yaml"))
    assert config.data_dir == str(tmp_path / "data")
    assert config.listeners[0].port == 8008


def test_the_config_the_signing_key_and_the_data_dir_are_the_owners_only(tmp_path, open_umask):
    path = tmp_path / "homeserver.yaml"
    generate("example.org", str(path))
    assert mode(path) == 0o600  # it holds the registration shared secret
    assert mode(tmp_path / "example.org.signing.key") == 0o600
    assert mode(tmp_path / "data") == 0o700


def test_the_signing_key_is_one_ed25519_key_the_server_can_read(tmp_path):
    generate("example.org", str(tmp_path / "homeserver.yaml"))
    keys = read_signing_keys(str(tmp_path / "example.org.signing.key"))
    assert len(keys) == 1
    assert keys[0].key_id.startswith("ed25519:")
    assert (tmp_path / "example.org.signing.key").read_text().startswith(keys[0].key_id.replace(":", " ") + " ")


def test_each_generated_config_has_its_own_shared_secret(tmp_path):
    generate("example.org", str(tmp_path / "a" / "homeserver.yaml"))
    generate("example.org", str(tmp_path / "b" / "homeserver.yaml"))
    first = load_config(str(tmp_path / "a" / "homeserver.yaml")).registration_shared_secret
    second = load_config(str(tmp_path / "b" / "homeserver.yaml")).registration_shared_secret
    assert first != second


def test_an_existing_config_is_never_overwritten(tmp_path):
    path = tmp_path / "homeserver.yaml"
    path.write_text("server_name: mine.example\n", encoding="utf-8")
    with pytest.raises(FileExistsError) as e:
        generate("example.org", str(path))
    assert str(e.value) == f"{path} already exists; not overwriting it"
    assert path.read_text(encoding="utf-8") == "server_name: mine.example\n"
    assert not (tmp_path / "example.org.signing.key").exists()


def test_an_existing_signing_key_is_kept(tmp_path):
    generate("example.org", str(tmp_path / "first" / "homeserver.yaml"))
    key_path = tmp_path / "first" / "example.org.signing.key"
    before = key_path.read_bytes()
    os.unlink(tmp_path / "first" / "homeserver.yaml")
    generate("example.org", str(tmp_path / "first" / "homeserver.yaml"))
    assert key_path.read_bytes() == before


def test_paths_with_quotes_spaces_and_hashes_survive_the_yaml(tmp_path):
    odd = tmp_path / "it's a \"dir\" #1: yes"
    generate("example.org", str(odd / "homeserver.yaml"), str(odd / "da ta#"))
    config = load_config(str(odd / "homeserver.yaml"))
    assert config.data_dir == str(odd / "da ta#")
    assert config.signing_key_path == str(odd / "example.org.signing.key")


@pytest.mark.parametrize("name", ["bad name", "", "example.org:0", "@alice:example.org"])
def test_a_server_name_the_config_would_refuse_writes_nothing(tmp_path, name):
    with pytest.raises(ValueError) as e:
        generate(name, str(tmp_path / "homeserver.yaml"))
    assert str(e.value) == f"--server-name: expected a server name such as example.org or example.org:8448, got {name!r}"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_a_port_out_of_range_writes_nothing(tmp_path, port):
    with pytest.raises(ValueError) as e:
        generate("example.org", str(tmp_path / "homeserver.yaml"), http_port=port)
    assert str(e.value) == f"--http-port: expected a port between 1 and 65535, got {port}"
    assert os.listdir(tmp_path) == []
