-- Push rules (client-server "Push Notifications"). The predefined rules live in code
-- (hs/events/push_rules.py); only what a user changes is stored.

-- A user's own rules. `position` orders the rules of one (user, kind): lower is tried first.
-- Content rules carry `pattern`; override and underride rules `conditions`; room and sender
-- rules neither (their rule_id is the room or user they are about).
CREATE TABLE push_rules (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    conditions JSONB,
    pattern TEXT,
    actions JSONB NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- A user's changes to a predefined rule: NULL keeps the predefined value.
CREATE TABLE push_rule_default_overrides (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    enabled BOOLEAN,
    actions JSONB,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- The push_rules stream: one row per change of a user's rules (the sync token's
-- `push_rules` key; a worker reads these rows to drop its cached rules for the user).
CREATE TABLE push_rules_stream (
    stream_id BIGINT PRIMARY KEY,
    user_id TEXT NOT NULL
);
CREATE INDEX push_rules_stream_user ON push_rules_stream (user_id, stream_id);
