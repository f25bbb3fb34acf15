"""Transactions: every store reaches PostgreSQL through ``Database.run_txn`` or ``Database.execute``."""

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import gevent
import psycopg2.errors

from hs import metrics
from hs.storage.pool import ConnectionPool

logger = logging.getLogger(__name__)

R = TypeVar("R")

MAX_ATTEMPTS = 5
SLOW_TXN_SECONDS = 1.0
_BACKOFF_BASE = 0.01  # seconds; attempt n sleeps a random time in [0, base * 2**n)
_ISOLATION_LEVELS = {"read committed", "repeatable read", "serializable"}
# Both abort the transaction, and running it again from the start is the documented remedy.
_RETRYABLE = (psycopg2.errors.SerializationFailure, psycopg2.errors.DeadlockDetected)


class Database:
    def __init__(self, dsn: str, max_connections: int = 10):
        self._pool = ConnectionPool(dsn, max_size=max_connections)
        metrics.register_pool(self._pool)

    def run_txn(self, desc: str, func: Callable[..., R], *args: Any,
                _isolation: str = "read committed", _single_statement: bool = False, _batched: bool = False,
                **kwargs: Any) -> R:
        """Run ``func(cur, *args, **kwargs)`` in one transaction, commit it and return its result.

        ``desc`` names the transaction in logs. ``_isolation`` (keyword only; the underscore keeps
        it apart from ``func``'s own keyword arguments) is "read committed" (the default),
        "repeatable read" or "serializable". ``_batched`` gives ``func`` a BatchingCursor: its
        writes reach the server together, with BEGIN and COMMIT, when it next reads a result
        or returns, so a transaction of ten INSERTs is one round trip instead of twelve.

        A serialization failure (SQLSTATE 40001) or deadlock (40P01) runs ``func`` again from the
        start, up to ``MAX_ATTEMPTS`` times in all, after a short random sleep; so ``func`` must
        have no effects outside the transaction. Any other exception rolls back and propagates.
        """
        if _isolation not in _ISOLATION_LEVELS:
            raise ValueError(f"unknown isolation level {_isolation!r}")
        if _batched and (_single_statement or _isolation != "read committed"):
            raise ValueError("a batched transaction is one read-committed transaction")
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                if _batched:
                    result = self._attempt_batched(func, args, kwargs)
                else:
                    result = self._attempt(func, args, kwargs, _isolation, _single_statement)
            except _RETRYABLE as e:
                if attempt == MAX_ATTEMPTS:
                    raise
                logger.info("txn %s: %s (attempt %d), retrying", desc, type(e).__name__, attempt)
                gevent.sleep(random.uniform(0, _BACKOFF_BASE * 2 ** attempt))
                continue
            duration = time.monotonic() - start
            metrics.observe_txn(desc, duration)
            if duration > SLOW_TXN_SECONDS:
                logger.warning("slow txn %s: %.3f s (%d attempts)", desc, duration, attempt)
            return result

    def _attempt(self, func, args, kwargs, isolation: str, single_statement: bool = False):
        # Leaving the block returns the connection to the pool, which rolls back whatever an
        # exception left open: the rollback for failed attempts happens there.
        with self._pool.connection() as conn, conn.cursor() as cur:
            if single_statement:
                # One statement is its own transaction: autocommit spares the round trips of a
                # separate BEGIN and COMMIT, which /sync's many small reads paid for each.
                with _autocommit(conn):
                    return func(cur, *args, **kwargs)
            if isolation != "read committed":  # PostgreSQL's default, and psycopg2's BEGIN keeps it
                cur.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
            result = func(cur, *args, **kwargs)
            conn.commit()
            return result

    def _attempt_batched(self, func, args, kwargs):
        # Autocommit, so that BEGIN and COMMIT travel inside the batch; psycopg2 would send each on
        # its own. psycopg2 then does not know of the transaction, so the pool's rollback would
        # not reach it: this code rolls back on failure.
        with self._pool.connection() as conn, conn.cursor() as real, _autocommit(conn):
            try:
                cur = BatchingCursor(real)
                result = func(cur, *args, **kwargs)
                cur.flush(b"COMMIT")
                return result
            except BaseException:
                try:
                    if conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                        real.execute("ROLLBACK")
                except psycopg2.Error:
                    conn.close()  # the pool discards a closed connection
                raise

    def execute(self, desc: str, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple]:
        """Run one statement in its own transaction; return its rows ([] if it returns none)."""
        def txn(cur):
            # No params means no %-formatting, so a literal % needs no escaping.
            cur.execute(sql, params or None)
            return cur.fetchall() if cur.description is not None else []
        return self.run_txn(desc, txn, _single_statement=True)

    def close(self) -> None:
        self._pool.close()


@contextmanager
def _autocommit(conn):
    conn.autocommit = True
    try:
        yield
    finally:
        if not conn.closed:
            try:
                conn.autocommit = False
            except psycopg2.Error:
                conn.close()  # interrupted mid-statement: the pool discards a closed connection


class BatchingCursor:
    """A cursor that holds statements back until a result is asked for (fetch*, rowcount,
    description, anything else) or the transaction ends, then sends them as one query string.
    Parameters are bound client-side (psycopg2's mogrify), as psycopg2 always binds them; a
    failing statement fails the batch, and so the transaction, as it would have alone."""

    def __init__(self, cursor):
        self._cursor = cursor
        self._pending: list[bytes] = [b"BEGIN"]

    def execute(self, sql, params=None) -> None:
        self._pending.append(self._cursor.mogrify(sql, params))

    def executemany(self, sql, params_seq) -> None:
        self._pending.extend(self._cursor.mogrify(sql, params) for params in params_seq)

    def mogrify(self, sql, params=None) -> bytes:
        return self._cursor.mogrify(sql, params)

    def flush(self, last: bytes | None = None) -> None:
        if last is not None:
            self._pending.append(last)
        if self._pending:
            batch, self._pending = b";\n".join(self._pending), []
            self._cursor.execute(batch)

    def __getattr__(self, name):
        # A result (of the last statement sent) is wanted: send what is held first.
        self.flush()
        return getattr(self._cursor, name)

    def __iter__(self):
        self.flush()
        return iter(self._cursor)
