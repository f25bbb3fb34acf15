-- Outbound federation (hs/federation/sender.py): written only by the master's sender, except
-- federation_inbox_messages, which the inbound EDU handler writes.

-- One row per server we have sent (or tried to send) to. Backoff: failure_ts is when the
-- current run of failures began (NULL: not failing), retry_last_ts the last attempt,
-- retry_interval how long to wait after it (0: not backing off), so a restart keeps waiting.
-- last_successful_stream_ordering: the stream ordering of the newest PDU the server accepted;
-- what a server that was down missed is what destination_rooms holds above it (catch-up).
-- last_txn_id: transaction IDs only grow per destination, across restarts too.
CREATE TABLE destinations (
    destination TEXT PRIMARY KEY,
    failure_ts BIGINT,
    retry_last_ts BIGINT NOT NULL DEFAULT 0,
    retry_interval BIGINT NOT NULL DEFAULT 0,
    last_successful_stream_ordering BIGINT NOT NULL,
    last_txn_id BIGINT NOT NULL DEFAULT 0
);

-- Per destination and room: the stream ordering of the newest event meant for that server
-- there. Catch-up sends only that event per room; the receiver fetches the rest with
-- get_missing_events, as with Synapse.
CREATE TABLE destination_rooms (
    destination TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (destination, room_id)
);
CREATE INDEX destination_rooms_ordering ON destination_rooms (destination, stream_ordering);

-- EDUs that must be delivered even to a server that is down (to-device messages, device list
-- and signing key updates), in order, until a transaction carrying them is accepted.
-- coalesce_key: a newer EDU with the same (destination, edu_type, coalesce_key) replaces an
-- older one not yet sent (NULL: never replaced).
CREATE TABLE federation_outbox (
    id BIGSERIAL PRIMARY KEY,
    destination TEXT NOT NULL,
    edu_type TEXT NOT NULL,
    coalesce_key TEXT,
    content JSONB NOT NULL
);
CREATE INDEX federation_outbox_destination ON federation_outbox (destination, id);
CREATE UNIQUE INDEX federation_outbox_coalesce ON federation_outbox (destination, edu_type, coalesce_key)
    WHERE coalesce_key IS NOT NULL;

-- How far the sender has routed the events stream to destinations (one row).
CREATE TABLE federation_stream_position (
    lock CHAR(1) PRIMARY KEY DEFAULT 'X' CHECK (lock = 'X'),
    stream_ordering BIGINT NOT NULL
);

-- Our users' device lists as last announced in m.device_list_update EDUs: which devices
-- other servers know of (to tell them of deletions) and the stream_id of the last update
-- (the next one's prev_id).
CREATE TABLE federation_device_lists_sent (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE federation_device_lists_last (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL
);

-- Inbound m.direct_to_device message_ids, so a transaction retried (or an EDU re-sent by a
-- sender that did not hear our answer) delivers each message once.
CREATE TABLE federation_inbox_messages (
    origin TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, message_id)
);
CREATE INDEX federation_inbox_messages_ts ON federation_inbox_messages (received_ts);
