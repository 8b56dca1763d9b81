//! Building and running the service: `Application::build` connects, migrates and binds (port 0
//! allowed, so tests start the real thing); `run_until_stopped` serves until the shutdown
//! signal, then drains requests and stops the background loops.
use crate::files::{create_data_dir, create_private_file, private_options};
use crate::reads::{Feed, ReadModels};
use crate::routes;
use crate::settings::Settings;
use crate::state::{AppState, Inner};
use crate::telemetry;
use crate::tokens::JwtKeys;
use anyhow::Context;
use bus::{LocalBus, LocalRelay};
use commands::{Commands, CommandsConfig, ReservationSweeper};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use store::Database;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Application {
    listener: TcpListener,
    /// `/metrics`, apart from the API (`ZHILEGO_METRICS_ADDR`; none when `off`).
    metrics_listener: Option<TcpListener>,
    state: AppState,
    /// The daily report scheduler's clock (tests move it).
    report_clock: std::sync::Arc<dyn crate::reports::Clock>,
    /// Routes served beside the service's (none in the binary; tests add some).
    extra_routes: axum::Router<AppState>,
}

/// How often tables that grew are analyzed (`store::statistics`).
pub const STATISTICS_EVERY: Duration = Duration::from_secs(2);
/// Opens the configured database (creating the embedded data dir) and applies migrations.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Database> {
    if !settings.is_production() && settings.database_url.is_none() {
        create_data_dir(&settings.data_dir)?;
        // sqlx would create the file with the process umask (often 0644); made here first, it
        // is private from its first byte, and SQLite gives its -wal and -shm files the
        // database file's mode.
        create_private_file(&settings.data_dir.join("zhilego.db"))?;
    }
    let url = settings.effective_database_url();
    let db = Database::connect(&url, settings.max_connections())
        .await
        .with_context(|| {
            format!(
                "connecting to the {} database",
                if settings.is_production() {
                    "PostgreSQL"
                } else {
                    "embedded"
                }
            )
        })?;
    db.migrate().await.context("applying migrations")?;
    Ok(db)
}

/// The JWT signing secret: configured, or (embedded mode) generated once into the data dir.
pub fn jwt_secret(settings: &Settings) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &settings.jwt_secret {
        return Ok(secret.expose().as_bytes().to_vec());
    }
    anyhow::ensure!(
        !settings.is_production(),
        "ZHILEGO_JWT_SECRET is required in production mode"
    );
    create_data_dir(&settings.data_dir)?;
    let path = settings.data_dir.join("jwt-secret");
    read_or_create_secret(&path)
}

/// The master key for personal data: configured, or (embedded mode) generated once into the
/// data dir.
pub fn encryption_key(settings: &Settings) -> anyhow::Result<commands::MasterKey> {
    let hex = match &settings.encryption_key {
        Some(key) => key.expose().to_string(),
        None => {
            anyhow::ensure!(
                !settings.is_production(),
                "ZHILEGO_ENCRYPTION_KEY is required in production mode"
            );
            create_data_dir(&settings.data_dir)?;
            let bytes = read_or_create_secret(&settings.data_dir.join("encryption-key"))?;
            String::from_utf8(bytes)?
        }
    };
    commands::MasterKey::from_hex(&hex).map_err(|e| anyhow::anyhow!("ZHILEGO_ENCRYPTION_KEY {e}"))
}

