//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), JSON lines when
//! `ZHILEGO_LOG_FORMAT=json`. Traces: OpenTelemetry spans over OTLP/HTTP (protobuf) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, with the W3C trace context carried across processes
//! (`store::trace`). Error reports: `error` events (5xx answers, panics, failures the code
//! logs as errors) to Sentry when `SENTRY_DSN` is set, scrubbed of anything personal.
//! Metrics: one Prometheus recorder per process.
use crate::settings::{Secret, SettingsError};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// What logs, traces and error reports go where.
#[derive(Clone, Debug)]
pub struct TelemetrySettings {
    /// `ZHILEGO_LOG_FORMAT=json`: JSON lines instead of text.
    pub json_logs: bool,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the OTLP/HTTP collector (spans are posted to
    /// `<endpoint>/v1/traces` as protobuf). Unset: no traces are exported. The batch exporter
    /// also reads the standard `OTEL_BSP_*` variables.
    pub otlp_endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME` (default `zhilego`): the `service.name` of this process's spans.
    pub service_name: String,
    /// `SENTRY_DSN`: where error reports go. Unset: none are sent.
    pub sentry_dsn: Option<Secret>,
    /// `SENTRY_ENVIRONMENT` (default `production` with PostgreSQL, else `embedded`).
    pub sentry_environment: String,
}

impl TelemetrySettings {
    pub fn from_values(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let otlp_endpoint = get("OTEL_EXPORTER_OTLP_ENDPOINT")
            .map(|e| {
                let ok = url::Url::parse(&e)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
                if ok {
                    Ok(e.trim_end_matches('/').to_string())
                } else {
                    Err(SettingsError::Invalid(
                        "OTEL_EXPORTER_OTLP_ENDPOINT",
                        format!("{e:?} is not an http(s) URL"),
                    ))
                }
            })
            .transpose()?;
        let sentry_dsn = get("SENTRY_DSN")
            .map(|dsn| {
                // The DSN's key is a credential: the error does not repeat it.
                dsn.parse::<sentry::types::Dsn>()
                    .map(|_| Secret::new(dsn))
                    .map_err(|e| SettingsError::Invalid("SENTRY_DSN", e.to_string()))
            })
            .transpose()?;
        let production = get("DATABASE_URL").is_some_and(|u| u.starts_with("postgres"));
        Ok(TelemetrySettings {
            json_logs: get("ZHILEGO_LOG_FORMAT").as_deref() == Some("json"),
            otlp_endpoint,
            service_name: get("OTEL_SERVICE_NAME").unwrap_or_else(|| "zhilego".into()),
            sentry_dsn,
            sentry_environment: get("SENTRY_ENVIRONMENT")
                .unwrap_or_else(|| if production { "production" } else { "embedded" }.into()),
        })
    }
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings::from_values(&|_| None).expect("the defaults are valid")
    }
}

/// What the process must flush before it exits.
#[must_use = "call shutdown before exiting, or spans and reports are lost"]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    sentry: Option<sentry::ClientInitGuard>,
    log_guard: tracing_appender::non_blocking::WorkerGuard,
}

impl Telemetry {
    /// Sends what is still queued (spans, error reports), waiting a few seconds at most.
    pub fn shutdown(self) {
        if let Some(tracer) = &self.tracer {
            if let Err(e) = tracer.shutdown() {
                eprintln!("exporting the last spans failed: {e}");
            }
        }
        drop(self.sentry);
        // Last, so that what the others logged on their way out is written too.
        drop(self.log_guard);
    }
}

const LOG_FILTER: &str = "info,sqlx=warn,tower_http=info";
/// What becomes a span in the export: our spans at `info` and above, never the HTTP
/// clients' (the exporter's own requests would trace themselves).
const TRACE_FILTER: &str = "info,sqlx=warn,h2=off,hyper=off,hyper_util=off,reqwest=off";

/// Installs the process's logging, trace export and error reporting.
pub fn init(settings: &TelemetrySettings) -> Telemetry {
    let sentry = settings.sentry_dsn.as_ref().map(|dsn| {
        sentry::init(sentry::ClientOptions {
            dsn: dsn.expose().parse().ok(),
            release: sentry::release_name!(),
            environment: Some(settings.sentry_environment.clone().into()),
            send_default_pii: false,
            before_send: Some(Arc::new(scrub)),
            ..Default::default()
        })
    });
    let tracer = settings.otlp_endpoint.as_deref().and_then(|endpoint| {
        match tracer_provider(endpoint, &settings.service_name) {
            Ok(provider) => Some(provider),
            Err(e) => {
                eprintln!("traces are off: the OTLP exporter could not be built: {e}");
                None
            }
        }
    });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(LOG_FILTER));
    let (writer, log_guard) = log_writer();
    // Colours for a person at a terminal, never escape codes in a log file or collector.
    let ansi = std::io::stderr().is_terminal();
    let logs = if settings.json_logs {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed()
    };
    let traces = tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("zhilego"))
            .with_filter(EnvFilter::new(TRACE_FILTER))
    });
    let reports = sentry.as_ref().map(|_| {
        sentry::integrations::tracing::layer()
            .event_filter(|meta| {
                if *meta.level() == tracing::Level::ERROR {
                    sentry::integrations::tracing::EventFilter::Event
                } else {
                    // Breadcrumbs would carry every log line along: none.
                    sentry::integrations::tracing::EventFilter::Ignore
                }
            })
            .span_filter(|_| false)
    });
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .with(reports)
        .try_init();
    if tracer.is_some() {
        store::trace::install(Box::new(W3cTraceContext));
    }
    install_panic_hook();
    Telemetry {
        tracer,
        sentry,
        log_guard,
    }
}

const LOG_QUEUE_LINES: usize = 8_192;

/// Lines queued to stderr: one thread writes them, as many as are waiting in one write
/// (the access log is a line per request, and a write per line cost a third of the CPU of
/// answering `GET /healthz`). Nothing is dropped: when the queue is full the logging thread
/// waits. The queue is short (8,192 lines of a few hundred bytes, a few MB at most) where
/// the default, 128,000 lines, could hold tens of MB of backlog. The guard writes what is
/// queued when it is dropped.
fn log_writer() -> (
    tracing_appender::non_blocking::NonBlocking,
    tracing_appender::non_blocking::WorkerGuard,
) {
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("zhilego-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ))
}

fn tracer_provider(
    endpoint: &str,
    service: &str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_string())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The W3C `traceparent` of tracing spans, through the OpenTelemetry layer.
struct W3cTraceContext;

impl store::trace::Propagation for W3cTraceContext {
    fn current(&self) -> Option<String> {
        let cx = tracing::Span::current().context();
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        carrier.remove(store::trace::TRACEPARENT)
    }

    fn set_parent(&self, span: &tracing::Span, traceparent: &str) {
        let carrier = HashMap::from([(
            store::trace::TRACEPARENT.to_string(),
            traceparent.to_string(),
        )]);
        let cx = TraceContextPropagator::new().extract(&carrier);
        let _ = span.set_parent(cx);
    }
}

/// Panics are logged as `error` events (so reported too) with where they happened and the
/// correlation id of the request they broke, then the default hook runs.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        // What the panic was given: a `&str` or a `String` (panic!'s two forms).
        let given: &(dyn std::any::Any + Send) = std::panic::PanicHookInfo::payload(info);
        let message = given
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| given.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let correlation_id = crate::routes::context::current_correlation()
            .map(|id| id.to_string())
            .unwrap_or_default();
        tracing::error!(target: "zhilego::panic", panic_location = %location,
            panic_message = %message, correlation_id = %correlation_id, "panicked");
        previous(info);
    }));
}

/// The tracing fields of an error report (`sentry-tracing` puts them in this context).
const FIELDS: &str = "Rust Tracing Fields";

/// What an error report keeps: the event's message, level, logger, location and fields,
/// the release and environment. Never the user, a request, a panic's message (it may quote
/// data; the log line has it), or the machine's name. The request's correlation id becomes
/// a tag, so a report leads to the request's log lines.
fn scrub(mut event: sentry::protocol::Event<'static>) -> Option<sentry::protocol::Event<'static>> {
    event.user = None;
    event.request = None;
    event.server_name = None;
    event.breadcrumbs = Default::default();
    if let Some(sentry::protocol::Context::Other(fields)) = event.contexts.get_mut(FIELDS) {
        fields.remove("panic_message");
    }
    // Reports are made on the task that logged the error: inside a request, its id.
    let correlation = crate::routes::context::current_correlation().map(|id| id.to_string());
    if let Some(id) = correlation {
        event.tags.insert("correlation_id".into(), id);
    }
    Some(event)
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .expect("valid buckets")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests embedding the app); then the
            // handle still renders what this recorder saw.
            if metrics::set_global_recorder(recorder).is_ok() {
                describe();
            }
            handle
        })
        .clone()
}

/// What each metric means (`# HELP` lines), and its unit. New metrics are added here.
const METRICS: &[(&str, Kind, &str)] = &[
    ("zhilego_http_requests_total", Kind::Counter, "HTTP requests answered, by method, route (the matched pattern; `unmatched` for unknown paths and requests the rate limiter refused before routing) and status"),
    ("zhilego_http_request_duration_seconds", Kind::Histogram, "Time from a request's arrival to its answer, by method, route and status"),
    ("zhilego_http_timeouts_total", Kind::Counter, "Requests cut by a deadline: `body` (the client was slow, 408) or `request` (we were, 503)"),
    ("zhilego_commands_total", Kind::Counter, "Commands accepted, by aggregate"),
    ("zhilego_command_conflicts_total", Kind::Counter, "Optimistic-concurrency conflicts retried, by aggregate"),
    ("zhilego_events_appended_total", Kind::Counter, "Events appended to the store, by aggregate"),
    ("zhilego_sqlite_write_wait_seconds", Kind::Histogram, "Embedded mode: time a writer waited for the SQLite file's one writer turn, by holder (events, a projection, notary, rebuild, idempotency, vacuum)"),
    ("zhilego_sqlite_write_turn_seconds", Kind::Histogram, "Embedded mode: time a writer held the SQLite file's one writer turn, by holder"),
    ("zhilego_bookings_refused_total", Kind::Counter, "Bookings refused before deciding, by reason"),
    ("zhilego_projection_position", Kind::Gauge, "Global position of the last event a projection applied"),
    ("zhilego_projection_lag_events", Kind::Gauge, "Events in the store a projection has not applied yet (counted up to 100,000)"),
    ("zhilego_projection_lag_seconds", Kind::Gauge, "Age of the oldest event a projection has not applied yet"),
    ("zhilego_projection_events_applied_total", Kind::Counter, "Events applied, by projection"),
    ("zhilego_projection_undecodable_events_total", Kind::Counter, "Events a projection stopped before because they do not decode"),
    ("zhilego_relay_position", Kind::Gauge, "Global position of the last event the relay published"),
    ("zhilego_relay_published_total", Kind::Counter, "Events the relay published to JetStream"),
    ("zhilego_relay_lag_events", Kind::Gauge, "Events in the store the relay has not published yet (counted up to 100,000)"),
    ("zhilego_relay_lag_seconds", Kind::Gauge, "Age of the oldest event the relay has not published yet"),
    ("zhilego_read_replica_up", Kind::Gauge, "1 when a read replica answered its last health check, else 0 (queries skip it)"),
    ("zhilego_payments_received_total", Kind::Counter, "Payments applied, by source (Kaspi's callback or reconciliation)"),
    ("zhilego_payments_due", Kind::Gauge, "Payments pending with Kaspi"),
    ("zhilego_payment_failures_total", Kind::Counter, "Payment calls that failed, by kind (provider: our call to Kaspi; notification: a callback we could not apply)"),
    ("zhilego_payment_mismatches_total", Kind::Counter, "Kaspi reports that do not match what is due, by kind"),
    ("zhilego_kaspi_replay_mismatches_total", Kind::Counter, "Kaspi callbacks replaying a transaction with other details"),
    ("zhilego_kaspi_callbacks_total", Kind::Counter, "Kaspi callbacks received"),
    ("zhilego_kaspi_callbacks_refused_total", Kind::Counter, "Kaspi callbacks refused, by why (ip, credentials)"),
    ("zhilego_refunds_total", Kind::Counter, "Refunds made"),
    ("zhilego_refunded_kzt_total", Kind::Counter, "Tenge refunded"),
    ("zhilego_notifications_sent_total", Kind::Counter, "Guest and host notifications delivered"),
    ("zhilego_notifications_failed_total", Kind::Counter, "Notifications that could not be delivered"),
    ("zhilego_bot_messages_sent_total", Kind::Counter, "Bot messages sent, by channel"),
    ("zhilego_bot_duplicates_total", Kind::Counter, "Bot updates received twice and ignored, by channel"),
    ("zhilego_bot_webhooks_refused_total", Kind::Counter, "Bot webhooks refused (bad secret or signature), by channel"),
    ("zhilego_bot_reply_seconds", Kind::Histogram, "Time to answer a guest's message, by channel"),
    ("zhilego_bot_effect_seconds", Kind::Histogram, "Time a bot's effect took (booking, payment link, ...)"),
    ("zhilego_inventory_free_listings", Kind::Gauge, "Active listings with at least one free night among the next 7, by city"),
    ("zhilego_ical_feeds_synced_total", Kind::Counter, "Calendar feed syncs, by result"),
    ("zhilego_ical_sync_failures_total", Kind::Counter, "Calendar feed syncs that failed, by the problem's code"),
    ("zhilego_ical_conflicts_total", Kind::Counter, "Feed events that overlap one of our live stays and were not placed"),
    ("zhilego_ical_sync_duration_seconds", Kind::Histogram, "Time to fetch, parse and apply one calendar feed"),
    ("zhilego_daily_reports_made_total", Kind::Counter, "Daily analytics reports made (once per day across instances)"),
    ("zhilego_audit_notary_lag_events", Kind::Gauge, "Events in the store the notary has not put in the Merkle tree yet (counted up to 100,000)"),
    ("zhilego_audit_notary_lag_seconds", Kind::Gauge, "Age of the oldest event the notary has not put in the tree yet"),
    ("zhilego_audit_tree_size", Kind::Gauge, "Leaves in the audit Merkle tree"),
    ("zhilego_audit_checkpoints_signed_total", Kind::Counter, "Audit checkpoints signed"),
    ("zhilego_audit_witness_failures_total", Kind::Counter, "Checkpoints a witness or the checkpoint file did not take"),
    ("zhilego_audit_verifications_total", Kind::Counter, "Audit verifications run"),
    ("zhilego_audit_verification_failures_total", Kind::Counter, "Audit verifications that found the store differing from its chains or a checkpoint"),
];

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Gives every metric its `# HELP` text, and makes the ones the alert rules and the dashboard
/// read appear (at 0) before their first event, so an absent series is a bug, not quiet.
fn describe() {
    for &(name, kind, help) in METRICS {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
    for kind in ["provider", "notification"] {
        metrics::counter!("zhilego_payment_failures_total", "kind" => kind).increment(0);
    }
    for kind in ["callback_sum", "reconciliation_amount"] {
        metrics::counter!("zhilego_payment_mismatches_total", "kind" => kind).increment(0);
    }
    for source in ["callback", "reconciliation"] {
        metrics::counter!("zhilego_payments_received_total", "source" => source).increment(0);
    }
    for name in [
        "zhilego_kaspi_replay_mismatches_total",
        "zhilego_notifications_sent_total",
        "zhilego_notifications_failed_total",
        "zhilego_refunds_total",
    ] {
        metrics::counter!(name).increment(0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_reports_keep_nothing_personal() {
        use sentry::protocol::{Context, Event, Request, User};
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("panic_message".to_string(), "phone +77011234567".into());
        fields.insert("panic_location".to_string(), "api/src/x.rs:1".into());
        let mut event = Event {
            message: Some("panicked".into()),
            user: Some(User {
                username: Some("Aigerim".into()),
                ..Default::default()
            }),
            request: Some(Request {
                data: Some("{\"phone\":\"+77011234567\"}".into()),
                ..Default::default()
            }),
            server_name: Some("host-1".into()),
            ..Default::default()
        };
        event
            .contexts
            .insert(super::FIELDS.to_string(), Context::Other(fields));
        let kept = super::scrub(event).expect("the report is sent");
        let text = serde_json::to_string(&kept).unwrap();
        for gone in ["+77011234567", "Aigerim", "host-1"] {
            assert!(!text.contains(gone), "{text}");
        }
        assert!(text.contains("api/src/x.rs:1"), "{text}");
        assert_eq!(kept.message.as_deref(), Some("panicked"));
    }

    #[test]
    fn every_metric_the_code_records_is_described() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let manifest = std::fs::read_to_string(format!("{root}/Cargo.toml")).unwrap();
        let members = manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix("members = ["))
            .expect("the workspace's members");
        let mut missing = Vec::new();
        for dir in members
            .trim_end_matches(']')
            .split(',')
            .map(|m| m.trim().trim_matches('"'))
        {
            for path in rust_files(&std::path::Path::new(root).join(dir).join("src")) {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, _) in text.match_indices("\"zhilego_") {
                    let before = text[..i].trim_end();
                    let recorded = ["counter!(", "gauge!(", "histogram!("]
                        .iter()
                        .any(|m| before.ends_with(m));
                    let name: String = text[i + 1..].chars().take_while(|c| *c != '"').collect();
                    if recorded && !super::METRICS.iter().any(|(n, _, _)| *n == name) {
                        missing.push(format!("{name} ({})", path.display()));
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "metrics without a HELP text in telemetry::METRICS: {missing:?}"
        );
    }

    fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(rust_files(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
        out
    }
}
