//! The bots' tables at rest: chats written before hashing are rewritten when the service
//! starts, and erasing a guest deletes their chats.
use super::identity::CHAT_HASH_PREFIX;
use super::Chats;
use domain::Channel;
use store::{with_pool, Database, StoreError};
use uuid::Uuid;

impl Chats {
    /// Rewrites every chat stored with its address in plaintext (before migration 0009) to
    /// the keyed hash and the sealed address; the row keeps its guest id, so the guest keeps
    /// their bookings. Then compacts the table so the old row versions, which still hold the
    /// addresses, are gone from the files too. Gives the number of rows rewritten.
    pub async fn seal_plaintext_chats(&self) -> Result<u64, StoreError> {
        let pattern = format!("{CHAT_HASH_PREFIX}%");
        let plain: Vec<(String, String)> = with_pool!(&self.db, pool => {
            sqlx::query_as(
                "SELECT channel, chat_id FROM bot_chats WHERE address IS NULL OR chat_id NOT LIKE $1",
            )
            .bind(&pattern)
            .fetch_all(pool)
            .await?
        });
        let mut rewritten = 0;
        for (channel_name, chat_id) in &plain {
            let channel = if channel_name == Channel::Whatsapp.as_str() {
                Channel::Whatsapp
            } else {
                Channel::Telegram
            };
            let hash = self.keys.chat_hash(channel, chat_id);
            let address = self.keys.seal_address(channel, &hash, chat_id);
            with_pool!(&self.db, pool => {
                // A chat already written in the new form (by a newer process, while an older
                // one was still writing) is the current one; the old row goes.
                sqlx::query(
                    "DELETE FROM bot_chats WHERE channel = $1 AND chat_id = $2 \
                     AND EXISTS (SELECT 1 FROM bot_chats b WHERE b.channel = $1 AND b.chat_id = $3)",
                )
                .bind(channel_name)
                .bind(chat_id)
                .bind(&hash)
                .execute(pool)
                .await?;
                rewritten += sqlx::query(
                    "UPDATE bot_chats SET chat_id = $3, address = $4 WHERE channel = $1 AND chat_id = $2",
                )
                .bind(channel_name)
                .bind(chat_id)
                .bind(&hash)
                .bind(&address)
                .execute(pool)
                .await?
                .rows_affected();
            });
        }
        if rewritten > 0 {
            compact(&self.db).await?;
            tracing::info!(
                rewritten,
                "chat addresses stored in plaintext were hashed and sealed"
            );
        }
        Ok(rewritten)
    }
}

/// Drops the dead row versions and free pages that may still hold plaintext addresses.
async fn compact(db: &Database) -> Result<(), StoreError> {
    match db {
        Database::Postgres(pool) => {
            sqlx::query("VACUUM FULL bot_chats").execute(pool).await?;
        }
        Database::Sqlite(pool) => {
            let _one_writer = store::sqlite_write_turn("vacuum").await;
            sqlx::query("VACUUM").execute(pool).await?;
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(pool)
                .await?;
        }
    }
    Ok(())
}

/// Erasure's part in the bots: deletes every chat of the guest (its hashed and sealed address,
/// the dialogue, the last menu). Gives the number of chats deleted. The inbox (`bot_inbox`)
/// holds only the channels' message ids, which name no one; notices sent are keyed by booking.
pub async fn forget_guest(db: &Database, user: Uuid) -> Result<u64, StoreError> {
    let deleted = with_pool!(db, pool => {
        sqlx::query("DELETE FROM bot_chats WHERE user_id = $1")
            .bind(user)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(deleted)
}