/// A secret kept in a private file: read, or generated (32 random bytes as hex) and written.
pub(crate) fn read_or_create_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok(existing.into_bytes());
        }
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    use std::io::Write;
    private_options()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(secret.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(secret.into_bytes())
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let db = open_database(&settings).await?;
        let secret = jwt_secret(&settings)?;
        let reads = Arc::new(ReadModels::open(&settings, &db).await?);
        reads.prepare().await.context("preparing the read models")?;
        reads.load_index().await?;
        let relay_nudge = Arc::new(tokio::sync::Notify::new());
        let nats = connect_nats(&settings, &db).await?;
        let wake_relay = relay_nudge.clone();
        let wake_index = reads.index_nudge.clone();
        let notifier_nudge = Arc::new(tokio::sync::Notify::new());
        let wake_notifier = notifier_nudge.clone();
        let config = CommandsConfig {
            hold: settings.hold,
            access_opens_before: settings.access_opens_before,
            ..CommandsConfig::default()
        };
        let listener = TcpListener::bind(&settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        let metrics_listener = bind_ops(&settings).await?;
        let kaspi = Arc::new(crate::payments::setup(&settings, listener.local_addr()?)?);
        let commands = Arc::new(
            Commands::new(db.clone(), config, encryption_key(&settings)?)
                .with_provider(Arc::new(kaspi.client.clone()))
                .with_hold_cap(commands::HoldCap::new(
                    settings.max_holds_per_guest,
                    reads.primary.clone(),
                ))
                .on_write(move || {
                    wake_relay.notify_one();
                    wake_index.notify_one();
                    wake_notifier.notify_one();
                }),
        );
        let keeper = Arc::new(commands::PaymentKeeper::new(
            commands.clone(),
            reads.primary.clone(),
            settings.reconcile_after,
        ));
        let access = Arc::new(crate::access::Access::new(
            reads.primary.clone(),
            commands.clone(),
        ));
        access
            .refresh()
            .await
            .context("loading blocked accounts and API keys")?;
        let chats = Arc::new(crate::bots::Chats::new(
            db.clone(),
            crate::bots::GuestKeys::new(&encryption_key(&settings)?),
            commands.clone(),
            reads.clone(),
            access.clone(),
        ));
        chats
            .seal_plaintext_chats()
            .await
            .context("hashing and sealing the chats stored in plaintext")?;
        let telegram =
            crate::bots::telegram::Telegram::from_settings(&settings.telegram)?.map(Arc::new);
        let whatsapp = crate::bots::whatsapp::WhatsApp::from_settings(
            &settings.twilio,
            settings.public_url.clone(),
        )
        .map(Arc::new);
        let calendar = Arc::new(
            commands::CalendarSync::new(commands.clone(), settings.ical.clone())
                .context("building the calendar feeds' HTTP client")?,
        );
        let audit_key = crate::audit::verifier(&settings)?;
        let state = AppState::new(Inner {
            calendar,
            audit_key,
            access,
            kaspi,
            keeper,
            chats,
            telegram,
            whatsapp,
            notifier_nudge,
            auth: JwtKeys::new(&secret)
                .with_previous(
                    settings
                        .edge
                        .jwt_previous_secret
                        .as_ref()
                        .map(|s| s.expose().as_bytes()),
                )
                .with_max_ttl(settings.edge.jwt_max_ttl),
            metrics: telemetry::metrics_handle(),
            settings,
            db,
            commands,
            reads,
            nats,
            relay_nudge,
        });
        Ok(Application {
            listener,
            metrics_listener,
            state,
            report_clock: std::sync::Arc::new(crate::reports::SystemClock),
            extra_routes: axum::Router::new(),
        })
    }

    /// The clock the daily report scheduler reads (the system's by default).
    pub fn with_report_clock(mut self, clock: std::sync::Arc<dyn crate::reports::Clock>) -> Self {
        self.report_clock = clock;
        self
    }

    /// Serves `routes` beside the service's, under all its layers (the test suite's route
    /// that panics; the binary adds none).
    pub fn with_routes(mut self, routes: axum::Router<AppState>) -> Self {
        self.extra_routes = routes;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    /// Where `/metrics` is served, unless turned off.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .map(|l| l.local_addr().expect("bound listener"))
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish and stops the
    /// relay, the projection builders and the sweeper.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let state = self.state.clone();
        let mut tasks = start_pipeline(&state, &stop_rx).await?;
        let sweeper = ReservationSweeper::new(
            state.commands.clone(),
            state.reads.primary.clone(),
            state.settings.orphan_after,
        );
        let interval = state.settings.sweep_interval;
        tasks.push(tokio::spawn({
            let stop = stopped(stop_rx.clone());
            async move { sweeper.run(interval, stop).await }
        }));
        let keeper = state.keeper.clone();
        let every = state.settings.reconcile_interval;
        tasks.push(tokio::spawn({
            let stop = stopped(stop_rx.clone());
            async move { keeper.run(every, stop).await }
        }));
        tasks.push(tokio::spawn(crate::idempotency::keep_forgetting(
            state.db.clone(),
            crate::idempotency::FORGET_EVERY,
            stopped(stop_rx.clone()),
        )));
        tasks.push(tokio::spawn({
            let access = state.access.clone();
            let stop = stopped(stop_rx.clone());
            async move { access.run(stop).await }
        }));
        tasks.extend(start_bots(&state, &stop_rx));
        let reports = crate::reports::ReportScheduler {
            store: state.db.clone(),
            read: state.reads.primary.clone(),
            telegram: state.telegram.clone(),
            settings: state.settings.reports.clone(),
            clock: self.report_clock.clone(),
        };
        tasks.push(tokio::spawn({
            let stop = stopped(stop_rx.clone());
            async move { reports.run(stop).await }
        }));
        if state.settings.audit.run_notary {
            let notary = crate::audit::notary(&state.settings, &state.db)?;
            let stop = stopped(stop_rx.clone());
            tasks.push(tokio::spawn(async move {
                notary.run(crate::audit::NOTARY_POLL, stop).await
            }));
        }
        tasks.push(tokio::spawn({
            let (reads, stop) = (state.reads.clone(), stopped(stop_rx.clone()));
            async move { reads.watch_replicas(Duration::from_secs(1), stop).await }
        }));
        tasks.push(tokio::spawn(report_inventory(
            state.reads.search_index.clone(),
            stopped(stop_rx.clone()),
        )));
        let calendar = state.calendar.clone();
        tasks.push(tokio::spawn({
            let stop = stopped(stop_rx.clone());
            async move { calendar.run(stop).await }
        }));
        if let Some(listener) = self.metrics_listener {
            let probe = routes::ops::Probe::of(&state);
            tasks.push(serve_ops(
                listener,
                &state.settings,
                probe,
                stopped(stop_rx.clone()),
            ));
        }
        let limits = state.settings.edge.clone();
        let router = crate::server::with_limits(
            routes::router_with(state.clone(), self.extra_routes),
            &limits,
        );
        crate::server::serve(self.listener, router, &limits, async move {
            shutdown.await;
            tracing::info!("shutting down: draining requests");
        })
        .await?;
        let _ = stop_tx.send(true);
        futures::future::join_all(tasks).await;
        state.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Starts Telegram long polling (when so configured) and the notifications worker; says
/// which bots are off.
fn start_bots(state: &AppState, stop_rx: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    match &state.telegram {
        Some(t) if state.settings.telegram.mode == crate::settings::TelegramMode::Polling => {
            tracing::info!("Telegram bot on (long polling)");
            let (t, chats) = (t.clone(), state.chats.clone());
            let stop = stopped(stop_rx.clone());
            tasks.push(tokio::spawn(async move { t.poll(chats, stop).await }));
        }
        Some(_) => tracing::info!("Telegram bot on (webhook at /telegram/webhook/)"),
        None => tracing::info!("Telegram bot off (no TELEGRAM_BOT_TOKEN)"),
    }
    match &state.whatsapp {
        Some(_) => tracing::info!("WhatsApp bot on (webhook at /whatsapp/webhook/)"),
        None => tracing::info!(
            "WhatsApp bot off (needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_WHATSAPP_FROM)"
        ),
    }
    if state.telegram.is_some() || state.whatsapp.is_some() {
        let notifier = commands::Notifier {
            db: state.db.clone(),
            read: state.reads.primary.clone(),
            commands: state.commands.clone(),
            channels: crate::bots::notices::BotChannels {
                chats: state.chats.clone(),
                telegram: state.telegram.clone(),
                whatsapp: state.whatsapp.clone(),
            },
        };
        let nudge = state.notifier_nudge.clone();
        let stop = stopped(stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            notifier.run(&nudge, Duration::from_secs(1), stop).await
        }));
    }
    tasks
}

