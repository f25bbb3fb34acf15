"""Test harness: the PostgreSQL server and per-module databases.

- ``pg_server_dsn`` (session): ``$TEST_PG_DSN`` if set (a server where we may CREATE DATABASE),
  else an embedded server started in a temporary directory and stopped at the end.
- ``template_db`` (session): a database migrated with the real migrations.
- ``db_dsn`` (module): a fresh copy of the template for each test module.

Helpers live in ``tests/pg.py``; other fixtures go in ``tests/harness.py``.
"""

import os
import shutil
import tempfile

import pytest

from hs.storage.database import Database
from hs.storage.embedded import start_embedded_postgres, stop_embedded_postgres
from hs.storage.migrations import apply_migrations
from tests.harness import running_homeserver
from tests.pg import admin_cursor, create_database, drop_database, fresh_database, make_dsn, unique_name


@pytest.fixture(scope="session")
def pg_server_dsn():
    if os.environ.get("TEST_PG_DSN"):
        yield os.environ["TEST_PG_DSN"]
        return
    # Short path under /tmp: the unix socket lives in it. As root the embedded server runs as
    # the "pgserver" user, which needs to traverse it (see hs/storage/embedded.py).
    data_dir = tempfile.mkdtemp(prefix="hs-test-pg-")
    try:
        dsn = start_embedded_postgres(data_dir)
        with admin_cursor(dsn) as cur:
            # A throwaway server need not survive a power cut: skip the fsyncs (3x faster clones).
            cur.execute("ALTER SYSTEM SET fsync = off")
            cur.execute("ALTER SYSTEM SET synchronous_commit = off")
            cur.execute("SELECT pg_reload_conf()")
        yield dsn
    finally:
        stop_embedded_postgres(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_server_dsn):
    name = unique_name("hs_test_template")
    create_database(pg_server_dsn, name)
    try:
        db = Database(make_dsn(pg_server_dsn, name), max_connections=1)
        try:
            apply_migrations(db)
        finally:
            db.close()  # CREATE DATABASE ... TEMPLATE needs the template free of sessions
        yield name
    finally:
        drop_database(pg_server_dsn, name)


@pytest.fixture(scope="module")
def db_dsn(pg_server_dsn, template_db):
    with fresh_database(pg_server_dsn, "hs_test", template=template_db) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def homeserver(db_dsn):
    """A master process on this module's database, with rate limits out of the way."""
    with running_homeserver(db_dsn) as server:
        yield server
