"""PostgreSQL helpers for the test harness: DSNs and throwaway databases."""

import uuid
from contextlib import contextmanager

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import make_dsn as _merge_dsn


def make_dsn(base_dsn: str, dbname: str) -> str:
    """``base_dsn`` (key=value or URI form) pointed at database ``dbname``."""
    return _merge_dsn(base_dsn, dbname=dbname)


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@contextmanager
def admin_cursor(base_dsn: str):
    """An autocommit cursor (CREATE/DROP DATABASE cannot run inside a transaction)."""
    conn = psycopg2.connect(base_dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def create_database(base_dsn: str, name: str, template: str | None = None) -> None:
    """Create ``name`` as a copy of ``template``, or empty with the settings the embedded server's
    ``homeserver`` database gets (UTF8, C collation) so tests see what deployments see."""
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is None:
        query += sql.SQL(" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    else:
        query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with admin_cursor(base_dsn) as cur:
        cur.execute(query)


def drop_database(base_dsn: str, name: str) -> None:
    """Drop ``name``, first terminating any connection a test left open (WITH (FORCE), PG >= 13)."""
    with admin_cursor(base_dsn) as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def fresh_database(base_dsn: str, prefix: str, template: str | None = None):
    """The DSN of a new database (a copy of `template` if given), dropped on exit."""
    name = unique_name(prefix)
    create_database(base_dsn, name, template=template)
    try:
        yield make_dsn(base_dsn, name)
    finally:
        drop_database(base_dsn, name)