/// Binds the ops listener (`ZHILEGO_METRICS_ADDR`), unless it is turned off.
pub async fn bind_ops(settings: &Settings) -> anyhow::Result<Option<TcpListener>> {
    match &settings.edge.metrics_addr {
        Some(addr) => Ok(Some(TcpListener::bind(addr).await.with_context(|| {
            format!("binding the ops listener {addr} (ZHILEGO_METRICS_ADDR)")
        })?)),
        None => Ok(None),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` (of `probe`) on `listener` until `stop`.
pub fn serve_ops(
    listener: TcpListener,
    settings: &Settings,
    probe: routes::ops::Probe,
    stop: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let ops = routes::ops::Ops {
        metrics: telemetry::metrics_handle(),
        token: settings.edge.metrics_token.clone(),
        probe,
    };
    let limits = settings.edge.clone();
    let router = crate::server::with_limits(routes::ops::ops_routes(ops), &limits);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "ops listener: /metrics, /healthz, /readyz");
    }
    tokio::spawn(async move {
        if let Err(e) = crate::server::serve(listener, router, &limits, stop).await {
            tracing::error!(error = %e, "the ops listener failed");
        }
    })
}

/// Resolves once the stop flag is raised.
pub async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Connects to NATS when production mode names it (the connection retries in the background,
/// so the service starts while NATS is down).
pub async fn connect_nats(
    settings: &Settings,
    db: &Database,
) -> anyhow::Result<Option<async_nats::Client>> {
    match (&settings.nats_url, db) {
        (Some(url), Database::Postgres(_)) => Ok(Some(
            async_nats::ConnectOptions::new()
                .name("zhilego")
                .retry_on_initial_connect()
                .connect(nats_servers(url))
                .await
                .with_context(|| format!("connecting to NATS at {url}"))?,
        )),
        _ => Ok(None),
    }
}

/// `NATS_URL`'s servers: one URL, or several of one cluster separated by commas (the client
/// fails over between them).
pub fn nats_servers(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

/// Starts the store → bus relay and the projection builders that follow the bus: JetStream
/// with `NATS_URL` in production mode, else the in-process bus. Also reports their lag.
pub async fn start_pipeline(
    state: &AppState,
    stop_rx: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    let feed = match &state.nats {
        Some(client) => {
            if state.settings.run_relay {
                let relay_state = state.clone();
                let client_for_relay = client.clone();
                let stop = stopped(stop_rx.clone());
                tasks.push(tokio::spawn(async move {
                    run_relay(relay_state, client_for_relay, stop).await
                }));
            } else {
                tracing::info!("the relay is off here (ZHILEGO_RELAY=off)");
            }
            Feed::JetStream(client.clone(), Box::new(relay_config(&state.settings)))
        }
        None => {
            let (feed, relay) = local_feed(
                &state.db,
                state.relay_nudge.clone(),
                Duration::from_millis(250),
                stopped(stop_rx.clone()),
            )
            .await?;
            tasks.push(relay);
            feed
        }
    };
    // The in-memory availability index follows the in-process bus when there is one, else
    // the store (nudged after each local write).
    let index = state.reads.search_index.clone();
    let stop = stopped(stop_rx.clone());
    match &feed {
        Feed::Local(bus) => {
            let bus = bus.clone();
            tasks.push(tokio::spawn(
                async move { index.follow_bus(&bus, stop).await },
            ));
        }
        Feed::JetStream(..) => {
            let nudge = state.reads.index_nudge.clone();
            tasks.push(tokio::spawn(async move {
                index.follow(&nudge, Duration::from_millis(100), stop).await
            }));
        }
    }
    if state.settings.run_projections {
        tasks.extend(
            state
                .reads
                .spawn_builders(&feed, || stopped(stop_rx.clone())),
        );
    } else {
        tracing::info!("projection builders are off here (ZHILEGO_PROJECTIONS=off)");
    }
    if state.nats.is_some() && state.settings.run_relay {
        tasks.push(tokio::spawn(report_relay_lag(
            state.db.clone(),
            relay_config(&state.settings).name,
            stopped(stop_rx.clone()),
        )));
    }
    let (reads, stop) = (state.reads.clone(), stopped(stop_rx.clone()));
    tasks.push(tokio::spawn(async move {
        reads.report_lag(Duration::from_secs(2), stop).await
    }));
    // Fresh tables' plans: the store, and the read models where the builders write them.
    tasks.push(tokio::spawn(store::statistics::keep_statistics(
        state.db.clone(),
        STATISTICS_EVERY,
        stopped(stop_rx.clone()),
    )));
    if state.settings.run_projections {
        tasks.push(tokio::spawn(store::statistics::keep_statistics(
            state.reads.primary.clone(),
            STATISTICS_EVERY,
            stopped(stop_rx.clone()),
        )));
    }
    Ok(tasks)
}

/// The in-process bus, fed by a local relay over `db` that runs until `stop`: woken by
/// `nudge`, else every `poll`.
pub async fn local_feed(
    db: &Database,
    nudge: Arc<tokio::sync::Notify>,
    poll: Duration,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Feed, JoinHandle<()>)> {
    let bus = LocalBus::default();
    let relay = LocalRelay::new(db.clone(), bus.clone()).await?;
    let task = tokio::spawn(async move { relay.run(&nudge, poll, stop).await });
    Ok((Feed::Local(bus), task))
}

pub fn relay_config(settings: &Settings) -> bus::RelayConfig {
    bus::RelayConfig {
        stream: settings.nats_stream.clone(),
        subject_prefix: settings.nats_subject_prefix.clone(),
        replicas: settings.nats_replicas,
        ..bus::RelayConfig::default()
    }
}

/// Runs the store → JetStream relay until `stop`, setting it up again while NATS is away.
pub async fn run_relay(
    state: AppState,
    client: async_nats::Client,
    stop: impl Future<Output = ()> + Send,
) {
    tokio::pin!(stop);
    loop {
        let setup = bus::Relay::new(
            state.db.clone(),
            client.clone(),
            relay_config(&state.settings),
        );
        tokio::select! {
            _ = &mut stop => return,
            relay = setup => match relay {
                Ok(relay) => return relay.run(&state.relay_nudge, Duration::from_millis(250), stop).await,
                Err(e) => tracing::warn!(error = %e, "relay setup failed; retrying"),
            },
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Keeps `zhilego_relay_lag_*` current, every 2 s until `stop`.
pub async fn report_relay_lag(db: Database, name: String, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        if let Ok((behind, seconds)) = bus::relay::lag(&db, &name).await {
            metrics::gauge!("zhilego_relay_lag_events").set(behind as f64);
            metrics::gauge!("zhilego_relay_lag_seconds").set(seconds);
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Keeps `zhilego_inventory_free_listings{city}` current (listings with a free night among
/// the next 7, from the in-memory index), every 10 s until `stop`.
async fn report_inventory(index: Arc<projections::SearchIndex>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        let today = domain::local_date(chrono::Utc::now());
        for (city, free) in index.free_listings_by_city(today, 7) {
            metrics::gauge!("zhilego_inventory_free_listings", "city" => city).set(free as f64);
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}
