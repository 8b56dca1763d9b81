-- The bots: each chat's conversation (so it survives restarts), the channel messages already
-- handled (a repeated update_id / MessageSid is handled once), the notifications already sent
-- (each once), and how far the notifier has read the event store.
CREATE TABLE bot_chats
(
    channel          text        NOT NULL,
    chat_id          text        NOT NULL,
    user_id          uuid        NOT NULL,
    dialogue         jsonb       NOT NULL,
    -- WhatsApp: the button data of the last numbered menu, in order.
    menu             jsonb       NOT NULL DEFAULT '[]',
    last_inbound_at  timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, chat_id)
);
CREATE INDEX bot_chats_user ON bot_chats (user_id);

CREATE TABLE bot_inbox
(
    channel     text        NOT NULL,
    message_id  text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, message_id)
);

CREATE TABLE notifications_sent
(
    key     text PRIMARY KEY,
    sent_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notifier_checkpoints
(
    name     text PRIMARY KEY,
    tx       bigint NOT NULL,
    position bigint NOT NULL
);
