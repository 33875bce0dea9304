-- hookplane schema. Portable SQL: the same file migrates SQLite and
-- PostgreSQL, so one store implementation (sqlx Any) serves both; split the
-- directory per backend only if a migration ever needs a dialect feature.

CREATE TABLE config_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO config_state (id, version) VALUES (1, 0);

CREATE TABLE config_tombstones (
    kind TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    config_version BIGINT NOT NULL,
    PRIMARY KEY (kind, organization_id, resource_id)
);
CREATE INDEX config_tombstones_version ON config_tombstones (config_version);

CREATE TABLE plans (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    revision BIGINT NOT NULL,
    config_version BIGINT NOT NULL
);

CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    plan TEXT NOT NULL,
    admin_emails TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    config_version BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    key_hint TEXT NOT NULL,
    expire_time BIGINT,
    create_time BIGINT NOT NULL
);
CREATE INDEX api_keys_org ON api_keys (organization_id, id);

CREATE TABLE connectors (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    spec TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    config_version BIGINT NOT NULL
);
CREATE INDEX connectors_org ON connectors (organization_id, id);
CREATE INDEX connectors_version ON connectors (config_version);

CREATE TABLE connector_tokens (
    id TEXT PRIMARY KEY,
    connector_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    expire_time BIGINT,
    superseded BIGINT NOT NULL
);
CREATE INDEX connector_tokens_connector ON connector_tokens (connector_id);

CREATE TABLE secrets (
    organization_id TEXT NOT NULL,
    name TEXT NOT NULL,
    sealed_value TEXT NOT NULL,
    description TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    config_version BIGINT NOT NULL,
    PRIMARY KEY (organization_id, name)
);
CREATE INDEX secrets_version ON secrets (config_version);

CREATE TABLE events (
    id BIGINT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    connector_id TEXT NOT NULL,
    status TEXT NOT NULL,
    response_code BIGINT,
    error TEXT NOT NULL,
    node_id TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    trace TEXT NOT NULL
);
CREATE INDEX events_org ON events (organization_id, id);
CREATE INDEX events_org_connector ON events (organization_id, connector_id, id);

CREATE TABLE idempotency_keys (
    organization_id TEXT NOT NULL,
    method TEXT NOT NULL,
    request_id TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    sealed_response TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (organization_id, method, request_id)
);

CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    build_version TEXT NOT NULL,
    applied_config_version BIGINT NOT NULL,
    connected BIGINT NOT NULL,
    last_seen_time BIGINT NOT NULL,
    sync_errors BIGINT NOT NULL,
    last_error TEXT NOT NULL
);
