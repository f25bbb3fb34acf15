"""synctl: generate a config, and start, stop or restart the homeserver and its workers.

    synctl generate --server-name NAME [--config-path homeserver.yaml] [--data-dir DIR] [--http-port 8008]
    synctl start|stop|restart [homeserver.yaml]               the master alone
    synctl -a CONFIG/workers start|stop|restart [homeserver.yaml]   the master, then every worker in DIR
    synctl -w CONFIG/workers/NAME.yaml start|stop|restart [homeserver.yaml]   one worker
    synctl status [-a DIR] [homeserver.yaml]                  each process, its pid, each worker's lag
    synctl haproxy-config -a DIR [--bind ADDR:PORT] [--federation-bind ADDR:PORT --federation-pem FILE]
                          [homeserver.yaml]

homeserver.yaml defaults to $HS_CONFIG, else ./homeserver.yaml. Each process is a gunicorn arbiter
named by its pid file (`pid_file`, or a worker's `worker_pid_file`). synctl starts each arbiter in
a session of its own, so its pid is also the process group of everything gunicorn forks (its
worker); the embedded PostgreSQL detaches into its own session (pg_ctl) and is stopped separately.
"""

import argparse
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from hs.config import ConfigError, load_config
from hs.config_generate import generate
from hs.haproxy import haproxy_config, proxied_listener
from hs.worker_config import load_worker_config, load_worker_dir

APP = "apps.master:app"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0
KILL_WAIT_S = 10.0
_HAVE_PROC = os.path.isdir("/proc/self")


