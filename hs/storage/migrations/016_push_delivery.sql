-- HTTP pushers' delivery state, written only by the process that runs the pushers (the master
-- with start_pushers, else the pusher worker), never through the pushers stream: the last push
-- action dealt with (sent, skipped as read, or given up on), the last successful request and
-- since when requests have been failing. pusher_created_ts is the pushers row's created_ts this
-- state belongs to: a pusher deleted and set again (even while the pushing process was down)
-- starts afresh instead of resuming the old one's position.
CREATE TABLE pusher_delivery (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    pusher_created_ts BIGINT NOT NULL,
    last_stream_ordering BIGINT NOT NULL,
    last_success_ts BIGINT,
    failing_since_ts BIGINT,
    PRIMARY KEY (user_id, app_id, pushkey)
);

-- 007 reserved these for the same purpose, but the pushers table has one writer (the master,
-- every change with a pushers-stream id) while delivery state is written by whichever process
-- pushes, many times a second; state of every kind lives in that process's own tables
-- (pusher_delivery here, email_pusher_state in 017). Nothing ever read or wrote them.
ALTER TABLE pushers DROP COLUMN last_stream_ordering,
    DROP COLUMN last_success_ts,
    DROP COLUMN failing_since_ts;
