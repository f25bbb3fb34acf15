-- Device lists of other servers' users who share a room with one of ours, kept in step by their
-- server's m.device_list_update and m.signing_key_update EDUs (hs/storage/remote_device_lists.py),
-- so /keys/query answers for them without asking their server each time. A user not here is
-- asked over federation.
CREATE TABLE remote_device_lists (
    user_id TEXT PRIMARY KEY,
    -- The stream_id of the last update applied (opaque, the user's server's). NULL when the list
    -- came from a key query, which has none: the next update then resyncs the whole list.
    stream_id TEXT,
    master_key JSONB,
    self_signing_key JSONB,
    updated_ts BIGINT NOT NULL
);

CREATE TABLE remote_devices (
    user_id TEXT NOT NULL REFERENCES remote_device_lists (user_id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    display_name TEXT,
    key_json JSONB,  -- NULL: the device has uploaded no keys
    PRIMARY KEY (user_id, device_id)
);
