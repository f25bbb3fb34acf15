-- Rooms and events: the event graph, state as shared snapshots plus deltas, current state,
-- memberships, transaction ids, redactions, relations, aliases, search and reports.

CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator TEXT NOT NULL,
    -- Listed in the public room directory.
    is_public BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts BIGINT NOT NULL
);

-- Every event once. stream_ordering is the events stream position (allocated by the writer,
-- announced only up to its persisted-upto point); topological_ordering is the depth, and
-- (topological_ordering, stream_ordering) is the order /messages pages in.
CREATE TABLE events (
    stream_ordering BIGINT PRIMARY KEY,
    topological_ordering BIGINT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL REFERENCES rooms (room_id),
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    contains_url BOOLEAN NOT NULL,
    -- For state events: the event this one replaced in the room state (unsigned.prev_content).
    replaces_state TEXT,
    -- The PDU as signed; redactions are applied when it is read, so the original is kept.
    json TEXT NOT NULL
);
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_room_topological ON events (room_id, topological_ordering, stream_ordering);
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts);

CREATE TABLE event_edges (
    event_id TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

CREATE TABLE event_auth (
    event_id TEXT NOT NULL,
    auth_id TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_id)
);

-- The events no other event points at yet: the prev_events of the room's next event.
CREATE TABLE event_forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- State is stored as groups: a group holds only what changed against its prev_group, and the
-- chain is cut (a full snapshot is written) when it grows long. A message reuses the group of
-- the state it was sent in, so sending into a 10,000-member room writes no state rows at all.
CREATE TABLE state_groups (
    id BIGINT PRIMARY KEY,
    room_id TEXT NOT NULL,
    prev_group BIGINT REFERENCES state_groups (id),
    -- How many deltas lie between this group and a full snapshot (0 for a snapshot).
    delta_depth INTEGER NOT NULL
);
CREATE SEQUENCE state_group_ids;

CREATE TABLE state_group_entries (
    state_group BIGINT NOT NULL REFERENCES state_groups (id),
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (state_group, type, state_key)
);

-- The state after each event.
CREATE TABLE event_to_state_groups (
    event_id TEXT PRIMARY KEY,
    state_group BIGINT NOT NULL REFERENCES state_groups (id)
);

CREATE TABLE current_state_events (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    -- For m.room.member rows: the membership, so "rooms of a user" needs no event lookups.
    membership TEXT,
    PRIMARY KEY (room_id, type, state_key)
);
CREATE INDEX current_state_user_rooms ON current_state_events (state_key, membership)
    WHERE type = 'm.room.member';

-- Every membership change, for "what was this user's membership at stream position N".
CREATE TABLE room_memberships (
    event_id TEXT PRIMARY KEY,
    stream_ordering BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    membership TEXT NOT NULL,
    display_name TEXT,
    avatar_url TEXT
);
CREATE INDEX room_memberships_user ON room_memberships (user_id, room_id, stream_ordering);

-- Rooms a user has forgotten: they no longer appear for that user.
CREATE TABLE room_forgotten (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

-- Idempotent sends: the same device retrying the same request gets the same event.
-- `scope` is the endpoint and its other path parameters: a transaction ID is unique per
-- device and endpoint.
CREATE TABLE event_txn_ids (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, scope, txn_id)
);
CREATE INDEX event_txn_ids_event ON event_txn_ids (event_id);

CREATE TABLE redactions (
    event_id TEXT PRIMARY KEY,
    redacts TEXT NOT NULL
);
CREATE INDEX redactions_redacts ON redactions (redacts);

CREATE TABLE event_relations (
    event_id TEXT PRIMARY KEY,
    relates_to_id TEXT NOT NULL,
    relation_type TEXT NOT NULL,
    aggregation_key TEXT
);
CREATE INDEX event_relations_target ON event_relations (relates_to_id, relation_type);

CREATE TABLE room_aliases (
    room_alias TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

CREATE TABLE event_search (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    key TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    vector TSVECTOR NOT NULL
);
CREATE INDEX event_search_vector ON event_search USING GIN (vector);
CREATE INDEX event_search_room ON event_search (room_id, stream_ordering);

CREATE TABLE event_reports (
    id BIGSERIAL PRIMARY KEY,
    received_ts BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT,
    user_id TEXT NOT NULL,
    reason TEXT,
    score INTEGER
);
