"""Storage: the only place SQL lives.

- ``pool``: a bounded, gevent-cooperative psycopg2 connection pool (one per process, created after fork).
- ``database``: ``Database.run_txn`` / ``Database.execute``, the entry points every store uses.
- ``migrations``: numbered SQL files in ``migrations/``, applied by the master; workers wait for them.
- ``id_generator``: stream id allocation that never announces an id before every lower id has committed.
- ``embedded``: the private PostgreSQL the master starts when no database is configured.
"""
