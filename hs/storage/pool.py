"""A bounded psycopg2 connection pool for gevent.

psycopg2's own pools raise when exhausted instead of waiting, so this one is built on a
``gevent.queue.LifoQueue`` of *slots*: the queue starts with ``max_size`` empty slots (None) and
every checkout takes one, so at most ``max_size`` connections ever exist, including ones still
being opened (``connect`` yields under psycogreen, and counting connections instead of slots
would let every waiting greenlet open its own). A returned connection goes back on top of the
stack, so the most recently used connections are reused and idle ones stay idle.

Create a pool per process after any fork: a psycopg2 connection shared by two processes mixes up
their results or hangs both, so a pool refuses to be used from a pid other than its creator's.
"""

import os
import select
from collections.abc import Iterator
from contextlib import contextmanager

import gevent.monkey
import gevent.queue
import psycogreen.gevent
import psycopg2
from psycopg2 import extensions

# The real poll(), even in a monkey-patched process: gevent's poll() with a zero timeout returns
# before its watchers have had a chance to see anything.
_os_poll = gevent.monkey.get_original("select", "poll")


class PoolTimeout(Exception):
    """No connection became free within the checkout timeout."""


class PoolForkError(RuntimeError):
    """The pool was used from a process other than the one that created it."""


def _make_psycopg2_cooperative() -> None:
    if extensions.get_wait_callback() is not psycogreen.gevent.gevent_wait_callback:
        psycogreen.gevent.patch_psycopg()


class ConnectionPool:
    def __init__(self, dsn: str, max_size: int = 10, checkout_timeout: float = 30.0):
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        _make_psycopg2_cooperative()
        self._dsn = dsn
        self._max_size = max_size
        self._checkout_timeout = checkout_timeout
        self._pid = os.getpid()
        self._slots: gevent.queue.LifoQueue = gevent.queue.LifoQueue()
        for _ in range(max_size):
            self._slots.put(None)
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        """Check out a connection for the duration of the block.

        Waits up to ``checkout_timeout`` for a free slot (raises ``PoolTimeout``). On return any
        open transaction is rolled back; a broken or closed connection is discarded and its slot
        freed. Leave session settings (autocommit, SET ...) as you found them.
        """
        conn = self._checkout()
        try:
            yield conn
        finally:
            self._checkin(conn)

    @property
    def max_size(self) -> int:
        return self._max_size

    def in_use(self) -> int:
        """Connections checked out now (including ones being opened)."""
        return self._max_size - self._slots.qsize()

    def close(self) -> None:
        """Close the idle connections now and each checked-out one when it comes back."""
        self._check_pid()
        self._closed = True
        while True:
            try:
                conn = self._slots.get_nowait()
            except gevent.queue.Empty:
                return
            if conn is not None:
                conn.close()

    def _checkout(self) -> psycopg2.extensions.connection:
        self._check_usable()
        try:
            conn = self._slots.get(timeout=self._checkout_timeout)
        except gevent.queue.Empty:
            raise PoolTimeout(f"no database connection free after {self._checkout_timeout} s "
                              f"(pool size {self._max_size})") from None
        try:
            self._check_usable()  # close() may have run while we waited
            if conn is not None and _is_dead(conn):
                conn.close()
                conn = None
            if conn is None:
                conn = psycopg2.connect(self._dsn)
        except BaseException:
            if conn is not None:
                conn.close()
            self._slots.put(None)
            raise
        return conn

    def _checkin(self, conn: psycopg2.extensions.connection) -> None:
        reusable = False
        try:
            reusable = self._reset(conn)
        finally:
            # Always give the slot back, even if the reset was interrupted (e.g. GreenletExit).
            if not reusable:
                conn.close()
            self._slots.put(conn if reusable else None)

    def _reset(self, conn: psycopg2.extensions.connection) -> bool:
        """Make ``conn`` ready for the next user; False if it must be thrown away instead."""
        if self._closed or conn.closed:
            return False
        status = conn.info.transaction_status
        if status in (extensions.TRANSACTION_STATUS_INTRANS, extensions.TRANSACTION_STATUS_INERROR):
            try:
                conn.rollback()
            except psycopg2.Error:
                return False
            return True
        # ACTIVE means a query was interrupted mid-flight (its greenlet was killed): the protocol
        # state is unknown. UNKNOWN means the connection is broken.
        return status == extensions.TRANSACTION_STATUS_IDLE

    def _check_usable(self) -> None:
        self._check_pid()
        if self._closed:
            raise RuntimeError("connection pool is closed")

    def _check_pid(self) -> None:
        if os.getpid() != self._pid:
            raise PoolForkError(f"connection pool created in process {self._pid} used in process {os.getpid()}; "
                                "create pools after forking")


def _is_dead(conn: psycopg2.extensions.connection) -> bool:
    """True if an idle connection was closed or has something to read.

    An idle session is sent nothing unless the server is ending it (pg_terminate_backend, a
    restart, idle_session_timeout): it then sends a FATAL error and closes the socket. Checking
    costs one non-blocking poll() and no round trip, and it spares the next user a failure.
    """
    if conn.closed:
        return True
    poller = _os_poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))
