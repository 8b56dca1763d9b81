//! `zhilego config check`: every setting's effective value, one `KEY=VALUE` line each, with
//! where it came from (the default, the config file, the environment). Secrets show as `***`
//! when set, and so do the passwords inside URLs. A bad setting is the same error `serve`
//! would stop with, naming the setting.
use crate::settings::{Layers, Origin, Secret, Settings};
use std::time::Duration;

/// What a secret shows as.
pub const REDACTED: &str = "***";

/// Every setting with its effective value, written as it would be set.
pub fn effective(s: &Settings) -> Vec<(&'static str, String)> {
    let ms = |d: Duration| d.as_millis().to_string();
    let secs = |d: Duration| d.as_secs().to_string();
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
    let one_zero = |b: bool| if b { "1" } else { "0" }.to_string();
    let list = |v: &[ipnet::IpNet]| {
        v.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let urls = |v: &[String]| {
        v.iter()
            .map(|u| redact_url(u))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (k, t, w, e, i, a, r) = (
        &s.kaspi,
        &s.telegram,
        &s.twilio,
        &s.edge,
        &s.ical,
        &s.audit,
        &s.reports,
    );
    vec![
        ("ZHILEGO_LISTEN", s.listen.clone()),
        ("ZHILEGO_DATA_DIR", s.data_dir.display().to_string()),
        ("ZHILEGO_PUBLIC_URL", opt(&s.public_url)),
        (
            "DATABASE_URL",
            s.database_url
                .as_deref()
                .map(redact_url)
                .unwrap_or_default(),
        ),
        (
            "READ_DATABASE_URL",
            s.read_database_url
                .as_deref()
                .map(redact_url)
                .unwrap_or_default(),
        ),
        ("READ_REPLICA_URLS", urls(&s.read_replica_urls)),
        (
            "ZHILEGO_DB_MAX_CONNECTIONS",
            s.max_connections().to_string(),
        ),
        ("ZHILEGO_PROJECTIONS", on_off(s.run_projections)),
        ("ZHILEGO_RELAY", on_off(s.run_relay)),
        (
            "NATS_URL",
            s.nats_url
                .as_deref()
                .map(|u| urls(&u.split(',').map(str::to_string).collect::<Vec<_>>()))
                .unwrap_or_default(),
        ),
        ("ZHILEGO_NATS_REPLICAS", s.nats_replicas.to_string()),
        ("ZHILEGO_NATS_STREAM", s.nats_stream.clone()),
        ("ZHILEGO_NATS_SUBJECT_PREFIX", s.nats_subject_prefix.clone()),
        ("ZHILEGO_JWT_SECRET", secret(&s.jwt_secret)),
        (
            "ZHILEGO_JWT_PREVIOUS_SECRET",
            secret(&e.jwt_previous_secret),
        ),
        (
            "ZHILEGO_JWT_MAX_TTL_HOURS",
            e.jwt_max_ttl.num_hours().to_string(),
        ),
        ("ZHILEGO_ENCRYPTION_KEY", secret(&s.encryption_key)),
        ("ZHILEGO_RATE_LIMIT", s.rate_limit_per_minute.to_string()),
        (
            "ZHILEGO_WEBHOOK_RATE_LIMIT",
            s.webhook_rate_limit_per_second.to_string(),
        ),
        ("ZHILEGO_HOLD_SECONDS", secs(s.hold)),
        (
            "ZHILEGO_MAX_HOLDS_PER_GUEST",
            s.max_holds_per_guest.to_string(),
        ),
        ("ZHILEGO_SWEEP_INTERVAL_MS", ms(s.sweep_interval)),
        ("ZHILEGO_ORPHAN_AFTER_SECONDS", secs(s.orphan_after)),
        ("ZHILEGO_READ_WAIT_MS", ms(s.read_wait)),
        (
            "ZHILEGO_ACCESS_OPENS_BEFORE_HOURS",
            s.access_opens_before.num_hours().to_string(),
        ),
        ("ZHILEGO_HEADER_TIMEOUT_MS", ms(e.header_timeout)),
        ("ZHILEGO_BODY_TIMEOUT_MS", ms(e.body_timeout)),
        ("ZHILEGO_IDLE_TIMEOUT_MS", ms(e.idle_timeout)),
        ("ZHILEGO_REQUEST_TIMEOUT_MS", ms(e.request_timeout)),
        ("ZHILEGO_MAX_CONNECTIONS", e.max_connections.to_string()),
        ("ZHILEGO_TRUSTED_PROXIES", list(&e.trusted_proxies)),
        ("ZHILEGO_MAX_BODY_BYTES", e.max_body_bytes.to_string()),
        ("ZHILEGO_CORS_ORIGINS", e.cors_origins.join(",")),
        (
            "ZHILEGO_LOG_FORMAT",
            if s.telemetry.json_logs {
                "json"
            } else {
                "text"
            }
            .to_string(),
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            s.telemetry
                .otlp_endpoint
                .as_deref()
                .map(redact_url)
                .unwrap_or_default(),
        ),
        ("OTEL_SERVICE_NAME", s.telemetry.service_name.clone()),
        ("SENTRY_DSN", secret(&s.telemetry.sentry_dsn)),
        ("SENTRY_ENVIRONMENT", s.telemetry.sentry_environment.clone()),
        (
            "ZHILEGO_METRICS_ADDR",
            e.metrics_addr.clone().unwrap_or_else(|| "off".into()),
        ),
        ("ZHILEGO_METRICS_TOKEN", secret(&e.metrics_token)),
        (
            "KASPI_MODE",
            match k.mode {
                crate::settings::KaspiMode::Sandbox => "sandbox",
                crate::settings::KaspiMode::Live => "live",
            }
            .to_string(),
        ),
        (
            "ZHILEGO_ALLOW_SANDBOX_PAYMENTS",
            one_zero(s.allow_sandbox_payments),
        ),
        (
            "KASPI_API_URL",
            k.api_url.as_deref().map(redact_url).unwrap_or_default(),
        ),
        ("KASPI_API_KEY", secret(&k.api_key)),
        // The trade point's token is Kaspi's to keep: shown like a secret.
        (
            "KASPI_DEVICE_TOKEN",
            k.device_token
                .as_ref()
                .map(|_| REDACTED.to_string())
                .unwrap_or_default(),
        ),
        ("KASPI_ORGANIZATION_BIN", opt(&k.organization_bin)),
        ("KASPI_TIMEOUT_MS", ms(k.timeout)),
        ("KASPI_ATTEMPTS", k.attempts.to_string()),
        (
            "KASPI_REQUESTS_PER_SECOND",
            k.requests_per_second.to_string(),
        ),
        ("KASPI_CALLBACK_USER", opt(&k.callback_user)),
        ("KASPI_CALLBACK_PASSWORD", secret(&k.callback_password)),
        ("KASPI_CALLBACK_ALLOW_IPS", list(&k.callback_allow_ips)),
        ("ZHILEGO_RECONCILE_INTERVAL_MS", ms(s.reconcile_interval)),
        ("ZHILEGO_RECONCILE_AFTER_SECONDS", secs(s.reconcile_after)),
        ("TELEGRAM_BOT_TOKEN", secret(&t.bot_token)),
        ("TELEGRAM_API_URL", redact_url(&t.api_url)),
        ("TELEGRAM_WEBHOOK_SECRET", secret(&t.webhook_secret)),
        (
            "TELEGRAM_MODE",
            match t.mode {
                crate::settings::TelegramMode::Webhook => "webhook",
                crate::settings::TelegramMode::Polling => "polling",
            }
            .to_string(),
        ),
        ("TWILIO_ACCOUNT_SID", opt(&w.account_sid)),
        ("TWILIO_AUTH_TOKEN", secret(&w.auth_token)),
        ("TWILIO_API_URL", redact_url(&w.api_url)),
        ("TWILIO_WHATSAPP_FROM", opt(&w.whatsapp_from)),
        ("TWILIO_TEMPLATE_SID", opt(&w.template_sid)),
        (
            "ZHILEGO_ICAL_SYNC_INTERVAL",
            format!("{}s", i.interval.as_secs()),
        ),
        ("ZHILEGO_ICAL_CONCURRENCY", i.concurrency.to_string()),
        ("ZHILEGO_ICAL_TIMEOUT_MS", ms(i.fetch.timeout)),
        ("ZHILEGO_ICAL_MAX_BYTES", i.fetch.max_bytes.to_string()),
        (
            "ZHILEGO_ICAL_MAX_REDIRECTS",
            i.fetch.max_redirects.to_string(),
        ),
        (
            "ZHILEGO_ICAL_ALLOW_PRIVATE",
            one_zero(i.fetch.allow_private),
        ),
        ("ZHILEGO_NOTARY", on_off(a.run_notary)),
        ("ZHILEGO_AUDIT_SIGNING_KEY", secret(&a.signing_key)),
        ("ZHILEGO_AUDIT_ORIGIN", a.origin.clone()),
        (
            "ZHILEGO_AUDIT_CHECKPOINT_EVERY",
            a.checkpoint_every.to_string(),
        ),
        (
            "ZHILEGO_AUDIT_CHECKPOINT_INTERVAL_MS",
            ms(a.checkpoint_interval),
        ),
        (
            "ZHILEGO_AUDIT_CHECKPOINT_FILE",
            a.checkpoint_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "off".into()),
        ),
        (
            "ZHILEGO_AUDIT_WITNESS_URL",
            a.witness_url
                .as_ref()
                .map(|u| redact_url(u.as_str()))
                .unwrap_or_default(),
        ),
        ("ZHILEGO_REPORT_TELEGRAM_CHAT", opt(&r.telegram_chat)),
        ("ZHILEGO_REPORT_AT", r.at.format("%H:%M").to_string()),
        ("ZHILEGO_REPORT_CHECK_MS", ms(r.check_interval)),
    ]
}

/// `***` for a secret that is set, nothing for one that is not.
fn secret(s: &Option<Secret>) -> String {
    s.as_ref().map(|_| REDACTED.to_string()).unwrap_or_default()
}

/// A URL with its password (and a user name given alone, which may be a token) replaced by
/// `***`; text that is no URL but has credentials before an `@` loses them too.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some(REDACTED));
            url.to_string()
        }
        Ok(mut url) if !url.username().is_empty() => {
            let _ = url.set_username(REDACTED);
            url.to_string()
        }
        // `user:password@host` parses as a URL of scheme `user`, with no host.
        Ok(url) if !url.cannot_be_a_base() => raw.to_string(),
        _ => match (raw.find("://"), raw.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}{REDACTED}{}", &raw[..scheme + 3], &raw[at..])
            }
            (None, Some(at)) => format!("{REDACTED}{}", &raw[at..]),
            _ => raw.to_string(),
        },
    }
}

