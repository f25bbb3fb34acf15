"""synctl: generate a config, and start, stop or restart the homeserver.

    synctl generate --server-name NAME [--config-path homeserver.yaml] [--data-dir DIR] [--http-port 8008]
    synctl start|stop|restart [CONFIG]
    synctl -a CONFIG/workers start        (workers: not implemented yet)
    synctl -w CONFIG/workers/NAME.yaml restart

The pid file names gunicorn's arbiter. synctl starts the arbiter in a session of its own, so the
arbiter's pid is also the process group of everything gunicorn forks (its worker); the embedded
PostgreSQL detaches into its own session (pg_ctl) and is stopped separately.
"""

import argparse
import errno
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from hs.config import ConfigError, load_config
from hs.config_generate import generate

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


def _is_our_server(pid: int, pid_file: str) -> bool:
    """Whether ``pid`` is the live gunicorn arbiter serving this config's pid file.

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
    if "gunicorn" not in joined or APP not in joined:
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


def _http_binds(config) -> list[tuple[str, int]]:
    return [(addr, listener.port) for listener in config.listeners if listener.type == "http"
            for addr in listener.bind_addresses]


def _versions_url(config) -> str:
    host, port = _http_binds(config)[0]
    # A wildcard bind answers on loopback of the same family.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/_matrix/client/versions"


def _busy_binds(config) -> list[str]:
    """Binds another process holds now. Checked before starting: otherwise gunicorn retries the
    bind for seconds while whatever holds the port (another homeserver) answers our readiness
    probe, and start would report success for a server that is about to exit."""
    busy = []
    for addr, port in _http_binds(config):
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn: TIME_WAIT is no clash
            try:
                s.bind((addr, port))
            except OSError as e:
                busy.append(f"{addr}:{port} ({e.strerror})")
    return busy


def _gunicorn_command(config) -> list[str]:
    binds = []
    for addr, port in _http_binds(config):
        binds += ["-b", f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"]
    # One gunicorn worker: the master is one process (its replication server must live in the
    # same hub as its HTTP app); thousands of connections, since /sync long-polls park there.
    return [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1", "--worker-connections", "10000",
            "--no-control-socket", "--graceful-timeout", "10", "--pid", os.path.abspath(config.pid_file),
            *binds, APP]


def _load(config_path: str):
    """The config, or None after telling the admin what is wrong with it."""
    try:
        return load_config(config_path)
    except ConfigError as e:
        _say(f"Config error: {e}")
        return None


def start(config_path: str) -> int:
    if not os.path.exists(config_path):
        _say(f"{config_path} not found: generating a config for server name 'localhost'")
        generate("localhost", config_path)
    config = _load(config_path)
    if config is None:
        return 1
    pid = _read_pid(config.pid_file)
    if pid and _is_our_server(pid, config.pid_file):
        _say(f"The homeserver is already running (pid {pid}).")
        return 0
    if os.path.exists(config.pid_file):
        # gunicorn refuses to start while its pid file names any live process.
        why = f"pid {pid} is not this homeserver" if pid else "it holds no pid"
        _say(f"Removing stale pid file {config.pid_file} ({why}).")
        try:
            os.unlink(config.pid_file)
        except FileNotFoundError:
            pass
    busy = _busy_binds(config)
    if busy:
        _say(f"Cannot start: cannot listen on {', '.join(busy)}. "
             f"Stop what holds it, or change the port in {config_path} (listeners).")
        return 1
    os.makedirs(os.path.dirname(config.log_file), exist_ok=True)
    os.makedirs(os.path.dirname(config.pid_file), exist_ok=True)
    env = dict(os.environ, HS_CONFIG=os.path.abspath(config_path))
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    with open(config.log_file, "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(_gunicorn_command(config), env=env, cwd=here, stdin=devnull, stdout=log,
                                stderr=log, start_new_session=True)
    url = _versions_url(config)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _kill_group(proc.pid)  # a worker the dead arbiter left behind, if any
            _say(f"The homeserver failed to start (exit status {proc.returncode}). "
                 f"Last lines of {config.log_file}:\n{_tail(config.log_file)}")
            return 1
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    _say(f"The homeserver is running (pid {proc.pid}) at {url.rsplit('/_matrix', 1)[0]}")
                    return 0
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    _say(f"The homeserver did not answer {url} within {START_TIMEOUT_S:.0f}s; stopping it. "
         f"Last lines of {config.log_file}:\n{_tail(config.log_file)}")
    _stop_group(proc.pid, proc.pid)
    proc.wait()
    return 1


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


def _stop_group(pid: int, pgid: int | None) -> bool:
    """SIGTERM the arbiter (it stops its worker), wait for it and everything in its process group
    ``pgid`` to exit; SIGKILL what is left only if they will not go. True if all exited in time."""
    if pid <= 1 or (pgid is not None and pgid <= 1):  # never a broadcast, never init
        raise ValueError(f"refusing to signal pid {pid} / process group {pgid}")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
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


def stop(config_path: str) -> int:
    config = _load(config_path)
    if config is None:
        return 1
    pid = _read_pid(config.pid_file)
    if pid is None or not _pid_alive(pid):
        _say("The homeserver is not running.")
    elif not _is_our_server(pid, config.pid_file):
        _say(f"The pid file {config.pid_file} names pid {pid}, which is not this homeserver; "
             "leaving that process alone.")
    else:
        _say(f"Stopping the homeserver (pid {pid})...")
        try:
            # synctl makes the arbiter a session leader, so its group is exactly its processes;
            # an arbiter started some other way shares its group with others, so only it is ours.
            pgid = pid if os.getpgid(pid) == pid else None
        except ProcessLookupError:
            pgid = None
        try:
            if not _stop_group(pid, pgid):
                _say(f"It did not exit within {STOP_TIMEOUT_S:.0f}s and was killed.")
        except PermissionError:
            _say(f"Not allowed to signal pid {pid}: run synctl as the user the homeserver runs as.")
            return 1
    if config.database_dsn is None:
        from hs.storage.embedded import stop_embedded_postgres
        stop_embedded_postgres(config.data_dir)
    _remove_pid_file(config.pid_file, pid)
    _say("Stopped.")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="synctl", description="Control the homeserver.")
    parser.add_argument("-a", "--all-processes", metavar="DIR", help="also act on every worker config in DIR")
    parser.add_argument("-w", "--worker", metavar="FILE", help="act on one worker only")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write a homeserver.yaml and a signing key")
    gen.add_argument("--server-name", required=True)
    gen.add_argument("--config-path", default="homeserver.yaml")
    gen.add_argument("--data-dir")
    gen.add_argument("--http-port", type=int, default=8008)
    for name in ("start", "stop", "restart"):
        cmd = sub.add_parser(name, help=f"{name} the homeserver")
        cmd.add_argument("config", nargs="?", default="homeserver.yaml")
    args = parser.parse_args(argv)

    if args.all_processes or args.worker:
        _say("Workers are not implemented yet: synctl -a and -w arrive with worker support.")
        return 2
    if args.command == "generate":
        try:
            generate(args.server_name, args.config_path, args.data_dir, args.http_port)
        except (FileExistsError, ValueError) as e:
            _say(str(e))
            return 1
        _say(f"Wrote {os.path.abspath(args.config_path)}")
        return 0
    if args.command == "start":
        return start(args.config)
    if args.command == "stop":
        return stop(args.config)
    if stop(args.config) != 0:
        return 1
    return start(args.config)


if __name__ == "__main__":
    sys.exit(main())
