"""State groups: deltas on a chain, a full snapshot when the chain grows long."""

from hs.storage.database import Database
from hs.storage.state import MAX_DELTA_DEPTH, StateStore


def test_long_delta_chains_are_cut_by_a_snapshot_with_the_same_state(db_dsn):
    db = Database(db_dsn, max_connections=2)
    try:
        store = StateStore(db)
        expected = {("m.room.member", f"@u{i}:x"): f"$m{i}" for i in range(1200)}
        group = db.run_txn("snapshot", store.insert_state_group_txn, "!r:x", None, expected, 0)
        depths = []
        for i in range(MAX_DELTA_DEPTH + 2):
            key, event_id = ("m.room.topic", ""), f"$t{i}"
            prev, entries, depth = store.plan_state_group(group, {key: event_id})
            group = db.run_txn("delta", store.insert_state_group_txn, "!r:x", prev, entries, depth)
            expected[key] = event_id
            depths.append(depth)
            assert store.get_state_ids(group) == expected
        assert max(depths) == MAX_DELTA_DEPTH
        assert depths[MAX_DELTA_DEPTH] == 0  # the 51st change wrote a snapshot
        rows = db.execute("rows", "SELECT count(*) FROM state_group_entries WHERE state_group = %s", (group,))
        assert rows[0][0] == 1  # and the change after it is a one-row delta again
    finally:
        db.close()
