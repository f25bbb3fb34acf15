-- Server-side key backups (hs/storage/key_backup.py): each user's backup versions and the room
-- keys stored in them, opaque to the server apart from the metadata that decides which of two
-- keys for one session is kept.

-- A deleted version keeps its row (deleted = TRUE, its keys gone) so that version numbers are
-- never reused: a client holding an old version must not write into a new backup by accident.
-- `etag` counts the changes to the version's keys.
CREATE TABLE e2e_room_keys_versions (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data JSONB NOT NULL,
    etag BIGINT NOT NULL DEFAULT 0,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE e2e_room_keys (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count BIGINT NOT NULL,
    is_verified BOOLEAN NOT NULL,
    session_data JSONB NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id),
    FOREIGN KEY (user_id, version) REFERENCES e2e_room_keys_versions (user_id, version) ON DELETE CASCADE
);
