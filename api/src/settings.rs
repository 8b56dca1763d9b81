//! One typed configuration, from defaults, then an optional `.env`-style file named by
//! `ZHILEGO_CONFIG` (read by `dotenvy`), then the environment (which wins). Secrets never
//! print; `zhilego config check` (`crate::config_check`) shows the effective values.
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A value that must not show up in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// `ZHILEGO_LISTEN`, default `127.0.0.1:8080`; port 0 picks a free port.
    pub listen: String,
    /// `ZHILEGO_DATA_DIR`, default `./data`: the embedded database and generated secrets.
    pub data_dir: PathBuf,
    /// `DATABASE_URL`: a `postgres://` URL selects production mode.
    pub database_url: Option<String>,
    /// `READ_DATABASE_URL`: where the read models live. Default: `<store>_read` on the same
    /// PostgreSQL server (created when missing); embedded: the same SQLite file.
    pub read_database_url: Option<String>,
    /// `READ_REPLICA_URLS`: comma-separated replicas of the read database that queries go to
    /// (default: the read database itself).
    pub read_replica_urls: Vec<String>,
    /// `ZHILEGO_PROJECTIONS`: `on` (default) runs the projection builders inside `serve`;
    /// `off` leaves them to `zhilego project` processes (API-only instances).
    pub run_projections: bool,
    /// `ZHILEGO_RELAY`: `on` (default) runs the store → NATS relay inside `serve`; `off`
    /// leaves it to `zhilego relay` processes.
    pub run_relay: bool,
    /// `NATS_URL`: the event bus in production mode; the relay publishes the store to it.
    /// Several servers of one cluster: comma-separated.
    pub nats_url: Option<String>,
    /// `ZHILEGO_NATS_REPLICAS` (default 1): how many JetStream servers keep the stream and
    /// the consumers (3 on a three-node cluster, so losing a node loses nothing).
    pub nats_replicas: usize,
    /// `ZHILEGO_NATS_STREAM`: the JetStream stream of events (default `ZHILEGO_EVENTS`).
    pub nats_stream: String,
    /// `ZHILEGO_NATS_SUBJECT_PREFIX`: subjects are `<prefix>.<aggregate_type>.<id>` (default
    /// `events`).
    pub nats_subject_prefix: String,
    /// `ZHILEGO_JWT_SECRET`: required in production; generated and kept in the data dir
    /// in embedded mode.
    pub jwt_secret: Option<Secret>,
    /// `ZHILEGO_ENCRYPTION_KEY`: 64 hex characters, the master key that wraps each user's
    /// personal-data key. Required in production; generated and kept in the data dir in
    /// embedded mode.
    pub encryption_key: Option<Secret>,
    /// `ZHILEGO_RATE_LIMIT`: API requests per minute per client; 0 turns it off.
    pub rate_limit_per_minute: u32,
    /// `ZHILEGO_WEBHOOK_RATE_LIMIT`: webhook requests per second per source; 0 turns it off.
    pub webhook_rate_limit_per_second: u32,
    /// `ZHILEGO_HOLD_SECONDS`: how long a booking holds its nights unpaid (default 900).
    pub hold: Duration,
    /// `ZHILEGO_MAX_HOLDS_PER_GUEST`: unpaid holds one guest may have at once (default 3; 0
    /// turns the cap off). The next booking is refused with 409 `too_many_holds`.
    pub max_holds_per_guest: u32,
    /// `ZHILEGO_DB_MAX_CONNECTIONS`: pool size (default 20 on PostgreSQL, 4 embedded).
    pub db_max_connections: Option<u32>,
    /// `ZHILEGO_SWEEP_INTERVAL_MS`: how often the reservation sweeper runs (default 5000).
    pub sweep_interval: Duration,
    /// `ZHILEGO_ORPHAN_AFTER_SECONDS`: age at which nights reserved for a booking that was
    /// never opened are freed (default 60).
    pub orphan_after: Duration,
    /// `ZHILEGO_READ_WAIT_MS`: how long a read with `min_position` waits (default 5000).
    pub read_wait: Duration,
    /// `ZHILEGO_PUBLIC_URL`: where users reach this service (payment pages of the sandbox);
    /// default `http://<the bound address>`.
    pub public_url: Option<String>,
    pub kaspi: KaspiSettings,
    /// `ZHILEGO_RECONCILE_INTERVAL_MS`: how often the payment keeper runs (default 10000).
    pub reconcile_interval: Duration,
    /// `ZHILEGO_RECONCILE_AFTER_SECONDS`: a payment pending this long is checked with Kaspi
    /// (default 120).
    pub reconcile_after: Duration,
    pub telegram: TelegramSettings,
    pub twilio: TwilioSettings,
    // Payments and access (docs/security.md).
    /// `ZHILEGO_ALLOW_SANDBOX_PAYMENTS=1`: lets `KASPI_MODE=sandbox` run where strangers may
    /// reach it (production mode, or a listen address that is not loopback), for demos;
    /// without it `serve` refuses to start so, because anyone can pay a sandbox link.
    pub allow_sandbox_payments: bool,
    /// `ZHILEGO_ACCESS_OPENS_BEFORE_HOURS`: how long before check-in (14:00 local time) a
    /// stay's door code is given out (default 24).
    pub access_opens_before: chrono::Duration,
    pub edge: EdgeSettings,
    /// Calendar feeds (`ZHILEGO_ICAL_*`, see `crate::ical_settings`).
    pub ical: commands::FeedSyncConfig,
    /// The audit's notary and checkpoints (`ZHILEGO_AUDIT_*`, `ZHILEGO_NOTARY`).
    pub audit: crate::audit::AuditSettings,
    pub reports: crate::reports::ReportSettings,
    /// Logs, traces and error reports (`ZHILEGO_LOG_FORMAT`, `OTEL_*`, `SENTRY_*`).
    pub telemetry: crate::telemetry::TelemetrySettings,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TelegramMode {
    /// Telegram posts updates to `/telegram/webhook/`.
    Webhook,
    /// The service asks Telegram for updates (local use).
    Polling,
}

