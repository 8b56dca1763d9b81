//! Seeing inside: the access log (one line per request with its correlation id and caller),
//! panics answered as 500 problems while the process keeps serving, bodies over the limit
//! answered 413, CORS for the configured origins only.
use crate::helpers::{listing_body, status_and_json, Backend, Storage};
use crate::processes::ZHILEGO;
use api::{Application, Settings};
use axum::routing::get;
use domain::Role;
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use uuid::Uuid;

/// An in-process app on fresh SQLite storage, with `overrides` and the test-only routes:
/// `GET /test/panic` panics (only this harness adds it; the binary has no such route).
async fn start(
    test: &str,
    overrides: &[(&str, &str)],
) -> (String, Storage, tokio::task::JoinHandle<()>) {
    let storage = Storage::new(Backend::Sqlite, test)
        .await
        .expect("sqlite storage");
    let mut env = storage.env();
    for (k, v) in overrides {
        env.insert(k.to_string(), v.to_string());
    }
    let settings = Settings::from_map(&env).expect("settings");
    let app = Application::build(settings)
        .await
        .expect("build app")
        .with_routes(axum::Router::new().route(
            "/test/panic",
            get(|| async {
                let fail = true;
                if fail {
                    panic!("a handler bug");
                }
                "unreachable"
            }),
        ));
    let address = format!("http://{}", app.local_addr());
    let task = tokio::spawn(async move {
        app.run_until_stopped(std::future::pending())
            .await
            .expect("app runs");
    });
    (address, storage, task)
}

