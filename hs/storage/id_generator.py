"""Stream id allocation on the single writer (the master).

Writers may commit out of order, but readers must never be told about position N while a row
below N can still appear: a reader that advanced to N would skip that row for good. So each id
is *unfinished* from allocation until the writer's transaction has committed (or failed), and
the stream's current token is the position below which every allocated id has finished:
(smallest unfinished id - 1), or the largest allocated id if none is unfinished.

The concurrency is greenlets in one process: allocation and bookkeeping never yield, so they
need no lock. Two processes must never write the same stream (ids would collide).
"""

import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from psycopg2 import sql

from hs.storage.database import Database

logger = logging.getLogger(__name__)


class StreamIdGenerator:
    def __init__(self, db: Database, table: str, column: str, *,
                 extra_tables: Sequence[tuple[str, str]] = ()):
        """Start from the largest id already stored in ``table.column`` and in each
        ``(table, column)`` of ``extra_tables`` (for streams whose rows live in several tables)."""
        self._current = db.run_txn("stream_id_generator_init", _max_id_txn, [(table, column), *extra_tables])
        self._persisted = self._current
        self._unfinished: deque[int] = deque()  # allocated ids in order, finished or not
        self._finished: set[int] = set()  # finished ids still in _unfinished behind a lower one
        self._listeners: list[Callable[[int], None]] = []

    def get_current_token(self) -> int:
        """The position up to which every allocated id has finished: safe to announce."""
        return self._persisted

    def add_listener(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(token)`` each time the current token advances, in increasing order.

        It runs synchronously inside the writer's ``with`` exit: it must be cheap and must not
        yield (wake someone up instead). An exception in it is logged, not raised to the writer,
        whose transaction has committed.
        """
        self._listeners.append(callback)

    @contextmanager
    def get_next(self) -> Iterator[int]:
        """Allocate one id; run the transaction that writes it inside the block.

        The id finishes when the block exits, with or without an exception: a failed write
        leaves a hole, which is harmless, while an id that never finished would stall the stream.
        """
        with self.get_next_mult(1) as ids:
            yield ids[0]

    @contextmanager
    def get_next_mult(self, n: int) -> Iterator[list[int]]:
        """Allocate ``n`` consecutive ids, finished together when the block exits."""
        if n < 1:
            raise ValueError("n must be at least 1")
        ids = list(range(self._current + 1, self._current + n + 1))
        self._current += n
        self._unfinished.extend(ids)
        try:
            yield ids
        finally:
            self._finish(ids)

    def _finish(self, ids: list[int]) -> None:
        self._finished.update(ids)
        while self._unfinished and self._unfinished[0] in self._finished:
            self._finished.remove(self._unfinished.popleft())
        persisted = self._unfinished[0] - 1 if self._unfinished else self._current
        if persisted == self._persisted:
            return
        self._persisted = persisted
        for listener in self._listeners:
            try:
                listener(persisted)
            except Exception:
                logger.exception("stream listener %r failed", listener)


def _max_id_txn(cur, columns: list[tuple[str, str]]) -> int:
    current = 0
    for table, column in columns:
        cur.execute(sql.SQL("SELECT MAX({}) FROM {}").format(sql.Identifier(column), sql.Identifier(table)))
        current = max(current, cur.fetchone()[0] or 0)
    return current
