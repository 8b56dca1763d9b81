//! `zhilego-bench search`: read throughput of the availability search and the catalogue, in
//! embedded mode (SQLite, in-process bus) and in production mode (PostgreSQL), each next to an
//! empty handler measured in the same run.
//!
//! For each mode (`--backend sqlite|postgres`, default both, embedded first) the bench:
//!
//! 1. takes a seeded store — production: `--database-url` (e.g. from `zhilego-bench seed`);
//!    embedded: `--data-dir` (e.g. seeded by `zhilego-bench seed --database-url
//!    sqlite://DIR/zhilego.db`); without one, a scratch store seeded with the `seed` defaults
//!    (5,000 listings, 100,000 bookings through `commands::Commands`, the same data shape on
//!    both backends) and removed afterwards;
//! 2. builds the read models with `zhilego projections rebuild all` (a separate process, as an
//!    operator would before starting the service), so that the service's memory figures are
//!    its own serving, not a one-off build;
//! 3. starts a release `zhilego serve` (random JWT secret and master key, rate limit off, the
//!    in-process bus) and waits until `zhilego projections status --json` shows every
//!    projection 0 events behind;
//! 4. runs `wrk -t2 -c64 --latency` against, in turn: the anchor, an empty axum handler
//!    (`GET /` → 200, no body) served by the bench itself on a runtime of two worker threads
//!    (as many as the service has here) — what wrk, loopback and hyper give with no work
//!    behind them; `GET /healthz` of the service (its whole middleware stack, no work);
//!    `GET /api/v1/availability` with a random city (of the ten seeded), check-in (tomorrow …
//!    +330 days), 1–7 nights and 1–4 guests; `GET /api/v1/listings?city=` with a random city;
//! 5. samples `/proc` inside each run for the CPU split between the service, PostgreSQL, wrk
//!    and the bench, and reads the service's peak RSS (VmHWM) after each phase.
//!
//! Reported per mode, each next to its goal: availability requests/s and p99, and its ratio
//! to the empty handler (goal ≥ 0.2, p99 < 25 ms); the catalogue (goal ≥ 10,000 requests/s,
//! p99 < 25 ms); peak RSS (goal < 150 MB). `wrk` is installed with `apt-get install -y wrk`
//! when it is not on PATH.
use crate::harness::{self, rss_rows, seeded_store, Backend};
use crate::report::{Report, Section};
use crate::server::{self, Memory, Server};
use crate::{cpu, seed, zhilego_binary, Common};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Availability search against the empty handler of the same run.
const GOAL_RATIO: f64 = 0.2;
const GOAL_CATALOGUE_RPS: f64 = 10_000.0;
const GOAL_P99_MS: f64 = 25.0;

#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// A seeded PostgreSQL store for production mode. Default: a scratch database seeded with
    /// the `seed` defaults, dropped afterwards.
    #[arg(long)]
    database_url: Option<String>,
    /// A seeded embedded data directory (its store is `zhilego.db` in it). Default: a scratch
    /// one seeded with the `seed` defaults, removed afterwards.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Only this backend: `sqlite` (embedded mode) or `postgres` (production mode).
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Length of the availability run.
    #[arg(long, default_value_t = 20)]
    seconds: u32,
    /// Length of the catalogue (`GET /api/v1/listings?city=`) run; 0 skips it.
    #[arg(long, default_value_t = 10)]
    listings_seconds: u32,
    /// Length of each anchor run (the empty handler, `/healthz`).
    #[arg(long, default_value_t = 10)]
    anchor_seconds: u32,
    /// Extra setting for the service, e.g. `ZHILEGO_DB_MAX_CONNECTIONS=40` (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::booking::parse_key_value)]
    server_env: Vec<(String, String)>,
    #[command(flatten)]
    common: Common,
}

/// What one wrk run printed.
#[derive(Debug, Default, Clone)]
pub struct Wrk {
    pub requests: u64,
    pub seconds: f64,
    pub rps: f64,
    /// (percentile, milliseconds) from `--latency`.
    pub percentiles: Vec<(f64, f64)>,
    pub non_2xx: u64,
    pub socket_errors: String,
}

impl Wrk {
    pub fn percentile(&self, p: f64) -> f64 {
        self.percentiles
            .iter()
            .find(|(q, _)| (*q - p).abs() < 1e-9)
            .map_or(f64::NAN, |(_, ms)| *ms)
    }
}

