//! Turns for the followers of the store on PostgreSQL: relays, notaries and projection builders
//! of one name take turns through a transaction-scoped advisory lock, not a `FOR UPDATE` lock
//! on their checkpoint row.
//!
//! The difference is the transaction id. A row lock writes the row, so the step gets an xid at
//! once and keeps it to the end; and every commit-safe reader of the store
//! ([`crate::history::PG_AFTER`]: events from transactions older than the oldest one running)
//! in the whole cluster waits behind a running xid. A relay that waits for JetStream's
//! acknowledgements, or a projection that applies a whole batch, would hold back every other
//! follower for that long. An advisory lock takes no xid; the step gets one only for its last
//! statement (the checkpoint's update), which commits a moment later.
//!
//! The previous holder commits before its lock is released, so a plain `SELECT` of the
//! checkpoint after [`take`] sees its write.
use sqlx::PgConnection;

/// Who takes turns; the first key of the lock (the second is a hash of the follower's name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Follower {
    Relay = 0x7a68_0001,
    Notary = 0x7a68_0002,
    Projection = 0x7a68_0003,
}

/// The statement that waits for `follower`'s turn (bind: `$1` the follower's name) and holds
/// it to the end of the transaction.
pub fn sql(follower: Follower) -> String {
    format!(
        "SELECT pg_advisory_xact_lock({}, hashtext($1))",
        follower as i32
    )
}

/// Waits, inside the transaction `conn` is in, for the turn of `follower` called `name`.
pub async fn take(conn: &mut PgConnection, follower: Follower, name: &str) -> sqlx::Result<()> {
    sqlx::query(&sql(follower))
        .bind(name)
        .execute(conn)
        .await
        .map(drop)
}
