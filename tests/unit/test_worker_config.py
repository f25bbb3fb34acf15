"""Worker files laid over homeserver.yaml (hs/worker_config.py), the master's duty switches and the
replication listener's loopback rule (hs/config.py). Refusals are compared whole: they are what the
admin reads to fix the file."""

import os

import pytest
import yaml

from hs.config import ConfigError, Listener, load_config
from hs.worker_config import MASTER, load_worker_config, load_worker_dir, read_worker_app

MAIN = {
    "server_name": "example.org",
    "data_dir": "data",
    "listeners": [
        {"port": 8008, "type": "http", "bind_addresses": ["127.0.0.1"], "resources": [{"names": ["client"]}]},
        {"port": 9092, "type": "replication", "bind_addresses": ["127.0.0.1"]},
        {"port": 9093, "type": "http", "bind_addresses": ["127.0.0.1"], "resources": [{"names": ["replication"]}]},
    ],
    "enable_media_repo": False,
    "start_pushers": False,
    "notify_appservices": False,
}


def worker(app="apps.synchrotron", port=8083, **extra) -> dict:
    data = {"worker_app": app, "worker_replication_port": 9092, "worker_replication_http_port": 9093,
            "worker_listeners": [{"type": "http", "port": port, "resources": [{"names": ["client"]}]}],
            "worker_pid_file": f"{port}.pid"}
    data.update(extra)
    return {k: v for k, v in data.items() if v is not None}


def write(path, data) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


@pytest.fixture
def main_path(tmp_path):
    return write(tmp_path / "homeserver.yaml", MAIN)


def refusal(worker_path, main_path) -> str:
    with pytest.raises(ConfigError) as e:
        load_worker_config(worker_path, main_path)
    return str(e.value)


def test_a_worker_inherits_the_main_file_and_has_its_own_listeners_pid_and_log(tmp_path, main_path):
    path = write(tmp_path / "workers" / "sync1.yaml", worker(rc_message={"per_second": 5, "burst_count": 50}))
    config = load_worker_config(path, main_path)
    assert config.server_name == "example.org"
    assert config.worker_app == "synchrotron" and config.worker_name == "sync1"
    # Inherited relative paths resolve from the main file's directory, the worker's own from its file's.
    assert config.data_dir == str(tmp_path / "data")
    assert config.worker_pid_file == str(tmp_path / "workers" / "8083.pid")
    assert (config.rc_message.per_second, config.rc_message.burst_count) == (5.0, 50)
    assert config.listeners == config.worker_listeners == [Listener("http", 8083, ["127.0.0.1"], {"client"})]
    assert [lst.port for lst in config.main_config.listeners] == [8008, 9092, 9093]
    assert (config.worker_replication_host, config.worker_replication_port,
            config.worker_replication_http_port) == ("127.0.0.1", 9092, 9093)
    assert config.log_file == config.worker_log_file == str(tmp_path / "sync1.log")
    assert config.log_config is None and config.worker_daemonize is False


def test_worker_name_and_log_keys_are_read_from_the_worker_file(tmp_path, main_path):
    path = write(tmp_path / "w" / "a.yaml", worker(worker_name="reader-1", worker_log_file="logs/r1.log",
                                                   worker_log_config="/etc/hs/r1-log.yaml", worker_daemonize=True,
                                                   worker_replication_host="10.0.0.1"))
    config = load_worker_config(path, main_path)
    assert config.worker_name == "reader-1"
    assert config.log_file == str(tmp_path / "w" / "logs" / "r1.log")
    assert config.log_config == "/etc/hs/r1-log.yaml"
    assert config.worker_daemonize is True and config.worker_replication_host == "10.0.0.1"


@pytest.mark.parametrize("name", ["apps.client_reader", "client_reader", "synapse.app.client_reader"])
def test_worker_app_accepts_our_module_our_type_and_synapses_name(tmp_path, main_path, name):
    path = write(tmp_path / "reader.yaml", worker(app=name))
    assert load_worker_config(path, main_path).worker_app == "client_reader"


@pytest.mark.parametrize("name", ["apps.master", "synapse.app.homeserver"])
def test_a_master_file_is_recognised_but_is_no_worker_to_load(tmp_path, main_path, name):
    path = write(tmp_path / "master.yaml", {"worker_app": name})
    assert read_worker_app(path) == MASTER
    assert refusal(path, main_path) == (
        f"{path}: worker_app: {name} stands for the master, which runs from the main homeserver.yaml; such a "
        "file only tells `synctl -a` to manage the master too")


