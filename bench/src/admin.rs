//! `zhilego-bench admin`: an admin's phone search among many users (goal: p99 < 10 ms among
//! 50,000), per backend.
//!
//! The service (a separate process on a scratch store) gets `--users` users through the API,
//! each giving a phone number in their profile (`PATCH /api/v1/users/me`: sealed in the event,
//! HMAC'd into the blind index), from `--concurrency` workers. Once the user directory has
//! them all, `--searches` searches by exact number (`GET /api/v1/users?phone=…`, a random
//! user's number each time, written as a person types it) run one after another; each must
//! find exactly that user. The anchors, measured in the same run on the same connection:
//! `GET /healthz` (the HTTP round trip, the floor) and `GET /api/v1/users?limit=1` (a page of
//! the directory without the index).
use crate::harness::{self, Backend, Outcome, Scratch};
use crate::report::{latency_line, ms, pct, per_second, verdict, Report, Section};
use crate::{zhilego_binary, Common};
use anyhow::{bail, Context, Result};
use futures::StreamExt;
use std::path::Path;
use std::time::{Duration, Instant};
use uuid::Uuid;

const GOAL_P99_MS: f64 = 10.0;

#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    /// Users with a phone number in the store.
    #[arg(long, default_value_t = 50_000)]
    users: usize,
    /// Phone searches measured (one after another).
    #[arg(long, default_value_t = 2_000)]
    searches: usize,
    /// Workers giving the users their profiles.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// One backend only (default: both).
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    #[command(flatten)]
    common: Common,
}

/// The phone number of the `i`-th user: `+7700` and seven digits.
fn phone(i: usize) -> String {
    format!("+7700{:07}", i)
}

/// The same number as a person types it: `8 (700) 000-00-42`.
fn typed(i: usize) -> String {
    let d = format!("700{:07}", i);
    format!("8 ({}) {}-{}-{}", &d[..3], &d[3..6], &d[6..8], &d[8..])
}

pub async fn run(args: AdminArgs) -> Result<()> {
    anyhow::ensure!(
        args.users > 0 && args.searches > 0,
        "--users and --searches must be positive"
    );
    let bin = zhilego_binary(args.common.zhilego_bin.as_deref())?;
    let mut report = Report::new("admin benchmark (phone search)");
    report.line(format!(
        "service: {} (separate process, rate limit off); {} users with a phone, given by {} workers; \
         {} searches by exact phone one after another; anchors: GET /healthz and GET /api/v1/users?limit=1",
        bin.display(),
        args.users,
        args.concurrency,
        args.searches
    ));
    let out = args.common.out.as_deref();
    harness::each_backend(report, "admin.txt", out, args.backend, |backend| {
        let (args, bin) = (&args, &bin);
        async move { run_backend(args, bin, backend).await }
    })
    .await
}

async fn run_backend(args: &AdminArgs, bin: &Path, backend: Backend) -> Result<Outcome<Section>> {
    let may_skip = args.backend != Some(Backend::Postgres);
    let mut scratch =
        match Scratch::create("admin", backend, &args.common.pg_admin_url, may_skip).await? {
            Outcome::Measured(s) => s,
            Outcome::Skipped(why) => return Ok(Outcome::Skipped(why)),
        };
    let measured = measure(args, bin, backend, &scratch).await;
    let mut warnings: Vec<String> = scratch.drop_database().await.into_iter().collect();
    let section = measured.map_err(|e| scratch.kept(e))?;
    warnings.extend(scratch.remove_files(false));
    let mut section = section;
    for w in warnings {
        section.row("warning:", w);
    }
    Ok(Outcome::Measured(section))
}

async fn measure(
    args: &AdminArgs,
    bin: &Path,
    backend: Backend,
    scratch: &Scratch,
) -> Result<Section> {
    let server = harness::start(
        bin,
        scratch.env.clone(),
        scratch.log(),
        None,
        "giving users their phones",
    )
    .await?;
    let result = exercise(args, &server, backend, &scratch.store).await;
    let stopped = harness::stop(server).await;
    let mut section =
        result.with_context(|| format!("service log: {}", scratch.log().display()))?;
    section.row("service:", &stopped.how);
    Ok(section)
}

