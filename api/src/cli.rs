//! The `zhilego` command line. The main settings are options too, each shown in `--help`
//! with the environment variable it stands for; every other setting is a variable only
//! (`zhilego config check` lists them all with their effective values).
use crate::app::{jwt_secret, open_database, shutdown_signal, Application};
use crate::settings::{Layers, Settings};
use crate::tokens::JwtKeys;
use clap::{Parser, Subcommand, ValueEnum};
use domain::Role;
use std::collections::HashMap;
use std::path::PathBuf;
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(
    name = "zhilego",
    version,
    about = "ZhilyeGO: short-term apartment rentals backend",
    after_help = "Every setting is an environment variable (the options above stand for the \
                  main ones) or a line of the ZHILEGO_CONFIG file; `zhilego config check` \
                  lists them all with their effective values, docs/runbook.md explains them."
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The settings that are also options: each wins over its environment variable, which wins
/// over the config file.
#[derive(clap::Args, Debug, Default, Clone)]
#[command(next_help_heading = "Settings (each also an environment variable)")]
pub struct SettingsArgs {
    /// A `.env`-style file of settings (KEY=VALUE lines), read before the environment.
    #[arg(long, global = true, env = "ZHILEGO_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The PostgreSQL event store (production mode); without it, the embedded SQLite store
    /// in the data directory.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<String>,
    /// The NATS servers of the event bus (production mode), comma-separated.
    #[arg(
        long,
        global = true,
        env = "NATS_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub nats_url: Option<String>,
    /// Where the API listens (default 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long, global = true, env = "ZHILEGO_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// The embedded database and generated secrets (default ./data).
    #[arg(long, global = true, env = "ZHILEGO_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl SettingsArgs {
    /// The options given, by the names of the variables they stand for.
    pub fn values(&self) -> HashMap<String, String> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        [
            ("ZHILEGO_CONFIG", path(&self.config)),
            ("DATABASE_URL", self.database_url.clone()),
            ("NATS_URL", self.nats_url.clone()),
            ("ZHILEGO_LISTEN", self.listen.clone()),
            ("ZHILEGO_DATA_DIR", path(&self.data_dir)),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v?)))
        .collect()
    }
}

/// The roles a token can be minted for (`System` is the service's own, never a token's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    Guest,
    Host,
    Admin,
    Analyst,
    Auditor,
}

impl From<TokenRole> for Role {
    fn from(r: TokenRole) -> Role {
        match r {
            TokenRole::Guest => Role::Guest,
            TokenRole::Host => Role::Host,
            TokenRole::Admin => Role::Admin,
            TokenRole::Analyst => Role::Analyst,
            TokenRole::Auditor => Role::Auditor,
        }
    }
}

/// The read models `projections rebuild` rebuilds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProjectionName {
    Bookings,
    Availability,
    Listings,
    Analytics,
    Users,
    /// Every one of them, in this order.
    All,
}

