-- Events received over federation.
--
-- An outlier is an event we hold for its place in a room's auth or state (the state a join
-- answer carried, auth chains, a soft-failed event) without it being part of the room's
-- timeline: it is never shown to clients, never a forward extremity and never current state
-- by itself. Outliers and backfilled events take stream orderings below zero (from this
-- sequence, negated), so no stream reader (sync, replication, pushers) ever sees them as new,
-- while /messages still pages backfilled history by depth.
ALTER TABLE events ADD COLUMN outlier BOOLEAN NOT NULL DEFAULT FALSE;
CREATE SEQUENCE negative_stream_ids;

-- Events that failed their checks: kept so they are not fetched and checked again, and so
-- that an event citing one as a prev_event can be placed; never served, never in any state.
CREATE TABLE rejected_events (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    json TEXT NOT NULL,
    received_ts BIGINT NOT NULL
);

-- Inbound /send transactions, so a retried transaction is answered as the first one was
-- instead of being applied twice (/server-server-api#transactions: keyed by origin and id).
CREATE TABLE received_transactions (
    origin TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    response TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, transaction_id)
);
CREATE INDEX received_transactions_ts ON received_transactions (received_ts);
