//! `zhilego-bench relay`: how fast the store → JetStream relay publishes a large backlog.
//!
//! Over a seeded store (`--database-url`; without it a scratch store seeded with the `seed`
//! defaults, about 225,000 events, dropped afterwards) the bench creates a fresh JetStream
//! stream (`ZHILEGO_BENCH_<id>`, subjects `bench_<id>.>`) and a fresh relay checkpoint
//! (`bench_<id>`, so it starts from zero), then calls `bus::Relay::relay_once` in a loop — in
//! this process, as `zhilego relay` does — until a call publishes nothing. Each call publishes
//! one batch (`--batch`, the service's 2,000) inside one PostgreSQL transaction and awaits every
//! JetStream acknowledgement before it moves the checkpoint.
//!
//! Reported: events, time, events/s (goal ≥ 50,000), the stream's message count afterwards
//! (it must equal the events), and the CPU split between this process (the relay),
//! `nats-server` and PostgreSQL. The stream and the checkpoint row are deleted afterwards.
use crate::harness::{self, seeded_store};
use crate::report::{verdict, Report};
use crate::{cpu, Common};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use store::Database;

const GOAL_EVENTS_PER_SECOND: f64 = 50_000.0;

#[derive(clap::Args, Debug)]
pub struct RelayArgs {
    /// A seeded store (at least 200,000 events for a meaningful figure). Default: a scratch
    /// store seeded with the `seed` defaults, dropped afterwards.
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Events per `relay_once` call (the service uses 1,000).
    #[arg(long, default_value_t = 2000)]
    batch: i64,
    #[command(flatten)]
    common: Common,
}

pub async fn run(args: RelayArgs) -> Result<()> {
    let (url, scratch) = seeded_store(args.database_url.as_deref(), &args.common).await?;
    let result = measure(&args, &url).await;
    harness::drop_seeded(&args.common, scratch).await;
    result?.publish("relay.txt", args.common.out.as_deref())
}

async fn measure(args: &RelayArgs, url: &str) -> Result<Report> {
    let db = Database::connect(url, 4)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let total = store::history::event_count(&db).await?;
    if total < 200_000 {
        eprintln!("warning: the store holds only {total} events (the bench wants >= 200,000)");
    }
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let config = bus::RelayConfig {
        name: format!("bench_{id}"),
        stream: format!("ZHILEGO_BENCH_{}", id.to_uppercase()),
        subject_prefix: format!("bench_{id}"),
        batch: args.batch,
        ..Default::default()
    };
    let nats = async_nats::connect(&args.nats_url)
        .await
        .with_context(|| format!("connecting to NATS at {}", args.nats_url))?;
    let result = relay_all(&db, nats.clone(), config.clone(), total).await;
    // Clean up whatever happened.
    let js = async_nats::jetstream::new(nats);
    let messages = match js.get_stream(&config.stream).await {
        Ok(mut stream) => stream.info().await.map(|i| i.state.messages).ok(),
        Err(_) => None,
    };
    let mut warnings = Vec::new();
    if let Err(e) = js.delete_stream(&config.stream).await {
        warnings.push(format!("could not delete stream {}: {e}", config.stream));
    }
    if let Database::Postgres(pool) = &db {
        if let Err(e) = sqlx::query("DELETE FROM relay_checkpoints WHERE name = $1")
            .bind(&config.name)
            .execute(pool)
            .await
        {
            warnings.push(format!(
                "could not delete relay checkpoint {}: {e}",
                config.name
            ));
        }
    }
    db.close().await;
    let run = result?;

    let rate = run.events as f64 / run.elapsed.as_secs_f64().max(1e-9);
    let mut s = Report::new("relay benchmark");
    let _ = writeln!(s, "store: {url} ({total} events)");
    let _ = writeln!(
        s,
        "bus: {} stream {} (fresh, file storage), relay checkpoint {} from zero, batch {}",
        args.nats_url, config.stream, config.name, config.batch
    );
    let _ = writeln!(
        s,
        "  relayed:    {} events in {} relay_once calls, {:.1} s",
        run.events,
        run.calls,
        run.elapsed.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "  batch time: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms per relay_once",
        run.batch_ms(50.0),
        run.batch_ms(99.0),
        run.batch_ms(100.0)
    );
    let _ = writeln!(
        s,
        "  stream:     {} messages after the run",
        messages.map_or("?".to_string(), |m| m.to_string())
    );
    let _ = writeln!(s, "  CPU:        {}", run.cpu.line());
    let _ = writeln!(
        s,
        "  goal:       {rate:.0} events/s (goal >= {GOAL_EVENTS_PER_SECOND:.0}): {}",
        verdict(rate >= GOAL_EVENTS_PER_SECOND)
    );
    for w in warnings {
        let _ = writeln!(s, "  warning:    {w}");
    }
    Ok(s)
}

struct RelayRun {
    events: u64,
    calls: u64,
    elapsed: Duration,
    /// Duration of each call that published something, microseconds, sorted.
    batch_us: Vec<u64>,
    cpu: cpu::Split,
}

impl RelayRun {
    fn batch_ms(&self, p: f64) -> f64 {
        let n = self.batch_us.len();
        if n == 0 {
            return 0.0;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.batch_us[rank.clamp(1, n) - 1] as f64 / 1000.0
    }
}

async fn relay_all(
    db: &Database,
    nats: async_nats::Client,
    config: bus::RelayConfig,
    total: i64,
) -> Result<RelayRun> {
    let relay = bus::Relay::new(db.clone(), nats, config)
        .await
        .context("creating the relay and its stream")?;
    let bar = indicatif::ProgressBar::new(total.max(0) as u64);
    let before = cpu::Sample::take();
    let started = Instant::now();
    let mut run = RelayRun {
        events: 0,
        calls: 0,
        elapsed: Duration::ZERO,
        batch_us: Vec::new(),
        cpu: cpu::Split::default(),
    };
    let mut last_log = Instant::now();
    loop {
        let t = Instant::now();
        let n = relay.relay_once().await.context("relay_once")?;
        run.calls += 1;
        if n == 0 {
            break;
        }
        run.batch_us.push(t.elapsed().as_micros() as u64);
        run.events += n as u64;
        bar.inc(n as u64);
        if last_log.elapsed() > Duration::from_secs(5) {
            last_log = Instant::now();
            eprintln!(
                "   {} events after {:.1} s",
                run.events,
                started.elapsed().as_secs_f64()
            );
        }
    }
    run.elapsed = started.elapsed();
    run.cpu = cpu::Sample::take().since(&before);
    bar.finish_and_clear();
    run.batch_us.sort_unstable();
    Ok(run)
}
