"""Load a worker's config: the main homeserver.yaml with the worker file's top-level keys laid over it.

Inside a worker process `listeners`, `log_config` and `log_file` are the worker's own (its
`worker_listeners`, `worker_log_config`, `worker_log_file`), so code that reads them (the HTTP app's
x_forwarded handling, logging set-up) needs no worker-specific branch; `main_config` is the master's.
"""

import glob
import os
import re

from hs.config import ConfigError, HomeServerConfig, _Section, load_config, read_yaml

WORKER_TYPES = ("synchrotron", "client_reader", "federation_reader", "media_repository", "pusher", "appservice")
MASTER = "master"
_MASTER_NAMES = ("apps.master", "master", "synapse.app.homeserver")

# A duty the master performs unless switched off; its worker must not run beside it (both would send
# every push, every appservice transaction, or clean up the same media).
DUTY_SWITCHES = {"media_repository": "enable_media_repo", "pusher": "start_pushers",
                 "appservice": "notify_appservices"}


def normalise_worker_app(value, path: str) -> str:
    """A worker type name, or MASTER, from our module names, bare names or Synapse's."""
    if isinstance(value, str):
        if value in _MASTER_NAMES:
            return MASTER
        for prefix in ("apps.", "synapse.app.", ""):
            if value.startswith(prefix) and value[len(prefix):] in WORKER_TYPES:
                return value[len(prefix):]
    raise ConfigError(f"{path}: worker_app: expected one of {', '.join('apps.' + t for t in WORKER_TYPES)} "
                      f"(or Synapse's synapse.app.<type>), or apps.master in a synctl -a directory; got {value!r}")


def read_worker_app(path: str) -> str:
    """The normalised worker_app of a worker file (MASTER for a file that stands for the master)."""
    data = read_yaml(path)
    if data.get("worker_app") is None:
        raise ConfigError(f"{path}: worker_app: this key is required")
    return normalise_worker_app(data["worker_app"], path)


class WorkerConfig(HomeServerConfig):
    """The merged config of one worker process, plus its worker_* keys."""

    def __init__(self, worker_path: str, data: dict, main_config: HomeServerConfig):
        self.main_config = main_config
        main_data = read_yaml(main_config.config_path)
        merged = {k: v for k, v in main_data.items() if not str(k).startswith("worker_")}
        merged.update(data)
        try:
            # Relative paths the worker inherits are the main file's, so they resolve from its directory.
            super().__init__(main_config.config_path, merged)
        except ConfigError as e:
            # The main file alone was valid: the worker's overrides broke it.
            raise ConfigError(str(e).replace(main_config.config_path, worker_path, 1)) from None
        self.worker_config_path = os.path.abspath(worker_path)
        worker_dir = os.path.dirname(self.worker_config_path)
        top = _Section(worker_path, data)
        if "worker_app" not in data or data["worker_app"] is None:
            raise ConfigError(f"{worker_path}: worker_app: this key is required")
        self.worker_app = normalise_worker_app(data["worker_app"], worker_path)
        if self.worker_app == MASTER:
            raise ConfigError(f"{worker_path}: worker_app: {data['worker_app']} stands for the master, which "
                              "runs from the main homeserver.yaml; such a file only tells `synctl -a` to "
                              "manage the master too")
        stem = os.path.splitext(os.path.basename(worker_path))[0]
        self.worker_name = top.get("worker_name", str, stem)
        # It names log files, pid files and HAProxy servers.
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.worker_name):
            top.fail("worker_name", "a name of letters, digits, '.', '_' and '-'", self.worker_name)
        self.worker_replication_host = top.get("worker_replication_host", str, "127.0.0.1")
        self.worker_replication_port = self._port(top, "worker_replication_port")
        self.worker_replication_http_port = self._port(top, "worker_replication_http_port")
        if data.get("worker_listeners") is None:
            raise ConfigError(f"{worker_path}: worker_listeners: this key is required: the worker's own http "
                              "listener, e.g. [{type: http, port: 8083, resources: [{names: [client]}]}]")
        self.worker_listeners = self.read_listeners(top, "worker_listeners", ("http", "metrics"))
        self.worker_daemonize = top.get("worker_daemonize", bool, False)
        # A synchrotron kept for initial syncs (no `since`): those are heavy, and on their own
        # instances they do not hold up the long-polls of clients already synced.
        self.worker_initial_sync_pool = top.get("worker_initial_sync_pool", bool, False)
        if self.worker_initial_sync_pool and self.worker_app != "synchrotron":
            top.fail("worker_initial_sync_pool", "false (only a synchrotron can serve initial syncs)", True)
        pid_file = top.get("worker_pid_file", str, None)
        self.worker_pid_file = _abs(worker_dir, pid_file) if pid_file else None
        log_config = top.get("worker_log_config", str, None)
        self.worker_log_config = _abs(worker_dir, log_config) if log_config else None
        log_file = top.get("worker_log_file", str, None)
        self.worker_log_file = (_abs(worker_dir, log_file) if log_file else
                                os.path.join(os.path.dirname(main_config.log_file), f"{self.worker_name}.log"))
        self.listeners = self.worker_listeners
        self.log_config = self.worker_log_config
        self.log_file = self.worker_log_file
        switch = DUTY_SWITCHES.get(self.worker_app)
        if switch and getattr(main_config, switch):
            raise ConfigError(
                f"{worker_path}: a {self.worker_app} worker cannot run while the master still does its work "
                f"({switch} is true, the default): set {switch}: false in {main_config.config_path}, "
                "restart the master, then start this worker")

    @staticmethod
    def _port(top: _Section, key: str) -> int:
        port = top.get(key, int)
        if not 0 < port < 65536:
            top.fail(key, "a port between 1 and 65535", port)
        return port


