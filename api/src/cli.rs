//! The `zhilego` command line.
use crate::app::{jwt_secret, open_database, shutdown_signal, Application};
use crate::auth::JwtKeys;
use crate::settings::Settings;
use clap::{Parser, Subcommand};
use domain::Role;
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(
    name = "zhilego",
    version,
    about = "ZhilyeGO: short-term apartment rentals backend"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service (the default): API, background work. Embedded mode without DATABASE_URL.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Run only the store → NATS JetStream relay (production mode; `serve` runs one too).
    Relay,
    /// Print a signed JWT for a user and role.
    Token {
        /// guest, host, admin, analyst or auditor.
        #[arg(long)]
        role: String,
        /// The user id (a UUID); a new one if left out.
        #[arg(long)]
        sub: Option<Uuid>,
        /// Lifetime in hours.
        #[arg(long, default_value_t = 24)]
        ttl_hours: i64,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserAction,
    },
    /// Audit the event store.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
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
pub enum AuditCommand {
    /// Walk every aggregate's hash chain and report breaks (exit code 1 if any).
    Verify,
}

/// Runs the command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let settings = Settings::from_env()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(settings).await?;
            let addr = app.local_addr();
            println!("listening on http://{addr}");
            tracing::info!(%addr, mode = if app.state().settings.is_production() { "production" } else { "embedded" }, "serving");
            app.run_until_stopped(shutdown_signal()).await?;
            Ok(0)
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
                .connect(url.as_str())
                .await?;
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
            Ok(0)
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
            let role = Role::parse(&role)
                .filter(|r| *r != Role::System)
                .ok_or_else(|| {
                    anyhow::anyhow!("--role must be guest, host, admin, analyst or auditor")
                })?;
            anyhow::ensure!(ttl_hours > 0, "--ttl-hours must be positive");
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
                db,
                commands::CommandsConfig::default(),
                crate::app::encryption_key(&settings)?,
            );
            let operator = domain::Actor {
                user_id: Uuid::nil(),
                role: Role::Admin,
            };
            let meta =
                commands::CommandMeta::new(operator, domain::Channel::System, Uuid::now_v7());
            let written = commands
                .erase_personal_data(id, &meta)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "personal data of {id} erased (position {})",
                written.position
            );
            Ok(0)
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let db = open_database(&settings).await?;
            let report = store::history::verify(&db).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.ok { 0 } else { 1 })
        }
    }
}
