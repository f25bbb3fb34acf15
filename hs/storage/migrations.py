"""Numbered SQL migrations: ``migrations/NNN_name.sql``, applied in order by the master on start.

``schema_version`` holds one row with the number of the last file applied. Each file runs in its
own transaction together with the version bump, so a failing file leaves no trace and the
version where it was. Concurrent starters serialise on a transaction-level advisory lock and
re-read the version once they hold it, so each file is applied exactly once.
"""

import logging
import re
import time
from pathlib import Path

import gevent

from hs.storage.database import Database

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE_NAME = re.compile(r"^(\d+)_\w+\.sql$")
# Any constant works; it only has to differ from other advisory locks taken on this database.
_LOCK_KEY = 0x6873_6D69_6772  # "hsmigr"


class SchemaError(Exception):
    """The database schema cannot be used by this code (newer than it, or bad migration files)."""


class SchemaTimeout(SchemaError):
    """The schema did not reach the wanted version in time."""


def find_migrations(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    """The migration files in ``directory`` as (version, path), numbered 1..N without gaps."""
    found = sorted((int(m.group(1)), path) for path in Path(directory).iterdir()
                   if (m := _FILE_NAME.match(path.name)))
    versions = [version for version, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise SchemaError(f"migration files in {directory} must be numbered 1..N once each, found {versions}")
    return found


def latest_version(directory: Path = MIGRATIONS_DIR) -> int:
    """The schema version this code expects: the number of its newest migration file."""
    return len(find_migrations(directory))


def apply_migrations(db: Database, directory: Path = MIGRATIONS_DIR) -> int:
    """Bring the schema up to the newest file in ``directory``; return the resulting version.

    Raises ``SchemaError`` if the database is at a newer version than the code knows.
    """
    migrations = find_migrations(directory)
    newest = len(migrations)
    current = db.run_txn("migrations_prepare", _prepare_txn, newest)
    for version, path in migrations[current:]:
        try:
            # Another starter may have applied this file meanwhile; the txn checks under the lock.
            applied = db.run_txn(f"migration_{version}", _apply_txn, version, path.read_text())
        except Exception as e:
            raise SchemaError(f"migration {path.name} failed: {e}") from e
        if applied:
            logger.info("applied migration %s", path.name)
    return newest


def _lock(cur) -> None:
    # Released at COMMIT/ROLLBACK. Statements after it see everything committed before it was
    # granted: run_txn's READ COMMITTED takes a fresh snapshot per statement.
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))


def _prepare_txn(cur, newest: int) -> int:
    _lock(cur)  # before CREATE: concurrent CREATE TABLE IF NOT EXISTS can still fail
    cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INT NOT NULL)")
    cur.execute("SELECT version FROM schema_version")
    row = cur.fetchone()
    if row is None:
        cur.execute("INSERT INTO schema_version (version) VALUES (0)")
        return 0
    if row[0] > newest:
        raise SchemaError(f"database schema is at version {row[0]}, newer than this code's {newest}: "
                          "refusing to start (upgrade the code, or restore a matching database)")
    return row[0]


def _apply_txn(cur, version: int, sql: str) -> bool:
    _lock(cur)
    cur.execute("SELECT version FROM schema_version")
    if cur.fetchone()[0] >= version:
        return False
    cur.execute(sql)  # no parameters: the file's % signs are left alone
    cur.execute("UPDATE schema_version SET version = %s", (version,))
    return True


def current_schema_version(db: Database) -> int:
    """The version recorded in the database; 0 before the first migration run."""
    return db.run_txn("current_schema_version", _current_version_txn)


def _current_version_txn(cur) -> int:
    cur.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    if not cur.fetchone()[0]:
        return 0
    cur.execute("SELECT version FROM schema_version")
    row = cur.fetchone()
    return row[0] if row else 0


def wait_for_schema(db: Database, version: int, timeout: float, poll_interval: float = 0.5) -> None:
    """Wait until the master has migrated the database to exactly ``version`` (a worker's
    ``latest_version()``); raise ``SchemaTimeout`` after ``timeout`` seconds, ``SchemaError`` at
    once if the database is already newer than that."""
    deadline = time.monotonic() + timeout
    while True:
        current = current_schema_version(db)
        if current == version:
            return
        if current > version:
            raise SchemaError(f"database schema is at version {current}, newer than this code's {version}")
        if time.monotonic() >= deadline:
            raise SchemaTimeout(f"database schema still at version {current} after {timeout} s, "
                                f"waiting for {version}")
        gevent.sleep(poll_interval)