#[derive(Clone, Debug)]
pub struct TelegramSettings {
    /// `TELEGRAM_BOT_TOKEN`; without it the Telegram bot is off.
    pub bot_token: Option<Secret>,
    /// `TELEGRAM_API_URL` (default `https://api.telegram.org`).
    pub api_url: String,
    /// `TELEGRAM_WEBHOOK_SECRET`: what Telegram sends as `X-Telegram-Bot-Api-Secret-Token`.
    pub webhook_secret: Option<Secret>,
    /// `TELEGRAM_MODE`: `webhook` (default when a webhook secret is set) or `polling`.
    pub mode: TelegramMode,
}

#[derive(Clone, Debug)]
pub struct TwilioSettings {
    /// `TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`: without both the WhatsApp bot is off.
    pub account_sid: Option<String>,
    pub auth_token: Option<Secret>,
    /// `TWILIO_API_URL` (default `https://api.twilio.com`).
    pub api_url: String,
    /// `TWILIO_WHATSAPP_FROM`: our sender, e.g. `whatsapp:+14155238886`.
    pub whatsapp_from: Option<String>,
    /// `TWILIO_TEMPLATE_SID`: the approved template (one variable, the text) used outside the
    /// 24-hour window; without it such notifications are skipped.
    pub template_sid: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KaspiMode {
    /// The built-in sandbox, served by this process under `/kaspi-sandbox`.
    Sandbox,
    /// Kaspi's API at `KASPI_API_URL`.
    Live,
}

#[derive(Clone, Debug)]
pub struct KaspiSettings {
    /// `KASPI_MODE`: `sandbox` (the embedded default) or `live` (the default in production
    /// mode; needs `KASPI_API_URL` and `KASPI_API_KEY`).
    pub mode: KaspiMode,
    /// `KASPI_API_URL`.
    pub api_url: Option<String>,
    /// `KASPI_API_KEY`.
    pub api_key: Option<Secret>,
    /// `KASPI_DEVICE_TOKEN`, `KASPI_ORGANIZATION_BIN`: the trade point Kaspi registered.
    pub device_token: Option<String>,
    pub organization_bin: Option<String>,
    /// `KASPI_TIMEOUT_MS` per request (default 5000) and `KASPI_ATTEMPTS` (default 3).
    pub timeout: Duration,
    pub attempts: u32,
    /// `KASPI_REQUESTS_PER_SECOND`: our limit on calls to Kaspi (default 10, Kaspi's).
    pub requests_per_second: u32,
    /// `KASPI_CALLBACK_USER` / `KASPI_CALLBACK_PASSWORD`: HTTP basic credentials Kaspi sends
    /// to `/kaspi/callback/`. Required in live mode; generated for the sandbox.
    pub callback_user: Option<String>,
    pub callback_password: Option<Secret>,
    /// `KASPI_CALLBACK_ALLOW_IPS`: comma-separated CIDRs the callback is accepted from.
    /// Required in live mode; loopback only for the sandbox.
    pub callback_allow_ips: Vec<ipnet::IpNet>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0} is not valid: {1}")]
    Invalid(&'static str, String),
    #[error("cannot read the config file {0}: {1}")]
    File(String, std::io::Error),
    #[error("the config file {0} is not valid: {1}")]
    FileLine(String, String),
    #[error("ZHILEGO_JWT_SECRET is required with a PostgreSQL DATABASE_URL (production mode)")]
    MissingJwtSecret,
    #[error("ZHILEGO_ENCRYPTION_KEY is required with a PostgreSQL DATABASE_URL (production mode)")]
    MissingEncryptionKey,
}

/// Where the raw settings come from, before they are typed: the config file named by
/// `ZHILEGO_CONFIG` (if any), then the process environment, then the command line's options
/// (`zhilego --database-url …`), each winning over the one before.
#[derive(Clone, Debug, Default)]
pub struct Layers {
    /// The config file's path and its `KEY=VALUE` pairs.
    pub file: Option<(PathBuf, HashMap<String, String>)>,
    pub env: HashMap<String, String>,
    /// Settings given as command-line options, by their variable's name.
    pub args: HashMap<String, String>,
}

/// Which layer a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env,
    CommandLine,
}

