-- Transactions to application services (hs/appservice/scheduler.py). Written only by the process
-- that sends them: the master, or the appservice worker when notify_appservices is false.

-- Per service: the last position of each stream handed to a transaction (or found to hold nothing
-- for it), and the last transaction ID used; IDs only grow, so a service may dedupe by them.
CREATE TABLE appservice_stream_positions (
    service_id TEXT PRIMARY KEY,
    events_position BIGINT NOT NULL,
    receipts_position BIGINT NOT NULL,
    presence_position BIGINT NOT NULL,
    last_txn_id BIGINT NOT NULL DEFAULT 0
);

-- Transactions built but not yet accepted by their service, resent with the same ID until they
-- are. The body is stored whole: a resend must carry exactly what the first attempt did.
CREATE TABLE appservice_txns (
    service_id TEXT NOT NULL,
    txn_id BIGINT NOT NULL,
    body JSONB NOT NULL,
    PRIMARY KEY (service_id, txn_id)
);