pub async fn run(args: SearchArgs) -> Result<()> {
    let wrk = ensure_wrk().await?;
    let bin = zhilego_binary(args.common.zhilego_bin.as_deref())?;
    let anchor = EmptyHandler::start()?;
    let mut report = Report::new("search benchmark");
    report.line(format!(
        "service: {} serve (separate process, in-process bus, rate limit off); wrk -t{} -c{}",
        bin.display(),
        args.threads,
        args.connections
    ));
    report.line(format!(
        "anchor: an empty axum handler (GET / -> 200, no body) served by the bench at {} on \
         its own runtime of 2 worker threads, measured in each mode's run",
        anchor.base_url
    ));
    report.settings(&args.server_env);
    let out = args.common.out.clone();
    harness::each_backend(
        report,
        "search.txt",
        out.as_deref(),
        args.backend,
        |backend| {
            let (args, bin, wrk, anchor) = (&args, &bin, &wrk, &anchor);
            async move {
                Ok(harness::Outcome::Measured(
                    mode(args, bin, wrk, anchor, backend).await?,
                ))
            }
        },
    )
    .await
}

/// The empty handler: an axum router with one route that does nothing, on a runtime of its
/// own (two worker threads in a thread of the bench), until dropped.
struct EmptyHandler {
    base_url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl EmptyHandler {
    fn start() -> Result<EmptyHandler> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("empty-handler")
            .enable_all()
            .build()
            .context("the empty handler's runtime")?;
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let app = axum::Router::new().route("/", axum::routing::get(|| async {}));
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            })
        });
        Ok(EmptyHandler {
            base_url: format!("http://{addr}"),
            _stop: stop,
        })
    }
}

/// One mode's store: where it is, the service's settings for it, and what to remove after.
struct ModeStore {
    env: Vec<(String, String)>,
    store: String,
    /// A scratch PostgreSQL database to drop, or a scratch directory to remove.
    scratch_db: Option<String>,
    scratch_dir: Option<PathBuf>,
}

async fn mode_store(args: &SearchArgs, backend: Backend) -> Result<ModeStore> {
    match backend {
        Backend::Postgres => {
            let (url, scratch_db) =
                seeded_store(args.database_url.as_deref(), &args.common).await?;
            Ok(ModeStore {
                env: server::production_env(&url),
                store: format!("PostgreSQL {url} (read models in its `_read` database)"),
                scratch_db,
                scratch_dir: None,
            })
        }
        Backend::Sqlite => {
            let (dir, scratch_dir) = match &args.data_dir {
                Some(dir) => (dir.clone(), None),
                None => {
                    let dir = harness::work_dir("search-embedded")?;
                    let url = format!("sqlite://{}", dir.join("zhilego.db").display());
                    eprintln!("== no --data-dir: seeding a scratch embedded store {url}");
                    if let Err(e) = seed::seed(&url, &seed::SeedOptions::default()).await {
                        let _ = std::fs::remove_dir_all(&dir);
                        return Err(e);
                    }
                    (dir.clone(), Some(dir))
                }
            };
            anyhow::ensure!(
                dir.join("zhilego.db").is_file(),
                "no zhilego.db in {}: seed it with `zhilego-bench seed --database-url sqlite://{}/zhilego.db`",
                dir.display(),
                dir.display()
            );
            Ok(ModeStore {
                env: harness::embedded_env(&dir),
                store: format!(
                    "embedded SQLite {} (read models in the same file)",
                    dir.join("zhilego.db").display()
                ),
                scratch_db: None,
                scratch_dir,
            })
        }
    }
}

