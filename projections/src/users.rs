//! The user directory admins search: every account the events know (a profile, a booking, a
//! listing, an admin's decision, an API key), with the role an admin gave, whether it is
//! blocked and why, and for service clients their API key (name, role, listing scope, the
//! key's SHA-256, revoked). No personal data: phone numbers are found through the blind index
//! on the command side (`commands::admin`), never stored here.
use crate::event::Decoded;
use crate::projector::Projection;
use crate::table::{col, fetch_all, nullable, Arg, Kind, Row, Table};
use crate::working_set;
use chrono::{DateTime, Utc};
use domain::booking::BookingEvent;
use domain::listing::ListingEvent;
use domain::user::UserEvent;
use domain::Event;
use serde::Serialize;
use store::{Database, StoreError};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct UserRow {
    pub user_id: Uuid,
    /// `person` or `api_key`.
    pub kind: String,
    /// The role an admin gave (or an API key's role); `None`: the token's.
    pub role: Option<String>,
    pub blocked: i64,
    pub block_reason: Option<String>,
    /// The API key's name.
    pub name: Option<String>,
    /// The API key's listing scope, a JSON array; `None`: no scope.
    pub listing_ids: Option<String>,
    /// SHA-256 (hex) of the API key.
    pub key_hash: Option<String>,
    pub revoked: i64,
    pub bookings_count: i64,
    pub listings_count: i64,
    pub has_profile: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub position: i64,
}

static DIRECTORY: Table = Table {
    name: "user_directory",
    columns: &[
        col("user_id", Kind::Id),
        col("kind", Kind::Text),
        nullable("role", Kind::Text),
        col("blocked", Kind::Int),
        nullable("block_reason", Kind::Text),
        nullable("name", Kind::Text),
        nullable("listing_ids", Kind::Text),
        nullable("key_hash", Kind::Text),
        col("revoked", Kind::Int),
        col("bookings_count", Kind::Int),
        col("listings_count", Kind::Int),
        col("has_profile", Kind::Int),
        col("created_at", Kind::Time),
        col("updated_at", Kind::Time),
        col("position", Kind::Int),
    ],
    indexes: &["blocked, user_id", "role, user_id", "kind, user_id"],
};

impl Row for UserRow {
    const TABLE: &'static Table = &DIRECTORY;
    fn key(&self) -> Uuid {
        self.user_id
    }
    fn values(&self) -> Vec<Arg> {
        vec![
            Arg::Id(self.user_id),
            Arg::Text(self.kind.clone()),
            Arg::OptText(self.role.clone()),
            Arg::Int(self.blocked),
            Arg::OptText(self.block_reason.clone()),
            Arg::OptText(self.name.clone()),
            Arg::OptText(self.listing_ids.clone()),
            Arg::OptText(self.key_hash.clone()),
            Arg::Int(self.revoked),
            Arg::Int(self.bookings_count),
            Arg::Int(self.listings_count),
            Arg::Int(self.has_profile),
            Arg::Time(self.created_at),
            Arg::Time(self.updated_at),
            Arg::Int(self.position),
        ]
    }
}

impl UserRow {
    fn new(user_id: Uuid, e: &Decoded) -> UserRow {
        UserRow {
            user_id,
            kind: "person".to_string(),
            role: None,
            blocked: 0,
            block_reason: None,
            name: None,
            listing_ids: None,
            key_hash: None,
            revoked: 0,
            bookings_count: 0,
            listings_count: 0,
            has_profile: 0,
            created_at: e.recorded_at,
            updated_at: e.recorded_at,
            position: e.position,
        }
    }

    /// The role shown: the one an admin gave, else what the user did (host once they list).
    pub fn shown_role(&self) -> &str {
        match &self.role {
            Some(r) => r,
            None if self.listings_count > 0 => "host",
            None => "guest",
        }
    }

    pub fn is_blocked(&self) -> bool {
        self.blocked != 0
    }

    pub fn scope(&self) -> Option<Vec<Uuid>> {
        serde_json::from_str(self.listing_ids.as_deref()?).ok()
    }
}

working_set!(UsersSet { users: UserRow });

pub struct UsersProjection;

/// The account an event is about, for the directory.
fn account_of(e: &Decoded) -> Option<Uuid> {
    match &e.event {
        Event::User(_) => Some(e.aggregate_id),
        Event::Booking(BookingEvent::BookingHeld { guest_id, .. }) => Some(*guest_id),
        Event::Listing(ListingEvent::ListingCreated { host_id, .. }) => Some(*host_id),
        _ => None,
    }
}

