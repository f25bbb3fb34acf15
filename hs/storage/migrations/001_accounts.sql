-- Accounts: users, profiles, devices, access and refresh tokens, login tokens,
-- user-interactive auth sessions and registration tokens.

CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    password_hash TEXT,
    created_ts BIGINT NOT NULL,
    is_guest BOOLEAN NOT NULL DEFAULT FALSE,
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    user_type TEXT,
    deactivated BOOLEAN NOT NULL DEFAULT FALSE,
    appservice_id TEXT
);
-- Logins match user IDs case-insensitively, so two IDs may never differ only in case.
CREATE UNIQUE INDEX users_lower_user_id ON users (lower(user_id));

CREATE TABLE profiles (
    user_id TEXT PRIMARY KEY REFERENCES users (user_id) ON DELETE CASCADE,
    displayname TEXT,
    avatar_url TEXT
);

CREATE TABLE devices (
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    display_name TEXT,
    created_ts BIGINT NOT NULL,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    last_seen_user_agent TEXT,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE refresh_tokens (
    id BIGSERIAL PRIMARY KEY,
    token_hash BYTEA NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    -- The token that replaced this one; this one stays usable until its successor is used.
    next_token_id BIGINT REFERENCES refresh_tokens (id) ON DELETE CASCADE,
    expiry_ts BIGINT,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- Tokens are stored as SHA-256 digests: a leaked table does not hand out sessions, and the
-- lookup is by digest, so no comparison leaks timing about the token itself.
CREATE TABLE access_tokens (
    id BIGSERIAL PRIMARY KEY,
    token_hash BYTEA NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    valid_until_ts BIGINT,
    refresh_token_id BIGINT REFERENCES refresh_tokens (id) ON DELETE CASCADE,
    used BOOLEAN NOT NULL DEFAULT FALSE,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);
-- Refreshing and device deletion delete by these columns (directly and by cascade).
CREATE INDEX access_tokens_refresh_token ON access_tokens (refresh_token_id);
CREATE INDEX refresh_tokens_next_token ON refresh_tokens (next_token_id);
CREATE INDEX refresh_tokens_device ON refresh_tokens (user_id, device_id);

CREATE TABLE login_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    expiry_ts BIGINT NOT NULL
);
CREATE INDEX login_tokens_expiry ON login_tokens (expiry_ts);

CREATE TABLE ui_auth_sessions (
    session_id TEXT PRIMARY KEY,
    created_ts BIGINT NOT NULL,
    -- The request the session was started for; a session cannot be moved to another.
    method TEXT NOT NULL,
    uri TEXT NOT NULL,
    -- Who opened it, when the request was authenticated: nobody else may continue it.
    user_id TEXT,
    -- Stages completed so far, and data they left for the endpoint (the registration token used).
    completed JSONB NOT NULL DEFAULT '[]',
    stage_results JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX ui_auth_sessions_created ON ui_auth_sessions (created_ts);

CREATE TABLE registration_tokens (
    token TEXT PRIMARY KEY,
    uses_allowed INTEGER,
    completed INTEGER NOT NULL DEFAULT 0,
    expiry_time BIGINT
);

-- Guests get numeric localparts, which registered users may not take.
CREATE SEQUENCE guest_user_ids START 1;
