"""End-to-end encryption keys of devices: identity (device) keys, one-time keys, fallback keys.

`E2eKeyStore` reads (any process: /keys/query, /sync's key counts); `E2eKeyWriteStore` writes
(the master: uploads and claims). Rows go with their device by foreign-key cascade."""

import json
from collections import defaultdict

from hs.caches import Batcher
from hs.storage.database import Database

# Clients expect this count even at zero: it is how they learn the server holds none of their
# one-time keys and they must upload more (Synapse always sends it).
ALWAYS_COUNTED = "signed_curve25519"


class KeyConflict(Exception):
    """An upload would replace a stored key with different content; nothing was stored."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


def _dump(value) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _signed_part(key) -> object:
    """What a key's owner signed: the same key re-uploaded with other signatures is not a conflict."""
    if not isinstance(key, dict):
        return key
    return {k: v for k, v in key.items() if k not in ("signatures", "unsigned")}


class E2eKeyStore:
    def __init__(self, db: Database):
        self.db = db
        self._count_batches = Batcher(self._get_key_counts_batch)

    def get_device_keys(self, user_id: str, device_ids: list[str] | None) -> dict[str, tuple[dict, str | None]]:
        """{device_id: (device keys, device display name)} of the user's devices that uploaded
        keys; only those in `device_ids` unless it is None."""
        sql = ("SELECT k.device_id, k.key_json, d.display_name FROM e2e_device_keys k"
               " JOIN devices d USING (user_id, device_id) WHERE k.user_id = %s")
        params: tuple = (user_id,)
        if device_ids is not None:
            sql += " AND k.device_id = ANY(%s)"
            params += (device_ids,)
        rows = self.db.execute("get_e2e_device_keys", sql, params)
        return {device_id: (key_json, display_name) for device_id, key_json, display_name in rows}

    def get_key_counts(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        """({algorithm: unclaimed one-time keys}, [algorithms with an unused fallback key]): /sync
        asks on every response, and the devices whose syncs one message woke together share a
        query (hs/caches.py Batcher)."""
        return self._count_batches.get((user_id, device_id))

    def _get_key_counts_batch(self, keys: list[tuple[str, str]]) -> dict[tuple, tuple]:
        users, devices = [u for u, _ in keys], [d for _, d in keys]
        rows = self.db.execute(
            "get_e2e_key_counts",
            "WITH k(user_id, device_id) AS (SELECT * FROM unnest(%s::text[], %s::text[]))"
            " SELECT 'otk', o.user_id, o.device_id, o.algorithm, count(*) FROM e2e_one_time_keys o"
            " JOIN k USING (user_id, device_id) GROUP BY o.user_id, o.device_id, o.algorithm"
            " UNION ALL SELECT 'fallback', f.user_id, f.device_id, f.algorithm, 0 FROM e2e_fallback_keys f"
            " JOIN k USING (user_id, device_id) WHERE NOT f.used",
            (users, devices))
        by_device = defaultdict(list)
        for kind, user_id, device_id, algorithm, n in rows:
            by_device[(user_id, device_id)].append((kind, algorithm, n))
        return {key: _counts(by_device.get(key, [])) for key in keys}


def _counts(rows) -> tuple[dict[str, int], list[str]]:
    counts = {algorithm: n for kind, algorithm, n in rows if kind == "otk"}
    counts.setdefault(ALWAYS_COUNTED, 0)
    return counts, sorted(algorithm for kind, algorithm, _ in rows if kind == "fallback")


class E2eKeyWriteStore(E2eKeyStore):
    def upload(self, user_id: str, device_id: str, device_keys: dict | None,
               one_time_keys: list[tuple[str, str, object]], fallback_keys: list[tuple[str, str, object]],
               now_ms: int, max_one_time_keys: int) -> tuple[bool, dict[str, int]]:
        """Stores everything or nothing: raises KeyConflict (and stores nothing) for a device key
        other than the stored one, a one-time key id already stored with other content, or more
        than `max_one_time_keys` unclaimed one-time keys. Keys are (algorithm, key_id, key).
        Returns (whether the device keys changed, the one-time key counts after)."""
        def txn(cur):
            # Holds the device until commit, so a concurrent deletion waits rather than leaving
            # keys behind or failing the insert's foreign key.
            cur.execute("SELECT 1 FROM devices WHERE user_id = %s AND device_id = %s FOR KEY SHARE",
                        (user_id, device_id))
            if cur.fetchone() is None:
                raise KeyConflict("device")
            changed = device_keys is not None and self._put_device_keys(cur, user_id, device_id, device_keys, now_ms)
            if one_time_keys:
                self._add_one_time_keys(cur, user_id, device_id, one_time_keys, now_ms, max_one_time_keys)
            for algorithm, key_id, key in fallback_keys:
                # The same key again keeps its `used` mark: a client re-sending it has not made a
                # new one, and claimers must know it was handed out.
                cur.execute("INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json)"
                            " VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT (user_id, device_id, algorithm)"
                            " DO UPDATE SET key_id = EXCLUDED.key_id, key_json = EXCLUDED.key_json, used = FALSE"
                            " WHERE e2e_fallback_keys.key_id <> EXCLUDED.key_id"
                            " OR e2e_fallback_keys.key_json <> EXCLUDED.key_json",
                            (user_id, device_id, algorithm, key_id, _dump(key)))
            cur.execute("SELECT 'otk', algorithm, count(*) FROM e2e_one_time_keys"
                        " WHERE user_id = %s AND device_id = %s GROUP BY algorithm", (user_id, device_id))
            return changed, _counts(cur.fetchall())[0]
        return self.db.run_txn("upload_e2e_keys", txn)

    @staticmethod
    def _put_device_keys(cur, user_id, device_id, device_keys, now_ms) -> bool:
        cur.execute("SELECT key_json FROM e2e_device_keys WHERE user_id = %s AND device_id = %s FOR UPDATE",
                    (user_id, device_id))
        row = cur.fetchone()
        if row is not None:
            if _signed_part(row[0]) != _signed_part(device_keys):
                raise KeyConflict("device_keys")
            if row[0] == device_keys:
                return False
        cur.execute("INSERT INTO e2e_device_keys (user_id, device_id, key_json, ts) VALUES (%s, %s, %s::jsonb, %s)"
                    " ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = EXCLUDED.key_json, ts = EXCLUDED.ts",
                    (user_id, device_id, _dump(device_keys), now_ms))
        return True

    @staticmethod
    def _add_one_time_keys(cur, user_id, device_id, keys, now_ms, max_one_time_keys) -> None:
        algorithms = [k[0] for k in keys]
        key_ids = [k[1] for k in keys]
        cur.execute("INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json, ts)"
                    " SELECT %s, %s, k.algorithm, k.key_id, k.key_json::jsonb, %s"
                    " FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(algorithm, key_id, key_json)"
                    " ON CONFLICT DO NOTHING RETURNING algorithm, key_id",
                    (user_id, device_id, now_ms, algorithms, key_ids, [_dump(k[2]) for k in keys]))
        inserted = set(cur.fetchall())
        already = [k for k in keys if (k[0], k[1]) not in inserted]
        if already:
            # A client that did not see our answer uploads the same keys again: fine. The same id
            # with another key would leave the client and server disagreeing on what was claimed.
            cur.execute("SELECT algorithm, key_id, key_json FROM e2e_one_time_keys"
                        " WHERE user_id = %s AND device_id = %s AND (algorithm, key_id) IN"
                        " (SELECT * FROM unnest(%s::text[], %s::text[]))",
                        (user_id, device_id, [k[0] for k in already], [k[1] for k in already]))
            stored = {(algorithm, key_id): key for algorithm, key_id, key in cur.fetchall()}
            for algorithm, key_id, key in already:
                if _signed_part(stored.get((algorithm, key_id))) != _signed_part(key):
                    raise KeyConflict(f"{algorithm}:{key_id}")
        cur.execute("SELECT count(*) FROM e2e_one_time_keys WHERE user_id = %s AND device_id = %s",
                    (user_id, device_id))
        if cur.fetchone()[0] > max_one_time_keys:
            raise KeyConflict("one_time_keys_limit")

    def claim(self, wanted: list[tuple[str, str, str]]) -> dict[tuple[str, str], tuple[str, str, object]]:
        """For each (user_id, device_id, algorithm): one of the device's one-time keys, deleted as it
        is handed out, else its fallback key for the algorithm, marked used. Returns {(user_id,
        device_id): (algorithm, key_id, key)} for the devices that had one."""
        def txn(cur):
            users, devices, algorithms = ([w[i] for w in wanted] for i in range(3))
            # SKIP LOCKED: a concurrent claim takes another key (or none) instead of waiting for
            # this one and then finding it gone; no key is ever handed out twice.
            cur.execute("WITH picked AS ("
                        "  SELECT k.user_id, k.device_id, k.algorithm, k.key_id"
                        "  FROM unnest(%s::text[], %s::text[], %s::text[]) AS w(user_id, device_id, algorithm)"
                        "  CROSS JOIN LATERAL (SELECT o.user_id, o.device_id, o.algorithm, o.key_id"
                        "   FROM e2e_one_time_keys o WHERE o.user_id = w.user_id AND o.device_id = w.device_id"
                        "   AND o.algorithm = w.algorithm ORDER BY o.key_id LIMIT 1 FOR UPDATE SKIP LOCKED) k)"
                        " DELETE FROM e2e_one_time_keys o USING picked p WHERE o.user_id = p.user_id"
                        " AND o.device_id = p.device_id AND o.algorithm = p.algorithm AND o.key_id = p.key_id"
                        " RETURNING o.user_id, o.device_id, o.algorithm, o.key_id, o.key_json",
                        (users, devices, algorithms))
            claimed = {(u, d): (a, k, key) for u, d, a, k, key in cur.fetchall()}
            rest = [w for w in wanted if (w[0], w[1]) not in claimed]
            if rest:
                cur.execute("UPDATE e2e_fallback_keys f SET used = TRUE"
                            " FROM unnest(%s::text[], %s::text[], %s::text[]) AS w(user_id, device_id, algorithm)"
                            " WHERE f.user_id = w.user_id AND f.device_id = w.device_id AND f.algorithm = w.algorithm"
                            " RETURNING f.user_id, f.device_id, f.algorithm, f.key_id, f.key_json",
                            ([w[0] for w in rest], [w[1] for w in rest], [w[2] for w in rest]))
                claimed.update({(u, d): (a, k, key) for u, d, a, k, key in cur.fetchall()})
            return claimed
        return self.db.run_txn("claim_e2e_one_time_keys", txn)
