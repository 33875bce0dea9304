-- Platform webhooks (SPEC §8).
-- Subscriptions: the spec as JSON, the signing secret sealed (and the
-- previous one while a rotation's overlap lasts).
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    spec TEXT NOT NULL,
    sealed_secret TEXT NOT NULL,
    previous_sealed_secret TEXT,
    previous_expire_time BIGINT,
    enabled INTEGER NOT NULL,
    disabled_reason TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    revision BIGINT NOT NULL
);
CREATE INDEX subscriptions_by_organization ON subscriptions (organization_id, create_time, id);

-- Platform events, written in the transaction of the change that caused
-- them, until the dispatcher fans each out into deliveries and deletes it
-- (in one transaction).
CREATE TABLE platform_outbox (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    create_time BIGINT NOT NULL
);
CREATE INDEX platform_outbox_by_time ON platform_outbox (create_time, id);

-- One platform event on its way to one subscription; `claimed_until`
-- keeps an attempt in flight to one replica.
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status TEXT NOT NULL,
    payload TEXT NOT NULL,
    series_attempts INTEGER NOT NULL,
    next_attempt_time BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL,
    create_time BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_time);
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id, create_time, id);
-- For retention: the oldest deliveries, without reading the rest.
CREATE INDEX deliveries_by_time ON deliveries (create_time);

-- `seq` is the attempt's time in microseconds: a delivery's attempts are
-- made one after another.
CREATE TABLE delivery_attempts (
    delivery_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    attempt_time BIGINT NOT NULL,
    status_code INTEGER,
    duration_ms BIGINT NOT NULL,
    response_excerpt TEXT NOT NULL,
    error TEXT NOT NULL,
    PRIMARY KEY (delivery_id, seq)
);
