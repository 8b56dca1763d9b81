-- Responses of creating POSTs, replayed for a repeated Idempotency-Key.
-- `status_code` is NULL while the first request is still running.
CREATE TABLE idempotency_keys
(
    principal     text        NOT NULL,
    key           text        NOT NULL,
    request_hash  text        NOT NULL,
    status_code   integer,
    response_body text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
