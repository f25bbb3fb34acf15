"""synctl: generate a config, and start, stop or restart the homeserver.

    synctl generate --server-name NAME [--config-path homeserver.yaml] [--data-dir DIR] [--http-port 8008]
    synctl start|stop|restart [CONFIG]
    synctl -a CONFIG/workers start        (workers: not implemented yet)
    synctl -w CONFIG/workers/NAME.yaml restart
"""

import argparse
import errno
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from hs.config import ConfigError, load_config
from hs.config_generate import generate

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0


def _say(message: str) -> None:
    print(message, flush=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    # A zombie child of ours is not a running server.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _read_pid(pid_file: str) -> int | None:
    try:
        with open(pid_file, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _tail(path: str, lines: int = 25) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _versions_url(config) -> str:
    http = next(lst for lst in config.listeners if lst.type == "http")
    host = http.bind_addresses[0]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{http.port}/_matrix/client/versions"


def _gunicorn_command(config) -> list[str]:
    binds = []
    for listener in config.listeners:
        if listener.type != "http":
            continue
        for addr in listener.bind_addresses:
            binds += ["-b", f"[{addr}]:{listener.port}" if ":" in addr else f"{addr}:{listener.port}"]
    # One gunicorn worker: the master is one process (its replication server must live in the
    # same hub as its HTTP app); thousands of connections, since /sync long-polls park there.
    return [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1", "--worker-connections", "10000",
            "--no-control-socket", "--graceful-timeout", "10", "--pid", config.pid_file, *binds,
            "apps.master:app"]


def start(config_path: str) -> int:
    if not os.path.exists(config_path):
        _say(f"{config_path} not found: generating a config for server name 'localhost'")
        generate("localhost", config_path)
    try:
        config = load_config(config_path)
    except ConfigError as e:
        _say(f"Config error: {e}")
        return 1
    pid = _read_pid(config.pid_file)
    if pid and _pid_alive(pid):
        _say(f"The homeserver is already running (pid {pid}).")
        return 0
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
    _stop_pid(proc.pid)
    return 1


def _stop_pid(pid: int) -> bool:
    """SIGTERM, then wait; SIGKILL only if it will not go. True if it exited in time."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return False


def stop(config_path: str) -> int:
    try:
        config = load_config(config_path)
    except ConfigError as e:
        _say(f"Config error: {e}")
        return 1
    pid = _read_pid(config.pid_file)
    if pid is None or not _pid_alive(pid):
        _say("The homeserver is not running.")
    else:
        _say(f"Stopping the homeserver (pid {pid})...")
        if not _stop_pid(pid):
            _say(f"It did not exit within {STOP_TIMEOUT_S:.0f}s and was killed.")
    if config.database_dsn is None:
        from hs.storage.embedded import stop_embedded_postgres
        stop_embedded_postgres(config.data_dir)
    try:
        os.unlink(config.pid_file)
    except FileNotFoundError:
        pass
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
        except FileExistsError as e:
            _say(str(e))
            return 1
        _say(f"Wrote {os.path.abspath(args.config_path)}")
        return 0
    if args.command == "start":
        return start(args.config)
    if args.command == "stop":
        return stop(args.config)
    stop(args.config)
    return start(args.config)


if __name__ == "__main__":
    sys.exit(main())