impl ProjectionName {
    /// The read models' names (as `projections status` shows them) this stands for.
    pub fn read_models(self) -> Vec<&'static str> {
        match self {
            ProjectionName::Bookings => vec!["bookings"],
            ProjectionName::Availability => vec!["availability"],
            ProjectionName::Listings => vec!["listings"],
            ProjectionName::Analytics => vec!["analytics"],
            ProjectionName::Users => vec!["users"],
            ProjectionName::All => {
                vec!["bookings", "availability", "listings", "analytics", "users"]
            }
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service (the default): API, background work. Embedded mode without DATABASE_URL.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Run only the store → NATS JetStream relay (production mode; `serve` runs one too unless
    /// ZHILEGO_RELAY=off). Ops listener on ZHILEGO_METRICS_ADDR.
    Relay,
    /// Run only the projection builders (`serve` runs them too): on durable JetStream consumers
    /// with NATS_URL in production mode, else following the store directly. Ops listener on
    /// ZHILEGO_METRICS_ADDR.
    Project,
    /// Exit 0 when a process answers its health endpoint, else 1: the container health check
    /// (the image has no curl).
    Healthcheck {
        /// Default: `/healthz` on the port of ZHILEGO_LISTEN, over loopback.
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Inspect or rebuild the read models.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Print a signed JWT for a user and role.
    Token {
        /// The role the token grants.
        #[arg(long, value_enum)]
        role: TokenRole,
        /// The user id (a UUID); a new one if left out.
        #[arg(long)]
        sub: Option<Uuid>,
        /// Lifetime in hours, at most the setting ZHILEGO_JWT_MAX_TTL_HOURS (default 720).
        #[arg(long, default_value_t = 24)]
        ttl_hours: i64,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserAction,
    },
    /// Run only the audit notary (`serve` runs one too unless ZHILEGO_NOTARY=off): one
    /// Merkle leaf per event, signed checkpoints to the configured sinks.
    Notary,
    /// Audit the event store.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print a report (the stored one, else computed now).
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Batch work on the analytics read model.
    Analytics {
        #[command(subcommand)]
        command: AnalyticsCommand,
    },
    /// Check the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print every setting's effective value and where it came from (default, config file,
    /// environment, option), secrets as ***; exit 1 naming the setting that is not valid.
    Check,
}

#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// The daily report of a local date, as JSON.
    Daily {
        #[arg(long)]
        date: chrono::NaiveDate,
    },
}

#[derive(Subcommand, Debug)]
pub enum AnalyticsCommand {
    /// Figures for a range of dates to standard output (CSV or JSON), as known now.
    Export {
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Exclusive.
        #[arg(long)]
        to: chrono::NaiveDate,
        /// day, week, month, listing, city or channel.
        #[arg(long, default_value = "month")]
        group_by: String,
        /// occupancy, revenue, funnel or stays.
        #[arg(long, default_value = "revenue")]
        figures: String,
        /// csv or json.
        #[arg(long, default_value = "csv")]
        format: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserAction {
    /// Erase a user's personal data: their key is destroyed, so every name and phone number
    /// they ever gave is unreadable, while the event history stays complete.
    Erase {
        #[arg(long)]
        id: Uuid,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProjectionsCommand {
    /// Replay the event store into fresh tables and swap them in atomically.
    Rebuild {
        #[arg(value_enum)]
        name: ProjectionName,
    },
    /// Each projection's position, events applied, and lag behind the store.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Walk every aggregate's hash chain and report breaks (exit code 1 if any); with
    /// `--checkpoint`, also recompute the Merkle tree against a signed checkpoint held
    /// outside and name the first position that does not match it.
    Verify {
        /// A file holding a checkpoint's `text` exactly as served.
        #[arg(long)]
        checkpoint: Option<std::path::PathBuf>,
        /// The signer's public key (base64, as `GET /audit/checkpoints/key` gives it);
        /// default: the configured signing key's.
        #[arg(long)]
        key: Option<String>,
    },
    /// Write history as JSON lines with the latest checkpoint and each event's inclusion
    /// proof (docs/audit.md, "Exports").
    Export {
        /// Events after this position.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Events up to this position (default: all the checkpoint covers).
        #[arg(long, default_value_t = i64::MAX)]
        until: i64,
        /// The file to write (default: stdout).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Verify an export offline: signature, leaves, inclusion proofs, hash chains.
    VerifyExport {
        file: std::path::PathBuf,
        /// The signer's public key (base64) the auditor holds; default: the key in the file
        /// (then only the file's own consistency is shown).
        #[arg(long)]
        key: Option<String>,
    },
}

/// A progress bar on stderr when stderr is a terminal; otherwise one that draws nothing, so
/// that logs and pipes get only the results.
fn progress_bar(what: &str) -> anyhow::Result<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return Ok(indicatif::ProgressBar::hidden());
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>12} [{bar:40}] {pos}/{len} events ({per_sec}, {eta})",
        )?
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    Ok(bar)
}

/// The checkpoint key to trust: given on the command line, else the configured one.
fn trusted_key(
    settings: &Settings,
    key: Option<&str>,
) -> anyhow::Result<audit::note::NoteVerifier> {
    match key {
        Some(k) => {
            let raw = audit::hash_from_b64(k.trim())
                .ok_or_else(|| anyhow::anyhow!("--key must be 32 bytes of base64"))?;
            audit::note::NoteVerifier::new(&settings.audit.origin, &raw)
                .map_err(|e| anyhow::anyhow!("--key: {e}"))
        }
        None => crate::audit::verifier(settings),
    }
}

/// Runs the command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let layers = Layers::load(std::env::vars().collect(), cli.settings.values());
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Config {
        command: ConfigCommand::Check,
    } = command
    {
        let checked = layers.and_then(|layers| {
            Settings::from_map(&layers.merged()).map(|settings| (layers, settings))
        });
        return Ok(match checked {
            Ok((layers, settings)) => {
                print!("{}", crate::config_check::render(&layers, &settings));
                0
            }
            Err(e) => {
                eprintln!("configuration not valid: {e}");
                1
            }
        });
    }
    let layers = layers?;
    let settings = Settings::from_map(&layers.merged())?;
    match command {
        Command::Config { .. } => unreachable!("answered above"),
        Command::Serve => {
            let app = Application::build(settings).await?;
            let addr = app.local_addr();
            println!("listening on http://{addr}");
            if let Some(metrics) = app.metrics_addr() {
                tracing::info!(%metrics, "metrics served apart from the API");
            }
            tracing::info!(%addr, mode = if app.state().settings.is_production() { "production" } else { "embedded" }, "serving");
            if app.state().kaspi.sandbox.is_some() {
                tracing::info!(
                    "payments go to the built-in Kaspi sandbox (pages under {}); KASPI_MODE=live for Kaspi",
                    crate::payments::SANDBOX_PREFIX
                );
            }
            app.run_until_stopped(shutdown_signal()).await?;
            Ok(0)
        }
        Command::Healthcheck { url, timeout_ms } => {
            let url = match url {
                Some(u) => u,
                None => {
                    let port = settings
                        .listen
                        .rsplit_once(':')
                        .map(|(_, p)| p)
                        .unwrap_or("8080");
                    format!("http://127.0.0.1:{port}/healthz")
                }
            };
            let answer = reqwest::Client::builder()
                .timeout(std::time::Duration::from_millis(timeout_ms))
                .build()?
                .get(&url)
                .send()
                .await;
            Ok(match answer {
                Ok(r) if r.status().is_success() => 0,
                Ok(r) => {
                    eprintln!("{url}: {}", r.status());
                    1
                }
                Err(e) => {
                    eprintln!("{url}: {e}");
                    1
                }
            })
        }
        Command::Relay => {
            anyhow::ensure!(
                settings.is_production(),
                "the relay needs a PostgreSQL DATABASE_URL"
            );
            let url = settings
                .nats_url
                .clone()
                .ok_or_else(|| anyhow::anyhow!("the relay needs NATS_URL"))?;
            let db = open_database(&settings).await?;
            let client = async_nats::ConnectOptions::new()
                .name("zhilego-relay")
                .retry_on_initial_connect()
                .connect(crate::app::nats_servers(&url))
                .await?;
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let ops = match crate::app::bind_ops(&settings).await? {
                Some(listener) => {
                    let probe = crate::routes::ops::Probe {
                        production: true,
                        store: db.clone(),
                        reads: None,
                        nats: Some(client.clone()),
                    };
                    let stop = crate::app::stopped(stop_rx.clone());
                    Some(crate::app::serve_ops(listener, &settings, probe, stop))
                }
                None => None,
            };
            let lag = tokio::spawn(crate::app::report_relay_lag(
                db.clone(),
                crate::app::relay_config(&settings).name,
                crate::app::stopped(stop_rx.clone()),
            ));
            let relay = bus::Relay::new(db, client, crate::app::relay_config(&settings)).await?;
            println!("relaying to stream {}", settings.nats_stream);
            let never = tokio::sync::Notify::new();
            relay
                .run(
                    &never,
                    std::time::Duration::from_millis(100),
                    shutdown_signal(),
                )
                .await;
            let _ = stop_tx.send(true);
            let _ = lag.await;
            if let Some(ops) = ops {
                let _ = ops.await;
            }
            Ok(0)
        }
        Command::Project => {
            let db = open_database(&settings).await?;
            let reads = std::sync::Arc::new(crate::reads::ReadModels::open(&settings, &db).await?);
            reads.prepare().await?;
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let nats = crate::app::connect_nats(&settings, &db).await?;
            let nats_client = nats.clone();
            let mut tasks = Vec::new();
            let feed = match nats {
                Some(client) => {
                    println!(
                        "projection builders on JetStream stream {}",
                        settings.nats_stream
                    );
                    crate::reads::Feed::JetStream(
                        client,
                        Box::new(crate::app::relay_config(&settings)),
                    )
                }
                None => {
                    println!("projection builders following the store");
                    // Nothing is written here: the relay polls.
                    let (feed, relay) = crate::app::local_feed(
                        &db,
                        std::sync::Arc::new(tokio::sync::Notify::new()),
                        std::time::Duration::from_millis(100),
                        crate::app::stopped(stop_rx.clone()),
                    )
                    .await?;
                    tasks.push(relay);
                    feed
                }
            };
            tasks.extend(reads.spawn_builders(&feed, || crate::app::stopped(stop_rx.clone())));
            if let Some(listener) = crate::app::bind_ops(&settings).await? {
                let probe = crate::routes::ops::Probe {
                    production: settings.is_production(),
                    store: db.clone(),
                    reads: Some(reads.clone()),
                    nats: nats_client,
                };
                let stop = crate::app::stopped(stop_rx.clone());
                tasks.push(crate::app::serve_ops(listener, &settings, probe, stop));
            }
            tasks.push(tokio::spawn({
                let (reads, stop) = (reads.clone(), crate::app::stopped(stop_rx.clone()));
                async move {
                    reads
                        .report_lag(std::time::Duration::from_secs(2), stop)
                        .await
                }
            }));
            tasks.push(tokio::spawn(store::statistics::keep_statistics(
                reads.primary.clone(),
                crate::app::STATISTICS_EVERY,
                crate::app::stopped(stop_rx.clone()),
            )));
            shutdown_signal().await;
            let _ = stop_tx.send(true);
            futures::future::join_all(tasks).await;
            Ok(0)
        }
        Command::Projections {
            command: ProjectionsCommand::Rebuild { name },
        } => {
            let db = open_database(&settings).await?;
            let reads = crate::reads::ReadModels::open(&settings, &db).await?;
            // One scan of the store for all of them: each event is decoded once and folded
            // by every projection named.
            let names = name.read_models();
            let bar = progress_bar(&names.join(", "))?;
            let report = {
                let bar = bar.clone();
                move |done: u64, total: u64| {
                    bar.set_length(total);
                    bar.set_position(done);
                }
            };
            let summary = reads.rebuild(&names, Some(&report)).await?;
            bar.finish();
            for p in &summary.projections {
                let secs = p.elapsed.as_secs_f64();
                println!(
                    "{}: rebuilt from {} events in {secs:.1} s ({:.0} events/s) and swapped in",
                    p.name,
                    p.events,
                    p.events as f64 / secs.max(1e-9)
                );
            }
            if summary.projections.len() > 1 {
                let secs = summary
                    .projections
                    .last()
                    .map_or(0.0, |p| p.elapsed.as_secs_f64());
                println!(
                    "all: rebuilt from {} events in {secs:.1} s ({:.0} events/s) and swapped in \
                     (one scan: read, decode and fold {:.1} s, write {:.1} s, tails and swaps {:.1} s)",
                    summary.scanned,
                    summary.scanned as f64 / secs.max(1e-9),
                    summary.fold.as_secs_f64(),
                    summary.write.as_secs_f64(),
                    summary.swap.as_secs_f64()
                );
            }
            Ok(0)
        }
        Command::Projections {
            command: ProjectionsCommand::Status { json },
        } => {
            let db = open_database(&settings).await?;
            let reads = crate::reads::ReadModels::open(&settings, &db).await?;
            let statuses = reads.statuses().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&statuses)?);
            } else {
                println!(
                    "{:<14}{:>8}{:>12}{:>12}{:>10}{:>10}",
                    "projection", "version", "position", "applied", "behind", "lag (s)"
                );
                for s in &statuses {
                    println!(
                        "{:<14}{:>8}{:>12}{:>12}{:>10}{:>10.1}",
                        s.name, s.version, s.position, s.applied, s.behind_events, s.lag_seconds
                    );
                }
                for s in &statuses {
                    if let Some(fault) = &s.stopped_at {
                        println!("{} STOPPED before event {fault}", s.name);
                    }
                }
            }
            // A stopped projection is an operator's problem: say so in the exit code too.
            Ok(if statuses.iter().any(|s| s.stopped_at.is_some()) {
                1
            } else {
                0
            })
        }
        Command::Migrate => {
            let db = open_database(&settings).await?;
            println!("migrations applied ({})", db.backend_name());
            Ok(0)
        }
        Command::Token {
            role,
            sub,
            ttl_hours,
        } => {
            let role = Role::from(role);
            anyhow::ensure!(ttl_hours > 0, "--ttl-hours must be positive");
            let max_hours = settings.edge.jwt_max_ttl.num_hours();
            anyhow::ensure!(
                ttl_hours <= max_hours,
                "--ttl-hours may be at most {max_hours} (ZHILEGO_JWT_MAX_TTL_HOURS); the service refuses longer-lived tokens"
            );
            let keys = JwtKeys::new(&jwt_secret(&settings)?);
            println!(
                "{}",
                keys.mint(
                    sub.unwrap_or_else(Uuid::now_v7),
                    role,
                    chrono::Duration::hours(ttl_hours)
                )
            );
            Ok(0)
        }
        Command::User {
            command: UserAction::Erase { id },
        } => {
            let db = open_database(&settings).await?;
            let commands = commands::Commands::new(
                db.clone(),
                commands::CommandsConfig::default(),
                crate::app::encryption_key(&settings)?,
            );
            let operator = domain::Actor {
                user_id: Uuid::nil(),
                role: Role::Admin,
            };
            let meta =
                commands::CommandMeta::new(operator, domain::Channel::System, Uuid::now_v7());
            let written = commands.erase_personal_data(id, &meta).await?;
            // The bots' chats name the person by their address: deleted, not just sealed.
            let chats = crate::bots::forget_guest(&db, id).await?;
            println!(
                "personal data of {id} erased (position {}); {chats} bot chats deleted",
                written.position
            );
            Ok(0)
        }
        Command::Report {
            command: ReportCommand::Daily { date },
        } => {
            let db = open_database(&settings).await?;
            let reads = crate::reads::ReadModels::open(&settings, &db).await?;
            reads.analytics.catch_up().await?;
            let report = match crate::reports::stored(&db, date).await? {
                Some(report) => report,
                None => {
                    crate::reports::compute(&reads.primary, date, None, chrono::Utc::now()).await?
                }
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(0)
        }
        Command::Analytics {
            command:
                AnalyticsCommand::Export {
                    from,
                    to,
                    group_by,
                    figures,
                    format,
                },
        } => {
            let db = open_database(&settings).await?;
            let reads = crate::reads::ReadModels::open(&settings, &db).await?;
            reads.analytics.catch_up().await?;
            let out = crate::export::export(
                &reads.primary,
                crate::export::Export {
                    from,
                    to,
                    group_by,
                    figures,
                    format,
                },
            )
            .await?;
            print!("{out}");
            Ok(0)
        }
        Command::Audit {
            command: AuditCommand::Verify {
                checkpoint: None, ..
            },
        } => {
            let db = open_database(&settings).await?;
            let bar = progress_bar("verify")?;
            let report = {
                let bar = bar.clone();
                let progress = move |done: u64, total: u64| {
                    bar.set_length(total);
                    bar.set_position(done);
                };
                store::history::verify_with_progress(&db, &progress).await
            };
            bar.finish_and_clear();
            let report = report?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.ok { 0 } else { 1 })
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    checkpoint: Some(file),
                    key,
                },
        } => {
            let mut note = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            // A copy that lost the note's final newline (shell tools strip it) is still the
            // note: the signature covers the text before the signature line.
            if !note.ends_with('\n') {
                note.push('\n');
            }
            let verifier = trusted_key(&settings, key.as_deref())?;
            let db = open_database(&settings).await?;
            let bar = progress_bar("verify")?;
            let report = {
                let bar = bar.clone();
                let progress = move |done: u64, total: u64| {
                    bar.set_length(total);
                    bar.set_position(done);
                };
                audit::verify::against_checkpoint(&db, &verifier, &note, &progress).await
            };
            bar.finish_and_clear();
            let report = match report {
                Ok(r) => r,
                Err(audit::verify::VerifyError::Note(e)) => {
                    metrics::counter!("zhilego_audit_verification_failures_total").increment(1);
                    println!("FAILED: the checkpoint in {}: {e}", file.display());
                    return Ok(1);
                }
                Err(e) => return Err(e.into()),
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
            match report.first_bad_position {
                None => {
                    println!(
                        "OK: {} events match the checkpoint of {} ({})",
                        report.checked_events, report.tree_size, report.origin
                    );
                    Ok(0)
                }
                Some(position) => {
                    let why = report
                        .tree
                        .as_ref()
                        .filter(|t| t.position == position)
                        .map(|t| t.problem.clone())
                        .or_else(|| {
                            report
                                .chains
                                .broken
                                .iter()
                                .find(|b| b.position == position)
                                .map(|b| b.problem.clone())
                        })
                        .unwrap_or_default();
                    println!("FAILED: first bad position {position}: {why}");
                    Ok(1)
                }
            }
        }
        Command::Audit {
            command: AuditCommand::Export { after, until, out },
        } => {
            let verifier = crate::audit::verifier(&settings)?;
            let db = open_database(&settings).await?;
            let bar = progress_bar("export")?;
            let progress = {
                let bar = bar.clone();
                move |done: u64, total: u64| {
                    bar.set_length(total);
                    bar.set_position(done);
                }
            };
            let written = match &out {
                Some(path) => {
                    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
                    audit::export::export(&db, &verifier, after, until, &mut file, &progress)
                        .await?
                }
                None => {
                    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
                    audit::export::export(&db, &verifier, after, until, &mut stdout, &progress)
                        .await?
                }
            };
            bar.finish_and_clear();
            eprintln!("exported {written} events with their proofs");
            Ok(0)
        }
        Command::Audit {
            command: AuditCommand::VerifyExport { file, key },
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            let trusted = match key.as_deref() {
                Some(k) => Some(trusted_key(&settings, Some(k))?),
                None => {
                    eprintln!("note: checking with the key the file names; pass --key (GET /api/v1/audit/checkpoints/key) to check against the key you hold");
                    None
                }
            };
            let bar = progress_bar("verify")?;
            let progress = {
                let bar = bar.clone();
                move |done: u64, total: u64| {
                    bar.set_length(total);
                    bar.set_position(done);
                }
            };
            let report = audit::export::verify_export(&text, trusted.as_ref(), &progress);
            bar.finish_and_clear();
            let report = match report {
                Ok(r) => r,
                Err(e) => {
                    println!("FAILED: {e}");
                    return Ok(1);
                }
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
            match report.first_bad_position {
                None => {
                    println!(
                        "OK: {} events proven in the checkpoint of {}",
                        report.checked_events, report.tree_size
                    );
                    Ok(0)
                }
                Some(p) => {
                    println!(
                        "FAILED: first bad position {p}: {}",
                        report.problems.first().cloned().unwrap_or_default()
                    );
                    Ok(1)
                }
            }
        }
        Command::Notary => {
            let db = open_database(&settings).await?;
            let notary = crate::audit::notary(&settings, &db)?;
            println!("notary following the store ({})", db.backend_name());
            notary
                .run(crate::audit::NOTARY_POLL, shutdown_signal())
                .await;
            Ok(0)
        }
    }
}