impl Layers {
    /// The process environment, and the file `ZHILEGO_CONFIG` names.
    pub fn from_env() -> Result<Layers, SettingsError> {
        Layers::load(std::env::vars().collect(), HashMap::new())
    }

    /// `env` as the environment, `args` as the command line's settings, and the file that
    /// `ZHILEGO_CONFIG` names in either.
    pub fn load(
        env: HashMap<String, String>,
        args: HashMap<String, String>,
    ) -> Result<Layers, SettingsError> {
        let path = args
            .get("ZHILEGO_CONFIG")
            .or_else(|| env.get("ZHILEGO_CONFIG"))
            .filter(|p| !p.trim().is_empty());
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| SettingsError::File(path.clone(), e))?;
                let values = parse_config_file(&text)
                    .map_err(|why| SettingsError::FileLine(path.clone(), why))?;
                Some((PathBuf::from(path), values))
            }
            None => None,
        };
        Ok(Layers { file, env, args })
    }

    /// The values the settings are read from: the file's, overridden by the environment's,
    /// overridden by the command line's.
    pub fn merged(&self) -> HashMap<String, String> {
        let mut values = self
            .file
            .as_ref()
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        values.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        values.extend(self.args.iter().map(|(k, v)| (k.clone(), v.clone())));
        values
    }

    /// Where `key`'s effective value came from (an empty value counts as unset, as it does
    /// for the settings). An option equal to the variable it stands for (clap fills options
    /// from their variables) counts as the environment's.
    pub fn origin(&self, key: &str) -> Origin {
        let set = |v: Option<&String>| v.is_some_and(|v| !v.trim().is_empty());
        if set(self.args.get(key)) && self.args.get(key) != self.env.get(key) {
            Origin::CommandLine
        } else if set(self.env.get(key)) {
            Origin::Env
        } else if let Some((path, _)) = self.file.as_ref().filter(|(_, f)| set(f.get(key))) {
            Origin::File(path.clone())
        } else {
            Origin::Default
        }
    }
}

impl Settings {
    /// Reads the process environment (and `ZHILEGO_CONFIG`, if set).
    pub fn from_env() -> Result<Settings, SettingsError> {
        Settings::from_map(&Layers::from_env()?.merged())
    }

    /// Every key [`Settings::from_map`] looks up while reading `values`.
    pub fn keys_read(values: &HashMap<String, String>) -> std::collections::BTreeSet<String> {
        let seen = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let _ = Settings::read(values, &|k| {
            seen.borrow_mut().insert(k.to_string());
        });
        seen.into_inner()
    }

    pub fn from_map(values: &HashMap<String, String>) -> Result<Settings, SettingsError> {
        Settings::read(values, &|_| {})
    }

