import os
import time

import gevent
import gevent.event
import psycopg2
import pytest
from psycopg2.extensions import make_dsn

from hs.storage.pool import ConnectionPool, PoolForkError, PoolTimeout
from tests.pg import admin_cursor, unique_name


@pytest.fixture
def app_name():
    """Tags the pool's sessions so pg_stat_activity can tell them apart."""
    return unique_name("pool")


@pytest.fixture
def make_pool(db_dsn, app_name):
    pools = []

    def make(max_size, checkout_timeout=10.0):
        pool = ConnectionPool(make_dsn(db_dsn, application_name=app_name), max_size, checkout_timeout)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def backend_pid(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]


def sleep_query(pool, seconds):
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_sleep(%s)", (seconds,))


def test_pool_never_exceeds_max_size(make_pool, db_dsn, app_name):
    pool = make_pool(max_size=3)
    in_use = peak_in_use = peak_backends = 0

    def worker():
        nonlocal in_use, peak_in_use
        with pool.connection() as conn:
            in_use += 1
            peak_in_use = max(peak_in_use, in_use)
            with conn.cursor() as cur:
                cur.execute("SELECT pg_sleep(0.1)")
            in_use -= 1

    workers = [gevent.spawn(worker) for _ in range(8)]
    with admin_cursor(db_dsn) as cur:
        while not all(w.dead for w in workers):
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app_name,))
            peak_backends = max(peak_backends, cur.fetchone()[0])
            gevent.sleep(0.01)
    gevent.joinall(workers, raise_error=True)
    assert peak_in_use == 3
    assert 1 <= peak_backends <= 3


def test_waiter_gets_the_returned_connection(make_pool):
    pool = make_pool(max_size=1)
    release = gevent.event.Event()
    pids = []

    def holder():
        with pool.connection() as conn:
            pids.append(backend_pid(conn))
            release.wait()

    def waiter():
        with pool.connection() as conn:
            pids.append(backend_pid(conn))

    h = gevent.spawn(holder)
    gevent.sleep(0.05)
    w = gevent.spawn(waiter)
    gevent.sleep(0.1)
    assert not w.dead  # blocked: the only slot is taken
    release.set()
    gevent.joinall([h, w], raise_error=True, timeout=5)
    assert len(pids) == 2 and pids[0] == pids[1]  # same connection, handed over


def test_checkout_timeout_raises_pool_timeout(make_pool):
    pool = make_pool(max_size=1, checkout_timeout=0.2)
    with pool.connection():
        start = time.monotonic()
        with pytest.raises(PoolTimeout):
            with pool.connection():
                pass
        assert time.monotonic() - start >= 0.2
    with pool.connection():  # the slot came back
        pass


def terminate(db_dsn, pid):
    with admin_cursor(db_dsn) as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    gevent.sleep(0.05)  # let the FATAL reach the client socket


def test_idle_connection_killed_by_server_is_replaced(make_pool, db_dsn):
    pool = make_pool(max_size=1)
    with pool.connection() as conn:
        old_pid = backend_pid(conn)
    terminate(db_dsn, old_pid)
    with pool.connection() as conn:
        assert backend_pid(conn) != old_pid


def test_connection_broken_in_use_is_discarded(make_pool, db_dsn):
    pool = make_pool(max_size=1)
    with pytest.raises(psycopg2.OperationalError):
        with pool.connection() as conn:
            old_pid = backend_pid(conn)
            conn.rollback()
            terminate(db_dsn, old_pid)
            backend_pid(conn)
    assert conn.closed
    with pool.connection() as conn:
        assert backend_pid(conn) != old_pid


def test_connection_of_killed_greenlet_is_discarded(make_pool):
    pool = make_pool(max_size=1)
    g = gevent.spawn(sleep_query, pool, 30)
    gevent.sleep(0.1)
    g.kill()  # mid-query: the connection's protocol state is unknown
    with pool.connection() as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)


def test_open_transaction_is_rolled_back_on_return(make_pool):
    pool = make_pool(max_size=1)
    table = unique_name("t")
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (x INT)")
        conn.commit()
        cur.execute(f"INSERT INTO {table} VALUES (1)")  # left uncommitted
    with pool.connection() as conn, conn.cursor() as cur:
        assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        cur.execute(f"SELECT count(*) FROM {table}")
        assert cur.fetchone() == (0,)


def test_queries_run_concurrently_under_psycogreen(make_pool):
    pool = make_pool(max_size=5)
    start = time.monotonic()
    gevent.joinall([gevent.spawn(sleep_query, pool, 0.3) for _ in range(5)], raise_error=True)
    # Serial execution would take 5 x 0.3 s; allow a noisy machine plenty of slack.
    assert time.monotonic() - start < 3 * 0.3


def test_close_closes_connections_and_refuses_checkouts(make_pool):
    pool = make_pool(max_size=2)
    with pool.connection() as conn:
        pass
    pool.close()
    assert conn.closed
    with pytest.raises(RuntimeError, match="closed"):
        with pool.connection():
            pass


def test_pool_refuses_use_after_fork(make_pool):
    pool = make_pool(max_size=1)
    with pool.connection():
        pass
    pid = os.fork()
    if pid == 0:  # child: must refuse before touching the inherited connection
        exit_code = 1
        try:
            with pool.connection():
                pass
        except PoolForkError:
            exit_code = 0
        finally:
            os._exit(exit_code)  # never run the rest of the test session in the child
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with pool.connection() as conn:  # the parent's connection is unharmed
        assert backend_pid(conn)
