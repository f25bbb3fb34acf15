-- Email 3PIDs (client-server "Adding Account Administrative Contact Information") and email
-- notification delivery (client-server "Push Notifications", kind email).

-- Addresses bound to accounts. An address belongs to one account at most (M_THREEPID_IN_USE),
-- stored canonicalised (lower case), as Synapse does.
CREATE TABLE user_threepids (
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    user_id TEXT NOT NULL,
    validated_at BIGINT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_user ON user_threepids (user_id);

-- A validation in progress: requestToken opens it and mails a link carrying the token; following
-- the link (or POSTing to submit_url) validates it; /account/3pid/add then binds the address.
-- Only the token's SHA-256 digest is kept. client_secret is the client's own secret, compared
-- with what it sends to /account/3pid/add.
CREATE TABLE threepid_validation_session (
    session_id TEXT PRIMARY KEY,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    client_secret TEXT NOT NULL,
    last_send_attempt INT NOT NULL,
    token_sha256 TEXT NOT NULL,
    next_link TEXT,
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL,
    validated_at BIGINT
);
CREATE UNIQUE INDEX threepid_validation_session_secret
    ON threepid_validation_session (client_secret, medium, address);

-- Per email pusher, written by the process running it: the last push action's stream_ordering
-- it has dealt with (mailed, or found already read), so a restart neither re-sends nor skips;
-- and the random token of its unsubscribe links (kept as is: every email it sent carries it,
-- and a link in an old email must keep working after a restart).
CREATE TABLE email_pusher_state (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    last_stream_ordering BIGINT NOT NULL,
    last_success_ts BIGINT,
    failing_since_ts BIGINT,
    unsubscribe_token TEXT NOT NULL UNIQUE,
    PRIMARY KEY (user_id, app_id, pushkey)
);

-- Per pusher and room: when the last email naming the room went out and how long the next one
-- must wait. The interval doubles while the user leaves the room unread and is reset when
-- they read it.
CREATE TABLE email_pusher_throttle (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    room_id TEXT NOT NULL,
    last_sent_ts BIGINT NOT NULL,
    throttle_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey, room_id)
);