def _say(message: str) -> None:
    print(message, flush=True)


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, ...), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            # The command name is in parentheses and may itself hold ")" or spaces.
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:  # kill(0) and kill(-1) address groups of processes, never "the server"
        return False
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    # A zombie (an exited child nobody reaped yet) is not a running server.
    stat = _proc_stat(pid)
    return stat is None or stat[0] not in ("Z", "X")


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in process group ``pgid``."""
    if not _HAVE_PROC:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat and stat[2] == str(pgid) and stat[0] not in ("Z", "X"):
                return True
    return False


def _read_pid(pid_file: str) -> int | None:
    try:
        with open(pid_file, encoding="ascii") as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None


def _is_our_server(pid: int, pid_file: str, app: str = APP) -> bool:
    """Whether ``pid`` is the live gunicorn arbiter of ``app`` serving this pid file.

    A pid file outlives its process (a crash, a reboot), and the pid in it may since have been
    given to anything; signalling that would kill an unrelated process. Without /proc there is
    nothing to compare, and the pid file is trusted.
    """
    if not _pid_alive(pid):
        return False
    if not _HAVE_PROC:
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except PermissionError:  # another user's process (hidepid): not one we started
        return False
    except OSError:
        return False
    joined = " ".join(argv)
    if "gunicorn" not in joined or app not in joined:
        return False
    # Several homeservers may run side by side: the arbiter names its own pid file. (With
    # setproctitle installed argv is only "gunicorn: master [...]", and this cannot be checked.)
    if "--pid" in argv[:-1]:
        return os.path.abspath(argv[argv.index("--pid") + 1]) == os.path.abspath(pid_file)
    return True


def _remove_pid_file(pid_file: str, pid: int | None) -> None:
    """Remove the pid file if it still names ``pid`` (a new server may have written its own)."""
    if _read_pid(pid_file) == pid:
        try:
            os.unlink(pid_file)
        except FileNotFoundError:
            pass


def _tail(path: str, lines: int = 25) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _http_binds(config, types=("http",), tls: bool | None = False) -> list[tuple[str, int]]:
    """The binds of ``types`` listeners: plain ones (gunicorn's), ``tls=True`` the ones the app binds
    itself (hs/federation/tls_listener.py), ``tls=None`` both."""
    return [(addr, listener.port) for listener in config.listeners if listener.type in types
            and (tls is None or listener.tls == tls) for addr in listener.bind_addresses]


def _local_url(config, path: str) -> str:
    """``path`` on the process's first http listener, over loopback of the same family when it
    listens on every address."""
    host, port = _http_binds(config)[0]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


def _busy_binds(config) -> list[str]:
    """Binds another process holds now. Checked before starting: otherwise gunicorn retries the
    bind for seconds while whatever holds the port (another homeserver) answers our readiness
    probe, and start would report success for a server that is about to exit. The replication
    listener, which the app itself binds, and the metrics listeners are checked too."""
    busy = []
    for addr, port in _http_binds(config, ("http", "replication", "metrics"), tls=None):
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn: TIME_WAIT is no clash
            try:
                s.bind((addr, port))
            except OSError as e:
                busy.append(f"{addr}:{port} ({e.strerror})")
    return busy


def _gunicorn_command(proc: "Process") -> list[str]:
    binds = []
    # gunicorn serves `type: metrics` listeners too: the app answers only /metrics on their ports.
    for addr, port in _http_binds(proc.config, ("http", "metrics")):
        binds += ["-b", f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"]
    # One gunicorn worker per process: the master's replication server, and a worker's replication
    # client, must live in the same hub as its HTTP app (scale out by adding worker processes);
    # thousands of connections, since /sync long-polls park there. Each process gets its own
    # control socket beside its pid file (gunicorn's default path would be shared by every process
    # on the host); synctl itself controls processes by signal.
    pid_file = os.path.abspath(proc.pid_file)
    return [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1", "--worker-connections", "10000",
            "--control-socket", pid_file + ".ctl", "--graceful-timeout", "10", "--pid", pid_file,
            *binds, proc.app]


def _raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one, for gunicorn to inherit: every parked
    /sync holds a socket, and a soft limit of 1,024 (a common default) would refuse connections
    long before --worker-connections is reached."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # e.g. an unlimited hard limit the kernel caps (nr_open): keep what we have


@dataclass
class Process:
    """One gunicorn arbiter synctl manages: the master or a worker."""

    name: str  # as sentences name it: "the homeserver", "synchrotron worker sync1"
    app: str  # the gunicorn app
    config: object  # its HomeServerConfig or WorkerConfig: listeners, log_file
    config_path: str  # the file naming its ports, for the admin to edit
    listeners_key: str
    pid_file: str
    env: dict
    is_master: bool = False

    @property
    def title(self) -> str:
        return self.name[0].upper() + self.name[1:]

    @property
    def this(self) -> str:
        return "this homeserver" if self.is_master else self.name


def _master(config_path: str, generate_missing: bool = False) -> Process | None:
    """The master's Process, or None after telling the admin what is wrong with its config."""
    if generate_missing and not os.path.exists(config_path):
        _say(f"{config_path} not found: generating a config for server name 'localhost'")
        generate("localhost", config_path)
    try:
        config = load_config(config_path)
    except ConfigError as e:
        _say(f"Config error: {e}")
        return None
    return Process("the homeserver", APP, config, config_path, "listeners", config.pid_file,
                   {"HS_CONFIG": os.path.abspath(config_path)}, is_master=True)


def _worker_process(config) -> Process:
    if config.worker_pid_file is None:
        raise ConfigError(f"{config.worker_config_path}: worker_pid_file: this key is required to run the "
                          "worker with synctl")
    return Process(f"{config.worker_app} worker {config.worker_name}", f"apps.{config.worker_app}:app", config,
                   config.worker_config_path, "worker_listeners", config.worker_pid_file,
                   {"HS_CONFIG": config.main_config.config_path, "HS_WORKER_CONFIG": config.worker_config_path})


def _processes(main_path: str, all_dir: str | None, worker_file: str | None,
               generate_missing: bool = False) -> list[Process] | None:
    """The processes a command acts on, master first, workers in name order; None after a config error."""
    try:
        if worker_file:
            return [_worker_process(load_worker_config(worker_file, main_path))]
        if all_dir and not os.path.isdir(all_dir):  # before generating a main config for nothing
            raise ConfigError(f"{all_dir}: no such directory of worker configs")
        master = _master(main_path, generate_missing)
        if master is None:
            return None
        workers = load_worker_dir(all_dir, main_path)[1] if all_dir else []
        return [master, *(_worker_process(w) for w in workers)]
    except ConfigError as e:
        _say(f"Config error: {e}")
        return None


def _running_pid(proc: Process) -> int | None:
    pid = _read_pid(proc.pid_file)
    return pid if pid and _is_our_server(pid, proc.pid_file, proc.app) else None


def start_process(proc: Process) -> int:
    pid = _read_pid(proc.pid_file)
    if pid and _is_our_server(pid, proc.pid_file, proc.app):
        _say(f"{proc.title} is already running (pid {pid}).")
        return 0
    if os.path.exists(proc.pid_file):
        # gunicorn refuses to start while its pid file names any live process.
        why = f"pid {pid} is not {proc.this}" if pid else "it holds no pid"
        _say(f"Removing stale pid file {proc.pid_file} ({why}).")
        try:
            os.unlink(proc.pid_file)
        except FileNotFoundError:
            pass
    busy = _busy_binds(proc.config)
    if busy:
        _say(f"Cannot start: cannot listen on {', '.join(busy)}. "
             f"Stop what holds it, or change the port in {proc.config_path} ({proc.listeners_key}).")
        return 1
    log_file = proc.config.log_file
    os.makedirs(os.path.dirname(log_file), exist_ok=True)
    os.makedirs(os.path.dirname(proc.pid_file), exist_ok=True)
    env = dict(os.environ, **proc.env)
    if proc.is_master:
        env.pop("HS_WORKER_CONFIG", None)
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    _raise_open_files_limit()
    with open(log_file, "ab") as log, open(os.devnull, "rb") as devnull:
        child = subprocess.Popen(_gunicorn_command(proc), env=env, cwd=here, stdin=devnull, stdout=log,
                                 stderr=log, start_new_session=True)
    url = _local_url(proc.config, "/_matrix/client/versions")
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            _kill_group(child.pid)  # a worker the dead arbiter left behind, if any
            _say(f"{proc.title} failed to start (exit status {child.returncode}). "
                 f"Last lines of {log_file}:\n{_tail(log_file)}")
            return 1
        if _answers(url):
            _say(f"{proc.title} is running (pid {child.pid}) at {url.rsplit('/_matrix', 1)[0]}")
            return 0
        time.sleep(0.2)
    _say(f"{proc.title} did not answer {url} within {START_TIMEOUT_S:.0f}s; stopping it. "
         f"Last lines of {log_file}:\n{_tail(log_file)}")
    _stop_group(child.pid, child.pid)
    child.wait()
    return 1


def _answers(url: str) -> bool:
    """Whether the app answers HTTP at ``url``. Any status counts: the port was free before the start,
    so it is our process, and gunicorn answers only once the app has loaded (a listener may serve
    resources other than `client`, and then answer /versions with 404)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, urllib.error.URLError):
        return False


def _wait_gone(pid: int, pgid: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid) and (pgid is None or not _group_alive(pgid)):
            return True
        time.sleep(0.1)
    return False


def _kill_group(pgid: int) -> None:
    if pgid > 1 and _group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _wait_gone(pgid, pgid, KILL_WAIT_S)


def _check_target(pid: int, pgid: int | None) -> None:
    if pid <= 1 or (pgid is not None and pgid <= 1):  # never a broadcast, never init
        raise ValueError(f"refusing to signal pid {pid} / process group {pgid}")


def _finish_stop(pid: int, pgid: int | None) -> bool:
    """Wait for an arbiter sent SIGTERM, and everything in its process group ``pgid``, to exit;
    SIGKILL what is left only if they will not go. True if all exited in time."""
    _check_target(pid, pgid)
    if _wait_gone(pid, pgid, STOP_TIMEOUT_S):
        return True
    for kill, target in ((os.killpg, pgid), (os.kill, pid)):
        if target is not None:
            try:
                kill(target, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _wait_gone(pid, pgid, KILL_WAIT_S)
    return False


def _stop_group(pid: int, pgid: int | None) -> bool:
    """SIGTERM the arbiter (it stops its worker) and wait as _finish_stop does."""
    _check_target(pid, pgid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    return _finish_stop(pid, pgid)


def _begin_stop(proc: Process) -> tuple[int, int | None] | None:
    """SIGTERM the process if it is running and ours: (pid, process group) to wait for, else None."""
    pid = _read_pid(proc.pid_file)
    if pid is None or not _pid_alive(pid):
        _say(f"{proc.title} is not running.")
        return None
    if not _is_our_server(pid, proc.pid_file, proc.app):
        _say(f"The pid file {proc.pid_file} names pid {pid}, which is not {proc.this}; "
             "leaving that process alone.")
        return None
    _say(f"Stopping {proc.name} (pid {pid})...")
    try:
        # synctl makes the arbiter a session leader, so its group is exactly its processes;
        # an arbiter started some other way shares its group with others, so only it is ours.
        pgid = pid if os.getpgid(pid) == pid else None
    except ProcessLookupError:
        return pid, None
    _check_target(pid, pgid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    return pid, pgid


def stop_processes(procs: list[Process]) -> int:
    """Signal every process at once (workers first), then wait for each pid to exit."""
    status, pending = 0, []
    for proc in reversed(procs):
        try:
            target = _begin_stop(proc)
        except PermissionError:
            _say(f"Not allowed to signal pid {_read_pid(proc.pid_file)}: run synctl as the user "
                 f"{proc.name} runs as.")
            status = 1
            continue
        pending.append((proc, target))
    for proc, target in pending:
        if target is not None and not _finish_stop(*target):
            _say(f"{proc.title} did not exit within {STOP_TIMEOUT_S:.0f}s and was killed.")
        _remove_pid_file(proc.pid_file, target[0] if target else _read_pid(proc.pid_file))
    master = next((p for p in procs if p.is_master), None)
    if master is not None and master.config.database_dsn is None:
        from hs.storage.embedded import stop_embedded_postgres
        stop_embedded_postgres(master.config.data_dir)
    _say("Stopped.")
    return status


def start_processes(procs: list[Process]) -> int:
    """The master first (workers need its schema and replication); a worker that fails to start
    does not keep the others from starting."""
    status = 0
    for proc in procs:
        if start_process(proc) != 0:
            if proc.is_master:
                return 1
            status = 1
    return status


def _fetch_status(proc: Process) -> dict | None:
    try:
        with urllib.request.urlopen(_local_url(proc.config, "/_hs/status"), timeout=2) as answer:
            body = json.load(answer)
        return body if isinstance(body.get("streams"), dict) else None
    except (OSError, ValueError, AttributeError, urllib.error.URLError):
        return None


def status(procs: list[Process]) -> int:
    """Each process, its pid and whether it runs; each worker's lag behind the master per stream."""
    pids = {id(p): _running_pid(p) for p in procs}
    # Workers asked before the master, so a worker is never seen ahead of the master's positions.
    answers = {id(p): _fetch_status(p) if pids[id(p)] else None for p in sorted(procs, key=lambda p: p.is_master)}
    master = next((p for p in procs if p.is_master), None)
    master_streams = answers[id(master)]["streams"] if master and answers[id(master)] else None
    for proc in procs:
        pid, answer = pids[id(proc)], answers[id(proc)]
        if not pid:
            _say(f"{proc.name}: not running")
            continue
        if answer is None:
            detail = "status unavailable"
        elif proc.is_master:
            detail = "streams: " + ", ".join(f"{k} {v}" for k, v in sorted(answer["streams"].items()))
        elif master_streams is None:
            detail = "replication lag unknown (no status from the master)"
        else:
            lags = [f"{name} {master_streams[name] - pos}" for name, pos in sorted(answer["streams"].items())
                    if name in master_streams]
            detail = "replication lag: " + ", ".join(lags)
        for name, values in sorted((answer or {}).get("details", {}).items()):
            detail += f"; {name}: " + ", ".join(f"{k} {'-' if v is None else v}" for k, v in values.items())
        _say(f"{proc.name}: running (pid {pid}); {detail}")
    return 0 if all(pids.values()) else 1


def print_haproxy_config(main_path: str, all_dir: str, bind: str, federation_bind: str | None = None,
                         federation_pem: str | None = None) -> int:
    try:
        master = load_config(main_path)
        workers = load_worker_dir(all_dir, main_path)[1]
        text = haproxy_config(master, workers, bind, source=all_dir, federation_bind=federation_bind,
                              federation_pem=federation_pem)
    except (ConfigError, ValueError) as e:
        _say(f"Config error: {e}")
        return 1
    for path, key, who, listeners in [(master.config_path, "listeners", "master", master.listeners),
                                      *((w.worker_config_path, "worker_listeners", "worker", w.listeners)
                                        for w in workers)]:
        lst = proxied_listener(listeners)
        if not lst.x_forwarded:
            print(f"Note: {path}: {key} port {lst.port} has no `x_forwarded: true`; behind HAProxy the {who} "
                  "would see every client as HAProxy's address.", file=sys.stderr)
    sys.stdout.write(text)
    return 0


def main(argv=None) -> int:
    # -a and -w are read before or after the command: `synctl -a DIR start`, `synctl status -a DIR`.
    scope = argparse.ArgumentParser(add_help=False)
    scope.add_argument("-a", "--all-processes", metavar="DIR", default=argparse.SUPPRESS,
                       help="the master and every worker config in DIR")
    scope.add_argument("-w", "--worker", metavar="FILE", default=argparse.SUPPRESS, help="one worker only")
    parser = argparse.ArgumentParser(prog="synctl", description="Control the homeserver.", parents=[scope])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write a homeserver.yaml and a signing key")
    gen.add_argument("--server-name", required=True)
    gen.add_argument("--config-path", default="homeserver.yaml")
    gen.add_argument("--data-dir")
    gen.add_argument("--http-port", type=int, default=8008)
    default_config = os.environ.get("HS_CONFIG") or "homeserver.yaml"
    for name, text in (("start", "start"), ("stop", "stop"), ("restart", "restart"),
                       ("status", "show the state of"), ("haproxy-config", "print an HAProxy config for")):
        cmd = sub.add_parser(name, help=f"{text} the homeserver", parents=[scope])
        cmd.add_argument("config", nargs="?", default=default_config)
        if name == "haproxy-config":
            cmd.add_argument("--bind", default="127.0.0.1:8080", metavar="ADDR:PORT")
            cmd.add_argument("--federation-bind", metavar="ADDR:PORT",
                             help="also a TLS frontend for other servers there, such as 0.0.0.0:8448")
            cmd.add_argument("--federation-pem", metavar="FILE", help="its certificate chain and key, in one file")
    args = parser.parse_args(argv)
    all_dir, worker_file = getattr(args, "all_processes", None), getattr(args, "worker", None)

    if args.command == "generate":
        if all_dir or worker_file:
            parser.error("generate writes the main homeserver.yaml only; it takes no -a or -w")
        try:
            generate(args.server_name, args.config_path, args.data_dir, args.http_port)
        except (FileExistsError, ValueError) as e:
            _say(str(e))
            return 1
        _say(f"Wrote {os.path.abspath(args.config_path)}")
        return 0
    if all_dir and worker_file:
        parser.error("-a and -w do not go together: -a acts on every process, -w on one worker")
    if args.command == "haproxy-config":
        if not all_dir:
            parser.error("haproxy-config needs -a DIR, the directory of worker configs")
        return print_haproxy_config(args.config, all_dir, args.bind, args.federation_bind, args.federation_pem)
    procs = _processes(args.config, all_dir, worker_file, generate_missing=args.command == "start")
    if procs is None:
        return 1
    if args.command == "start":
        return start_processes(procs)
    if args.command == "stop":
        return stop_processes(procs)
    if args.command == "status":
        return status(procs)
    if stop_processes(procs) != 0:
        return 1
    return start_processes(procs)


if __name__ == "__main__":
    sys.exit(main())