impl Projection for UsersProjection {
    type Set = UsersSet;
    const NAME: &'static str = "users";
    const VERSION: i64 = 1;
    const TABLES: &'static [&'static Table] = &[&DIRECTORY];

    fn want(set: &mut UsersSet, e: &Decoded) {
        if let Some(id) = account_of(e) {
            set.users.want(id);
        }
    }

    fn apply(set: &mut UsersSet, e: &Decoded) {
        let Some(id) = account_of(e) else {
            return;
        };
        let mut row = set
            .users
            .get(id)
            .cloned()
            .unwrap_or_else(|| UserRow::new(id, e));
        row.updated_at = e.recorded_at;
        row.position = e.position;
        match &e.event {
            Event::Booking(_) => row.bookings_count += 1,
            Event::Listing(_) => row.listings_count += 1,
            Event::User(event) => apply_user(&mut row, event),
            Event::Payment(_) => return,
        }
        set.users.put(row);
    }
}

fn apply_user(row: &mut UserRow, event: &UserEvent) {
    match event {
        UserEvent::ProfileUpdated { .. } => row.has_profile = 1,
        UserEvent::PersonalDataErased { .. } => {}
        UserEvent::RoleChanged { role, .. } => row.role = Some(role.as_str().to_string()),
        UserEvent::UserBlocked { reason, .. } => {
            row.blocked = 1;
            row.block_reason = Some(reason.clone());
        }
        UserEvent::UserUnblocked { .. } => {
            row.blocked = 0;
            row.block_reason = None;
        }
        UserEvent::ApiKeyIssued {
            name,
            role,
            listing_ids,
            key_hash,
            ..
        } => {
            row.kind = "api_key".to_string();
            row.name = Some(name.clone());
            row.role = Some(role.as_str().to_string());
            row.listing_ids = listing_ids
                .as_ref()
                .map(|ids| serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_string()));
            row.key_hash = Some(key_hash.clone());
        }
        UserEvent::ApiKeyRevoked { .. } => row.revoked = 1,
    }
}

/// A directory search; every filter is optional.
#[derive(Clone, Debug, Default)]
pub struct UserQuery {
    /// Only these accounts (an exact phone or Telegram id found them).
    pub ids: Option<Vec<Uuid>>,
    pub role: Option<String>,
    pub blocked: Option<bool>,
    /// `person` or `api_key`.
    pub kind: Option<String>,
    pub after: Option<Uuid>,
    pub limit: usize,
}

/// Queries on the directory.
impl UsersProjection {
    /// The page of accounts after the cursor, in id order, and the next cursor.
    pub async fn search(
        db: &Database,
        q: &UserQuery,
    ) -> Result<(Vec<UserRow>, Option<Uuid>), StoreError> {
        let mut sql = format!(
            "{} WHERE ($1 IS NULL OR COALESCE(role, CASE WHEN listings_count > 0 THEN 'host' ELSE 'guest' END) = $1) \
               AND ($2 IS NULL OR blocked = $2) AND ($3 IS NULL OR kind = $3) \
               AND ($4 IS NULL OR user_id > $4)",
            DIRECTORY.select()
        );
        let mut args = vec![
            Arg::OptText(q.role.clone()),
            Arg::OptInt(q.blocked.map(i64::from)),
            Arg::OptText(q.kind.clone()),
            Arg::OptId(q.after),
            Arg::Int(q.limit as i64 + 1),
        ];
        if let Some(ids) = &q.ids {
            if ids.is_empty() {
                return Ok((Vec::new(), None));
            }
            let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", 6 + i)).collect();
            sql.push_str(&format!(" AND user_id IN ({})", marks.join(", ")));
            args.extend(ids.iter().map(|id| Arg::Id(*id)));
        }
        sql.push_str(" ORDER BY user_id LIMIT $5");
        let mut rows: Vec<UserRow> = fetch_all(db, &sql, &args).await?;
        let next = if rows.len() > q.limit {
            rows.truncate(q.limit);
            rows.last().map(|r| r.user_id)
        } else {
            None
        };
        Ok((rows, next))
    }

    pub async fn get(db: &Database, user_id: Uuid) -> Result<Option<UserRow>, StoreError> {
        let sql = format!("{} WHERE user_id = $1", DIRECTORY.select());
        Ok(fetch_all(db, &sql, &[Arg::Id(user_id)]).await?.pop())
    }

    /// The accounts whose access differs from what their tokens say: blocked, a role given
    /// by an admin, or API keys. The request path keeps these in memory.
    pub async fn restricted(db: &Database) -> Result<Vec<UserRow>, StoreError> {
        let sql = format!(
            "{} WHERE blocked = 1 OR role IS NOT NULL OR kind = 'api_key'",
            DIRECTORY.select()
        );
        fetch_all(db, &sql, &[]).await
    }
}