/// The report `zhilego config check` prints: a header naming the mode and the layers, then one
/// line per setting, `KEY=VALUE` (quoted when it needs to be) and where it came from.
pub fn render(layers: &Layers, settings: &Settings) -> String {
    let mut out = format!(
        "# zhilego {}: {} mode; effective settings (secrets as {REDACTED})\n",
        env!("CARGO_PKG_VERSION"),
        if settings.is_production() {
            "production"
        } else {
            "embedded"
        }
    );
    match &layers.file {
        Some((path, _)) => out.push_str(&format!(
            "# from the defaults, then {} (ZHILEGO_CONFIG), then the environment, then the options\n",
            path.display()
        )),
        None => out.push_str(
            "# from the defaults, then the environment, then the options (no ZHILEGO_CONFIG file)\n",
        ),
    }
    let lines: Vec<(String, String)> = effective(settings)
        .into_iter()
        .map(|(key, value)| {
            let origin = match layers.origin(key) {
                Origin::Default if value.is_empty() => "default (unset)".to_string(),
                Origin::Default => "default".to_string(),
                Origin::File(path) => format!("file {}", path.display()),
                Origin::Env => "environment".to_string(),
                Origin::CommandLine => "command line".to_string(),
            };
            (format!("{key}={}", quoted(&value)), origin)
        })
        .collect();
    let width = lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    for (line, origin) in lines {
        out.push_str(&format!("{line:<width$}  # {origin}\n"));
    }
    if let Some((path, values)) = &layers.file {
        let known = Settings::keys_read(&layers.merged());
        let mut unread: Vec<&String> = values.keys().filter(|k| !known.contains(*k)).collect();
        unread.sort();
        for key in unread {
            out.push_str(&format!(
                "# {key} in {} is not a setting of this version: ignored\n",
                path.display()
            ));
        }
    }
    out
}

