//! `zhilego analytics export`: figures for a range of dates as CSV or JSON, computed a month
//! at a time (where the grouping allows) with a progress bar on standard error.
use crate::routes::analytics::MAX_DAYS;
use crate::routes::analytics_answer::{Answer, Columns};
use chrono::{Datelike, NaiveDate, Utc};
use projections::analytics::compute;
use projections::analytics::figures::Need;
use projections::analytics::totals::Totals;
use projections::analytics::{AsOf, Facts, GroupBy, Scope};
use serde::Serialize;
use store::Database;

pub struct Export {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub group_by: String,
    pub figures: String,
    pub format: String,
}

/// `[from, to)` cut at month starts for day and month groupings (their keys never cross a
/// month), else whole.
fn chunks(from: NaiveDate, to: NaiveDate, group: GroupBy) -> Vec<(NaiveDate, NaiveDate)> {
    if !matches!(group, GroupBy::Day | GroupBy::Month) {
        return vec![(from, to)];
    }
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let next_month = NaiveDate::from_ymd_opt(at.year(), at.month(), 1)
            .and_then(|d| d.checked_add_months(chrono::Months::new(1)))
            .unwrap_or(to);
        let end = next_month.min(to);
        out.push((at, end));
        at = end;
    }
    out
}

fn render<T: Serialize + Columns>(
    items: Vec<T>,
    position: i64,
    csv: bool,
) -> anyhow::Result<String> {
    let answer = Answer {
        items,
        as_of: Utc::now(),
        position,
    };
    Ok(if csv {
        answer.csv().map_err(|e| anyhow::anyhow!("{}", e.detail))?
    } else {
        serde_json::to_string_pretty(&answer.json_value())? + "\n"
    })
}

pub async fn export(read: &Database, e: Export) -> anyhow::Result<String> {
    let group = GroupBy::parse(&e.group_by).ok_or_else(|| {
        anyhow::anyhow!("--group-by must be day, week, month, listing, city or channel")
    })?;
    let csv = match e.format.as_str() {
        "csv" => true,
        "json" => false,
        _ => anyhow::bail!("--format must be csv or json"),
    };
    anyhow::ensure!(e.to > e.from, "--to must be after --from");
    anyhow::ensure!(
        (e.to - e.from).num_days() <= MAX_DAYS * 10,
        "at most {} days",
        MAX_DAYS * 10
    );
    let need = Need {
        listings: false,
        nights: false,
        bookings: true,
        refunds: false,
    };
    let parts = chunks(e.from, e.to, group);
    let bar = indicatif::ProgressBar::new(parts.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")?
            .progress_chars("=> "),
    );
    bar.set_message(format!("{} by {}", e.figures, group.as_str()));
    let (mut occupancy, mut revenue, mut funnel, mut stays) = (vec![], vec![], vec![], vec![]);
    let mut position = 0;
    for (from, to) in parts {
        let scope = Scope {
            from,
            to,
            city: None,
            listing_id: None,
            host_id: None,
            as_of: AsOf::NOW,
        };
        let facts = Facts::load(read, &scope, need).await?;
        position = position.max(facts.position);
        match e.figures.as_str() {
            "occupancy" | "revenue" => {
                let totals = Totals::load(read, &scope, group, true).await?;
                if e.figures == "occupancy" {
                    occupancy.extend(compute::occupancy(&totals, &scope, group));
                } else {
                    revenue.extend(compute::revenue(&totals, &scope, group));
                }
            }
            "funnel" => funnel.extend(compute::funnel(&facts, &scope, group)),
            "stays" => stays.extend(compute::stays(&facts, &scope, group)),
            _ => anyhow::bail!("--figures must be occupancy, revenue, funnel or stays"),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    match e.figures.as_str() {
        "occupancy" => render(occupancy, position, csv),
        "revenue" => render(revenue, position, csv),
        "funnel" => render(funnel, position, csv),
        _ => render(stays, position, csv),
    }
}