def _abs(base: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(base, path)


def load_worker_config(worker_path: str, main_path: str, main_config: HomeServerConfig | None = None) -> WorkerConfig:
    """The validated config of the worker ``worker_path`` runs, over the main homeserver.yaml at ``main_path``."""
    if main_config is None:
        main_config = load_config(main_path)
    return WorkerConfig(worker_path, read_yaml(worker_path), main_config)


def load_worker_dir(directory: str, main_path: str) -> tuple[bool, list[WorkerConfig]]:
    """Every ``*.yaml`` in ``directory`` in name order: whether one stands for the master, and the workers.

    Names, pid files and listening ports must differ between the processes of one homeserver: two
    workers sharing a pid file would stop each other, and sharing a port neither could start. A duty
    handed over from the master goes to one worker: two pushers would send every notification twice."""
    if not os.path.isdir(directory):
        raise ConfigError(f"{directory}: no such directory of worker configs")
    main_config = load_config(main_path)
    has_master, workers = False, []
    names, pid_files = {}, {main_config.pid_file: main_path}
    binds = {(addr, lst.port): main_path for lst in main_config.listeners for addr in lst.bind_addresses}
    for path in sorted(glob.glob(os.path.join(directory, "*.yaml"))):
        if read_worker_app(path) == MASTER:
            has_master = True
            continue
        worker = load_worker_config(path, main_path, main_config)
        if worker.worker_name in names:
            raise ConfigError(f"{path}: worker_name: {worker.worker_name!r} is also the name of the worker in "
                              f"{names[worker.worker_name]}; every worker needs a name of its own")
        names[worker.worker_name] = path
        twin = next((w for w in workers if w.worker_app == worker.worker_app), None)
        if worker.worker_app in DUTY_SWITCHES and twin:
            raise ConfigError(f"{path}: worker_app: {worker.worker_app} runs as one worker only, and "
                              f"{twin.worker_config_path} is one already")
        if worker.worker_pid_file in pid_files:
            raise ConfigError(f"{path}: worker_pid_file: {worker.worker_pid_file} is also the pid file of "
                              f"{pid_files[worker.worker_pid_file]}")
        if worker.worker_pid_file:
            pid_files[worker.worker_pid_file] = path
        for lst in worker.worker_listeners:
            for addr in lst.bind_addresses:
                if (addr, lst.port) in binds:
                    raise ConfigError(f"{path}: worker_listeners: {addr}:{lst.port} is also a listener of "
                                      f"{binds[(addr, lst.port)]}")
                binds[(addr, lst.port)] = path
        workers.append(worker)
    return has_master, workers
