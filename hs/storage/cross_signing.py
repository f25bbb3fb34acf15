"""Cross-signing keys and signatures (hs/handlers/cross_signing.py)."""

import json

from hs.storage.database import Database


def _dump(value) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


class CrossSigningStore:
    def __init__(self, db: Database):
        self.db = db

    def get_keys(self, user_ids: list[str]) -> dict[str, dict[str, dict]]:
        """{user_id: {key_type: key}} of the users that have cross-signing keys."""
        rows = self.db.execute("get_cross_signing_keys",
                               "SELECT user_id, key_type, key_json FROM e2e_cross_signing_keys"
                               " WHERE user_id = ANY(%s)", (list(user_ids),))
        keys: dict[str, dict[str, dict]] = {}
        for user_id, key_type, key_json in rows:
            keys.setdefault(user_id, {})[key_type] = key_json
        return keys

    def get_signatures(self, target_user_ids: list[str]) -> list[tuple[str, str, str, str, str]]:
        """(signer_user_id, signer_key_id, target_user_id, target_id, signature) rows."""
        return self.db.execute("get_cross_signing_signatures",
                               "SELECT signer_user_id, signer_key_id, target_user_id, target_id, signature"
                               " FROM e2e_cross_signing_signatures WHERE target_user_id = ANY(%s)",
                               (list(target_user_ids),))

    def set_keys(self, user_id: str, keys: dict[str, dict]) -> None:
        """Replaces the given key types of the user, all or none."""
        def txn(cur):
            for key_type, key in keys.items():
                cur.execute("INSERT INTO e2e_cross_signing_keys (user_id, key_type, key_json)"
                            " VALUES (%s, %s, %s::jsonb) ON CONFLICT (user_id, key_type)"
                            " DO UPDATE SET key_json = EXCLUDED.key_json", (user_id, key_type, _dump(key)))
        self.db.run_txn("set_cross_signing_keys", txn)

    def add_signatures(self, rows: list[tuple[str, str, str, str, str]]) -> None:
        def txn(cur):
            for row in rows:
                cur.execute("INSERT INTO e2e_cross_signing_signatures"
                            " (signer_user_id, signer_key_id, target_user_id, target_id, signature)"
                            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (target_user_id, target_id,"
                            " signer_user_id, signer_key_id) DO UPDATE SET signature = EXCLUDED.signature", row)
        self.db.run_txn("add_cross_signing_signatures", txn)

    def delete_user_keys(self, user_id: str) -> None:
        """A deactivated account's cross-signing keys, and the signatures made by or on them."""
        def txn(cur):
            cur.execute("DELETE FROM e2e_cross_signing_keys WHERE user_id = %s", (user_id,))
            cur.execute("DELETE FROM e2e_cross_signing_signatures WHERE signer_user_id = %s OR target_user_id = %s",
                        (user_id, user_id))
        self.db.run_txn("delete_cross_signing_keys", txn)