    /// Reads the settings from `values`, telling `looked_up` each key it looks at.
    fn read(
        values: &HashMap<String, String>,
        looked_up: &dyn Fn(&str),
    ) -> Result<Settings, SettingsError> {
        let get = |k: &str| {
            looked_up(k);
            values
                .get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        fn num<T: std::str::FromStr>(
            key: &'static str,
            v: Option<String>,
            default: T,
        ) -> Result<T, SettingsError> {
            match v {
                None => Ok(default),
                Some(s) => s
                    .parse()
                    .map_err(|_| SettingsError::Invalid(key, format!("{s:?} is not a number"))),
            }
        }
        let database_url = get("DATABASE_URL");
        let production = database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres"));
        if let Some(url) = &database_url {
            if !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
            {
                return Err(SettingsError::Invalid(
                    "DATABASE_URL",
                    "expected a postgres:// (or sqlite:) URL".into(),
                ));
            }
        }
        let settings = Settings {
            listen: get("ZHILEGO_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into()),
            data_dir: PathBuf::from(get("ZHILEGO_DATA_DIR").unwrap_or_else(|| "./data".into())),
            database_url,
            read_database_url: get("READ_DATABASE_URL"),
            read_replica_urls: get("READ_REPLICA_URLS")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|u| !u.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            run_projections: on_off("ZHILEGO_PROJECTIONS", get("ZHILEGO_PROJECTIONS"))?,
            run_relay: on_off("ZHILEGO_RELAY", get("ZHILEGO_RELAY"))?,
            nats_url: get("NATS_URL"),
            nats_replicas: match num(
                "ZHILEGO_NATS_REPLICAS",
                get("ZHILEGO_NATS_REPLICAS"),
                1usize,
            )? {
                n @ 1..=5 => n,
                n => {
                    return Err(SettingsError::Invalid(
                        "ZHILEGO_NATS_REPLICAS",
                        format!("{n}: JetStream keeps 1 to 5 replicas"),
                    ))
                }
            },
            nats_stream: get("ZHILEGO_NATS_STREAM").unwrap_or_else(|| "ZHILEGO_EVENTS".into()),
            nats_subject_prefix: get("ZHILEGO_NATS_SUBJECT_PREFIX")
                .unwrap_or_else(|| "events".into()),
            jwt_secret: get("ZHILEGO_JWT_SECRET").map(Secret::new),
            encryption_key: get("ZHILEGO_ENCRYPTION_KEY").map(Secret::new),
            rate_limit_per_minute: num("ZHILEGO_RATE_LIMIT", get("ZHILEGO_RATE_LIMIT"), 100)?,
            webhook_rate_limit_per_second: num(
                "ZHILEGO_WEBHOOK_RATE_LIMIT",
                get("ZHILEGO_WEBHOOK_RATE_LIMIT"),
                10,
            )?,
            hold: Duration::from_secs(num(
                "ZHILEGO_HOLD_SECONDS",
                get("ZHILEGO_HOLD_SECONDS"),
                900,
            )?),
            max_holds_per_guest: num(
                "ZHILEGO_MAX_HOLDS_PER_GUEST",
                get("ZHILEGO_MAX_HOLDS_PER_GUEST"),
                3,
            )?,
            db_max_connections: match get("ZHILEGO_DB_MAX_CONNECTIONS") {
                None => None,
                Some(v) => Some(num("ZHILEGO_DB_MAX_CONNECTIONS", Some(v), 0)?),
            },
            sweep_interval: Duration::from_millis(num(
                "ZHILEGO_SWEEP_INTERVAL_MS",
                get("ZHILEGO_SWEEP_INTERVAL_MS"),
                5000,
            )?),
            orphan_after: Duration::from_secs(num(
                "ZHILEGO_ORPHAN_AFTER_SECONDS",
                get("ZHILEGO_ORPHAN_AFTER_SECONDS"),
                60,
            )?),
            read_wait: Duration::from_millis(num(
                "ZHILEGO_READ_WAIT_MS",
                get("ZHILEGO_READ_WAIT_MS"),
                5000,
            )?),
            public_url: get("ZHILEGO_PUBLIC_URL").map(|u| u.trim_end_matches('/').to_string()),
            kaspi: KaspiSettings {
                mode: match get("KASPI_MODE").as_deref() {
                    Some("sandbox") => KaspiMode::Sandbox,
                    Some("live") => KaspiMode::Live,
                    None if production => KaspiMode::Live,
                    None => KaspiMode::Sandbox,
                    Some(other) => {
                        return Err(SettingsError::Invalid(
                            "KASPI_MODE",
                            format!("{other:?}: expected sandbox or live"),
                        ))
                    }
                },
                api_url: get("KASPI_API_URL"),
                api_key: get("KASPI_API_KEY").map(Secret::new),
                device_token: get("KASPI_DEVICE_TOKEN"),
                organization_bin: get("KASPI_ORGANIZATION_BIN"),
                timeout: Duration::from_millis(num(
                    "KASPI_TIMEOUT_MS",
                    get("KASPI_TIMEOUT_MS"),
                    5000,
                )?),
                attempts: num("KASPI_ATTEMPTS", get("KASPI_ATTEMPTS"), 3)?,
                requests_per_second: num(
                    "KASPI_REQUESTS_PER_SECOND",
                    get("KASPI_REQUESTS_PER_SECOND"),
                    10,
                )?,
                callback_user: get("KASPI_CALLBACK_USER"),
                callback_password: get("KASPI_CALLBACK_PASSWORD").map(Secret::new),
                callback_allow_ips: networks(
                    "KASPI_CALLBACK_ALLOW_IPS",
                    get("KASPI_CALLBACK_ALLOW_IPS"),
                )?,
            },
            reconcile_interval: Duration::from_millis(num(
                "ZHILEGO_RECONCILE_INTERVAL_MS",
                get("ZHILEGO_RECONCILE_INTERVAL_MS"),
                10_000,
            )?),
            reconcile_after: Duration::from_secs(num(
                "ZHILEGO_RECONCILE_AFTER_SECONDS",
                get("ZHILEGO_RECONCILE_AFTER_SECONDS"),
                120,
            )?),
            telegram: TelegramSettings {
                bot_token: get("TELEGRAM_BOT_TOKEN").map(Secret::new),
                api_url: get("TELEGRAM_API_URL")
                    .unwrap_or_else(|| "https://api.telegram.org".into())
                    .trim_end_matches('/')
                    .to_string(),
                webhook_secret: get("TELEGRAM_WEBHOOK_SECRET").map(Secret::new),
                mode: match get("TELEGRAM_MODE").as_deref() {
                    Some("webhook") => TelegramMode::Webhook,
                    Some("polling") => TelegramMode::Polling,
                    None if get("TELEGRAM_WEBHOOK_SECRET").is_some() => TelegramMode::Webhook,
                    None => TelegramMode::Polling,
                    Some(other) => {
                        return Err(SettingsError::Invalid(
                            "TELEGRAM_MODE",
                            format!("{other:?}: expected webhook or polling"),
                        ))
                    }
                },
            },
            twilio: TwilioSettings {
                account_sid: get("TWILIO_ACCOUNT_SID"),
                auth_token: get("TWILIO_AUTH_TOKEN").map(Secret::new),
                api_url: get("TWILIO_API_URL")
                    .unwrap_or_else(|| "https://api.twilio.com".into())
                    .trim_end_matches('/')
                    .to_string(),
                whatsapp_from: get("TWILIO_WHATSAPP_FROM"),
                template_sid: get("TWILIO_TEMPLATE_SID"),
            },
            allow_sandbox_payments: match get("ZHILEGO_ALLOW_SANDBOX_PAYMENTS").as_deref() {
                None | Some("0" | "false" | "no") => false,
                Some("1" | "true" | "yes") => true,
                Some(other) => {
                    return Err(SettingsError::Invalid(
                        "ZHILEGO_ALLOW_SANDBOX_PAYMENTS",
                        format!("{other:?}: expected 1 or 0"),
                    ))
                }
            },
            access_opens_before: chrono::Duration::hours(
                num(
                    "ZHILEGO_ACCESS_OPENS_BEFORE_HOURS",
                    get("ZHILEGO_ACCESS_OPENS_BEFORE_HOURS"),
                    24u16,
                )?
                .into(),
            ),
            edge: EdgeSettings::from_values(&get)?,
            ical: crate::ical_settings::from_values(&get)?,
            audit: crate::audit::AuditSettings::from_values(
                &get,
                &PathBuf::from(get("ZHILEGO_DATA_DIR").unwrap_or_else(|| "./data".into())),
                production,
            )?,
            reports: crate::reports::ReportSettings::from_values(&get)?,
            telemetry: crate::telemetry::TelemetrySettings::from_values(&get)?,
        };
        if settings.telegram.bot_token.is_some()
            && settings.telegram.mode == TelegramMode::Webhook
            && settings.telegram.webhook_secret.is_none()
        {
            return Err(SettingsError::Invalid(
                "TELEGRAM_WEBHOOK_SECRET",
                "is required with TELEGRAM_MODE=webhook (or set TELEGRAM_MODE=polling)".into(),
            ));
        }
        if settings.hold.is_zero() {
            return Err(SettingsError::Invalid(
                "ZHILEGO_HOLD_SECONDS",
                "must be positive".into(),
            ));
        }
        if settings.is_production() && settings.jwt_secret.is_none() {
            return Err(SettingsError::MissingJwtSecret);
        }
        if let Some(key) = &settings.encryption_key {
            commands::MasterKey::from_hex(key.expose())
                .map_err(|e| SettingsError::Invalid("ZHILEGO_ENCRYPTION_KEY", e))?;
        }
        if settings.is_production() && settings.encryption_key.is_none() {
            return Err(SettingsError::MissingEncryptionKey);
        }
        Ok(settings)
    }

    /// Production mode: PostgreSQL event store (and NATS, once configured).
    pub fn is_production(&self) -> bool {
        self.database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres"))
    }

    /// The database to use: `DATABASE_URL`, or the embedded SQLite file in the data dir.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("zhilego.db").display()),
        }
    }

