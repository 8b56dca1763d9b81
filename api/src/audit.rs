//! The audit's wiring: its settings, the signing key (configured, or generated into the data
//! dir in embedded mode), and the notary inside `serve` or alone (`zhilego notary`).
use crate::files::create_data_dir;
use crate::settings::{Secret, Settings, SettingsError};
use audit::notary::{NotaryConfig, NotaryWorker, Sinks};
use audit::note::{Notary, NoteVerifier};
use std::path::PathBuf;
use std::time::Duration;
use store::Database;

/// `ZHILEGO_AUDIT_*` (docs/audit.md, "Running the notary").
#[derive(Clone, Debug)]
pub struct AuditSettings {
    /// `ZHILEGO_AUDIT_SIGNING_KEY`: the Ed25519 seed, 64 hex characters. Required in
    /// production; generated into `<data dir>/audit-signing-key` (0600) in embedded mode.
    pub signing_key: Option<Secret>,
    /// `ZHILEGO_AUDIT_ORIGIN`: the checkpoints' origin line and key name (default
    /// `zhilego.kz/audit`).
    pub origin: String,
    /// `ZHILEGO_AUDIT_CHECKPOINT_EVERY`: sign after this many new events (default 1000)...
    pub checkpoint_every: u64,
    /// `ZHILEGO_AUDIT_CHECKPOINT_INTERVAL_MS`: ...or this long after the last checkpoint
    /// when anything is new (default 10000).
    pub checkpoint_interval: Duration,
    /// `ZHILEGO_AUDIT_CHECKPOINT_FILE`: each new checkpoint is written here (default
    /// `<data dir>/audit-checkpoint` in embedded mode, none in production).
    pub checkpoint_file: Option<PathBuf>,
    /// `ZHILEGO_AUDIT_WITNESS_URL`: each new checkpoint is POSTed here (text/plain).
    pub witness_url: Option<url::Url>,
    /// `ZHILEGO_NOTARY`: `on` (default) runs the notary inside `serve`; `off` leaves it to a
    /// `zhilego notary` process.
    pub run_notary: bool,
}

impl AuditSettings {
    pub fn from_values(
        get: &dyn Fn(&str) -> Option<String>,
        data_dir: &std::path::Path,
        production: bool,
    ) -> Result<AuditSettings, SettingsError> {
        let positive = |key, default| crate::settings::positive(key, get, default);
        let settings = AuditSettings {
            signing_key: get("ZHILEGO_AUDIT_SIGNING_KEY").map(Secret::new),
            origin: get("ZHILEGO_AUDIT_ORIGIN").unwrap_or_else(|| "zhilego.kz/audit".into()),
            checkpoint_every: positive("ZHILEGO_AUDIT_CHECKPOINT_EVERY", 1000)?,
            checkpoint_interval: Duration::from_millis(positive(
                "ZHILEGO_AUDIT_CHECKPOINT_INTERVAL_MS",
                10_000,
            )?),
            checkpoint_file: match get("ZHILEGO_AUDIT_CHECKPOINT_FILE") {
                Some(v) if v == "off" => None,
                Some(v) => Some(PathBuf::from(v)),
                None if production => None,
                None => Some(data_dir.join("audit-checkpoint")),
            },
            witness_url: get("ZHILEGO_AUDIT_WITNESS_URL")
                .map(|u| {
                    url::Url::parse(&u).map_err(|e| {
                        SettingsError::Invalid("ZHILEGO_AUDIT_WITNESS_URL", e.to_string())
                    })
                })
                .transpose()?,
            run_notary: match get("ZHILEGO_NOTARY").as_deref() {
                None | Some("on") => true,
                Some("off") => false,
                Some(other) => {
                    return Err(SettingsError::Invalid(
                        "ZHILEGO_NOTARY",
                        format!("{other:?}: expected on or off"),
                    ))
                }
            },
        };
        if !audit::note::valid_key_name(&settings.origin) {
            return Err(SettingsError::Invalid(
                "ZHILEGO_AUDIT_ORIGIN",
                "must be non-empty, without spaces or '+' (a schema-less URL)".into(),
            ));
        }
        if let Some(key) = &settings.signing_key {
            Notary::from_hex(key.expose(), &settings.origin)
                .map_err(|e| SettingsError::Invalid("ZHILEGO_AUDIT_SIGNING_KEY", e))?;
        }
        Ok(settings)
    }
}

/// The checkpoint signer: the configured key, or (embedded mode) one generated once into the
/// data dir, private from its first byte.
pub fn signer(settings: &Settings) -> anyhow::Result<Notary> {
    let audit = &settings.audit;
    let seed = match &audit.signing_key {
        Some(key) => key.expose().to_string(),
        None => {
            anyhow::ensure!(
                !settings.is_production(),
                "ZHILEGO_AUDIT_SIGNING_KEY is required in production mode"
            );
            create_data_dir(&settings.data_dir)?;
            let seed =
                crate::app::read_or_create_secret(&settings.data_dir.join("audit-signing-key"))?;
            String::from_utf8(seed)?
        }
    };
    Notary::from_hex(&seed, &audit.origin)
        .map_err(|e| anyhow::anyhow!("ZHILEGO_AUDIT_SIGNING_KEY {e}"))
}

/// The public side of the signer, for checking checkpoints.
pub fn verifier(settings: &Settings) -> anyhow::Result<NoteVerifier> {
    Ok(signer(settings)?.verifier())
}

pub fn notary(settings: &Settings, db: &Database) -> anyhow::Result<NotaryWorker> {
    let audit = &settings.audit;
    Ok(NotaryWorker::new(
        db.clone(),
        signer(settings)?,
        NotaryConfig {
            every: audit.checkpoint_every,
            interval: audit.checkpoint_interval,
            sinks: Sinks {
                file: audit.checkpoint_file.clone(),
                witness: audit.witness_url.clone(),
            },
            ..NotaryConfig::default()
        },
    ))
}

/// How often the notary looks for new events.
pub const NOTARY_POLL: Duration = Duration::from_millis(100);
