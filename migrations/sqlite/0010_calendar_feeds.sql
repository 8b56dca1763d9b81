-- Calendar feeds: which feeds there are lives in the Listing aggregate's events
-- (CalendarFeedAdded / CalendarFeedRemoved); this table keeps each feed's sync state, which
-- is operational and not history: when an instance last took it for a sync (the claim that
-- makes the worker sync each feed once per interval across instances), the last result, the
-- error, and the validators (ETag, Last-Modified) of the last good answer.
CREATE TABLE calendar_feed_status
(
    feed_id           BLOB PRIMARY KEY,
    listing_id        BLOB    NOT NULL,
    url               TEXT    NOT NULL,
    -- Milliseconds since the epoch.
    claimed_at_ms     INTEGER,
    last_synced_at_ms INTEGER,
    last_result       TEXT    NOT NULL DEFAULT 'pending',
    error_code        TEXT,
    error_detail      TEXT,
    etag              TEXT,
    last_modified     TEXT
);
CREATE INDEX calendar_feed_status_listing ON calendar_feed_status (listing_id);
CREATE INDEX calendar_feed_status_claimed ON calendar_feed_status (claimed_at_ms);
