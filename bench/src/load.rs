//! The HTTP load: seeding listings, then the timed booking phase.
use anyhow::{bail, Context, Result};
use chrono::{Duration as Days, NaiveDate};
use reqwest::{Client, StatusCode};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use uuid::Uuid;

/// How far ahead a stay may start (the domain's booking horizon).
const HORIZON_DAYS: i64 = 730;

/// Creates `count` listings with `concurrency` parallel requests; returns their ids in order.
pub async fn seed_listings(
    client: &Client,
    base_url: &str,
    host_token: &str,
    count: usize,
    concurrency: usize,
) -> Result<Vec<Uuid>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (client, next) = (client.clone(), next.clone());
        let url = format!("{base_url}/api/v1/listings");
        let token = host_token.to_string();
        tasks.spawn(async move {
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(made);
                }
                let body = json!({
                    "title": format!("Bench flat {i}"),
                    "city": "Almaty",
                    "address": format!("Abay avenue {}, apt {}", 10 + i / 100, i % 100 + 1),
                    "location": { "lat": 43.238, "lon": 76.945 },
                    "rooms": 2,
                    "max_guests": 4,
                    "nightly_price_kzt": 25_000,
                    "cleaning_fee_kzt": 5_000,
                    "min_nights": 1,
                });
                let res = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await?;
                let status = res.status();
                let text = res.text().await?;
                if status != StatusCode::CREATED {
                    bail!("creating a listing answered {status}: {}", clip(&text));
                }
                let value: serde_json::Value = serde_json::from_str(&text)?;
                let id = value["id"]
                    .as_str()
                    .and_then(|s| s.parse::<Uuid>().ok())
                    .context("a created listing without an id")?;
                made.push((i, id));
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    all.sort_unstable_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, id)| id).collect())
}

/// What the timed phase saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub created: u64,
    pub conflicts: u64,
    pub other: u64,
    /// The first non-201/409 answer: status and the start of its body.
    pub other_example: Option<String>,
    pub transport_errors: u64,
    pub transport_example: Option<String>,
    /// Client-side latency of every answered request (body read included), microseconds,
    /// sorted.
    pub latencies_us: Vec<u32>,
    pub elapsed: Duration,
    /// Workers that ran out of bookable dates on all their listings before the end.
    pub exhausted_workers: usize,
}

impl Outcome {
    pub fn requests(&self) -> u64 {
        self.created + self.conflicts + self.other
    }

    pub fn bookings_per_second(&self) -> f64 {
        self.created as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Nearest-rank percentile of the sorted latencies, in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let n = self.latencies_us.len();
        if n == 0 {
            return 0.0;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.latencies_us[rank.clamp(1, n) - 1] as f64 / 1000.0
    }

    fn merge(&mut self, w: Outcome) {
        self.created += w.created;
        self.conflicts += w.conflicts;
        self.other += w.other;
        self.other_example = self.other_example.take().or(w.other_example);
        self.transport_errors += w.transport_errors;
        self.transport_example = self.transport_example.take().or(w.transport_example);
        self.latencies_us.extend(w.latencies_us);
        self.exhausted_workers += w.exhausted_workers;
    }
}

/// One listing's calendar as a worker walks it.
struct Calendar {
    listing_id: Uuid,
    next_check_in: NaiveDate,
}

/// `tokens.len()` workers POST bookings for `duration`. Worker `w` owns listings `w`, `w + C`,
/// `w + 2C`, … and visits them in turn, each with its own date cursor starting at `first_day`
/// and moving to the previous stay's check-out, so no two requests ask for the same night.
/// A listing whose cursor passes `today + 730 days` is dropped from the worker's round.
pub async fn book(
    client: &Client,
    base_url: &str,
    workers: usize,
    guests: &crate::server::Guests,
    listings: &[Uuid],
    today: NaiveDate,
    duration: Duration,
) -> Result<Outcome> {
    anyhow::ensure!(
        listings.len() >= workers,
        "need at least as many listings as workers"
    );
    let first_day = today + Days::days(1);
    let last_check_in = today + Days::days(HORIZON_DAYS);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for w in 0..workers {
        let guests = guests.clone();
        let mut calendars: Vec<Calendar> = listings
            .iter()
            .skip(w)
            .step_by(workers)
            .map(|&listing_id| Calendar {
                listing_id,
                next_check_in: first_day,
            })
            .collect();
        let client = client.clone();
        let url = format!("{base_url}/api/v1/bookings");
        tasks.spawn(async move {
            let mut out = Outcome::default();
            let mut turn = 0usize;
            let mut seq = 0u64;
            while Instant::now() < deadline {
                if calendars.is_empty() {
                    out.exhausted_workers = 1;
                    break;
                }
                let i = turn % calendars.len();
                let check_in = calendars[i].next_check_in;
                if check_in > last_check_in {
                    calendars.swap_remove(i);
                    continue;
                }
                turn += 1;
                let nights = 1 + (seq % 3) as i64;
                seq += 1;
                let check_out = check_in + Days::days(nights);
                calendars[i].next_check_in = check_out;
                let body = json!({
                    "listing_id": calendars[i].listing_id,
                    "check_in": check_in,
                    "check_out": check_out,
                    "guests": 2,
                });
                let token = guests.fresh();
                let sent = Instant::now();
                let answer = match client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(res) => {
                        let status = res.status();
                        res.bytes().await.map(|b| (status, b))
                    }
                    Err(e) => Err(e),
                };
                match answer {
                    Ok((status, body)) => {
                        let us = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
                        out.latencies_us.push(us);
                        match status {
                            StatusCode::CREATED => out.created += 1,
                            StatusCode::CONFLICT => out.conflicts += 1,
                            _ => {
                                out.other += 1;
                                if out.other_example.is_none() {
                                    out.other_example = Some(format!(
                                        "{status}: {}",
                                        clip(&String::from_utf8_lossy(&body))
                                    ));
                                }
                            }
                        }
                    }
                    Err(e) => {
                        out.transport_errors += 1;
                        if out.transport_example.is_none() {
                            out.transport_example = Some(e.to_string());
                        }
                    }
                }
            }
            out
        });
    }
    let mut total = Outcome::default();
    while let Some(done) = tasks.join_next().await {
        total.merge(done.context("a booking worker panicked")?);
    }
    total.elapsed = started.elapsed();
    total.latencies_us.sort_unstable();
    Ok(total)
}

fn clip(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
