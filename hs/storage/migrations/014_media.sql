-- The media repository (hs/storage/media.py). Bytes live on disk under media_store_path, named
-- by their SHA-256 (hs/media/filestore.py), so identical uploads share one file and a media ID
-- never becomes a path; these tables hold what the disk does not.

-- One row per media ID this server has handed out. An asynchronous upload (POST /media/v1/create)
-- makes a row with no content yet: sha256 is NULL until the PUT arrives, and the row may be
-- claimed only by its creator before unused_expires_ts. `authenticated` marks media created once
-- legacy unauthenticated downloads were frozen (enable_authenticated_media): the
-- /_matrix/media/v3 download and thumbnail endpoints refuse it.
CREATE TABLE local_media (
    media_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    media_type TEXT,
    upload_name TEXT,
    media_length BIGINT,
    sha256 TEXT,
    created_ts BIGINT NOT NULL,
    unused_expires_ts BIGINT,
    last_access_ts BIGINT,
    authenticated BOOLEAN NOT NULL DEFAULT FALSE,
    quarantined_by TEXT,
    safe_from_quarantine BOOLEAN NOT NULL DEFAULT FALSE,
    CHECK ((sha256 IS NULL) = (media_length IS NULL))
);

CREATE INDEX local_media_user ON local_media (user_id, created_ts);
CREATE INDEX local_media_sha256 ON local_media (sha256) WHERE sha256 IS NOT NULL;
CREATE INDEX local_media_pending ON local_media (unused_expires_ts) WHERE sha256 IS NULL;
CREATE INDEX local_media_last_access ON local_media (last_access_ts);

-- Thumbnails belong to content, not to a media ID: two uploads of the same image share them,
-- and they go when the last media row naming that content goes. width and height are the
-- thumbnail's own pixel dimensions; method is 'crop' or 'scale'.
CREATE TABLE media_thumbnails (
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    method TEXT NOT NULL,
    media_type TEXT NOT NULL,
    animated BOOLEAN NOT NULL,
    length BIGINT NOT NULL,
    PRIMARY KEY (sha256, width, height, method, media_type, animated)
);