@pytest.mark.parametrize("name", ["synapse.app.generic_worker", "apps.federation_sender", 7])
def test_an_unknown_worker_app_is_refused_with_the_accepted_names(tmp_path, main_path, name):
    path = write(tmp_path / "w.yaml", worker(app=name))
    assert refusal(path, main_path) == (
        f"{path}: worker_app: expected one of apps.synchrotron, apps.client_reader, apps.federation_reader, "
        "apps.media_repository, apps.pusher, apps.appservice (or Synapse's synapse.app.<type>), or apps.master "
        f"in a synctl -a directory; got {name!r}")


@pytest.mark.parametrize("key", ["worker_app", "worker_replication_port", "worker_replication_http_port"])
def test_a_missing_required_key_is_named_with_the_worker_file(tmp_path, main_path, key):
    data = worker()
    del data[key]
    path = write(tmp_path / "w.yaml", data)
    assert refusal(path, main_path) == f"{path}: {key}: this key is required"


def test_missing_worker_listeners_is_refused_with_an_example(tmp_path, main_path):
    data = worker()
    del data["worker_listeners"]
    path = write(tmp_path / "w.yaml", data)
    assert refusal(path, main_path) == (
        f"{path}: worker_listeners: this key is required: the worker's own http listener, e.g. "
        "[{type: http, port: 8083, resources: [{names: [client]}]}]")


@pytest.mark.parametrize("key,value,expected", [
    ("worker_replication_port", "9092x", "an integer"),
    ("worker_replication_http_port", 70000, "a port between 1 and 65535"),
    ("worker_daemonize", "yes", "true or false"),
    ("worker_name", "my worker", "a name of letters, digits, '.', '_' and '-'"),
    ("worker_pid_file", 12, "a string"),
])
def test_a_worker_key_of_the_wrong_kind_is_refused(tmp_path, main_path, key, value, expected):
    path = write(tmp_path / "w.yaml", worker(**{key: value}))
    assert refusal(path, main_path) == f"{path}: {key}: expected {expected}, got {value!r}"


def test_worker_listeners_take_http_and_metrics_only(tmp_path, main_path):
    path = write(tmp_path / "w.yaml", worker(worker_listeners=[{"type": "replication", "port": 9999}]))
    assert refusal(path, main_path) == (
        f"{path}: worker_listeners[0].type: expected http or metrics, got 'replication'")


def test_a_bad_override_in_the_worker_file_names_the_worker_file(tmp_path, main_path):
    path = write(tmp_path / "w.yaml", worker(server_name="not a name"))
    assert refusal(path, main_path) == (
        f"{path}: server_name: expected a server name such as example.org or example.org:8448, got 'not a name'")


def test_a_bad_main_file_names_the_main_file(tmp_path):
    main_path = write(tmp_path / "homeserver.yaml", dict(MAIN, start_pushers="no"))
    path = write(tmp_path / "w.yaml", worker())
    assert refusal(path, main_path) == f"{main_path}: start_pushers: expected true or false, got 'no'"


@pytest.mark.parametrize("app,switch", [("media_repository", "enable_media_repo"), ("pusher", "start_pushers"),
                                        ("appservice", "notify_appservices")])
def test_a_worker_refuses_to_load_while_the_master_still_holds_its_duty(tmp_path, app, switch):
    main = {k: v for k, v in MAIN.items() if k != switch}  # the switch's default is true
    main_path = write(tmp_path / "homeserver.yaml", main)
    path = write(tmp_path / "w.yaml", worker(app=f"apps.{app}"))
    assert refusal(path, main_path) == (
        f"{path}: a {app} worker cannot run while the master still does its work ({switch} is true, the "
        f"default): set {switch}: false in {main_path}, restart the master, then start this worker")
    write(tmp_path / "homeserver.yaml", dict(main, **{switch: False}))
    assert load_worker_config(path, main_path).worker_app == app


def test_a_worker_file_cannot_switch_the_masters_duty_off_for_it(tmp_path):
    main_path = write(tmp_path / "homeserver.yaml", {k: v for k, v in MAIN.items() if k != "start_pushers"})
    path = write(tmp_path / "w.yaml", worker(app="apps.pusher", start_pushers=False))
    assert "set start_pushers: false in " + main_path in refusal(path, main_path)


def test_duty_switches_default_to_the_master_doing_everything(tmp_path):
    config = load_config(write(tmp_path / "homeserver.yaml", {"server_name": "example.org"}))
    assert (config.enable_media_repo, config.start_pushers, config.notify_appservices) == (True, True, True)
    assert config.replication_secret is None
    assert config.replication_listeners() == [] and config.internal_api_listeners() == []


