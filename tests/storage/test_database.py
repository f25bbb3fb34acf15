import logging

import gevent
import gevent.event
import psycopg2.errors
import pytest

from hs.storage import database
from hs.storage.database import Database
from tests.pg import unique_name


@pytest.fixture
def db(db_dsn):
    db = Database(db_dsn, max_connections=4)
    yield db
    db.close()


@pytest.fixture
def table(db):
    name = unique_name("t")
    db.execute("create_table", f"CREATE TABLE {name} (id INT PRIMARY KEY, v TEXT)")
    return name


def test_run_txn_commits_and_returns_the_result(db, table):
    def txn(cur, ident, *, value):
        cur.execute(f"INSERT INTO {table} VALUES (%s, %s)", (ident, value))
        return "done"

    assert db.run_txn("insert", txn, 1, value="a") == "done"
    assert db.execute("select", f"SELECT id, v FROM {table}") == [(1, "a")]


def test_execute_returns_rows_or_nothing(db, table):
    assert db.execute("insert", f"INSERT INTO {table} VALUES (1, '100%')") == []
    assert db.execute("select", f"SELECT v FROM {table} WHERE v LIKE %s", ("%0%",)) == [("100%",)]


def test_exception_rolls_back_everything_and_is_not_retried(db, table):
    calls = 0

    def txn(cur):
        nonlocal calls
        calls += 1
        cur.execute(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b')")
        raise ValueError("boom")

    with pytest.raises(ValueError):
        db.run_txn("fails", txn)
    assert calls == 1
    assert db.execute("count", f"SELECT count(*) FROM {table}") == [(0,)]


def test_database_errors_other_than_conflicts_are_not_retried(db, table):
    db.execute("insert", f"INSERT INTO {table} VALUES (1, 'a')")
    calls = 0

    def txn(cur):
        nonlocal calls
        calls += 1
        cur.execute(f"INSERT INTO {table} VALUES (2, 'b')")
        cur.execute(f"INSERT INTO {table} VALUES (1, 'dup')")

    with pytest.raises(psycopg2.errors.UniqueViolation):
        db.run_txn("dup", txn)
    assert calls == 1
    assert db.execute("select", f"SELECT id FROM {table}") == [(1,)]


def test_serialization_failure_between_two_greenlets_is_retried(db, table):
    # Write skew: each transaction reads both rows, then takes its own row off call if the other
    # is still on call. Under SERIALIZABLE one of the two must fail with 40001; its retry sees
    # the other's commit and leaves its row alone.
    db.execute("seed", f"INSERT INTO {table} VALUES (1, 'on'), (2, 'on')")
    both_read = gevent.event.Event()
    readers = 0
    attempts = {1: 0, 2: 0}

    def txn(cur, ident):
        nonlocal readers
        attempts[ident] += 1
        cur.execute(f"SELECT count(*) FROM {table} WHERE v = 'on'")
        on_call = cur.fetchone()[0]
        if attempts[ident] == 1:  # make the first attempts overlap
            readers += 1
            if readers == 2:
                both_read.set()
            both_read.wait()
        if on_call == 2:
            cur.execute(f"UPDATE {table} SET v = 'off' WHERE id = %s", (ident,))

    workers = [gevent.spawn(db.run_txn, "go_off_call", txn, i, _isolation="serializable") for i in (1, 2)]
    gevent.joinall(workers, raise_error=True, timeout=10)
    assert sorted(attempts.values()) == [1, 2]
    assert db.execute("count", f"SELECT count(*) FROM {table} WHERE v = 'on'") == [(1,)]


def test_deadlock_is_retried(db, table):
    db.execute("seed", f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b')")
    both_locked = gevent.event.Event()
    lockers = 0
    attempts = {1: 0, 2: 0}

    def txn(cur, first, second):
        nonlocal lockers
        attempts[first] += 1
        cur.execute(f"UPDATE {table} SET v = v || '.' WHERE id = %s", (first,))
        if attempts[first] == 1:
            lockers += 1
            if lockers == 2:
                both_locked.set()
            both_locked.wait()
        cur.execute(f"UPDATE {table} SET v = v || '.' WHERE id = %s", (second,))

    # Opposite lock order: PostgreSQL aborts one of them after deadlock_timeout (1 s by default).
    workers = [gevent.spawn(db.run_txn, "lock", txn, 1, 2), gevent.spawn(db.run_txn, "lock", txn, 2, 1)]
    gevent.joinall(workers, raise_error=True, timeout=10)
    assert sorted(attempts.values()) == [1, 2]
    assert db.execute("select", f"SELECT v FROM {table} ORDER BY id") == [("a..",), ("b..",)]


def test_retries_stop_after_max_attempts(db, monkeypatch):
    monkeypatch.setattr(database, "_BACKOFF_BASE", 0.001)
    calls = 0

    def txn(cur):
        nonlocal calls
        calls += 1
        raise psycopg2.errors.SerializationFailure("conflict")

    with pytest.raises(psycopg2.errors.SerializationFailure):
        db.run_txn("always_conflicts", txn)
    assert calls == database.MAX_ATTEMPTS


def test_isolation_level(db):
    def isolation(cur):
        cur.execute("SHOW transaction_isolation")
        return cur.fetchone()[0]

    assert db.run_txn("default", isolation) == "read committed"
    assert db.run_txn("serializable", isolation, _isolation="serializable") == "serializable"
    assert db.run_txn("default_again", isolation) == "read committed"  # nothing stuck to the connection
    with pytest.raises(ValueError):
        db.run_txn("bad", isolation, _isolation="chaos")


def test_slow_transactions_are_logged(db, monkeypatch, caplog):
    monkeypatch.setattr(database, "SLOW_TXN_SECONDS", 0.05)
    with caplog.at_level(logging.WARNING, logger="hs.storage.database"):
        db.execute("quick_one", "SELECT 1")
        db.execute("sleepy_one", "SELECT pg_sleep(0.1)")
    slow = [r.getMessage() for r in caplog.records]
    assert len(slow) == 1 and "sleepy_one" in slow[0]


# --- batched transactions: writes held back and sent together ---------------------------------

def test_batched_txn_sends_its_writes_with_begin_and_commit_and_reads_see_them(db, table):
    def txn(cur):
        cur.execute(f"INSERT INTO {table} VALUES (%s, %s)", (1, "it's 100%"))
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", [(2, "b"), (3, "c")])
        cur.execute(f"SELECT count(*) FROM {table}")  # a read: what is held goes first
        seen = cur.fetchone()[0]
        cur.execute(f"UPDATE {table} SET v = 'x' WHERE id > 1")
        return seen, cur.rowcount

    assert db.run_txn("batched", txn, _batched=True) == (3, 2)
    assert db.execute("select", f"SELECT id, v FROM {table} ORDER BY id") == [(1, "it's 100%"), (2, "x"), (3, "x")]


@pytest.mark.parametrize("failure", ["statement", "python"])
def test_a_failed_batched_txn_leaves_nothing_and_its_connection_usable(db, table, failure):
    db.execute("insert", f"INSERT INTO {table} VALUES (1, 'a')")

    def txn(cur):
        cur.execute(f"INSERT INTO {table} VALUES (2, 'b')")
        if failure == "statement":
            cur.execute(f"INSERT INTO {table} VALUES (1, 'dup')")
        else:
            cur.execute(f"SELECT count(*) FROM {table}")
            assert cur.fetchone() == (2,)
            raise ValueError("boom")

    with pytest.raises(psycopg2.errors.UniqueViolation if failure == "statement" else ValueError):
        db.run_txn("fails", txn, _batched=True)
    # Every pooled connection, the failed one among them, is back in a clean state.
    results = [db.run_txn("after", lambda cur: (cur.execute(f"SELECT id FROM {table}"), cur.fetchall())[1])
               for _ in range(8)]
    assert results == [[(1,)]] * 8
    assert db.run_txn("batched again", lambda cur: cur.execute(f"INSERT INTO {table} VALUES (3, 'c')"),
                      _batched=True) is None
    assert db.execute("select", f"SELECT id FROM {table} ORDER BY id") == [(1,), (3,)]
