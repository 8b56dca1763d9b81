//! What leaves the process for operators: OpenTelemetry spans over OTLP/HTTP, one trace per
//! user action across the API and the projector processes, and Sentry error reports with the
//! correlation id and nothing personal. The collector and Sentry are real HTTP servers
//! started here; the service runs as the built binary.
use crate::helpers::{booking_body, listing_body, nats_url, Backend, Storage};
use crate::processes::ZHILEGO;
use axum::body::Bytes;
use axum::routing::post;
use domain::Role;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::{json, Value};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};
use uuid::Uuid;

/// A span as the collector received it.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// A fake OTLP/HTTP collector: `POST /v1/traces` with a protobuf export request.
async fn collector() -> (String, Arc<Mutex<Vec<Received>>>) {
    let spans = Arc::new(Mutex::new(Vec::<Received>::new()));
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                let export =
                    ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
                for resource in export.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                            AnyValue::StringValue(s) => Some(s.clone()),
                            _ => None,
                        })
                        .unwrap_or_default();
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            kept.lock().unwrap().push(Received {
                                service: service.clone(),
                                name: span.name,
                                trace_id: hex::encode(span.trace_id),
                                span_id: hex::encode(span.span_id),
                                parent_span_id: hex::encode(span.parent_span_id),
                            });
                        }
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, spans)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(storage: &Storage, subcommand: &str, env: &[(&str, &str)]) -> Child {
    Command::new(ZHILEGO)
        .arg(subcommand)
        .envs(storage.env())
        .env("ZHILEGO_METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start zhilego")
}