def test_replication_listeners_and_the_internal_api_are_found(main_path):
    config = load_config(main_path)
    assert [lst.port for lst in config.replication_listeners()] == [9092]
    assert [lst.port for lst in config.internal_api_listeners()] == [9093]


@pytest.mark.parametrize("listener", [
    {"port": 9092, "type": "replication", "bind_addresses": ["0.0.0.0"]},
    {"port": 9093, "type": "http", "bind_addresses": ["::1", "10.1.2.3"], "resources": [{"names": ["replication"]}]},
])
def test_replication_beyond_loopback_needs_the_secret(tmp_path, listener):
    listeners = [MAIN["listeners"][0], listener]
    path = write(tmp_path / "homeserver.yaml", dict(MAIN, listeners=listeners))
    exposed = [a for a in listener["bind_addresses"] if a != "::1"][0]
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == (
        f"{path}: listeners[1]: binds replication to {exposed}, beyond loopback, and replication_secret is not "
        "set: anyone who reaches that port could read every stream and write as the master. Bind it to "
        "127.0.0.1, or opt in by setting replication_secret (a long random string) in this file.")
    write(tmp_path / "homeserver.yaml", dict(MAIN, listeners=listeners, replication_secret="s3cret"))
    config = load_config(path)
    assert config.replication_secret == "s3cret"
    assert len(config.replication_listeners() + config.internal_api_listeners()) == 1


def test_an_empty_replication_secret_is_refused(tmp_path):
    path = write(tmp_path / "homeserver.yaml", dict(MAIN, replication_secret=""))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"{path}: replication_secret: expected a non-empty string, got ''"


def test_a_worker_directory_loads_in_name_order_and_spots_the_master_file(tmp_path, main_path):
    d = tmp_path / "workers"
    write(d / "b_reader.yaml", worker(app="apps.client_reader", port=8085))
    write(d / "a_sync.yaml", worker(port=8083))
    write(d / "0master.yaml", {"worker_app": "synapse.app.homeserver"})
    (d / "notes.txt").write_text("not a config")
    has_master, workers = load_worker_dir(str(d), main_path)
    assert has_master is True
    assert [(w.worker_name, w.worker_app) for w in workers] == [("a_sync", "synchrotron"),
                                                                ("b_reader", "client_reader")]
    write(d / "0master.yaml", worker(port=8090))
    os.rename(d / "0master.yaml", d / "c.yaml")
    assert load_worker_dir(str(d), main_path)[0] is False


def test_a_worker_directory_refuses_two_workers_of_one_name(tmp_path, main_path):
    d = tmp_path / "workers"
    write(d / "a.yaml", worker(port=8083, worker_name="sync"))
    second = write(d / "b.yaml", worker(port=8084, worker_name="sync"))
    with pytest.raises(ConfigError) as e:
        load_worker_dir(str(d), main_path)
    assert str(e.value) == (f"{second}: worker_name: 'sync' is also the name of the worker in {d / 'a.yaml'}; "
                            "every worker needs a name of its own")


def test_a_worker_directory_refuses_a_shared_pid_file_or_port(tmp_path, main_path):
    d = tmp_path / "workers"
    write(d / "a.yaml", worker(port=8083))
    second = write(d / "b.yaml", worker(port=8084, worker_pid_file="8083.pid"))
    with pytest.raises(ConfigError) as e:
        load_worker_dir(str(d), main_path)
    assert str(e.value) == f"{second}: worker_pid_file: {d / '8083.pid'} is also the pid file of {d / 'a.yaml'}"
    write(d / "b.yaml", worker(port=8008))
    with pytest.raises(ConfigError) as e:
        load_worker_dir(str(d), main_path)
    assert str(e.value) == f"{second}: worker_listeners: 127.0.0.1:8008 is also a listener of {main_path}"


def test_a_worker_directory_refuses_a_second_pusher(tmp_path, main_path):
    d = tmp_path / "workers"
    write(d / "a.yaml", worker(app="apps.pusher", port=8083))
    second = write(d / "b.yaml", worker(app="synapse.app.pusher", port=8084))
    with pytest.raises(ConfigError) as e:
        load_worker_dir(str(d), main_path)
    assert str(e.value) == f"{second}: worker_app: pusher runs as one worker only, and {d / 'a.yaml'} is one already"


def test_a_missing_worker_directory_is_named(tmp_path, main_path):
    with pytest.raises(ConfigError) as e:
        load_worker_dir(str(tmp_path / "nope"), main_path)
    assert str(e.value) == f"{tmp_path / 'nope'}: no such directory of worker configs"
