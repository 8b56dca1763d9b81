-- The bots: each chat's conversation (so it survives restarts), the channel messages already
-- handled (a repeated update_id / MessageSid is handled once), the notifications already sent
-- (each once), and how far the notifier has read the event store.
CREATE TABLE bot_chats
(
    channel          TEXT NOT NULL,
    chat_id          TEXT NOT NULL,
    user_id          BLOB NOT NULL,
    dialogue         TEXT NOT NULL,
    menu             TEXT NOT NULL DEFAULT '[]',
    last_inbound_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (channel, chat_id)
);
CREATE INDEX bot_chats_user ON bot_chats (user_id);

CREATE TABLE bot_inbox
(
    channel     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (channel, message_id)
);

CREATE TABLE notifications_sent
(
    key     TEXT PRIMARY KEY,
    sent_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE notifier_checkpoints
(
    name     TEXT PRIMARY KEY,
    tx       INTEGER NOT NULL,
    position INTEGER NOT NULL
);
