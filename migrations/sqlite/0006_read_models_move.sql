-- The read models moved to the read database (READ_DATABASE_URL; embedded: this same file),
-- where the projections create and rebuild their own tables. Their old copies go.
DROP TABLE IF EXISTS booking_list;
DROP TABLE IF EXISTS live_reservations;
DROP TABLE IF EXISTS projection_checkpoints;
