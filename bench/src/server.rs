//! The `zhilego` service as a child process: start, mint tokens, read its memory and CPU
//! figures from `/proc`, stop.
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

/// How long the service may take to migrate and bind.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful shutdown may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Server {
    child: Child,
    pid: u32,
    bin: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
}

/// Guests for the load: each booking comes from a guest of its own, as real traffic does (the
/// service caps each guest's unpaid holds, `ZHILEGO_MAX_HOLDS_PER_GUEST`). Tokens are minted
/// in the bench's process with the service's JWT secret: one `zhilego token` process per
/// booking would be the bottleneck.
#[derive(Clone)]
pub struct Guests(std::sync::Arc<api::tokens::JwtKeys>);

impl Guests {
    /// A token of a new guest.
    pub fn fresh(&self) -> String {
        self.0.mint(
            Uuid::new_v4(),
            domain::Role::Guest,
            chrono::Duration::hours(1),
        )
    }
}

/// Resident memory of a process, in KiB (as `/proc/<pid>/status` reports it).
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    pub peak_kib: u64,
    pub current_kib: u64,
}

/// A `zhilego` command with exactly the given settings: inherited `ZHILEGO_*`, `DATABASE_URL`
/// and `NATS_URL` variables are removed so the caller's shell cannot change the backend.
pub fn command(bin: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("ZHILEGO_") || k == "DATABASE_URL" || k == "NATS_URL" {
            cmd.env_remove(&key);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

impl Server {
    /// Starts `bin serve` with `env`, its log (stderr) going to `log`, and waits for the
    /// `listening on http://HOST:PORT` line on its stdout.
    pub async fn start(bin: &Path, env: Vec<(String, String)>, log: PathBuf) -> Result<Server> {
        Server::start_within(bin, env, log, START_TIMEOUT).await
    }

    /// [`Server::start`] with a longer wait for `listening on`: a service that finds its read
    /// models missing rebuilds them before it listens.
    pub async fn start_within(
        bin: &Path,
        env: Vec<(String, String)>,
        log: PathBuf,
        start_timeout: Duration,
    ) -> Result<Server> {
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = command(bin, &env)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("the service exited at once")?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let found = tokio::time::timeout(start_timeout, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                    return Ok::<_, std::io::Error>(Some(addr.to_string()));
                }
            }
            Ok(None)
        })
        .await;
        let addr = match found {
            Ok(Ok(Some(addr))) => addr,
            Ok(Ok(None)) | Ok(Err(_)) => {
                let status = child.wait().await.ok();
                bail!(
                    "the service stopped before listening ({status:?}); its log:\n{}",
                    log_tail(&log, 20)
                );
            }
            Err(_) => bail!(
                "the service did not report `listening on` within {start_timeout:?}; its log:\n{}",
                log_tail(&log, 20)
            ),
        };
        // Keep draining stdout so the service never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server {
            child,
            pid,
            bin: bin.to_path_buf(),
            env,
            log,
            base_url: format!("http://{addr}"),
        })
    }

    /// The settings the service was started with.
    /// Guests of this service (see [`Guests`]); the service must run with
    /// `ZHILEGO_JWT_SECRET` set, as every bench starts it.
    pub fn guests(&self) -> Result<Guests> {
        let secret = self
            .env
            .iter()
            .find(|(k, _)| k == "ZHILEGO_JWT_SECRET")
            .map(|(_, v)| v.clone())
            .context("the service runs without ZHILEGO_JWT_SECRET; no guest tokens")?;
        Ok(Guests(std::sync::Arc::new(api::tokens::JwtKeys::new(
            secret.as_bytes(),
        ))))
    }

    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `zhilego token --role ROLE --sub SUB` with the service's settings.
    pub async fn token(&self, role: &str, sub: Uuid) -> Result<String> {
        let out = command(&self.bin, &self.env)
            .args(["token", "--role", role, "--sub", &sub.to_string()])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running `zhilego token`")?;
        if !out.status.success() {
            bail!(
                "`zhilego token --role {role}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let token = String::from_utf8(out.stdout)?.trim().to_string();
        anyhow::ensure!(
            token.split('.').count() == 3,
            "`zhilego token` printed no JWT"
        );
        Ok(token)
    }

    /// VmHWM and VmRSS of the service process.
    pub fn memory(&self) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .context("reading /proc/<pid>/status")?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("no {name} in /proc/{}/status", self.pid))
        };
        Ok(Memory {
            peak_kib: field("VmHWM:")?,
            current_kib: field("VmRSS:")?,
        })
    }

    /// User + system CPU time of the service process so far.
    pub fn cpu_time(&self) -> Result<Duration> {
        process_cpu_time(&format!("/proc/{}/stat", self.pid))
    }

    /// SIGTERM, then up to [`STOP_TIMEOUT`] for the graceful shutdown, else SIGKILL.
    /// Returns a one-line description of how it went.
    pub async fn stop(mut self) -> Result<String> {
        let started = Instant::now();
        let term = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if !matches!(term, Ok(s) if s.success()) {
            self.child.kill().await.context("killing the service")?;
            return Ok("killed (SIGTERM could not be sent)".into());
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => Ok(format!(
                "stopped by SIGTERM in {:.1} s ({})",
                started.elapsed().as_secs_f64(),
                status?
            )),
            Err(_) => {
                self.child.kill().await.context("killing the service")?;
                Ok(format!(
                    "did not stop within {} s of SIGTERM: killed",
                    STOP_TIMEOUT.as_secs()
                ))
            }
        }
    }
}

