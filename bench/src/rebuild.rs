//! `zhilego-bench rebuild`: how fast the projections are rebuilt from a large store.
//!
//! The store (`--database-url`, else a scratch store seeded with the `seed` defaults and
//! dropped afterwards) is first brought to at least `--min-events` events (1,000,000) with the
//! seed's bulk mode (well-formed, hash-chained events written straight into `events`). Then the
//! bench times `zhilego projections rebuild all` as a separate process with production settings
//! (read models in `<store>_read`): one scan of the store, each event decoded once and folded
//! by every projection, then each projection's fresh tables are written and swapped in.
//! Reported per projection: events and events/s as the command prints them (the time from the
//! start until that projection was swapped in), and `all` (until the last one was; goal ≥
//! 100,000 events/s for each), the command's split of the time (scan and folds, writes,
//! swaps), the wall time of the whole command, and the CPU split between `zhilego` and
//! PostgreSQL. Anchor, measured just before: one PostgreSQL scan reading every payload and
//! metadata as text (`SELECT sum(length(…))`), events/s.
use crate::harness::{self, seeded_store};
use crate::report::Report;
use crate::{cpu, seed, server, zhilego_binary, Common};
use anyhow::{bail, Context, Result};
use sqlx::Connection;
use std::fmt::Write as _;
use std::process::Stdio;
use std::time::Instant;
use store::Database;
use tokio::io::AsyncReadExt;

const GOAL_EVENTS_PER_SECOND: f64 = 100_000.0;

#[derive(clap::Args, Debug)]
pub struct RebuildArgs {
    /// The store. Default: a scratch store seeded with the `seed` defaults, dropped afterwards.
    #[arg(long)]
    database_url: Option<String>,
    /// Top the store up with bulk events to at least this many first.
    #[arg(long, default_value_t = 1_000_000)]
    min_events: u64,
    /// Share of the bulk stays written as confirmed (nights sold for the analytics).
    #[arg(long, default_value_t = 0.0)]
    confirm_share: f64,
    #[command(flatten)]
    common: Common,
}

pub async fn run(args: RebuildArgs) -> Result<()> {
    let bin = zhilego_binary(args.common.zhilego_bin.as_deref())?;
    let (url, scratch) = seeded_store(args.database_url.as_deref(), &args.common).await?;
    let result = measure(&args, &bin, &url).await;
    harness::drop_seeded(&args.common, scratch).await;
    result?.publish("rebuild.txt", args.common.out.as_deref())
}

/// One line of `projections rebuild`: `NAME: rebuilt from N events in S s (R events/s) …`.
#[derive(Debug, PartialEq)]
struct Rebuilt {
    name: String,
    events: u64,
    seconds: f64,
    rate: f64,
}

fn parse_line(line: &str) -> Option<Rebuilt> {
    let (name, rest) = line.split_once(": rebuilt from ")?;
    let (events, rest) = rest.split_once(" events in ")?;
    let (seconds, rest) = rest.split_once(" s (")?;
    let (rate, _) = rest.split_once(" events/s")?;
    Some(Rebuilt {
        name: name.trim().to_string(),
        events: events.trim().parse().ok()?,
        seconds: seconds.trim().parse().ok()?,
        rate: rate.trim().parse().ok()?,
    })
}

