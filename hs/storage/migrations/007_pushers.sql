-- Pushers (client-server API "Push Notifications"): where to send a user's notifications.
-- A pusher is keyed by (user_id, app_id, pushkey): the same app_id and pushkey may belong to
-- several users when they were set with `append`. It belongs to the device whose access token
-- created it, and goes when that device is deleted or logs out.
--
-- The pushers stream: every add, update and delete takes a new stream_id. A live row carries
-- the id of its last change; a delete leaves a tombstone in deleted_pushers, so a worker
-- reading (from, upto] learns that a pusher it runs has gone. Tombstones are never read by the
-- client API and may be pruned once every worker is past them.
CREATE TABLE pushers (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag TEXT,
    lang TEXT NOT NULL,
    data JSONB NOT NULL,
    created_ts BIGINT NOT NULL,
    stream_id BIGINT NOT NULL,
    -- For the pusher worker (delivery is a later issue): the last event stream_ordering it has
    -- processed, its last successful delivery and since when it has been failing.
    last_stream_ordering BIGINT,
    last_success_ts BIGINT,
    failing_since_ts BIGINT,
    PRIMARY KEY (user_id, app_id, pushkey)
);
-- "Other users' pushers with this app_id and pushkey" (append: false).
CREATE INDEX pushers_app_id_pushkey ON pushers (app_id, pushkey);
CREATE INDEX pushers_stream_id ON pushers (stream_id);

CREATE TABLE deleted_pushers (
    stream_id BIGINT PRIMARY KEY,
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL
);