/// Production-mode settings for a store at `database_url`: a random JWT secret and master
/// key, rate limiting off, a free port. Without `NATS_URL` the service uses its in-process bus.
pub fn production_env(database_url: &str) -> Vec<(String, String)> {
    vec![
        ("ZHILEGO_LISTEN".into(), "127.0.0.1:0".into()),
        ("ZHILEGO_RATE_LIMIT".into(), "0".into()),
        // One source posting as fast as it can; the metrics listener on a free port.
        ("ZHILEGO_WEBHOOK_RATE_LIMIT".into(), "0".into()),
        ("ZHILEGO_METRICS_ADDR".into(), "127.0.0.1:0".into()),
        ("DATABASE_URL".into(), database_url.to_string()),
        (
            "ZHILEGO_JWT_SECRET".into(),
            Uuid::new_v4().simple().to_string(),
        ),
        (
            "ZHILEGO_ENCRYPTION_KEY".into(),
            format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()),
        ),
        (
            "ZHILEGO_AUDIT_SIGNING_KEY".into(),
            format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()),
        ),
        // Production mode calls Kaspi live by default; the benchmarks pay nothing (on
        // loopback), so they allow the sandbox explicitly.
        ("KASPI_MODE".into(), "sandbox".into()),
        ("ZHILEGO_ALLOW_SANDBOX_PAYMENTS".into(), "1".into()),
    ]
}

/// One projection's line of `zhilego projections status --json`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ProjectionStatus {
    pub name: String,
    pub position: i64,
    pub applied: i64,
    pub behind_events: i64,
}

/// `zhilego projections status --json` with the given settings.
pub async fn projections_status(
    bin: &Path,
    env: &[(String, String)],
) -> Result<Vec<ProjectionStatus>> {
    let out = command(bin, env)
        .args(["projections", "status", "--json"])
        .stdin(Stdio::null())
        .output()
        .await
        .context("running `zhilego projections status`")?;
    if !out.status.success() {
        bail!(
            "`zhilego projections status` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("reading `projections status --json`")
}

/// Polls `projections status` until every projection is 0 events behind; returns the last
/// statuses and how long it took.
pub async fn wait_caught_up(
    bin: &Path,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<(Vec<ProjectionStatus>, Duration)> {
    let started = Instant::now();
    loop {
        let statuses = projections_status(bin, env).await?;
        if !statuses.is_empty() && statuses.iter().all(|s| s.behind_events == 0) {
            return Ok((statuses, started.elapsed()));
        }
        if started.elapsed() > timeout {
            bail!("the projections did not catch up within {timeout:?}: {statuses:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The last `n` lines of a log file (for error messages).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Clock ticks per second in `/proc` figures (USER_HZ, 100 on Linux).
const USER_HZ: u64 = 100;

/// utime + stime from a `/proc/<pid>/stat` file.
pub fn process_cpu_time(stat_path: &str) -> Result<Duration> {
    let stat =
        std::fs::read_to_string(stat_path).with_context(|| format!("reading {stat_path}"))?;
    // Fields after the command name, which is in parentheses and may contain spaces:
    // state is field 3, utime field 14, stime field 15.
    let rest = stat.rsplit_once(')').context("odd /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .context("odd /proc stat")
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_millis(total * 1000 / USER_HZ))
}

/// Machine-wide CPU counters from `/proc/stat`: (busy, total) ticks over all cores.
pub fn machine_cpu_ticks() -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    anyhow::ensure!(v.len() == 8, "odd cpu line in /proc/stat");
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Ok((total - idle, total))
}
