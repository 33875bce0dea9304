-- SQLite's half of version 3 (PostgreSQL's is in ../postgres).
--
-- Events are keyed by SQLite's rowid: a `BIGINT PRIMARY KEY` is not an
-- alias of it, so every stored event also went into a separate key index,
-- a fourth B-tree per insert on the hottest write path.
--
-- New traces are stored as protobuf bytes (`trace_proto`); `trace` keeps
-- the JSON of events stored before this version and is NULL after it.
CREATE TABLE events_v3 (
    id INTEGER PRIMARY KEY,
    organization_id TEXT NOT NULL,
    connector_id TEXT NOT NULL,
    status TEXT NOT NULL,
    response_code BIGINT,
    error TEXT NOT NULL,
    node_id TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    trace TEXT,
    trace_proto BLOB
);
INSERT INTO events_v3 (id, organization_id, connector_id, status, response_code, error, node_id, create_time, duration_ms, trace)
    SELECT id, organization_id, connector_id, status, response_code, error, node_id, create_time, duration_ms, trace FROM events;
DROP TABLE events;
ALTER TABLE events_v3 RENAME TO events;
CREATE INDEX events_org ON events (organization_id, id);
CREATE INDEX events_org_connector ON events (organization_id, connector_id, id);
