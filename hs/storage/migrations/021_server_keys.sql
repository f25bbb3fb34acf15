-- Other servers' signing keys (/server-server-api#retrieving-server-keys), fetched from the
-- server itself or through a notary (trusted_key_servers). valid_until_ts is how long the key may
-- check signatures: the answer's valid_until_ts, at most 7 days after the fetch (as the spec
-- requires), or for a key the server lists as old, its expired_ts.
CREATE TABLE server_signing_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    verify_key TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    fetched_ts BIGINT NOT NULL,
    from_server TEXT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

-- The latest key answer of each server as received (signed by the server; through a notary,
-- by the notary too): what our own notary API serves, with our signature added.
CREATE TABLE server_key_responses (
    server_name TEXT PRIMARY KEY,
    response_json TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    fetched_ts BIGINT NOT NULL
);
