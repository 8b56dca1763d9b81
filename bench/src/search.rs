//! `zhilego-bench search`: read throughput of the availability search and the catalogue.
//!
//! Against a seeded store (`--database-url`, e.g. from `zhilego-bench seed`; without it a
//! scratch database is seeded with the `seed` defaults and dropped afterwards) the bench:
//!
//! 1. starts a release `zhilego serve` in production mode (`DATABASE_URL`, random JWT secret
//!    and master key, rate limit off, no `NATS_URL`: the in-process bus) — a first start
//!    builds the read models in `<store>_read`, which can take a while;
//! 2. waits until `zhilego projections status --json` shows every projection 0 events behind;
//! 3. runs `wrk -t2 -c64 -d20s --latency` with a Lua script that builds each request with a
//!    random city (of the ten seeded), check-in (tomorrow … +330 days), 1–7 nights and 1–4
//!    guests: `GET /api/v1/availability?city=&check_in=&check_out=&guests=`;
//! 4. runs `wrk` (same threads and connections, `--listings-seconds`) against
//!    `GET /api/v1/listings?city=` with a random city;
//! 5. samples `/proc` around each run for the CPU split between the service, PostgreSQL and
//!    wrk.
//!
//! Reported: requests/s, latency p50/p75/p90/p99 (wrk's), non-2xx answers and socket errors,
//! against the goal of ≥ 20,000 requests/s with p99 < 25 ms. `wrk` is installed with
//! `apt-get install -y wrk` when it is not on PATH.
use crate::harness::{self, seeded_store};
use crate::report::{verdict, Report};
use crate::server::{self, Server};
use crate::{cpu, seed, zhilego_binary, Common};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

const GOAL_RPS: f64 = 20_000.0;
const GOAL_P99_MS: f64 = 25.0;

#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// A seeded store. Default: a scratch database seeded with the `seed` defaults, dropped
    /// afterwards.
    #[arg(long)]
    database_url: Option<String>,
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
    let (url, scratch) = seeded_store(args.database_url.as_deref(), &args.common).await?;
    let result = measure(&args, &bin, &wrk, &url).await;
    harness::drop_seeded(&args.common, scratch).await;
    let report = result?;
    report.publish("search.txt", args.common.out.as_deref())
}

async fn measure(args: &SearchArgs, bin: &Path, wrk: &Path, url: &str) -> Result<Report> {
    let work = harness::work_dir("search")?;
    let mut env = server::production_env(url);
    env.extend(args.server_env.iter().cloned());
    eprintln!("== starting the service (a first start builds the read models)");
    let server = harness::start(
        bin,
        env.clone(),
        work.join("zhilego.log"),
        Some(Duration::from_secs(900)),
        "waiting for the read models",
    )
    .await?;
    let result = exercise(args, &server, wrk, &env, &work, url).await;
    let stopped = harness::stop(server).await;
    let mut report = result?;
    let _ = writeln!(report, "  service:    {}", stopped.how);
    let _ = std::fs::remove_dir_all(&work);
    Ok(report)
}

async fn exercise(
    args: &SearchArgs,
    server: &Server,
    wrk: &Path,
    env: &[(String, String)],
    work: &Path,
    url: &str,
) -> Result<Report> {
    let bin = zhilego_binary(args.common.zhilego_bin.as_deref())?;
    let (statuses, waited) = server::wait_caught_up(&bin, env, Duration::from_secs(900)).await?;
    let applied: Vec<String> = statuses
        .iter()
        .map(|s| format!("{} at {} ({} applied)", s.name, s.position, s.applied))
        .collect();

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
    let probe_items = body["items"].as_array().map_or(0, Vec::len);

    let availability_lua = work.join("availability.lua");
    std::fs::write(&availability_lua, availability_script(&cities, &dates))?;
    eprintln!(
        "== wrk -t{} -c{} -d{}s --latency: GET /api/v1/availability",
        args.threads, args.connections, args.seconds
    );
    let (avail, avail_cpu) =
        run_wrk(wrk, args, args.seconds, &availability_lua, &server.base_url).await?;

    let listings = if args.listings_seconds > 0 {
        let listings_lua = work.join("listings.lua");
        std::fs::write(&listings_lua, listings_script(&cities))?;
        eprintln!(
            "== wrk -t{} -c{} -d{}s --latency: GET /api/v1/listings?city=",
            args.threads, args.connections, args.listings_seconds
        );
        Some(
            run_wrk(
                wrk,
                args,
                args.listings_seconds,
                &listings_lua,
                &server.base_url,
            )
            .await?,
        )
    } else {
        None
    };
    let memory = server.memory().ok();

    let mut s = Report::new("search benchmark");
    let _ = writeln!(
        s,
        "store: {url} (read models in the service's read database)"
    );
    let _ = writeln!(
        s,
        "service: {} serve (separate process, production mode, in-process bus, rate limit off)",
        bin.display()
    );
    for (k, v) in &args.server_env {
        let _ = writeln!(s, "service setting: {k}={v}");
    }
    let _ = writeln!(
        s,
        "  read models: caught up {:.1} s after start: {}",
        waited.as_secs_f64(),
        applied.join(", ")
    );
    let _ = writeln!(
        s,
        "  probe:      {} items for {} {}..{} (2 guests)",
        probe_items, cities[0], dates[30], dates[33]
    );
    render_wrk(
        &mut s,
        &format!(
            "[availability] wrk -t{} -c{} -d{}s --latency, random city / check_in (+1..330 d) / 1-7 nights / 1-4 guests",
            args.threads, args.connections, args.seconds
        ),
        &avail,
        &avail_cpu,
    );
    let p99 = avail.percentile(99.0);
    let _ = writeln!(
        s,
        "  goal:       {:.0} requests/s (>= {GOAL_RPS:.0}) with p99 {p99:.1} ms (< {GOAL_P99_MS:.0} ms): {}",
        avail.rps,
        verdict(avail.rps >= GOAL_RPS && p99 < GOAL_P99_MS && avail.non_2xx == 0)
    );
    if let Some((l, cpu)) = &listings {
        render_wrk(
            &mut s,
            &format!(
                "[catalogue] wrk -t{} -c{} -d{}s --latency, GET /api/v1/listings?city=<random>",
                args.threads, args.connections, args.listings_seconds
            ),
            l,
            cpu,
        );
    }
    if let Some(m) = memory {
        let _ = writeln!(
            s,
            "  server RSS: peak {:.1} MB (VmHWM)",
            m.peak_kib as f64 * 1024.0 / 1e6
        );
    }
    Ok(s)
}

fn render_wrk(s: &mut Report, title: &str, w: &Wrk, cpu: &cpu::Split) {
    let _ = writeln!(s, "{title}");
    let _ = writeln!(
        s,
        "  requests:   {} in {:.1} s: {:.0} requests/s; non-2xx {}{}",
        w.requests,
        w.seconds,
        w.rps,
        w.non_2xx,
        if w.socket_errors.is_empty() {
            String::new()
        } else {
            format!("; socket errors: {}", w.socket_errors)
        }
    );
    let _ = writeln!(
        s,
        "  latency:    p50 {:.2} ms, p75 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
        w.percentile(50.0),
        w.percentile(75.0),
        w.percentile(90.0),
        w.percentile(99.0)
    );
    let _ = writeln!(s, "  CPU:        {}", cpu.line());
}

async fn run_wrk(
    wrk: &Path,
    args: &SearchArgs,
    seconds: u32,
    script: &Path,
    base_url: &str,
) -> Result<(Wrk, cpu::Split)> {
    let child = tokio::process::Command::new(wrk)
        .arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(format!("{base_url}/"))
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
