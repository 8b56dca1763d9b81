-- Answers to Idempotency-Key are kept 24 hours (api/src/idempotency.rs); the periodic
-- deletion of older ones finds them by age.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
