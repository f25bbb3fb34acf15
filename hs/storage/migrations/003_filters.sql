-- Filters users upload for /sync (client-server API "Filtering"). IDs count up per user from
-- 0; a stored filter is never changed, so anything may cache it by (user_id, filter_id).
CREATE TABLE user_filters (
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    filter_id BIGINT NOT NULL,
    filter_json JSONB NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
