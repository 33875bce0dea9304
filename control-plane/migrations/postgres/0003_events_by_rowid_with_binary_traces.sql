-- PostgreSQL's half of version 3 (SQLite's is in ../sqlite, where the
-- events table is also rebuilt around its rowid; PostgreSQL's key is fine).
--
-- New traces are stored as protobuf bytes (`trace_proto`); `trace` keeps
-- the JSON of events stored before this version and is NULL after it.
ALTER TABLE events ALTER COLUMN trace DROP NOT NULL;
ALTER TABLE events ADD COLUMN trace_proto BYTEA;
