"""PresenceStore.get_stream_rows: what a worker reads to follow the presence stream."""

import pytest

from hs.storage.database import Database
from hs.storage.presence import PresenceStore, UserPresence


@pytest.fixture(scope="module")
def store(db_dsn):
    db = Database(db_dsn, max_connections=2)
    yield PresenceStore(db)
    db.close()


def test_stream_rows_are_the_latest_position_of_each_user_in_the_range_in_order(store):
    store.put(UserPresence("@a:test", "online"), 1)
    store.put(UserPresence("@b:test", "online"), 2)
    store.put(UserPresence("@c:test", "unavailable"), 3)
    store.put(UserPresence("@a:test", "offline"), 4)  # moves @a from 1 to 4
    assert store.get_stream_rows(0, 4, 10) == [(2, {"user_id": "@b:test"}), (3, {"user_id": "@c:test"}),
                                               (4, {"user_id": "@a:test"})]
    assert store.get_stream_rows(2, 4, 10) == [(3, {"user_id": "@c:test"}), (4, {"user_id": "@a:test"})]
    assert store.get_stream_rows(0, 3, 1) == [(2, {"user_id": "@b:test"})]
    assert store.get_stream_rows(0, 3, None) == [(2, {"user_id": "@b:test"}), (3, {"user_id": "@c:test"})]
    assert store.get_stream_rows(4, 4, 10) == []


def test_an_older_write_committing_late_does_not_overwrite_a_newer_one(store):
    store.put(UserPresence("@late:test", "unavailable", "newer"), 11)
    store.put(UserPresence("@late:test", "online", "older"), 10)
    assert store.get("@late:test") == UserPresence("@late:test", "unavailable", "newer")
    assert store.get_stream_rows(9, 11, 10) == [(11, {"user_id": "@late:test"})]