async fn measure(args: &RebuildArgs, bin: &std::path::Path, url: &str) -> Result<Report> {
    let db = Database::connect(url, 2).await?;
    let have = store::history::event_count(&db).await? as u64;
    db.close().await;
    let mut topped = None;
    if have < args.min_events {
        eprintln!(
            "== the store holds {have} events: bulk-writing up to {}",
            args.min_events
        );
        let options = seed::SeedOptions {
            listings: 0,
            bookings: 0,
            total_events: Some(args.min_events),
            confirm_share: args.confirm_share,
            ..seed::SeedOptions::default()
        };
        topped = Some(seed::seed(url, &options).await?);
    }
    // The anchor: one PostgreSQL scan of everything the rebuild reads, as text.
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let scan_started = Instant::now();
    let _: Option<i64> = sqlx::query_scalar(
        "SELECT sum(length(payload::text) + length(metadata::text))::bigint FROM events",
    )
    .fetch_one(&mut conn)
    .await?;
    let scan = scan_started.elapsed();
    conn.close().await?;
    let env = server::production_env(url);
    eprintln!("== zhilego projections rebuild all");
    let started = Instant::now();
    let mut child = server::command(bin, &env)
        .args(["projections", "rebuild", "all"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running `zhilego projections rebuild all`")?;
    let mut stdout_pipe = child.stdout.take().context("no stdout")?;
    let mut stderr_pipe = child.stderr.take().context("no stderr")?;
    let read_out = tokio::spawn(async move {
        let mut text = String::new();
        stdout_pipe.read_to_string(&mut text).await.map(|_| text)
    });
    let read_err = tokio::spawn(async move {
        let mut text = String::new();
        stderr_pipe.read_to_string(&mut text).await.map(|_| text)
    });
    let (status, cpu) = cpu::while_running(&mut child).await?;
    let wall = started.elapsed();
    let stdout = read_out.await??;
    let stderr = read_err.await??;
    if !status.success() {
        bail!("`zhilego projections rebuild all` failed ({status}): {stdout}{stderr}");
    }
    eprint!("{stdout}");
    let lines: Vec<Rebuilt> = stdout.lines().filter_map(parse_line).collect();
    anyhow::ensure!(
        lines.len() >= 4 && lines.iter().any(|r| r.name == "analytics"),
        "expected a `rebuilt from` line per projection, analytics among them:\n{stdout}"
    );

    let mut s = Report::new("projection-rebuild benchmark");
    let _ = writeln!(s, "store: {url} ({} events)", lines[0].events);
    if let Some(r) = topped {
        let _ = writeln!(
            s,
            "  bulk seed:  {} events written straight into `events` in {:.1} s ({:.0} events/s), from {have}",
            r.bulk_events,
            r.bulk_time.as_secs_f64(),
            r.bulk_events as f64 / r.bulk_time.as_secs_f64().max(1e-9)
        );
    }
    let _ = writeln!(
        s,
        "command: {} projections rebuild all (separate process, production settings)",
        bin.display()
    );
    for r in &lines {
        let _ = writeln!(
            s,
            "  {:<13} {} events in {:.1} s: {:.0} events/s",
            r.name, r.events, r.seconds, r.rate,
        );
    }
    // The command's own split of the shared scan's time.
    if let Some(split) = stdout
        .lines()
        .find(|l| l.starts_with("all: "))
        .and_then(|l| l.split_once("(one scan: "))
    {
        let _ = writeln!(s, "  one scan:   {}", split.1.trim_end_matches(')'));
    }
    let _ = writeln!(
        s,
        "  wall:       {:.1} s for all {} (process start and connections included)",
        wall.as_secs_f64(),
        lines.iter().filter(|r| r.name != "all").count()
    );
    let _ = writeln!(s, "  CPU:        {}", cpu.line());
    let scan_rate = lines[0].events as f64 / scan.as_secs_f64().max(1e-9);
    let _ = writeln!(
        s,
        "  anchor:     one PostgreSQL scan of every payload and metadata as text: {:.1} s = {scan_rate:.0} events/s",
        scan.as_secs_f64(),
    );
    for r in &lines {
        s.goal(
            &format!("rebuild {}", r.name),
            format!("{:.0} events/s", r.rate),
            format!(">= {GOAL_EVENTS_PER_SECOND:.0} events/s"),
            format!("text scan {scan_rate:.0} events/s"),
            r.rate >= GOAL_EVENTS_PER_SECOND,
        );
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuild_lines_are_read() {
        let r = parse_line(
            "availability: rebuilt from 1000123 events in 8.2 s (121966 events/s) and swapped in",
        )
        .unwrap();
        assert_eq!(
            r,
            Rebuilt {
                name: "availability".into(),
                events: 1_000_123,
                seconds: 8.2,
                rate: 121_966.0
            }
        );
        assert!(parse_line("something else").is_none());
    }
}
