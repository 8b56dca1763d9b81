-- Read models kept by the bookings projection (a fold of the event store by position).
CREATE TABLE projection_checkpoints
(
    name     text PRIMARY KEY,
    -- The last applied event in (transaction, position) order; see docs/architecture.md.
    tx       bigint NOT NULL,
    position bigint NOT NULL
);

CREATE TABLE booking_list
(
    booking_id      uuid PRIMARY KEY,
    listing_id      uuid        NOT NULL,
    host_id         uuid        NOT NULL,
    guest_id        uuid        NOT NULL,
    status          text        NOT NULL,
    check_in        date        NOT NULL,
    check_out       date        NOT NULL,
    guests          integer     NOT NULL,
    total_kzt       bigint      NOT NULL,
    channel         text        NOT NULL,
    hold_expires_at timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    position        bigint      NOT NULL
);
CREATE INDEX booking_list_guest ON booking_list (guest_id, booking_id);
CREATE INDEX booking_list_host ON booking_list (host_id, booking_id);

-- Live reservations on listings' calendars (held or confirmed); the reservation sweeper reads
-- it to expire holds, finish releases and undo reservations whose booking was never created.
CREATE TABLE live_reservations
(
    booking_id      uuid PRIMARY KEY,
    listing_id      uuid        NOT NULL,
    state           text        NOT NULL,
    hold_expires_at timestamptz NOT NULL,
    reserved_at     timestamptz NOT NULL
);
CREATE INDEX live_reservations_expiry ON live_reservations (state, hold_expires_at);
