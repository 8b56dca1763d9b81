-- Chat identifiers at rest: `bot_chats.chat_id` becomes a keyed hash of the chat's address
-- (`h1:` + hex) and the address itself is kept only sealed in `address`. Rows written before
-- have the address in `chat_id` and no `address`; the service rewrites them when it starts
-- (the key is not known to SQL). See docs/security.md, "Guest identity".
ALTER TABLE bot_chats ADD COLUMN address TEXT;
