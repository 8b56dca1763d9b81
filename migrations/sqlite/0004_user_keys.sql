-- Per-user keys for personal data in events (crypto-shredding). Each key is stored wrapped
-- with the service's master key (ZHILEGO_ENCRYPTION_KEY); erasing a user sets it to NULL.
CREATE TABLE user_keys
(
    user_id     BLOB PRIMARY KEY,
    wrapped_key TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    erased_at   TEXT
);
