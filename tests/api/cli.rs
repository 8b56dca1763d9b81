//! The command line: roles and projection names as value enums and the settings' variables in
//! `--help`, `config check` (effective settings, secrets redacted, bad settings named), and
//! `audit verify`'s progress bar, drawn on a terminal and nowhere else.
use crate::helpers::{spawn_app, temp_dir, Backend};
use crate::processes::ZHILEGO;
use api::cli::{ProjectionName, TokenRole};
use clap::ValueEnum;
use domain::Role;
use std::collections::{BTreeSet, HashMap};
use tokio::process::Command;
use uuid::Uuid;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `zhilego args` with only `env` (and PATH) in its environment.
async fn zhilego(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(ZHILEGO)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run zhilego");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn help_lists_roles_projections_and_the_variables() {
    let top = zhilego(
        &["--help"],
        &[
            ("ZHILEGO_LISTEN", "127.0.0.1:1234"),
            ("DATABASE_URL", "postgres://u:hunter2@db/z"),
        ],
    )
    .await;
    assert_eq!(top.code, 0, "{}", top.stderr);
    for shown in [
        "[env: ZHILEGO_CONFIG=]",
        "[env: DATABASE_URL]",
        "[env: NATS_URL]",
        "[env: ZHILEGO_LISTEN=127.0.0.1:1234]",
        "[env: ZHILEGO_DATA_DIR=]",
        "zhilego config check",
    ] {
        assert!(top.stdout.contains(shown), "{shown} in:\n{}", top.stdout);
    }
    assert!(
        !top.stdout.contains("hunter2"),
        "a URL's value is not shown: {}",
        top.stdout
    );

    let token = zhilego(&["token", "--help"], &[]).await;
    assert!(
        token
            .stdout
            .contains("[possible values: guest, host, admin, analyst, auditor]"),
        "{}",
        token.stdout
    );
    assert!(
        token.stdout.contains("[env: DATABASE_URL]"),
        "options are global"
    );
    let rebuild = zhilego(&["projections", "rebuild", "--help"], &[]).await;
    assert!(
        rebuild.stdout.contains("bookings")
            && rebuild.stdout.contains("availability")
            && rebuild.stdout.contains("listings")
            && rebuild.stdout.contains("analytics")
            && rebuild.stdout.contains("users")
            && rebuild.stdout.contains("all"),
        "{}",
        rebuild.stdout
    );

    let system = zhilego(&["token", "--role", "system"], &[]).await;
    assert_eq!(system.code, 2, "{}", system.stderr);
    assert!(
        system.stderr.contains("invalid value 'system'")
            && system.stderr.contains("possible values"),
        "{}",
        system.stderr
    );
    let unknown = zhilego(&["projections", "rebuild", "bookingz"], &[]).await;
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("bookingz"), "{}", unknown.stderr);
}

#[test]
fn token_roles_are_every_role_but_the_services_own() {
    // A new role must be decided on here (the match is exhaustive).
    let every = |r: Role| match r {
        Role::Guest | Role::Host | Role::Admin | Role::Analyst | Role::Auditor => true,
        Role::System => false,
    };
    let roles = [
        Role::Guest,
        Role::Host,
        Role::Admin,
        Role::Analyst,
        Role::Auditor,
        Role::System,
    ];
    let mintable: BTreeSet<&str> = roles
        .into_iter()
        .filter(|r| every(*r))
        .map(Role::as_str)
        .collect();
    let offered: BTreeSet<&str> = TokenRole::value_variants()
        .iter()
        .map(|r| {
            let name = r.to_possible_value().unwrap().get_name().to_string();
            let role = Role::from(*r);
            assert_eq!(role.as_str(), name, "the option names the role");
            role.as_str()
        })
        .collect();
    assert_eq!(offered, mintable);
}

#[tokio::test]
async fn projection_names_are_the_read_models() {
    let Some(app) = spawn_app(Backend::Sqlite, "projection_names_are_the_read_models").await else {
        return;
    };
    let statuses = app.state.reads.statuses().await.unwrap();
    let models: Vec<String> = statuses.iter().map(|s| s.name.to_string()).collect();
    let all: Vec<String> = ProjectionName::All
        .read_models()
        .into_iter()
        .map(str::to_string)
        .collect();
    assert_eq!(all, models, "`all` is every read model, in order");
    for p in ProjectionName::value_variants() {
        if *p == ProjectionName::All {
            continue;
        }
        let name = p.to_possible_value().unwrap().get_name().to_string();
        assert_eq!(p.read_models(), vec![name.as_str()]);
    }
    app.finish().await;
}

/// `KEY=VALUE` lines of `config check`'s output, with each line's origin comment.
fn settings_lines(out: &str) -> HashMap<String, (String, String)> {
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (setting, origin) = l.split_once("  # ").expect("an origin on each line");
            let (key, value) = setting.split_once('=').expect("KEY=VALUE");
            (
                key.to_string(),
                (value.trim_end().to_string(), origin.to_string()),
            )
        })
        .collect()
}