async fn mode(
    args: &SearchArgs,
    bin: &Path,
    wrk: &Path,
    anchor: &EmptyHandler,
    backend: Backend,
) -> Result<Section> {
    let store = mode_store(args, backend).await?;
    let result = measure(args, bin, wrk, anchor, backend, &store).await;
    harness::drop_seeded(&args.common, store.scratch_db.clone()).await;
    if let Some(dir) = &store.scratch_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// The runs of one mode, in order.
struct Runs {
    empty: (Wrk, cpu::Split),
    healthz: (Wrk, cpu::Split),
    availability: (Wrk, cpu::Split),
    catalogue: Option<(Wrk, cpu::Split)>,
    memory: Vec<(&'static str, Memory)>,
    rebuilt: Duration,
    caught_up: Duration,
    applied: String,
    probe: String,
}

async fn measure(
    args: &SearchArgs,
    bin: &Path,
    wrk: &Path,
    anchor: &EmptyHandler,
    backend: Backend,
    store: &ModeStore,
) -> Result<Section> {
    let work = harness::work_dir("search")?;
    let mut env = store.env.clone();
    env.extend(args.server_env.iter().cloned());
    eprintln!("== {}: zhilego projections rebuild all", backend.name());
    let started = Instant::now();
    let rebuild = server::command(bin, &env)
        .args(["projections", "rebuild", "all"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("running `zhilego projections rebuild all`")?;
    anyhow::ensure!(
        rebuild.status.success(),
        "`zhilego projections rebuild all` failed ({}): {}",
        rebuild.status,
        String::from_utf8_lossy(&rebuild.stderr).trim()
    );
    let rebuilt = started.elapsed();
    let server = harness::start(
        bin,
        env.clone(),
        work.join("zhilego.log"),
        Some(Duration::from_secs(900)),
        "waiting for the read models",
    )
    .await?;
    let result = exercise(args, &server, wrk, anchor, &env, &work, rebuilt).await;
    let stopped = harness::stop(server).await;
    let runs = result?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(render(args, backend, store, &runs, &stopped))
}

async fn exercise(
    args: &SearchArgs,
    server: &Server,
    wrk: &Path,
    anchor: &EmptyHandler,
    env: &[(String, String)],
    work: &Path,
    rebuilt: Duration,
) -> Result<Runs> {
    let bin = zhilego_binary(args.common.zhilego_bin.as_deref())?;
    let (statuses, caught_up) = server::wait_caught_up(&bin, env, Duration::from_secs(900)).await?;
    let applied = statuses
        .iter()
        .map(|s| format!("{} at {} ({} applied)", s.name, s.position, s.applied))
        .collect::<Vec<_>>()
        .join(", ");
    let mut memory = vec![("started", server.memory()?)];

    let cities = seed::city_names();
    let today = crate::kz_today();
    let dates: Vec<String> = (0..=400)
        .map(|d| (today + chrono::Duration::days(d)).to_string())
        .collect();
    // One request by hand first: the script must ask for something that answers 200.
    let probe = format!(
        "{}/api/v1/availability?city={}&check_in={}&check_out={}&guests=2",
        server.base_url, cities[0], dates[30], dates[33]
    );
    let answer = reqwest::get(&probe).await?;
    let status = answer.status();
    let body: serde_json::Value = answer.json().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "{probe} answered {status}: {body}");
    let probe = format!(
        "{} items for {} {}..{} (2 guests)",
        body["items"].as_array().map_or(0, Vec::len),
        cities[0],
        dates[30],
        dates[33]
    );

    let seconds = args.anchor_seconds;
    eprintln!("== wrk -d{seconds}s: the empty handler");
    let empty = run_wrk(wrk, args, seconds, None, &format!("{}/", anchor.base_url)).await?;
    eprintln!("== wrk -d{seconds}s: GET /healthz");
    let healthz = run_wrk(
        wrk,
        args,
        seconds,
        None,
        &format!("{}/healthz", server.base_url),
    )
    .await?;

    let availability_lua = work.join("availability.lua");
    std::fs::write(&availability_lua, availability_script(&cities, &dates))?;
    eprintln!("== wrk -d{}s: GET /api/v1/availability", args.seconds);
    let availability = run_wrk(
        wrk,
        args,
        args.seconds,
        Some(&availability_lua),
        &format!("{}/", server.base_url),
    )
    .await?;
    memory.push(("availability", server.memory()?));

    let catalogue = if args.listings_seconds > 0 {
        let listings_lua = work.join("listings.lua");
        std::fs::write(&listings_lua, listings_script(&cities))?;
        eprintln!(
            "== wrk -d{}s: GET /api/v1/listings?city=",
            args.listings_seconds
        );
        let run = run_wrk(
            wrk,
            args,
            args.listings_seconds,
            Some(&listings_lua),
            &format!("{}/", server.base_url),
        )
        .await?;
        memory.push(("catalogue", server.memory()?));
        Some(run)
    } else {
        None
    };
    Ok(Runs {
        empty,
        healthz,
        availability,
        catalogue,
        memory,
        rebuilt,
        caught_up,
        applied,
        probe,
    })
}

fn render(
    args: &SearchArgs,
    backend: Backend,
    store: &ModeStore,
    runs: &Runs,
    stopped: &harness::Stopped,
) -> Section {
    let mode = match backend {
        Backend::Sqlite => "embedded",
        Backend::Postgres => "production",
    };
    let mut s = Section::new(&format!("{mode}: {}", backend.name()), &store.store, 14);
    s.row(
        "read models:",
        format!(
            "`projections rebuild all` {:.1} s; service caught up {:.1} s after start: {}",
            runs.rebuilt.as_secs_f64(),
            runs.caught_up.as_secs_f64(),
            runs.applied
        ),
    );
    s.row("probe:", &runs.probe);
    let empty = &runs.empty.0;
    wrk_rows(
        &mut s,
        &format!("empty handler (anchor), {} s", args.anchor_seconds),
        &runs.empty,
    );
    wrk_rows(
        &mut s,
        &format!(
            "GET /healthz (the service's stack), {} s",
            args.anchor_seconds
        ),
        &runs.healthz,
    );
    wrk_rows(
        &mut s,
        &format!(
            "availability, {} s, random city / check_in (+1..330 d) / 1-7 nights / 1-4 guests",
            args.seconds
        ),
        &runs.availability,
    );
    let a = &runs.availability.0;
    let ratio = a.rps / empty.rps.max(1e-9);
    let p99 = a.percentile(99.0);
    let anchor = format!("empty handler {:.0} req/s", empty.rps);
    s.goal(
        "availability search",
        format!("{:.0} req/s = {ratio:.3} x, p99 {p99:.1} ms", a.rps),
        format!(">= {GOAL_RATIO} x, p99 < {GOAL_P99_MS:.0} ms"),
        &anchor,
        ratio >= GOAL_RATIO && p99 < GOAL_P99_MS && a.non_2xx == 0,
    );
    if let Some(run) = &runs.catalogue {
        wrk_rows(
            &mut s,
            &format!(
                "catalogue, {} s, GET /api/v1/listings?city=<random>",
                args.listings_seconds
            ),
            run,
        );
        let c = &run.0;
        let p99 = c.percentile(99.0);
        s.goal(
            "catalogue search",
            format!(
                "{:.0} req/s = {:.3} x, p99 {p99:.1} ms",
                c.rps,
                c.rps / empty.rps.max(1e-9)
            ),
            format!(">= {GOAL_CATALOGUE_RPS:.0} req/s, p99 < {GOAL_P99_MS:.0} ms"),
            &anchor,
            c.rps >= GOAL_CATALOGUE_RPS && p99 < GOAL_P99_MS && c.non_2xx == 0,
        );
    }
    rss_rows(&mut s, &runs.memory, ":");
    s.row("service:", &stopped.how);
    if stopped.log_problems > 0 {
        s.row(
            "log:",
            format!(
                "{} WARN/ERROR lines; first: {}",
                stopped.log_problems,
                stopped.first_log_problem.as_deref().unwrap_or("")
            ),
        );
    }
    s
}

fn wrk_rows(s: &mut Section, title: &str, (w, cpu): &(Wrk, cpu::Split)) {
    s.row("", "");
    s.row(&format!("{title}:"), "");
    s.row(
        "requests:",
        format!(
            "{} in {:.1} s: {:.0} requests/s; non-2xx {}{}",
            w.requests,
            w.seconds,
            w.rps,
            w.non_2xx,
            if w.socket_errors.is_empty() {
                String::new()
            } else {
                format!("; socket errors: {}", w.socket_errors)
            }
        ),
    );
    s.row(
        "latency:",
        format!(
            "p50 {:.2} ms, p75 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
            w.percentile(50.0),
            w.percentile(75.0),
            w.percentile(90.0),
            w.percentile(99.0)
        ),
    );
    s.row("CPU:", cpu.line());
}

/// `wrk` for `seconds` against `url`, with `script` building the requests when given; its
/// figures and the CPU split sampled inside the run.
async fn run_wrk(
    wrk: &Path,
    args: &SearchArgs,
    seconds: u32,
    script: Option<&Path>,
    url: &str,
) -> Result<(Wrk, cpu::Split)> {
    let mut command = tokio::process::Command::new(wrk);
    command
        .arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{seconds}s"))
        .arg("--latency");
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let child = command
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running wrk")?;
    // Sample inside the run (wrk must still be alive to be counted): from 1 s in to 1 s
    // before its end.
    let margin = Duration::from_secs(1).min(Duration::from_secs(seconds as u64) / 4);
    tokio::time::sleep(margin).await;
    let before = cpu::Sample::take();
    tokio::time::sleep(Duration::from_secs(seconds as u64).saturating_sub(margin * 2)).await;
    let split = cpu::Sample::take().since(&before);
    let out = child.wait_with_output().await.context("waiting for wrk")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprint!("{stdout}");
    Ok((parse_wrk(&stdout)?, split))
}

/// A wrk duration (`812.00us`, `3.20ms`, `1.02s`, `2m`) in milliseconds.
fn wrk_ms(text: &str) -> Option<f64> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = t.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        "h" => n * 3_600_000.0,
        _ => return None,
    })
}

