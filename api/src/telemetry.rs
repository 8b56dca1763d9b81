//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), JSON lines when
//! `ZHILEGO_LOG_FORMAT=json`. Metrics: one Prometheus recorder per process.
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if std::env::var("ZHILEGO_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
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
    ("zhilego_bookings_refused_total", Kind::Counter, "Bookings refused before deciding, by reason"),
    ("zhilego_projection_position", Kind::Gauge, "Global position of the last event a projection applied"),
    ("zhilego_projection_lag_events", Kind::Gauge, "Events in the store a projection has not applied yet"),
    ("zhilego_projection_lag_seconds", Kind::Gauge, "Age of the oldest event a projection has not applied yet"),
    ("zhilego_projection_events_applied_total", Kind::Counter, "Events applied, by projection"),
    ("zhilego_projection_undecodable_events_total", Kind::Counter, "Events a projection stopped before because they do not decode"),
    ("zhilego_relay_position", Kind::Gauge, "Global position of the last event the relay published"),
    ("zhilego_relay_published_total", Kind::Counter, "Events the relay published to JetStream"),
    ("zhilego_relay_lag_events", Kind::Gauge, "Events in the store the relay has not published yet"),
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
    ("zhilego_audit_notary_lag_events", Kind::Gauge, "Events in the store the notary has not put in the Merkle tree yet"),
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
