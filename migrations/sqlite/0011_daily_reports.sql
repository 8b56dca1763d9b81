-- The daily analytics report, made once per local date across all instances: the primary key
-- is the lease (the first insert wins, every other instance's insert does nothing), and the
-- body is kept unchanged with the analytics position it was computed at.
CREATE TABLE IF NOT EXISTS daily_reports (
    report_date      TEXT    PRIMARY KEY,
    computed_at      TEXT    NOT NULL,
    position         INTEGER NOT NULL,
    body             TEXT    NOT NULL,
    -- Set once the report reached the admins' Telegram chat.
    telegram_sent_at TEXT
);
