-- Cross-signing keys and the signatures uploaded with POST /keys/signatures/upload
-- (hs/storage/cross_signing.py).

-- A user's current master, self-signing and user-signing keys, as uploaded (with signatures).
CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,  -- master | self_signing | user_signing
    key_json JSONB NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- One signature of a device's keys or of a master key. target_id is a device ID or a master
-- key's public key (the key IDs /keys/signatures/upload uses).
CREATE TABLE e2e_cross_signing_signatures (
    signer_user_id TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,
    target_user_id TEXT NOT NULL,
    target_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_id, signer_user_id, signer_key_id)
);
