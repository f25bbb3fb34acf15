-- Device list tracking (client-server API "Tracking the device list for a user"): one row per
-- change of a user's device list (a device added, deleted or renamed, or its keys uploaded), at
-- an id of the device_lists stream (the sync token's `device_list` key). /sync and
-- GET /keys/changes ask which users changed in a range of ids; rows are never updated. Several
-- users' changes may share an id (the stream's rows of one id are one batch), so the key is the
-- pair.
CREATE TABLE device_lists_stream (
    stream_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (stream_id, user_id)
);
