-- Per-user keys for personal data in events (crypto-shredding). Each key is stored wrapped
-- with the service's master key (ZHILEGO_ENCRYPTION_KEY); erasing a user sets it to NULL.
CREATE TABLE user_keys
(
    user_id     uuid PRIMARY KEY,
    wrapped_key text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    erased_at   timestamptz
);