async fn exercise(
    args: &AdminArgs,
    server: &crate::server::Server,
    backend: Backend,
    store: &str,
) -> Result<Section> {
    let secret = server
        .env()
        .iter()
        .find(|(k, _)| k == "ZHILEGO_JWT_SECRET")
        .map(|(_, v)| v.clone())
        .context("the service runs without ZHILEGO_JWT_SECRET")?;
    let keys = api::tokens::JwtKeys::new(secret.as_bytes());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .timeout(Duration::from_secs(60))
        .build()?;
    let base = server.base_url.clone();

    // The users, each with their number.
    let ids: Vec<Uuid> = (0..args.users).map(|_| Uuid::new_v4()).collect();
    let started = Instant::now();
    let mut positions = futures::stream::iter(ids.iter().enumerate().map(|(i, id)| {
        let token = keys.mint(*id, domain::Role::Guest, chrono::Duration::hours(2));
        let (client, base) = (client.clone(), base.clone());
        async move {
            let res = client
                .patch(format!("{base}/api/v1/users/me"))
                .bearer_auth(token)
                .json(&serde_json::json!({"phone": phone(i)}))
                .send()
                .await?;
            let status = res.status();
            let body: serde_json::Value = res.json().await?;
            if !status.is_success() {
                bail!("PATCH /users/me: {status} {body}");
            }
            Ok::<i64, anyhow::Error>(body["position"].as_i64().unwrap_or(0))
        }
    }))
    .buffer_unordered(args.concurrency);
    let mut last = 0;
    while let Some(p) = positions.next().await {
        last = last.max(p?);
    }
    let seeding = started.elapsed();
    let admin = server.token("admin", Uuid::new_v4()).await?;
    // The directory has every user before the searches start.
    let caught_up = Instant::now();
    loop {
        let res = client
            .get(format!("{base}/api/v1/users?limit=1&min_position={last}"))
            .bearer_auth(&admin)
            .send()
            .await?;
        if res.status().is_success() {
            break;
        }
        if caught_up.elapsed() > Duration::from_secs(300) {
            bail!(
                "the user directory did not reach position {last}: {}",
                res.status()
            );
        }
    }
    let lag = caught_up.elapsed();

    let time = |path: String| {
        let (client, admin) = (client.clone(), admin.clone());
        async move {
            let t = Instant::now();
            let res = client.get(path).bearer_auth(admin).send().await?;
            let status = res.status();
            let body: serde_json::Value = res.json().await?;
            let us = t.elapsed().as_micros() as u64;
            if !status.is_success() {
                bail!("{status} {body}");
            }
            Ok::<(u64, serde_json::Value), anyhow::Error>((us, body))
        }
    };
    let pick = |n: usize| (n.wrapping_mul(2_654_435_761) ^ (n >> 3)) % args.users;
    // Warm-up, then the searches, each checked.
    for n in 0..100.min(args.searches) {
        time(format!(
            "{base}/api/v1/users?phone={}",
            urlencoded(&typed(pick(n)))
        ))
        .await?;
    }
    let mut search_us = Vec::with_capacity(args.searches);
    for n in 0..args.searches {
        let i = pick(n + 7);
        let (us, body) = time(format!(
            "{base}/api/v1/users?phone={}",
            urlencoded(&typed(i))
        ))
        .await?;
        let items = body["items"].as_array().context("no items")?;
        if items.len() != 1 || items[0]["id"] != ids[i].to_string() {
            bail!(
                "searching {} found {body} instead of user {}",
                typed(i),
                ids[i]
            );
        }
        search_us.push(us);
    }
    let mut health_us = Vec::with_capacity(args.searches);
    let mut page_us = Vec::with_capacity(args.searches);
    for _ in 0..args.searches {
        let t = Instant::now();
        let res = client.get(format!("{base}/healthz")).send().await?;
        anyhow::ensure!(res.status().is_success(), "healthz: {}", res.status());
        res.bytes().await?;
        health_us.push(t.elapsed().as_micros() as u64);
        page_us.push(time(format!("{base}/api/v1/users?limit=1")).await?.0);
    }
    for v in [&mut search_us, &mut health_us, &mut page_us] {
        v.sort_unstable();
    }
    let p99 = ms(pct(&search_us, 99.0));
    let mut s = Section::new(backend.name(), store, 26);
    s.row(
        "users given a phone:",
        format!(
            "{} in {:.1} s ({:.0}/s); directory caught up {:.1} s later",
            args.users,
            seeding.as_secs_f64(),
            per_second(args.users, seeding),
            lag.as_secs_f64()
        ),
    );
    s.row("phone search:", latency_line(&search_us));
    s.row("anchor GET /healthz:", latency_line(&health_us));
    s.row("anchor users?limit=1:", latency_line(&page_us));
    s.row(
        "goal p99 < 10 ms:",
        format!("{p99:.1} ms, {}", verdict(p99 < GOAL_P99_MS)),
    );
    Ok(s)
}

fn urlencoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_numbers_are_the_seeded_ones() {
        let i = 42;
        let parsed = domain::user::PhoneNumber::parse(&typed(i)).unwrap();
        assert_eq!(parsed.as_str(), phone(i));
    }
}