/// Sends `req` until the server answers (it may still be starting).
async fn when_up(client: &reqwest::Client, url: &str) {
    for _ in 0..600 {
        if client.get(url).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bookings_trace_runs_from_the_api_process_through_the_projector_process() {
    let test = "telemetry_trace_across_processes";
    let Some(nats) = nats_url(test) else { return };
    let Some(storage) = Storage::new(Backend::Postgres, test).await else {
        return;
    };
    let storage = storage.with_nats(nats);
    let (otlp, spans) = collector().await;
    let api_port = free_port();
    let listen = format!("127.0.0.1:{api_port}");
    let common = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let mut api = spawn(
        &storage,
        "serve",
        &[
            common[0],
            common[1],
            ("OTEL_SERVICE_NAME", "zhilego-api"),
            ("ZHILEGO_LISTEN", listen.as_str()),
            // The projector is its own process; the relay runs in the API's.
            ("ZHILEGO_PROJECTIONS", "off"),
        ],
    );
    let client = reqwest::Client::new();
    let base = format!("http://{listen}");
    when_up(&client, &format!("{base}/healthz")).await;
    let mut projector = spawn(
        &storage,
        "project",
        &[
            common[0],
            common[1],
            ("OTEL_SERVICE_NAME", "zhilego-projector"),
        ],
    );

    let keys = storage.keys();
    let host = keys.mint(Uuid::new_v4(), Role::Host, chrono::Duration::hours(1));
    let guest = keys.mint(Uuid::new_v4(), Role::Guest, chrono::Duration::hours(1));
    let res = client
        .post(format!("{base}/api/v1/listings"))
        .bearer_auth(&host)
        .json(&listing_body())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let listing: Value = res.json().await.unwrap();
    let listing_id: Uuid = listing["id"].as_str().unwrap().parse().unwrap();
    let res = client
        .post(format!("{base}/api/v1/bookings"))
        .bearer_auth(&guest)
        .json(&booking_body(listing_id, 20, 23, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let booking: Value = res.json().await.unwrap();
    // The projector applied it (the API reads what it wrote).
    let res = client
        .get(format!(
            "{base}/api/v1/bookings?min_position={}",
            booking["position"]
        ))
        .bearer_auth(&guest)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "{:?}", res.text().await);

    // The booking's trace: its request in the API process, the relay's publishing there, and
    // the projections' applying in the projector process, one trace id.
    let mut seen = Vec::new();
    for _ in 0..150 {
        seen = spans.lock().unwrap().clone();
        if let Some(trace) = booking_trace(&seen) {
            let projected = seen
                .iter()
                .filter(|s| s.trace_id == trace && s.service == "zhilego-projector")
                .count();
            if projected >= 2 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let trace =
        booking_trace(&seen).unwrap_or_else(|| panic!("no booking request span: {seen:#?}"));
    let of_trace: Vec<&Received> = seen.iter().filter(|s| s.trace_id == trace).collect();
    let api_spans: Vec<&&Received> = of_trace
        .iter()
        .filter(|s| s.service == "zhilego-api")
        .collect();
    let relayed: Vec<&&Received> = api_spans
        .iter()
        .copied()
        .filter(|s| s.name == "relay publish")
        .collect();
    assert!(
        !relayed.is_empty(),
        "no relay span in the trace: {of_trace:#?}"
    );
    assert!(
        api_spans
            .iter()
            .any(|s| s.name == "execute_on" || s.name == "execute_then"),
        "no store (command) span in the trace: {of_trace:#?}"
    );
    let projected: Vec<&&Received> = of_trace
        .iter()
        .filter(|s| s.service == "zhilego-projector" && s.name == "project")
        .collect();
    assert!(
        projected.len() >= 2,
        "the projector's spans of the booking: {of_trace:#?}"
    );
    // Each projection span continues a relay span of the API process.
    for span in &projected {
        assert!(
            relayed.iter().any(|r| r.span_id == span.parent_span_id),
            "{span:?} is not a child of a relay span: {of_trace:#?}"
        );
    }
    // The listing's own request is another trace.
    let listing_trace = seen
        .iter()
        .find(|s| s.service == "zhilego-api" && s.name == "POST /api/v1/listings")
        .map(|s| s.trace_id.clone())
        .expect("the listing request's span");
    assert_ne!(listing_trace, trace);

    api.kill().await.unwrap();
    projector.kill().await.unwrap();
    storage.remove().await;
}

/// The trace id of the booking request's server span in the API process.
fn booking_trace(spans: &[Received]) -> Option<String> {
    spans
        .iter()
        .find(|s| s.service == "zhilego-api" && s.name == "POST /api/v1/bookings")
        .map(|s| s.trace_id.clone())
}

/// A fake Sentry: `POST /api/<project>/envelope/`, every envelope kept as text.
async fn sentry() -> (String, Arc<Mutex<Vec<String>>>) {
    let envelopes = Arc::new(Mutex::new(Vec::<String>::new()));
    let kept = envelopes.clone();
    let app = axum::Router::new().route(
        "/api/{project}/envelope/",
        post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
                axum::Json(json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://public-key-1@{address}/7"), envelopes)
}

/// The events (the JSON items) of the envelopes received.
fn events(envelopes: &[String]) -> Vec<Value> {
    envelopes
        .iter()
        .flat_map(|e| e.lines())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("event_id").is_some() && v.get("platform").is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_answer_is_reported_to_sentry_with_its_correlation_id_and_nothing_personal() {
    let test = "telemetry_sentry";
    let Some(storage) = Storage::new(Backend::Postgres, test).await else {
        return;
    };
    let (dsn, envelopes) = sentry().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let mut api = spawn(
        &storage,
        "serve",
        &[
            ("SENTRY_DSN", dsn.as_str()),
            ("ZHILEGO_LISTEN", listen.as_str()),
        ],
    );
    let base = format!("http://{listen}");
    let client = reqwest::Client::new();
    when_up(&client, &format!("{base}/healthz")).await;
    let user = Uuid::new_v4();
    let token = storage
        .keys()
        .mint(user, Role::Guest, chrono::Duration::hours(1));

    // A healthy answer is not reported.
    let res = client
        .get(format!("{base}/api/v1/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success() || res.status().as_u16() == 404);

    // The store loses a table: writing a profile fails on our side.
    let db = storage.database().await;
    if let store::Database::Postgres(pool) = &db {
        sqlx::query("DROP TABLE user_keys")
            .execute(pool)
            .await
            .unwrap();
    }
    let (name, phone) = ("Айгерим Сапарова", "+77011234567");
    let res = client
        .patch(format!("{base}/api/v1/users/me"))
        .bearer_auth(&token)
        .json(&json!({"name": name, "phone": phone}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_server_error(), "{}", res.status());
    let correlation = res
        .headers()
        .get("x-server-correlation-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();

    let mut reported = Vec::new();
    for _ in 0..100 {
        reported = events(&envelopes.lock().unwrap());
        if reported
            .iter()
            .any(|e| e["message"] == "answered with a server error")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = reported
        .iter()
        .find(|e| e["message"] == "answered with a server error")
        .unwrap_or_else(|| {
            panic!(
                "no report of the 5xx answer: {reported:#?} in {:?}",
                envelopes.lock().unwrap()
            )
        });
    // `error` is the protocol's default level, left out.
    assert!(answer.get("level").is_none_or(|l| l == "error"), "{answer}");
    assert_eq!(answer["logger"], "zhilego::access", "{answer}");
    assert_eq!(
        answer["contexts"]["Rust Tracing Fields"]["status"], 503,
        "{answer}"
    );
    assert_eq!(answer["tags"]["correlation_id"], correlation, "{answer}");
    assert_eq!(answer["environment"], "production", "{answer}");
    // Every report of that request carries its id; none of the healthy one was made.
    assert!(
        reported
            .iter()
            .all(|e| e["tags"]["correlation_id"] == correlation),
        "{reported:#?}"
    );
    let all = envelopes.lock().unwrap().join("\n");
    for personal in [
        name,
        phone,
        "77011234567",
        token.as_str(),
        &user.to_string(),
    ] {
        assert!(!all.contains(personal), "{personal} reached Sentry: {all}");
    }
    assert!(
        answer.get("user").is_none() && answer.get("request").is_none(),
        "{answer}"
    );
    assert!(answer.get("server_name").is_none(), "{answer}");

    api.kill().await.unwrap();
    storage.remove().await;
}
