-- Background work one replica does at a time (event pruning; later the
-- token-expiry scan and the outbox): a named lease, held until it expires
-- unless its holder renews it.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expire_time BIGINT NOT NULL
);
