"""Other servers' signing keys and the key answers they came in (021_server_keys.sql)."""

import json

from hs.storage.database import Database


class ServerKeyStore:
    def __init__(self, db: Database):
        self.db = db

    def get_keys(self, server_name: str, key_ids=None) -> dict[str, tuple[str, int]]:
        """{key_id: (verify key in unpadded base64, valid_until_ts)}; every key held when
        `key_ids` is None."""
        if key_ids is None:
            rows = self.db.execute("get_server_keys", "SELECT key_id, verify_key, valid_until_ts"
                                   " FROM server_signing_keys WHERE server_name = %s", (server_name,))
        else:
            rows = self.db.execute("get_server_keys", "SELECT key_id, verify_key, valid_until_ts"
                                   " FROM server_signing_keys WHERE server_name = %s AND key_id = ANY(%s)",
                                   (server_name, list(key_ids)))
        return {key_id: (key, valid_until) for key_id, key, valid_until in rows}

    def store_response(self, server_name: str, from_server: str, response: dict, valid_until_ts: int,
                       keys: dict[str, tuple[str, int]], fetched_ts: int) -> None:
        """Keeps a verified key answer and its keys ({key_id: (base64, valid_until_ts)}). The
        newest answer wins: a key the server now lists as old takes its expiry."""
        def txn(cur):
            for key_id, (key, valid_until) in keys.items():
                cur.execute("INSERT INTO server_signing_keys"
                            " (server_name, key_id, verify_key, valid_until_ts, fetched_ts, from_server)"
                            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (server_name, key_id) DO UPDATE SET"
                            " verify_key = EXCLUDED.verify_key, valid_until_ts = EXCLUDED.valid_until_ts,"
                            " fetched_ts = EXCLUDED.fetched_ts, from_server = EXCLUDED.from_server",
                            (server_name, key_id, key, valid_until, fetched_ts, from_server))
            cur.execute("INSERT INTO server_key_responses (server_name, response_json, valid_until_ts, fetched_ts)"
                        " VALUES (%s, %s, %s, %s) ON CONFLICT (server_name) DO UPDATE SET"
                        " response_json = EXCLUDED.response_json, valid_until_ts = EXCLUDED.valid_until_ts,"
                        " fetched_ts = EXCLUDED.fetched_ts"
                        " WHERE server_key_responses.valid_until_ts <= EXCLUDED.valid_until_ts",
                        (server_name, json.dumps(response, ensure_ascii=False), valid_until_ts, fetched_ts))
        self.db.run_txn("store_server_key_response", txn)

    def get_response(self, server_name: str) -> tuple[dict, int] | None:
        """(the latest key answer of `server_name`, its valid_until_ts), or None."""
        rows = self.db.execute("get_server_key_response", "SELECT response_json, valid_until_ts"
                               " FROM server_key_responses WHERE server_name = %s", (server_name,))
        return (json.loads(rows[0][0]), rows[0][1]) if rows else None