    pub fn max_connections(&self) -> u32 {
        self.db_max_connections
            .unwrap_or(if self.is_production() { 20 } else { 4 })
            .max(1)
    }
}

/// The edge's own defences (docs/runbook.md, "Edge limits"): how long a client may take,
/// how many connections it may hold, who may read the metrics, which tokens are accepted.
#[derive(Clone, Debug)]
pub struct EdgeSettings {
    /// `ZHILEGO_HEADER_TIMEOUT_MS` (default 10000): a request's headers must arrive within
    /// this, else the connection is closed. The clock also runs while a kept-alive connection
    /// waits for its next request.
    pub header_timeout: Duration,
    /// `ZHILEGO_BODY_TIMEOUT_MS` (default 30000): the whole request body must arrive within
    /// this from the end of the headers, else 408 problem+json and the connection is closed.
    pub body_timeout: Duration,
    /// `ZHILEGO_IDLE_TIMEOUT_MS` (default 60000): a connection on which no byte moves either
    /// way for this long is closed.
    pub idle_timeout: Duration,
    /// `ZHILEGO_REQUEST_TIMEOUT_MS` (default 30000): the answer must be ready within this,
    /// else 503 problem+json (`request_timeout`) and the connection is closed.
    pub request_timeout: Duration,
    /// `ZHILEGO_MAX_CONNECTIONS` (default 1024): open client connections per listener; more
    /// wait in the kernel's accept queue until one closes.
    pub max_connections: usize,
    /// `ZHILEGO_METRICS_ADDR` (default `127.0.0.1:9464`; `off` turns it off): the separate
    /// listener `/metrics` is served on. The API listener answers `/metrics` with 404.
    pub metrics_addr: Option<String>,
    /// `ZHILEGO_METRICS_TOKEN`: when set, the metrics listener needs
    /// `Authorization: Bearer <token>` (401 otherwise).
    pub metrics_token: Option<Secret>,
    /// `ZHILEGO_JWT_PREVIOUS_SECRET`: the signing secret before a rotation; tokens it signed
    /// stay valid until they expire.
    pub jwt_previous_secret: Option<Secret>,
    /// `ZHILEGO_JWT_MAX_TTL_HOURS` (default 720): the longest lifetime (`exp - iat`) a token
    /// may have; longer ones are refused, and `zhilego token` does not mint them.
    pub jwt_max_ttl: chrono::Duration,
    /// `ZHILEGO_TRUSTED_PROXIES`: CIDRs of the gateways in front of the service. Only from a
    /// peer in them is `X-Forwarded-For` believed (read from the right, skipping trusted
    /// hops) for the client's address: the rate-limit key and the Kaspi allow-list. Empty
    /// (the default): the peer address is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `ZHILEGO_MAX_BODY_BYTES` (default 1048576): the largest request body; a larger one is
    /// answered 413 problem+json (`body_too_large`) without being read.
    pub max_body_bytes: usize,
    /// `ZHILEGO_CORS_ORIGINS`: comma-separated origins browsers may call the API from
    /// (`https://zhilego.kz`), with credentials; default none (`crate::cors`).
    pub cors_origins: Vec<String>,
}

