-- The short codes guests quote to Kaspi as the payment's account, and Kaspi's biller
-- notifications with the answer each got, so a repeated txn_id gets the first answer again.
CREATE TABLE payment_accounts
(
    account    text PRIMARY KEY,
    booking_id uuid NOT NULL UNIQUE
);

CREATE TABLE kaspi_notifications
(
    command     text        NOT NULL,
    txn_id      text        NOT NULL,
    account     text        NOT NULL,
    sum_text    text        NOT NULL,
    answer      jsonb       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (command, txn_id)
);
