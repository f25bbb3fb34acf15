-- Push actions (client-server "Push Rules", "Receiving notifications"): one row per (event, local
-- user) whose push rules said `notify`, written in the transaction that persists the event, so a
-- /sync that sees the event sees its counts. thread_id is 'main' or the thread root's event ID.
-- Unread counts are the rows after the user's latest m.read/m.read.private receipt (per thread
-- for threaded receipts), so there is no counter to keep in step with receipts.
CREATE TABLE event_push_actions (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    topological_ordering BIGINT NOT NULL,
    thread_id TEXT NOT NULL,
    notif BOOLEAN NOT NULL,
    highlight BOOLEAN NOT NULL,
    actions JSONB NOT NULL,
    -- An event has one stream_ordering: this is (user_id, event_id) too, and serves
    -- GET /notifications (a user's rows, newest first). Two indexes, not three: a send into a
    -- room of thousands inserts a row per member.
    PRIMARY KEY (user_id, stream_ordering)
);
-- /sync's counts: a user's rows in their rooms after a position.
CREATE INDEX event_push_actions_user_room ON event_push_actions (user_id, room_id, stream_ordering);
