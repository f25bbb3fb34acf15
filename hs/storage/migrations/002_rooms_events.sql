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

-- --- Room directory, room summaries and space hierarchy ------------------------------------

-- Joined and invited member counts per room, kept by a trigger on current_state_events so
-- that they change in the same transaction as the membership: the public room list orders
-- every published room by its joined count, which must not mean counting members per request.
CREATE TABLE room_member_counts (
    room_id TEXT PRIMARY KEY,
    joined_members INTEGER NOT NULL DEFAULT 0,
    invited_members INTEGER NOT NULL DEFAULT 0
);

CREATE FUNCTION room_member_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target TEXT;
    joined_delta INTEGER := 0;
    invited_delta INTEGER := 0;
BEGIN
    -- A row's room_id never changes (current state is upserted by room, type and state key).
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.type = 'm.room.member' THEN
        target := OLD.room_id;
        joined_delta := joined_delta - CASE WHEN OLD.membership = 'join' THEN 1 ELSE 0 END;
        invited_delta := invited_delta - CASE WHEN OLD.membership = 'invite' THEN 1 ELSE 0 END;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.type = 'm.room.member' THEN
        target := NEW.room_id;
        joined_delta := joined_delta + CASE WHEN NEW.membership = 'join' THEN 1 ELSE 0 END;
        invited_delta := invited_delta + CASE WHEN NEW.membership = 'invite' THEN 1 ELSE 0 END;
    END IF;
    IF joined_delta <> 0 OR invited_delta <> 0 THEN
        INSERT INTO room_member_counts (room_id, joined_members, invited_members)
            VALUES (target, joined_delta, invited_delta)
            ON CONFLICT (room_id) DO UPDATE
            SET joined_members = room_member_counts.joined_members + EXCLUDED.joined_members,
                invited_members = room_member_counts.invited_members + EXCLUDED.invited_members;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER current_state_events_member_counts
    AFTER INSERT OR UPDATE OR DELETE ON current_state_events
    FOR EACH ROW EXECUTE FUNCTION room_member_counts_update();

CREATE INDEX rooms_published ON rooms (room_id) WHERE is_public;

-- Where a client's walk of a space hierarchy stopped: the rooms still to visit and those seen,
-- under an unguessable token, for a few minutes (as Synapse keeps them).
CREATE TABLE room_hierarchy_pagination (
    token TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    suggested_only BOOLEAN NOT NULL,
    max_depth INTEGER,
    -- JSON: [[room_id, [via...], depth], ...] (the next room to visit last) and [room_id, ...].
    room_queue TEXT NOT NULL,
    processed_rooms TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_hierarchy_pagination_created ON room_hierarchy_pagination (created_ts);

-- --- Event relationships: threads ----------------------------------------------------------

-- One row per thread (per room: a reply in another room does not join a thread) with its
-- latest reply, and who took part in it, kept by triggers on event_relations and redactions so
-- that they change in the same transaction as the reply: GET /threads pages through a room's
-- threads by latest activity, which must be an index scan, not an aggregate over every reply
-- in the room. thread_id is the root's event ID.
CREATE TABLE threads (
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    latest_event_id TEXT NOT NULL,
    topological_ordering BIGINT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (room_id, thread_id)
);
CREATE INDEX threads_room_latest ON threads (room_id, topological_ordering, stream_ordering);
CREATE INDEX threads_latest_event ON threads (latest_event_id);

-- The root's sender and everyone who replied ("current_user_participated", Threading).
CREATE TABLE thread_participants (
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (room_id, thread_id, user_id)
);

CREATE FUNCTION threads_add_reply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    reply RECORD;
    root_sender TEXT;
BEGIN
    IF NEW.relation_type <> 'm.thread' THEN
        RETURN NULL;
    END IF;
    -- The event row is written before its relation, in the same transaction.
    SELECT room_id, sender, topological_ordering, stream_ordering INTO reply FROM events
        WHERE event_id = NEW.event_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO threads (room_id, thread_id, latest_event_id, topological_ordering, stream_ordering)
        VALUES (reply.room_id, NEW.relates_to_id, NEW.event_id, reply.topological_ordering,
                reply.stream_ordering)
        ON CONFLICT (room_id, thread_id) DO UPDATE
        SET latest_event_id = EXCLUDED.latest_event_id,
            topological_ordering = EXCLUDED.topological_ordering,
            stream_ordering = EXCLUDED.stream_ordering
        WHERE (threads.topological_ordering, threads.stream_ordering)
            < (EXCLUDED.topological_ordering, EXCLUDED.stream_ordering);
    INSERT INTO thread_participants (room_id, thread_id, user_id)
        VALUES (reply.room_id, NEW.relates_to_id, reply.sender) ON CONFLICT DO NOTHING;
    SELECT sender INTO root_sender FROM events WHERE event_id = NEW.relates_to_id AND room_id = reply.room_id;
    IF FOUND THEN
        INSERT INTO thread_participants (room_id, thread_id, user_id)
            VALUES (reply.room_id, NEW.relates_to_id, root_sender) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER event_relations_threads
    AFTER INSERT ON event_relations
    FOR EACH ROW EXECUTE FUNCTION threads_add_reply();

-- A redacted reply leaves its thread ("when a child event is redacted then the relationship is
-- broken"): if it was the latest, the latest becomes the one before it, and a thread with no
-- reply left is no thread.
CREATE FUNCTION threads_redact_reply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t RECORD;
    latest RECORD;
BEGIN
    FOR t IN SELECT room_id, thread_id FROM threads WHERE latest_event_id = NEW.redacts LOOP
        SELECT e.event_id, e.topological_ordering, e.stream_ordering INTO latest
            FROM event_relations r JOIN events e ON e.event_id = r.event_id
            WHERE r.relates_to_id = t.thread_id AND r.relation_type = 'm.thread' AND e.room_id = t.room_id
              AND NOT EXISTS (SELECT 1 FROM redactions d JOIN events x ON x.event_id = d.event_id
                              WHERE d.redacts = e.event_id AND x.room_id = e.room_id)
            ORDER BY e.topological_ordering DESC, e.stream_ordering DESC LIMIT 1;
        IF FOUND THEN
            UPDATE threads SET latest_event_id = latest.event_id,
                               topological_ordering = latest.topological_ordering,
                               stream_ordering = latest.stream_ordering
                WHERE room_id = t.room_id AND thread_id = t.thread_id;
        ELSE
            DELETE FROM threads WHERE room_id = t.room_id AND thread_id = t.thread_id;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER redactions_threads
    AFTER INSERT ON redactions
    FOR EACH ROW EXECUTE FUNCTION threads_redact_reply();

-- Account data (client-server "Client Config", "Room Tagging"): one row per (user, room, type),
-- room_id '' for global data; tags are room account data of type m.tag, as Synapse stores
-- them. stream_id is the account data stream's position of the row's latest write.
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL DEFAULT '',
    type TEXT NOT NULL,
    content JSONB NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_user_stream ON account_data (user_id, stream_id);

-- Receipts (client-server "Receipts", "Fully read markers"): the latest receipt of each type per
-- (room, user, thread); thread_id '' is an unthreaded receipt. event_stream_ordering is the
-- receipted event's position, so a receipt never moves back to an older event. stream_id is
-- the receipt stream's position of the row's latest write.
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL DEFAULT '',
    event_id TEXT NOT NULL,
    event_stream_ordering BIGINT NOT NULL,
    data JSONB NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_room_stream ON receipts (room_id, stream_id);
