-- The cache of other servers' media (hs/storage/remote_media.py). The bytes are content
-- addressed like local media (hs/media/filestore.py): a remote file identical to a local upload,
-- or to another server's, is stored once, and a content file and its thumbnails go only when no
-- row of local_media or remote_media names its digest any more.
CREATE TABLE remote_media (
    media_origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    media_type TEXT,
    upload_name TEXT,
    media_length BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    -- Retention (media_retention.remote_media_lifetime) and purge_media_cache read it.
    last_access_ts BIGINT NOT NULL,
    quarantined_by TEXT,
    -- Fetched while enable_authenticated_media was on: the legacy unauthenticated endpoints
    -- refuse it (the spec's freeze, as for local media).
    authenticated BOOLEAN NOT NULL,
    PRIMARY KEY (media_origin, media_id)
);

CREATE INDEX remote_media_sha256 ON remote_media (sha256);
CREATE INDEX remote_media_last_access ON remote_media (last_access_ts);
