//! The daily report: the day before's occupancy, revenue, funnel and channels, made once
//! across all instances at a set local time (06:00 Kazakhstan time, Asia/Almaty, by default),
//! kept unchanged with the analytics position it was computed at, and sent to the admins'
//! Telegram chat when one is configured.
//!
//! Exactly once: the report's date is the primary key of `daily_reports` in the store
//! database. Every instance's scheduler, from the set time on, computes the report of the day
//! before if it is not stored yet and inserts it with `ON CONFLICT DO NOTHING`; the one insert
//! that lands is the report, and only its instance sends it. A restart around the set time
//! neither repeats it (the row is there) nor skips it (the scheduler checks on start and every
//! `check_interval`). The clock is injected ([`Clock`]) so tests move time.
use crate::bots::telegram::Telegram;
use crate::settings::SettingsError;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use projections::analytics::compute::{self, ChannelItem, FunnelItem, OccupancyItem, RevenueItem};
use projections::analytics::figures::Need;
use projections::analytics::totals::Totals;
use projections::analytics::{AsOf, Facts, GroupBy, Scope};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use store::{Database, StoreError};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct ReportSettings {
    /// `ZHILEGO_REPORT_TELEGRAM_CHAT`: the admins' chat the report is sent to (off without it).
    pub telegram_chat: Option<String>,
    /// `ZHILEGO_REPORT_AT`: the local time (Kazakhstan, `HH:MM`) the report of the day before
    /// is made (default 06:00).
    pub at: NaiveTime,
    /// `ZHILEGO_REPORT_CHECK_MS`: how often each instance checks (default 30000).
    pub check_interval: Duration,
}

impl ReportSettings {
    pub fn from_values(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let at = match get("ZHILEGO_REPORT_AT") {
            None => NaiveTime::from_hms_opt(6, 0, 0).unwrap_or_default(),
            Some(v) => NaiveTime::parse_from_str(&v, "%H:%M").map_err(|_| {
                SettingsError::Invalid("ZHILEGO_REPORT_AT", format!("{v:?}: expected HH:MM"))
            })?,
        };
        let check_ms = match get("ZHILEGO_REPORT_CHECK_MS") {
            None => 30_000,
            Some(v) => v.parse::<u64>().ok().filter(|ms| *ms > 0).ok_or_else(|| {
                SettingsError::Invalid(
                    "ZHILEGO_REPORT_CHECK_MS",
                    format!("{v:?}: expected a positive number"),
                )
            })?,
        };
        Ok(ReportSettings {
            telegram_chat: get("ZHILEGO_REPORT_TELEGRAM_CHAT"),
            at,
            check_interval: Duration::from_millis(check_ms),
        })
    }
}

/// One day's figures (all listings, or a host's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DailyReport {
    pub date: NaiveDate,
    pub computed_at: DateTime<Utc>,
    /// The analytics read model's position the report includes.
    pub position: i64,
    #[schema(value_type = Object)]
    pub occupancy: serde_json::Value,
    #[schema(value_type = Object)]
    pub revenue: serde_json::Value,
    #[schema(value_type = Object)]
    pub funnel: serde_json::Value,
    #[schema(value_type = Vec<Object>)]
    pub channels: Vec<serde_json::Value>,
}

fn without_key<T: Serialize>(item: Option<T>) -> Result<serde_json::Value, StoreError> {
    let mut v = serde_json::to_value(item).map_err(|e| StoreError::Integrity(e.to_string()))?;
    if let Some(obj) = v.as_object_mut() {
        obj.remove("key");
    }
    Ok(v)
}

