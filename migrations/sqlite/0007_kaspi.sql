-- The short codes guests quote to Kaspi as the payment's account, and Kaspi's biller
-- notifications with the answer each got, so a repeated txn_id gets the first answer again.
CREATE TABLE payment_accounts
(
    account    TEXT PRIMARY KEY,
    booking_id BLOB NOT NULL UNIQUE
);

CREATE TABLE kaspi_notifications
(
    command     TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    account     TEXT NOT NULL,
    sum_text    TEXT NOT NULL,
    answer      TEXT NOT NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (command, txn_id)
);