/// A positive whole number setting, `default` when unset.
pub(crate) fn positive(
    key: &'static str,
    get: &dyn Fn(&str) -> Option<String>,
    default: u64,
) -> Result<u64, SettingsError> {
    match get(key) {
        None => Ok(default),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(SettingsError::Invalid(
                key,
                format!("{s:?} is not a positive number"),
            )),
        },
    }
}

impl EdgeSettings {
    fn from_values(get: &dyn Fn(&str) -> Option<String>) -> Result<EdgeSettings, SettingsError> {
        let ms = |key, default| positive(key, get, default).map(Duration::from_millis);
        let max_ttl_hours = positive("ZHILEGO_JWT_MAX_TTL_HOURS", get, 720)?;
        Ok(EdgeSettings {
            header_timeout: ms("ZHILEGO_HEADER_TIMEOUT_MS", 10_000)?,
            body_timeout: ms("ZHILEGO_BODY_TIMEOUT_MS", 30_000)?,
            idle_timeout: ms("ZHILEGO_IDLE_TIMEOUT_MS", 60_000)?,
            request_timeout: ms("ZHILEGO_REQUEST_TIMEOUT_MS", 30_000)?,
            max_connections: usize::try_from(positive("ZHILEGO_MAX_CONNECTIONS", get, 1024)?)
                .map_err(|_| {
                    SettingsError::Invalid("ZHILEGO_MAX_CONNECTIONS", "too large".into())
                })?,
            metrics_addr: match get("ZHILEGO_METRICS_ADDR") {
                Some(v) if v == "off" => None,
                Some(v) => Some(v),
                None => Some("127.0.0.1:9464".into()),
            },
            metrics_token: get("ZHILEGO_METRICS_TOKEN").map(Secret::new),
            trusted_proxies: networks("ZHILEGO_TRUSTED_PROXIES", get("ZHILEGO_TRUSTED_PROXIES"))?,
            jwt_previous_secret: get("ZHILEGO_JWT_PREVIOUS_SECRET").map(Secret::new),
            max_body_bytes: usize::try_from(positive("ZHILEGO_MAX_BODY_BYTES", get, 1 << 20)?)
                .map_err(|_| {
                    SettingsError::Invalid("ZHILEGO_MAX_BODY_BYTES", "too large".into())
                })?,
            cors_origins: crate::cors::parse_origins(get("ZHILEGO_CORS_ORIGINS"))
                .map_err(|e| SettingsError::Invalid("ZHILEGO_CORS_ORIGINS", e))?,
            jwt_max_ttl: i64::try_from(max_ttl_hours)
                .ok()
                .and_then(chrono::Duration::try_hours)
                .ok_or_else(|| {
                    SettingsError::Invalid("ZHILEGO_JWT_MAX_TTL_HOURS", "too large".into())
                })?,
        })
    }
}

/// `on` (the default) or `off`.
fn on_off(key: &'static str, value: Option<String>) -> Result<bool, SettingsError> {
    match value.as_deref() {
        None | Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(other) => Err(SettingsError::Invalid(
            key,
            format!("{other:?}: expected on or off"),
        )),
    }
}

/// A comma-separated list of CIDRs or single addresses (`10.0.0.0/8, 192.0.2.7`).
fn networks(key: &'static str, value: Option<String>) -> Result<Vec<ipnet::IpNet>, SettingsError> {
    let Some(list) = value else {
        return Ok(vec![]);
    };
    list.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse::<ipnet::IpNet>()
                .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    SettingsError::Invalid(key, format!("{c:?} is not an IP address or CIDR"))
                })
        })
        .collect()
}