/// A value as a `.env` file takes it back: bare when it can be, else in single quotes (taken
/// as they are), else in double quotes with `\\`, `"` and `$` escaped.
fn quoted(value: &str) -> String {
    if value
        .chars()
        .all(|c| !c.is_whitespace() && !"#'\"$\\`".contains(c))
    {
        value.to_string()
    } else if !value.contains('\'') {
        format!("'{value}'")
    } else {
        let escaped = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "\\$");
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn production() -> HashMap<String, String> {
        map(&[
            ("DATABASE_URL", "postgres://zhilego:pg-pass@db:5432/zhilego"),
            ("ZHILEGO_JWT_SECRET", "jwt-secret-value"),
            ("ZHILEGO_ENCRYPTION_KEY", &"ab".repeat(32)),
        ])
    }

    #[test]
    fn every_setting_read_is_shown_once() {
        let mut read = Settings::keys_read(&HashMap::new());
        read.extend(Settings::keys_read(&production()));
        let shown: Vec<&str> = effective(&Settings::from_map(&HashMap::new()).unwrap())
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let unique: BTreeSet<String> = shown.iter().map(|k| k.to_string()).collect();
        assert_eq!(unique.len(), shown.len(), "a key shown twice: {shown:?}");
        assert_eq!(unique, read, "config check and the settings disagree");
    }

    #[test]
    fn defaults_are_shown_as_the_settings_use_them() {
        let s = Settings::from_map(&HashMap::new()).unwrap();
        let e: HashMap<_, _> = effective(&s).into_iter().collect();
        assert_eq!(e["ZHILEGO_LISTEN"], "127.0.0.1:8080");
        assert_eq!(e["ZHILEGO_HOLD_SECONDS"], "900");
        assert_eq!(e["ZHILEGO_DB_MAX_CONNECTIONS"], "4");
        assert_eq!(e["ZHILEGO_ICAL_SYNC_INTERVAL"], "900s");
        assert_eq!(e["ZHILEGO_METRICS_ADDR"], "127.0.0.1:9464");
        assert_eq!(e["KASPI_MODE"], "sandbox");
        assert_eq!(e["ZHILEGO_REPORT_AT"], "06:00");
        assert_eq!(e["ZHILEGO_JWT_SECRET"], "");
    }

    #[test]
    fn shown_values_read_back_to_the_same_settings() {
        // What config check prints (secrets aside) is itself a configuration that gives the
        // same settings.
        let mut values = production();
        values.insert("ZHILEGO_ICAL_SYNC_INTERVAL".into(), "5m".into());
        values.insert(
            "ZHILEGO_TRUSTED_PROXIES".into(),
            "10.0.0.0/8, 192.0.2.7".into(),
        );
        values.insert("ZHILEGO_METRICS_ADDR".into(), "off".into());
        let first = effective(&Settings::from_map(&values).unwrap());
        let mut again: HashMap<String, String> = first
            .iter()
            .filter(|(_, v)| !v.contains(REDACTED))
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        for key in [
            "DATABASE_URL",
            "ZHILEGO_JWT_SECRET",
            "ZHILEGO_ENCRYPTION_KEY",
        ] {
            again.insert(key.into(), values[key].clone());
        }
        assert_eq!(effective(&Settings::from_map(&again).unwrap()), first);
    }

    #[test]
    fn secrets_and_url_passwords_are_redacted() {
        let mut values = production();
        for (k, v) in [
            ("NATS_URL", "nats://bus:nats-pass@n1:4222,nats://n2:4222"),
            ("READ_REPLICA_URLS", "postgres://r:replica-pass@r1/z"),
            ("TELEGRAM_BOT_TOKEN", "tg-token"),
            ("TELEGRAM_MODE", "polling"),
            ("KASPI_API_KEY", "kaspi-key"),
            ("KASPI_DEVICE_TOKEN", "device-token"),
            ("ZHILEGO_METRICS_TOKEN", "metrics-token"),
            (
                "ZHILEGO_AUDIT_WITNESS_URL",
                "https://w:witness-pass@witness.example/add",
            ),
        ] {
            values.insert(k.into(), v.into());
        }
        let layers = Layers {
            env: values.clone(),
            ..Layers::default()
        };
        let out = render(&layers, &Settings::from_map(&values).unwrap());
        for secret in [
            "pg-pass",
            "jwt-secret-value",
            &"ab".repeat(32),
            "nats-pass",
            "replica-pass",
            "tg-token",
            "kaspi-key",
            "device-token",
            "metrics-token",
            "witness-pass",
        ] {
            assert!(!out.contains(secret), "{secret} shown:\n{out}");
        }
        assert!(
            out.contains("DATABASE_URL=postgres://zhilego:***@db:5432/zhilego"),
            "{out}"
        );
        assert!(
            out.contains("NATS_URL=nats://bus:***@n1:4222,nats://n2:4222"),
            "{out}"
        );
        assert!(out.contains("ZHILEGO_JWT_SECRET=***"), "{out}");
        assert!(out.contains("production mode"), "{out}");
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(redact_url("postgres://u:p@h/d"), "postgres://u:***@h/d");
        assert_eq!(redact_url("https://token@h/x"), "https://***@h/x");
        assert_eq!(redact_url("https://h/x"), "https://h/x");
        assert_eq!(redact_url("nats://u:p@[bad"), "nats://***@[bad");
        assert_eq!(redact_url("u:p@host"), "***@host");
        assert_eq!(redact_url("sqlite://./data/z.db"), "sqlite://./data/z.db");
        assert_eq!(redact_url("sqlite:data/z.db"), "sqlite:data/z.db");
    }

    #[test]
    fn values_are_quoted_when_needed() {
        assert_eq!(quoted("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(quoted(""), "");
        assert_eq!(quoted("a b"), "'a b'");
        for v in ["it's", "a$b", "x\\y \"z\" 'q' $w"] {
            let line = format!("K={}\n", quoted(v));
            let back: HashMap<String, String> = dotenvy::from_read_iter(line.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(back["K"], v, "{line}");
        }
    }
}
