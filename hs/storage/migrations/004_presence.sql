-- Presence (client-server API "Presence"): each user's latest presence, one row per user. A
-- change worth telling others about moves the row to a new position of the presence stream,
-- which /sync and replication read by range; only the latest position of a user is kept,
-- since nobody needs an older presence.
CREATE TABLE presence (
    user_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    status_msg TEXT,
    -- Milliseconds since the epoch; 0 when never active.
    last_active_ts BIGINT NOT NULL DEFAULT 0,
    currently_active BOOLEAN NOT NULL DEFAULT FALSE,
    stream_id BIGINT NOT NULL
);
CREATE INDEX presence_stream_id ON presence (stream_id);