/// A `.env`-style file, as `dotenvy` reads it: `KEY=VALUE` lines (an `export ` in front is
/// allowed), blank lines and `#` comments skipped, values in single quotes taken as they are,
/// in double quotes with `\n`-style escapes and `${OTHER}` substitution (from lines above, or
/// the environment), unquoted ones with `$OTHER` substitution. A line it cannot read is named
/// by its number and key: its value may be a secret, so it is not shown.
fn parse_config_file(text: &str) -> Result<HashMap<String, String>, String> {
    let mut values = HashMap::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((key, value)) => {
                values.insert(key, value);
            }
            Err(dotenvy::Error::LineParse(line, at)) => {
                let first = line.lines().next().unwrap_or_default();
                let number = text
                    .lines()
                    .position(|l| l == first)
                    .map_or_else(|| "a line".to_string(), |n| format!("line {}", n + 1));
                let key: String = first
                    .trim_start()
                    .trim_start_matches("export ")
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                    .collect();
                return Err(if key.is_empty() {
                    format!("{number} is not KEY=VALUE")
                } else {
                    format!("{number} ({key}) cannot be read at character {}", at + 1)
                });
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_embedded_mode() {
        let s = Settings::from_map(&HashMap::new()).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert!(!s.is_production());
        assert_eq!(s.rate_limit_per_minute, 100);
        assert_eq!(s.webhook_rate_limit_per_second, 10);
        assert_eq!(s.hold, Duration::from_secs(900));
        assert_eq!(s.max_holds_per_guest, 3);
        assert!(s.effective_database_url().ends_with("data/zhilego.db"));
        assert!(!s.allow_sandbox_payments);
        assert_eq!(s.access_opens_before, chrono::Duration::hours(24));
        assert_eq!(s.edge.header_timeout, Duration::from_secs(10));
        assert_eq!(s.edge.body_timeout, Duration::from_secs(30));
        assert_eq!(s.edge.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.edge.request_timeout, Duration::from_secs(30));
        assert_eq!(s.edge.max_connections, 1024);
        assert_eq!(s.edge.metrics_addr.as_deref(), Some("127.0.0.1:9464"));
        assert_eq!(s.edge.jwt_max_ttl, chrono::Duration::hours(720));
        assert_eq!(s.edge.max_body_bytes, 1 << 20);
        assert!(s.edge.cors_origins.is_empty());
        assert!(s.telemetry.otlp_endpoint.is_none());
        assert!(s.telemetry.sentry_dsn.is_none());
        assert_eq!(s.telemetry.service_name, "zhilego");
    }

    #[test]
    fn cors_and_telemetry_are_read() {
        let s = Settings::from_map(&map(&[
            (
                "ZHILEGO_CORS_ORIGINS",
                "https://zhilego.kz, https://m.zhilego.kz",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/"),
            ("OTEL_SERVICE_NAME", "zhilego-api"),
            ("SENTRY_DSN", "https://abc123@o1.ingest.sentry.io/42"),
        ]))
        .unwrap();
        assert_eq!(
            s.edge.cors_origins,
            vec!["https://zhilego.kz", "https://m.zhilego.kz"]
        );
        assert_eq!(
            s.telemetry.otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:4318")
        );
        assert_eq!(s.telemetry.service_name, "zhilego-api");
        assert!(!format!("{s:?}").contains("abc123"));
        for (key, bad) in [
            ("ZHILEGO_CORS_ORIGINS", "*"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("SENTRY_DSN", "not a dsn"),
            ("ZHILEGO_MAX_BODY_BYTES", "0"),
        ] {
            let err = Settings::from_map(&map(&[(key, bad)])).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn sandbox_allowance_and_access_window_are_read() {
        let s = Settings::from_map(&map(&[
            ("ZHILEGO_ALLOW_SANDBOX_PAYMENTS", "1"),
            ("ZHILEGO_ACCESS_OPENS_BEFORE_HOURS", "48"),
        ]))
        .unwrap();
        assert!(s.allow_sandbox_payments);
        assert_eq!(s.access_opens_before, chrono::Duration::hours(48));
        for (key, bad) in [
            ("ZHILEGO_ALLOW_SANDBOX_PAYMENTS", "maybe"),
            ("ZHILEGO_ACCESS_OPENS_BEFORE_HOURS", "-1"),
        ] {
            let err = Settings::from_map(&map(&[(key, bad)])).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn edge_limits_are_positive() {
        let err = Settings::from_map(&map(&[("ZHILEGO_BODY_TIMEOUT_MS", "0")])).unwrap_err();
        assert!(err.to_string().contains("ZHILEGO_BODY_TIMEOUT_MS"));
        let s = Settings::from_map(&map(&[("ZHILEGO_METRICS_ADDR", "off")])).unwrap();
        assert_eq!(s.edge.metrics_addr, None);
    }

    #[test]
    fn production_needs_a_jwt_secret() {
        let err = Settings::from_map(&map(&[("DATABASE_URL", "postgres://x/y")])).unwrap_err();
        assert!(matches!(err, SettingsError::MissingJwtSecret));
        let err = Settings::from_map(&map(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("ZHILEGO_JWT_SECRET", "s3cret"),
        ]))
        .unwrap_err();
        assert!(matches!(err, SettingsError::MissingEncryptionKey));
        let key = "ab".repeat(32);
        let s = Settings::from_map(&map(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("ZHILEGO_JWT_SECRET", "s3cret"),
            ("ZHILEGO_ENCRYPTION_KEY", &key),
        ]))
        .unwrap();
        assert!(!format!("{s:?}").contains(&key));
        let err = Settings::from_map(&map(&[("ZHILEGO_ENCRYPTION_KEY", "short")])).unwrap_err();
        assert!(err.to_string().contains("ZHILEGO_ENCRYPTION_KEY"));
        assert!(s.is_production());
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn bad_numbers_name_the_variable() {
        let err = Settings::from_map(&map(&[("ZHILEGO_RATE_LIMIT", "many")])).unwrap_err();
        assert!(err.to_string().contains("ZHILEGO_RATE_LIMIT"));
    }

    #[test]
    fn config_file_lines() {
        let m = parse_config_file("# c\nZHILEGO_LISTEN = \"0.0.0.0:9000\"\n\nX=1\n").unwrap();
        assert_eq!(m["ZHILEGO_LISTEN"], "0.0.0.0:9000");
        assert_eq!(m["X"], "1");
    }

    #[test]
    fn config_files_are_dotenv() {
        let m = parse_config_file(concat!(
            "export ZHILEGO_RATE_LIMIT=50\n",
            "KASPI_API_KEY='a$b#c'\n",
            "ZHILEGO_PUBLIC_URL=https://zhilego.kz # the site\n",
            "ZHILEGO_NATS_STREAM=EVENTS\n",
            "ZHILEGO_NATS_SUBJECT_PREFIX=\"${ZHILEGO_NATS_STREAM}.all\"\n",
            "TWILIO_TEMPLATE_SID=\"two\nlines\"\n",
        ))
        .unwrap();
        assert_eq!(m["ZHILEGO_RATE_LIMIT"], "50");
        assert_eq!(m["KASPI_API_KEY"], "a$b#c", "single quotes keep everything");
        assert_eq!(m["ZHILEGO_PUBLIC_URL"], "https://zhilego.kz");
        assert_eq!(m["ZHILEGO_NATS_SUBJECT_PREFIX"], "EVENTS.all");
        assert_eq!(m["TWILIO_TEMPLATE_SID"], "two\nlines");
    }

    #[test]
    fn a_bad_config_line_is_named_without_its_value() {
        let err = parse_config_file("ZHILEGO_LISTEN=127.0.0.1:1\nZHILEGO_JWT_SECRET=\"hunter2\n")
            .unwrap_err();
        assert!(err.contains("line 2 (ZHILEGO_JWT_SECRET)"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse_config_file("# ok\njust words\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    fn layers(file: &[(&str, &str)], env: &[(&str, &str)], args: &[(&str, &str)]) -> Layers {
        Layers {
            file: Some((PathBuf::from("/etc/zhilego.env"), map(file))),
            env: map(env),
            args: map(args),
        }
    }

    #[test]
    fn defaults_then_file_then_environment_then_options() {
        let l = layers(
            &[
                ("ZHILEGO_RATE_LIMIT", "50"),
                ("ZHILEGO_HOLD_SECONDS", "600"),
                ("ZHILEGO_DATA_DIR", "/file"),
            ],
            &[
                ("ZHILEGO_HOLD_SECONDS", "300"),
                ("ZHILEGO_LISTEN", ""),
                ("ZHILEGO_DATA_DIR", "/env"),
                ("NATS_URL", "nats://env:4222"),
            ],
            &[
                ("ZHILEGO_DATA_DIR", "/option"),
                ("NATS_URL", "nats://env:4222"),
            ],
        );
        let s = Settings::from_map(&l.merged()).unwrap();
        assert_eq!(s.rate_limit_per_minute, 50, "the file over the default");
        assert_eq!(
            s.hold,
            Duration::from_secs(300),
            "the environment over the file"
        );
        assert_eq!(s.listen, "127.0.0.1:8080", "empty is unset");
        assert_eq!(s.data_dir, PathBuf::from("/option"), "the option over all");
        assert_eq!(l.origin("ZHILEGO_DATA_DIR"), Origin::CommandLine);
        assert_eq!(
            l.origin("NATS_URL"),
            Origin::Env,
            "filled from the variable"
        );
        assert_eq!(
            l.origin("ZHILEGO_RATE_LIMIT"),
            Origin::File("/etc/zhilego.env".into())
        );
        assert_eq!(l.origin("ZHILEGO_HOLD_SECONDS"), Origin::Env);
        assert_eq!(l.origin("ZHILEGO_LISTEN"), Origin::Default);
        assert_eq!(l.origin("ZHILEGO_MAX_CONNECTIONS"), Origin::Default);
    }

    #[test]
    fn the_config_file_is_read_from_zhilego_config() {
        let dir = std::env::temp_dir().join(format!("zhilego-settings-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("zhilego.env");
        std::fs::write(&path, "ZHILEGO_RATE_LIMIT=7\nZHILEGO_LISTEN=0.0.0.0:1\n").unwrap();
        let env = map(&[
            ("ZHILEGO_CONFIG", path.to_str().unwrap()),
            ("ZHILEGO_LISTEN", "127.0.0.1:2"),
        ]);
        let l = Layers::load(env, HashMap::new()).unwrap();
        let s = Settings::from_map(&l.merged()).unwrap();
        assert_eq!(s.rate_limit_per_minute, 7);
        assert_eq!(s.listen, "127.0.0.1:2");
        std::fs::write(&path, "ZHILEGO_RATE_LIMIT\n").unwrap();
        let err = Layers::load(
            map(&[("ZHILEGO_CONFIG", path.to_str().unwrap())]),
            HashMap::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let missing = dir.join("missing.env");
        let err = Layers::load(
            HashMap::new(),
            map(&[("ZHILEGO_CONFIG", missing.to_str().unwrap())]),
        )
        .unwrap_err();
        assert!(matches!(err, SettingsError::File(..)), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
