-- Responses of creating POSTs, replayed for a repeated Idempotency-Key.
-- `status_code` is NULL while the first request is still running.
CREATE TABLE idempotency_keys
(
    principal     TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status_code   INTEGER,
    response_body TEXT,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (principal, key)
);
