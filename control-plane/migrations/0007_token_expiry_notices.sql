-- 1 once `connector.token_expiring` was emitted for the credential, so the
-- scan that finds credentials about to expire tells of each one once,
-- across restarts and replicas.
ALTER TABLE connector_tokens ADD COLUMN expiry_notified INTEGER NOT NULL DEFAULT 0;
CREATE INDEX connector_tokens_expiring ON connector_tokens (expiry_notified, expire_time);