#[tokio::test]
async fn config_check_prints_the_effective_settings_with_secrets_hidden() {
    let dir = temp_dir();
    let file = dir.join("zhilego.env");
    std::fs::write(
        &file,
        "# settings\nZHILEGO_RATE_LIMIT=42\nZHILEGO_HOLD_SECONDS=600\n\
         KASPI_API_KEY='file-kaspi-key'\nZHILEGO_RATE_LIMTI=5\n",
    )
    .unwrap();
    let path = file.display().to_string();
    let run = zhilego(
        &["config", "check", "--listen", "127.0.0.1:9999"],
        &[
            ("ZHILEGO_CONFIG", &path),
            ("ZHILEGO_HOLD_SECONDS", "300"),
            ("ZHILEGO_LISTEN", "127.0.0.1:1111"),
            ("ZHILEGO_JWT_SECRET", "env-jwt-secret"),
            ("NATS_URL", "nats://bus:nats-pass@127.0.0.1:4222"),
            ("ZHILEGO_DATA_DIR", &dir.display().to_string()),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    for secret in ["file-kaspi-key", "env-jwt-secret", "nats-pass"] {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "{secret} shown:\n{}{}",
            run.stdout,
            run.stderr
        );
    }
    let lines = settings_lines(&run.stdout);
    let is = |key: &str, value: &str, origin: &str| {
        assert_eq!(
            lines.get(key),
            Some(&(value.to_string(), origin.to_string())),
            "{key} in:\n{}",
            run.stdout
        );
    };
    is("ZHILEGO_RATE_LIMIT", "42", &format!("file {path}"));
    is("ZHILEGO_HOLD_SECONDS", "300", "environment");
    is("ZHILEGO_LISTEN", "127.0.0.1:9999", "command line");
    is("ZHILEGO_MAX_CONNECTIONS", "1024", "default");
    is("ZHILEGO_ICAL_SYNC_INTERVAL", "900s", "default");
    is("KASPI_API_KEY", "***", &format!("file {path}"));
    is("ZHILEGO_JWT_SECRET", "***", "environment");
    is("TELEGRAM_BOT_TOKEN", "", "default (unset)");
    is("NATS_URL", "nats://bus:***@127.0.0.1:4222", "environment");
    assert!(run.stdout.contains("embedded mode"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains(&format!("# ZHILEGO_RATE_LIMTI in {path} is not a setting")),
        "a typo in the file is pointed out:\n{}",
        run.stdout
    );
    assert!(lines.len() > 60, "every setting: {}", lines.len());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn config_check_names_a_bad_setting_and_fails() {
    let dir = temp_dir();
    let data = dir.display().to_string();
    let bad = zhilego(
        &["config", "check"],
        &[
            ("ZHILEGO_RATE_LIMIT", "many"),
            ("ZHILEGO_JWT_SECRET", "s3cret-value"),
            ("ZHILEGO_DATA_DIR", &data),
        ],
    )
    .await;
    assert_eq!(bad.code, 1, "{}{}", bad.stdout, bad.stderr);
    assert!(bad.stdout.is_empty(), "{}", bad.stdout);
    assert!(
        bad.stderr.contains("ZHILEGO_RATE_LIMIT") && bad.stderr.contains("not a number"),
        "{}",
        bad.stderr
    );
    assert!(!bad.stderr.contains("s3cret-value"));

    let production = zhilego(
        &[
            "config",
            "check",
            "--database-url",
            "postgres://u:pw-123@db/z",
        ],
        &[("ZHILEGO_DATA_DIR", &data)],
    )
    .await;
    assert_eq!(production.code, 1);
    assert!(
        production.stderr.contains("ZHILEGO_JWT_SECRET is required"),
        "{}",
        production.stderr
    );
    assert!(!production.stderr.contains("pw-123"));

    let file = dir.join("broken.env");
    std::fs::write(
        &file,
        "ZHILEGO_LISTEN=127.0.0.1:1\nZHILEGO_JWT_SECRET=\"unclosed\n",
    )
    .unwrap();
    let broken = zhilego(
        &["config", "check", "--config", &file.display().to_string()],
        &[("ZHILEGO_DATA_DIR", &data)],
    )
    .await;
    assert_eq!(broken.code, 1, "{}", broken.stderr);
    assert!(
        broken.stderr.contains("line 2 (ZHILEGO_JWT_SECRET)"),
        "{}",
        broken.stderr
    );
    assert!(!broken.stderr.contains("unclosed"), "{}", broken.stderr);

    let missing = dir.join("missing.env").display().to_string();
    let gone = zhilego(&["config", "check"], &[("ZHILEGO_CONFIG", &missing)]).await;
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains(&missing), "{}", gone.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn audit_verify_draws_its_bar_on_a_terminal_only() {
    let Some(app) = spawn_app(Backend::Sqlite, "audit_verify_draws_its_bar").await else {
        return;
    };
    for _ in 0..3 {
        app.create_listing(Uuid::now_v7(), serde_json::json!({}))
            .await;
    }
    let storage = app.stop().await;
    let env: Vec<(String, String)> = storage.env().into_iter().collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    // Piped: the report alone, nothing drawn.
    let piped = zhilego(&["audit", "verify"], &env).await;
    assert_eq!(piped.code, 0, "{}", piped.stderr);
    let report: serde_json::Value = serde_json::from_str(&piped.stdout).expect("only JSON");
    assert_eq!(report["ok"], true);
    assert!(report["checked_events"].as_u64().unwrap() >= 3);
    for drawn in ["\r", "\u{1b}[", "events ("] {
        assert!(
            !piped.stderr.contains(drawn),
            "{drawn:?} in {:?}",
            piped.stderr
        );
    }

    // On a terminal (util-linux `script` gives it one): the bar is drawn, then cleared.
    let command = format!("{ZHILEGO} audit verify");
    let out = tokio::process::Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("TERM", "xterm")
        .env("COLUMNS", "120")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run script");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    let events = report["checked_events"].as_u64().unwrap();
    assert!(
        screen.contains(&format!("{events}/{events} events")),
        "the bar on the terminal: {screen:?}"
    );
    assert!(screen.contains("\"ok\": true"), "{screen}");
    storage.remove().await;
}