/// Computes the report of `date` from the analytics read model on `read`, as known now.
pub async fn compute(
    read: &Database,
    date: NaiveDate,
    host: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<DailyReport, StoreError> {
    let scope = Scope {
        from: date,
        to: date.succ_opt().unwrap_or(date),
        city: None,
        listing_id: None,
        host_id: host,
        as_of: AsOf::NOW,
    };
    let all = Need {
        listings: false,
        nights: true,
        bookings: true,
        refunds: false,
    };
    let facts = Facts::load(read, &scope, all).await?;
    let day = GroupBy::Day;
    let totals = Totals::load(read, &scope, day, true).await?;
    let occupancy: Option<OccupancyItem> = compute::occupancy(&totals, &scope, day).pop();
    let revenue: Option<RevenueItem> = compute::revenue(&totals, &scope, day).pop();
    let funnel: Option<FunnelItem> = compute::funnel(&facts, &scope, day).pop();
    let channels: Vec<ChannelItem> = compute::channels(&facts);
    Ok(DailyReport {
        date,
        computed_at: now,
        position: facts.position,
        occupancy: without_key(occupancy)?,
        revenue: without_key(revenue)?,
        funnel: without_key(funnel)?,
        channels: channels
            .into_iter()
            .map(|c| serde_json::to_value(c).map_err(|e| StoreError::Integrity(e.to_string())))
            .collect::<Result<_, _>>()?,
    })
}

/// The stored report of `date`, if it was made.
pub async fn stored(store: &Database, date: NaiveDate) -> Result<Option<DailyReport>, StoreError> {
    let body: Option<(String,)> = store::with_pool!(store, pool => {
        sqlx::query_as("SELECT body FROM daily_reports WHERE report_date = $1")
            .bind(date)
            .fetch_optional(pool)
            .await?
    });
    body.map(|(b,)| {
        serde_json::from_str(&b)
            .map_err(|e| StoreError::Integrity(format!("daily report of {date}: {e}")))
    })
    .transpose()
}

/// Stores `report` unless one for its date is there; returns whether this call stored it.
pub async fn store_once(store: &Database, report: &DailyReport) -> Result<bool, StoreError> {
    let body = serde_json::to_string(report).map_err(|e| StoreError::Integrity(e.to_string()))?;
    let inserted = store::with_pool!(store, pool => {
        sqlx::query(
            "INSERT INTO daily_reports (report_date, computed_at, position, body) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (report_date) DO NOTHING",
        )
        .bind(report.date)
        .bind(report.computed_at)
        .bind(report.position)
        .bind(&body)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(inserted == 1)
}

async fn mark_sent(
    store: &Database,
    date: NaiveDate,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    store::with_pool!(store, pool => {
        sqlx::query("UPDATE daily_reports SET telegram_sent_at = $2 WHERE report_date = $1")
            .bind(date)
            .bind(now)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// The report as a Telegram message.
pub fn message(r: &DailyReport) -> String {
    let n = |v: &serde_json::Value, k: &str| v[k].to_string();
    let mut text = format!(
        "ZhilyeGO — {}\nOccupancy: {} of {} nights ({}), {} blocked\nRoom revenue: {} ₸, cleaning {} ₸, refunds {} ₸, net {} ₸\nADR {} ₸, RevPAR {} ₸\nHeld {}, paid {}, expired {}, cancelled {}",
        r.date,
        n(&r.occupancy, "nights_sold"),
        n(&r.occupancy, "nights_available"),
        n(&r.occupancy, "occupancy"),
        n(&r.occupancy, "nights_blocked"),
        n(&r.revenue, "room_revenue_kzt"),
        n(&r.revenue, "cleaning_fees_kzt"),
        n(&r.revenue, "refunds_kzt"),
        n(&r.revenue, "net_revenue_kzt"),
        n(&r.revenue, "adr_kzt"),
        n(&r.revenue, "revpar_kzt"),
        n(&r.funnel, "held"),
        n(&r.funnel, "paid"),
        n(&r.funnel, "expired"),
        n(&r.funnel, "cancelled"),
    );
    for c in &r.channels {
        text.push_str(&format!(
            "\n{}: {} nights, {} ₸",
            c["key"].as_str().unwrap_or("?"),
            c["nights_sold"],
            c["room_revenue_kzt"]
        ));
    }
    text.push_str(&format!("\n(position {})", r.position));
    text
}

/// The time, injectable so tests move it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Makes the report of the day before once the set local time has passed.
pub struct ReportScheduler {
    pub store: Database,
    pub read: Database,
    pub telegram: Option<Arc<Telegram>>,
    pub settings: ReportSettings,
    pub clock: Arc<dyn Clock>,
}

impl ReportScheduler {
    /// The date whose report is due at `now`, if the set time has passed today.
    pub fn due(&self, now: DateTime<Utc>) -> Option<NaiveDate> {
        let local = now.with_timezone(&chrono::FixedOffset::east_opt(
            domain::KZ_UTC_OFFSET_SECONDS,
        )?);
        (local.time() >= self.settings.at).then(|| local.date_naive().pred_opt())?
    }

    /// One check: makes the due report if no instance has. Returns the report this call made.
    #[tracing::instrument(skip_all, err)]
    pub async fn tick(&self) -> Result<Option<DailyReport>, StoreError> {
        let now = self.clock.now();
        let Some(date) = self.due(now) else {
            return Ok(None);
        };
        if stored(&self.store, date).await?.is_some() {
            return Ok(None);
        }
        let report = compute(&self.read, date, None, now).await?;
        if !store_once(&self.store, &report).await? {
            return Ok(None);
        }
        tracing::info!(%date, position = report.position, "daily report made");
        metrics::counter!("zhilego_daily_reports_made_total").increment(1);
        if let (Some(telegram), Some(chat)) = (&self.telegram, &self.settings.telegram_chat) {
            let reply = bots::Reply {
                text: message(&report),
                photo: None,
                buttons: Vec::new(),
            };
            match telegram.deliver(chat, &reply).await {
                Ok(()) => mark_sent(&self.store, date, self.clock.now()).await?,
                Err(e) => {
                    tracing::error!(%date, error = %e, "sending the daily report to Telegram failed")
                }
            }
        }
        Ok(Some(report))
    }

    /// Checks on start and every `check_interval` until `stop`.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "daily report check failed; retrying");
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(self.settings.check_interval) => {}
            }
        }
    }
}
