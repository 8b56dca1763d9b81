//! The operational surface of every process: `relay` and `project` serve `/metrics`,
//! `/healthz` and `/readyz` on their ops listener like `serve`; request metrics count
//! everything (429s and unknown paths too); `X-Forwarded-For` is believed only from trusted
//! proxies; `zhilego healthcheck` tells up from down.
use crate::helpers::{nats_url, spawn_app_with, Backend, Storage};
use crate::processes::ZHILEGO;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn spawn(storage: &Storage, subcommand: &str, ops_port: u16) -> Child {
    Command::new(ZHILEGO)
        .arg(subcommand)
        .envs(storage.env())
        .env("ZHILEGO_METRICS_ADDR", format!("127.0.0.1:{ops_port}"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start zhilego")
}

/// GETs `url` until it answers, for up to 30 s.
async fn get_when_up(client: &reqwest::Client, url: &str) -> (u16, String) {
    for _ in 0..300 {
        if let Ok(res) = client.get(url).send().await {
            let status = res.status().as_u16();
            return (status, res.text().await.unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered");
}

/// The metrics text once it has a sample line of `name`, for up to 20 s.
async fn metrics_with(client: &reqwest::Client, base: &str, name: &str) -> String {
    let mut text = String::new();
    for _ in 0..200 {
        text = get_when_up(client, &format!("{base}/metrics")).await.1;
        if text.lines().any(|l| l.starts_with(name)) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} never appeared in {base}/metrics:\n{text}");
}

async fn healthcheck(url: &str) -> i32 {
    Command::new(ZHILEGO)
        .args(["healthcheck", "--url", url, "--timeout-ms", "1000"])
        .env("RUST_LOG", "warn")
        .status()
        .await
        .expect("run zhilego healthcheck")
        .code()
        .unwrap_or(-1)
}

#[tokio::test]
async fn relay_and_project_serve_metrics_health_and_readiness() {
    let test = "ops_listeners_processes";
    let Some(nats) = nats_url(test) else { return };
    let Some(storage) = Storage::new(Backend::Postgres, test).await else {
        return;
    };
    let storage = storage.with_nats(nats);
    let migrate = Command::new(ZHILEGO)
        .arg("migrate")
        .envs(storage.env())
        .env("RUST_LOG", "warn")
        .status()
        .await
        .unwrap();
    assert!(migrate.success());
    let (relay_port, project_port) = (free_port(), free_port());
    let mut relay = spawn(&storage, "relay", relay_port).await;
    let mut project = spawn(&storage, "project", project_port).await;
    let client = reqwest::Client::new();
    for (base, lag) in [
        (
            format!("http://127.0.0.1:{relay_port}"),
            "zhilego_relay_lag_seconds",
        ),
        (
            format!("http://127.0.0.1:{project_port}"),
            "zhilego_projection_lag_seconds{",
        ),
    ] {
        assert_eq!(
            get_when_up(&client, &format!("{base}/healthz")).await.0,
            200
        );
        let (status, body) = get_when_up(&client, &format!("{base}/readyz")).await;
        assert_eq!(status, 200, "{base}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["checks"]["store"], "ok", "{body}");
        assert_eq!(body["checks"]["bus"], "ok", "{body}");
        let text = metrics_with(&client, &base, lag).await;
        let name = lag.trim_end_matches('{');
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{base}: no HELP for {name}:\n{text}"
        );
        assert_eq!(healthcheck(&format!("{base}/healthz")).await, 0);
        assert_eq!(get_when_up(&client, &format!("{base}/nope")).await.0, 404);
    }
    // The project process reads the read database too.
    let (_, body) = get_when_up(&client, &format!("http://127.0.0.1:{project_port}/readyz")).await;
    assert!(body.contains("\"read_db\":\"ok\""), "{body}");
    relay.kill().await.unwrap();
    project.kill().await.unwrap();
    let _ = relay.wait().await;
    assert_ne!(
        healthcheck(&format!("http://127.0.0.1:{relay_port}/healthz")).await,
        0
    );
    storage.remove().await;
}

#[tokio::test]
async fn request_metrics_count_rate_limited_and_unknown_requests() {
    // A process of its own: the suite's in-process apps share one metrics recorder.
    let storage = Storage::new(Backend::Sqlite, "metrics_everything")
        .await
        .unwrap();
    let ops_port = free_port();
    let ops = format!("127.0.0.1:{ops_port}");
    let mut server = crate::processes::spawn_serve(
        &storage,
        &[
            ("ZHILEGO_RATE_LIMIT", "2"),
            ("ZHILEGO_METRICS_ADDR", ops.as_str()),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let status = |path: &'static str| {
        let (client, base) = (client.clone(), server.address.clone());
        async move {
            client
                .get(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // An unknown path (the API's fallback, inside the limit: it takes one of the two), then
    // the catalogue three times: one answered, two refused before routing.
    assert_eq!(status("/no/such/path").await, 404);
    let mut limited = 0;
    for _ in 0..3 {
        if status("/api/v1/listings?city=Almaty").await == 429 {
            limited += 1;
        }
    }
    assert_eq!(limited, 2);
    let text = get_when_up(&client, &format!("http://{ops}/metrics"))
        .await
        .1;
    let count = |route: &str, status: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("zhilego_http_requests_total{"))
            .filter(|l| {
                l.contains(&format!("route=\"{route}\""))
                    && l.contains(&format!("status=\"{status}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(count("unmatched", "404"), 1.0, "{text}");
    assert_eq!(count("/api/v1/listings", "200"), 1.0, "{text}");
    assert_eq!(count("unmatched", "429"), 2.0, "{text}");
    assert!(
        text.contains("# HELP zhilego_http_requests_total "),
        "{text}"
    );
    server.child.kill().await.unwrap();
    storage.remove().await;
}

/// Two "clients" behind one gateway: with the gateway trusted each has its own allowance;
/// untrusted, the header is ignored and they share the peer's.
#[tokio::test]
async fn x_forwarded_for_counts_only_from_trusted_proxies() {
    for (trusted, expected_ok) in [(Some("127.0.0.0/8"), 4), (None, 2)] {
        let mut overrides = vec![("ZHILEGO_RATE_LIMIT", "2")];
        if let Some(t) = trusted {
            overrides.push(("ZHILEGO_TRUSTED_PROXIES", t));
        }
        let app = spawn_app_with(Backend::Sqlite, "xff", &overrides)
            .await
            .unwrap();
        let mut ok = 0;
        for client in ["198.51.100.1", "198.51.100.2"] {
            for _ in 0..3 {
                let res = app
                    .client
                    .get(app.url("/api/v1/listings?city=Almaty"))
                    // A forged entry first: only the rightmost untrusted address counts.
                    .header("x-forwarded-for", format!("6.6.6.6, {client}"))
                    .send()
                    .await
                    .unwrap();
                if res.status() == 200 {
                    ok += 1;
                }
            }
        }
        assert_eq!(ok, expected_ok, "trusted proxies {trusted:?}");
        // The Kaspi allow-list (loopback for the sandbox) sees the forwarded client too.
        let res = app
            .client
            .post(app.url("/kaspi/callback/"))
            .header("x-forwarded-for", "203.0.113.5")
            .form(&[
                ("command", "check"),
                ("txn_id", "1"),
                ("account", "x"),
                ("sum", "1"),
            ])
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body = res.text().await.unwrap();
        if trusted.is_some() {
            assert_eq!(status, 403, "{body}");
            assert!(body.contains("this address may not call"), "{body}");
        } else {
            assert!(
                !body.contains("this address may not call"),
                "{status} {body}"
            );
        }
        app.finish().await;
    }
}
