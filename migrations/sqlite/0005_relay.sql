-- How far each relay has published the event store to the bus, in (transaction, position)
-- order; advanced only after the bus acknowledged every message before it.
CREATE TABLE relay_checkpoints
(
    name     TEXT PRIMARY KEY,
    tx       INTEGER NOT NULL,
    position INTEGER NOT NULL
);
