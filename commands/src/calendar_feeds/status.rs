//! Each feed's sync state (`calendar_feed_status`, store database): the claim, the last
//! result and error, the validators of the last good answer. History (which feeds exist,
//! which nights they block) is in the Listing's events; this is what a sync needs next time.
use super::fetch::Validators;
use chrono::{DateTime, Utc};
use store::{with_pool, Database, StoreError};
use uuid::Uuid;

/// One feed's row.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct FeedStatusRow {
    pub feed_id: Uuid,
    pub listing_id: Uuid,
    pub url: String,
    pub claimed_at_ms: Option<i64>,
    pub last_synced_at_ms: Option<i64>,
    pub last_result: String,
    pub error_code: Option<String>,
    pub error_detail: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl FeedStatusRow {
    pub fn validators(&self) -> Validators {
        Validators {
            etag: self.etag.clone(),
            last_modified: self.last_modified.clone(),
        }
    }

    pub fn last_synced_at(&self) -> Option<DateTime<Utc>> {
        self.last_synced_at_ms
            .and_then(DateTime::<Utc>::from_timestamp_millis)
    }
}

/// How a sync ended, as it is recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncResult {
    /// Applied; the validators of this answer are kept for the next request.
    Applied(Validators),
    NotModified,
    Failed {
        code: &'static str,
        detail: String,
    },
}

const COLUMNS: &str = "feed_id, listing_id, url, claimed_at_ms, last_synced_at_ms, last_result, \
                       error_code, error_detail, etag, last_modified";

/// The table's queries.
#[derive(Clone)]
pub struct FeedStatus {
    db: Database,
}

impl FeedStatus {
    pub fn new(db: Database) -> FeedStatus {
        FeedStatus { db }
    }

    /// Starts tracking a feed (again: a row already there is kept).
    /// The row is made claimed at `now_ms` by the process that is about to sync the feed, so
    /// no other instance's worker takes the new feed in between.
    pub async fn track(
        &self,
        feed_id: Uuid,
        listing_id: Uuid,
        url: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        with_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO calendar_feed_status (feed_id, listing_id, url, claimed_at_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (feed_id) DO NOTHING",
            )
            .bind(feed_id)
            .bind(listing_id)
            .bind(url)
            .bind(now_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn forget(&self, feed_id: Uuid) -> Result<(), StoreError> {
        with_pool!(&self.db, pool => {
            sqlx::query("DELETE FROM calendar_feed_status WHERE feed_id = $1")
                .bind(feed_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn get(&self, feed_id: Uuid) -> Result<Option<FeedStatusRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM calendar_feed_status WHERE feed_id = $1");
        Ok(with_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(feed_id).fetch_optional(pool).await?
        }))
    }

    pub async fn of_listing(&self, listing_id: Uuid) -> Result<Vec<FeedStatusRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM calendar_feed_status WHERE listing_id = $1");
        Ok(with_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(listing_id).fetch_all(pool).await?
        }))
    }

    /// Feeds nobody took for a sync since `cutoff_ms`, the longest waiting first.
    pub async fn due(&self, cutoff_ms: i64, limit: i64) -> Result<Vec<FeedStatusRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM calendar_feed_status \
             WHERE claimed_at_ms IS NULL OR claimed_at_ms <= $1 \
             ORDER BY claimed_at_ms NULLS FIRST, feed_id LIMIT $2"
        );
        Ok(with_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(cutoff_ms).bind(limit).fetch_all(pool).await?
        }))
    }

    /// Takes the feed for a sync at `now_ms` if nobody took it since `cutoff_ms`: one
    /// compare-and-set, so of all the instances that see it due, one gets it.
    pub async fn claim(
        &self,
        feed_id: Uuid,
        cutoff_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = with_pool!(&self.db, pool => {
            sqlx::query(
                "UPDATE calendar_feed_status SET claimed_at_ms = $1 \
                 WHERE feed_id = $2 AND (claimed_at_ms IS NULL OR claimed_at_ms <= $3)",
            )
            .bind(now_ms)
            .bind(feed_id)
            .bind(cutoff_ms)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Takes the feed for a sync now, whoever had it (a sync asked for by hand).
    pub async fn take(&self, feed_id: Uuid, now_ms: i64) -> Result<(), StoreError> {
        with_pool!(&self.db, pool => {
            sqlx::query("UPDATE calendar_feed_status SET claimed_at_ms = $1 WHERE feed_id = $2")
                .bind(now_ms)
                .bind(feed_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records how a sync at `now_ms` ended. A failure keeps the last good validators and
    /// sync time, so the next try asks for the whole feed only if it changed since then.
    pub async fn record(
        &self,
        feed_id: Uuid,
        now_ms: i64,
        result: &SyncResult,
    ) -> Result<(), StoreError> {
        with_pool!(&self.db, pool => {
            match result {
                SyncResult::Applied(v) => sqlx::query(
                    "UPDATE calendar_feed_status SET last_synced_at_ms = $1, last_result = 'ok', \
                     error_code = NULL, error_detail = NULL, etag = $2, last_modified = $3 \
                     WHERE feed_id = $4",
                )
                .bind(now_ms)
                .bind(v.etag.as_deref())
                .bind(v.last_modified.as_deref())
                .bind(feed_id)
                .execute(pool)
                .await?,
                SyncResult::NotModified => sqlx::query(
                    "UPDATE calendar_feed_status SET last_synced_at_ms = $1, \
                     last_result = 'not_modified', error_code = NULL, error_detail = NULL \
                     WHERE feed_id = $2",
                )
                .bind(now_ms)
                .bind(feed_id)
                .execute(pool)
                .await?,
                SyncResult::Failed { code, detail } => sqlx::query(
                    "UPDATE calendar_feed_status SET last_result = 'error', error_code = $1, \
                     error_detail = $2 WHERE feed_id = $3",
                )
                .bind(*code)
                .bind(detail.as_str())
                .bind(feed_id)
                .execute(pool)
                .await?,
            };
        });
        Ok(())
    }
}