pub fn parse_wrk(out: &str) -> Result<Wrk> {
    let mut w = Wrk::default();
    let mut in_distribution = false;
    for line in out.lines() {
        let t = line.trim();
        if t.starts_with("Latency Distribution") {
            in_distribution = true;
            continue;
        }
        if in_distribution {
            if let Some((p, v)) = t.split_once('%') {
                if let (Ok(p), Some(ms)) = (p.trim().parse::<f64>(), wrk_ms(v)) {
                    w.percentiles.push((p, ms));
                    continue;
                }
            }
            in_distribution = false;
        }
        if let Some(rest) = t.strip_prefix("Requests/sec:") {
            w.rps = rest.trim().parse().unwrap_or(0.0);
        } else if let Some(rest) = t.strip_prefix("Non-2xx or 3xx responses:") {
            w.non_2xx = rest.trim().parse().unwrap_or(0);
        } else if let Some(rest) = t.strip_prefix("Socket errors:") {
            w.socket_errors = rest.trim().to_string();
        } else if let Some((n, rest)) = t.split_once(" requests in ") {
            w.requests = n.trim().parse().unwrap_or(0);
            w.seconds = rest
                .split(',')
                .next()
                .and_then(wrk_ms)
                .map_or(0.0, |ms| ms / 1000.0);
        }
    }
    anyhow::ensure!(w.rps > 0.0, "no `Requests/sec:` in wrk's output:\n{out}");
    Ok(w)
}

