-- Admins find a user by exact phone number through a blind index: a keyed HMAC-SHA256 of the
-- normalized number (`+7…`), with a key derived from the master key. The number itself stays
-- sealed in the user's events; erasing the user deletes their row here.
CREATE TABLE user_phone_index
(
    user_id    uuid PRIMARY KEY,
    phone_hash text NOT NULL
);
CREATE INDEX user_phone_index_hash ON user_phone_index (phone_hash);

-- When each API key was last used: written at most once a minute per key and process.
CREATE TABLE api_key_usage
(
    key_id       uuid PRIMARY KEY,
    last_used_at timestamptz NOT NULL
);
