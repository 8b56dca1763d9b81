-- Read models kept by the bookings projection (a fold of the event store by position).
CREATE TABLE projection_checkpoints
(
    name     TEXT PRIMARY KEY,
    -- The last applied event in (transaction, position) order; see docs/architecture.md.
    tx       INTEGER NOT NULL,
    position INTEGER NOT NULL
);

CREATE TABLE booking_list
(
    booking_id      TEXT PRIMARY KEY,
    listing_id      TEXT    NOT NULL,
    host_id         TEXT    NOT NULL,
    guest_id        TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    check_in        TEXT    NOT NULL,
    check_out       TEXT    NOT NULL,
    guests          INTEGER NOT NULL,
    total_kzt       INTEGER NOT NULL,
    channel         TEXT    NOT NULL,
    hold_expires_at TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    position        INTEGER NOT NULL
);
CREATE INDEX booking_list_guest ON booking_list (guest_id, booking_id);
CREATE INDEX booking_list_host ON booking_list (host_id, booking_id);

-- Live reservations on listings' calendars (held or confirmed); the reservation sweeper reads
-- it to expire holds, finish releases and undo reservations whose booking was never created.
CREATE TABLE live_reservations
(
    booking_id      TEXT PRIMARY KEY,
    listing_id      TEXT NOT NULL,
    state           TEXT NOT NULL,
    hold_expires_at TEXT NOT NULL,
    reserved_at     TEXT NOT NULL
);
CREATE INDEX live_reservations_expiry ON live_reservations (state, hold_expires_at);