fn lua_list<T: AsRef<str>>(items: &[T]) -> String {
    items
        .iter()
        .map(|c| format!("\"{}\"", c.as_ref()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Each wrk thread seeds its own generator (thread number) and builds every request anew.
fn availability_script<T: AsRef<str>>(cities: &[&str], dates: &[T]) -> String {
    format!(
        r#"-- zhilego-bench search: random availability queries
local cities = {{{}}}
local dates = {{{}}}
local counter = 1
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  math.randomseed(id * 7919)
end
function request()
  local city = cities[math.random(#cities)]
  local i = math.random(2, 331)
  local nights = math.random(1, 7)
  local path = "/api/v1/availability?city=" .. city .. "&check_in=" .. dates[i]
    .. "&check_out=" .. dates[i + nights] .. "&guests=" .. math.random(1, 4)
  return wrk.format("GET", path)
end
"#,
        lua_list(cities),
        lua_list(dates)
    )
}

fn listings_script(cities: &[&str]) -> String {
    format!(
        r#"-- zhilego-bench search: catalogue by city
local cities = {{{}}}
local counter = 1
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  math.randomseed(id * 7919)
end
function request()
  return wrk.format("GET", "/api/v1/listings?city=" .. cities[math.random(#cities)])
end
"#,
        lua_list(cities)
    )
}

/// `wrk` from PATH; installed with `apt-get install -y wrk` (Debian package) when missing.
pub async fn ensure_wrk() -> Result<PathBuf> {
    if let Some(p) = on_path("wrk") {
        return Ok(p);
    }
    if on_path("apt-get").is_none() {
        bail!("wrk is not installed and there is no apt-get: install wrk (https://github.com/wg/wrk) and retry");
    }
    eprintln!("== wrk not found: apt-get install -y wrk");
    let install = || {
        std::process::Command::new("apt-get")
            .args(["install", "-y", "-q", "wrk"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    let ok = matches!(install(), Ok(s) if s.success());
    if !ok {
        let _ = std::process::Command::new("apt-get")
            .args(["update", "-q"])
            .status();
        let status = install().context("running apt-get")?;
        anyhow::ensure!(
            status.success(),
            "`apt-get install -y wrk` failed ({status}); install wrk by hand (as root)"
        );
    }
    on_path("wrk").context("wrk still not on PATH after apt-get install")
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_read() {
        let out = "Running 20s test @ http://127.0.0.1:1/\n  2 threads and 64 connections\n  \
            Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     3.20ms    1.00ms  \
            20.00ms   80.00%\n  Latency Distribution\n     50%  812.00us\n     75%    3.50ms\n     \
            90%    4.00ms\n     99%    1.20s\n  400000 requests in 20.01s, 1.00GB read\n  \
            Non-2xx or 3xx responses: 5\nRequests/sec:  19990.00\nTransfer/sec:     50.00MB\n";
        let w = parse_wrk(out).unwrap();
        assert_eq!(w.requests, 400_000);
        assert!((w.seconds - 20.01).abs() < 1e-9);
        assert_eq!(w.non_2xx, 5);
        assert!((w.percentile(50.0) - 0.812).abs() < 1e-9);
        assert!((w.percentile(99.0) - 1200.0).abs() < 1e-9);
        assert!((w.rps - 19990.0).abs() < 1e-9);
    }
}