fn is_problem(res: &reqwest::Response) -> bool {
    res.headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes() == b"application/problem+json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_panic_is_a_500_problem_and_the_process_keeps_serving() {
    let (address, storage, task) = start("panic", &[]).await;
    // One client, one kept-alive connection: the panic does not cost it.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    for _ in 0..3 {
        let res = client
            .get(format!("{address}/test/panic"))
            .send()
            .await
            .expect("an answer, not a dropped connection");
        assert_eq!(res.status().as_u16(), 500);
        assert!(is_problem(&res));
        assert!(res.headers().contains_key("x-server-correlation-id"));
        let (_, body) = status_and_json(res).await;
        assert_eq!(body["code"], "internal", "{body}");
        assert_eq!(body["status"], 500, "{body}");
        assert!(!body.to_string().contains("a handler bug"), "{body}");
        let res = client
            .get(format!("{address}/api/v1/listings"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "served after the panic");
    }
    // Many at once, beside ordinary requests.
    let panics = (0..8).map(|_| client.get(format!("{address}/test/panic")).send());
    for res in futures::future::join_all(panics).await {
        assert_eq!(res.unwrap().status().as_u16(), 500);
    }
    let res = client
        .get(format!("{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    task.abort();
    storage.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_a_413_problem_and_nothing_is_written() {
    let (address, storage, task) = start("body_limit", &[("ZHILEGO_MAX_BODY_BYTES", "2048")]).await;
    let keys = storage.keys();
    let token = keys.mint(Uuid::new_v4(), Role::Host, chrono::Duration::hours(1));
    let client = reqwest::Client::new();
    let mut big = listing_body();
    big["title"] = Value::String("x".repeat(3000));
    let url = format!("{address}/api/v1/listings");
    // Declared by Content-Length: refused before it is read.
    let res = client
        .post(&url)
        .bearer_auth(&token)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 413);
    assert!(is_problem(&res));
    assert!(res.headers().contains_key("x-server-correlation-id"));
    let (_, body) = status_and_json(res).await;
    assert_eq!(body["code"], "body_too_large", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("2048"), "{body}");
    // Streamed (chunked, no length): cut when it grows past the limit.
    let bytes = serde_json::to_vec(&big).unwrap();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(500).map(|c| Ok(c.to_vec())).collect();
    let res = client
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 413);
    assert!(is_problem(&res));
    let (_, body) = status_and_json(res).await;
    assert_eq!(body["code"], "body_too_large", "{body}");
    // Nothing of either was kept; a body within the limit is.
    let (_, listings) = status_and_json(
        client
            .get(format!("{address}/api/v1/listings?min_position=0"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        listings["items"].as_array().map(Vec::len),
        Some(0),
        "{listings}"
    );
    let res = client
        .post(&url)
        .bearer_auth(&token)
        .json(&listing_body())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    task.abort();
    storage.remove().await;
}

async fn preflight(client: &reqwest::Client, address: &str, origin: &str) -> reqwest::Response {
    client
        .request(
            reqwest::Method::OPTIONS,
            format!("{address}/api/v1/bookings"),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, idempotency-key",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_the_configured_origins_only() {
    let allowed = "https://zhilego.kz";
    let (address, storage, task) = start(
        "cors",
        &[(
            "ZHILEGO_CORS_ORIGINS",
            "https://zhilego.kz, https://m.zhilego.kz",
        )],
    )
    .await;
    let client = reqwest::Client::new();

    let res = preflight(&client, &address, allowed).await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(header(&res, "access-control-allow-origin"), Some(allowed));
    assert_eq!(
        header(&res, "access-control-allow-credentials"),
        Some("true")
    );
    let methods = header(&res, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");
    let headers = header(&res, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for h in ["authorization", "content-type", "idempotency-key"] {
        assert!(headers.contains(h), "{headers}");
    }
    assert!(header(&res, "access-control-max-age").is_some());

    let res = preflight(&client, &address, "https://evil.example").await;
    assert_eq!(res.status().as_u16(), 403);
    assert!(is_problem(&res));
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    assert_eq!(header(&res, "access-control-allow-methods"), None);
    let (_, body) = status_and_json(res).await;
    assert_eq!(body["code"], "origin_not_allowed", "{body}");

    // The request itself: readable by the allowed origin (with the retry and replay headers
    // exposed), not by another.
    let res = client
        .get(format!("{address}/api/v1/listings"))
        .header("origin", "https://m.zhilego.kz")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        Some("https://m.zhilego.kz")
    );
    let exposed = header(&res, "access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for h in ["retry-after", "idempotent-replayed", "x-correlation-id"] {
        assert!(exposed.contains(h), "{exposed}");
    }
    let res = client
        .get(format!("{address}/api/v1/listings"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    assert_eq!(header(&res, "access-control-allow-credentials"), None);
    task.abort();
    storage.remove().await;

    // By default no origin is allowed: every preflight is refused, nothing is exposed.
    let (address, storage, task) = start("cors_default", &[]).await;
    let res = preflight(&client, &address, allowed).await;
    assert_eq!(res.status().as_u16(), 403);
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    let res = client
        .get(format!("{address}/api/v1/listings"))
        .header("origin", allowed)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    task.abort();
    storage.remove().await;
}

/// The JSON log lines of a `zhilego serve` process, as they come.
struct LoggedProcess {
    child: tokio::process::Child,
    address: String,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

async fn serve_logging_json(storage: &Storage) -> LoggedProcess {
    let mut child = Command::new(ZHILEGO)
        .arg("serve")
        .envs(storage.env())
        .env("RUST_LOG", "info")
        .env("ZHILEGO_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start zhilego serve");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            if let Some(addr) = line.strip_prefix("listening on ") {
                return addr.trim().to_string();
            }
        }
        panic!("zhilego serve exited before listening");
    })
    .await
    .expect("zhilego serve did not start in time");
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            if let Ok(json) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(json);
            }
        }
    });
    LoggedProcess {
        child,
        address,
        lines,
    }
}

impl LoggedProcess {
    /// The first access-log line whose span carries `correlation_id`, within 10 s.
    async fn access_line(&mut self, correlation_id: &str) -> Value {
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = self.lines.recv().await {
                if line["target"] == "zhilego::access"
                    && line["span"]["correlation_id"] == correlation_id
                {
                    return line;
                }
            }
            panic!("the process's log ended");
        })
        .await
        .unwrap_or_else(|_| panic!("no access-log line for {correlation_id}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_carry_the_correlation_id_route_status_and_caller() {
    let storage = Storage::new(Backend::Sqlite, "access_log").await.unwrap();
    let mut serve = serve_logging_json(&storage).await;
    let client = reqwest::Client::new();
    let host = Uuid::new_v4();
    let token = storage
        .keys()
        .mint(host, Role::Host, chrono::Duration::hours(1));

    let res = client
        .post(format!("{}/api/v1/listings", serve.address))
        .bearer_auth(&token)
        .header("x-correlation-id", "portal-req-1")
        .json(&listing_body())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let ours = header(&res, "x-server-correlation-id").unwrap().to_string();
    let listing: Value = res.json().await.unwrap();
    let line = serve.access_line(&ours).await;
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["fields"]["status"], 201, "{line}");
    assert_eq!(line["fields"]["route"], "/api/v1/listings", "{line}");
    assert!(line["fields"]["latency_ms"].as_f64().is_some(), "{line}");
    assert_eq!(line["span"]["method"], "POST", "{line}");
    assert_eq!(line["span"]["user_id"], host.to_string(), "{line}");
    assert_eq!(
        line["span"]["client_correlation_id"], "portal-req-1",
        "{line}"
    );

    // The route is the pattern, not the path; a caller without a token has no user id.
    let res = client
        .get(format!(
            "{}/api/v1/listings/{}",
            serve.address,
            listing["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let ours = header(&res, "x-server-correlation-id").unwrap().to_string();
    let line = serve.access_line(&ours).await;
    assert_eq!(line["fields"]["route"], "/api/v1/listings/{id}", "{line}");
    assert_eq!(line["fields"]["status"], 200, "{line}");
    assert!(line["span"].get("user_id").is_none(), "{line}");

    // Unknown paths and refusals are logged too.
    let res = client
        .get(format!("{}/nowhere", serve.address))
        .send()
        .await
        .unwrap();
    let ours = header(&res, "x-server-correlation-id").unwrap().to_string();
    let line = serve.access_line(&ours).await;
    assert_eq!(line["fields"]["status"], 404, "{line}");
    assert_eq!(line["fields"]["route"], "unmatched", "{line}");

    serve.child.kill().await.unwrap();
    storage.remove().await;
}
