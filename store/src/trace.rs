//! Trace context across processes (W3C `traceparent`), without tying the crates below the
//! binary to a tracing backend.
//!
//! The command side stores [`current`] in each event's metadata (`traceparent`); the relay
//! forwards it in a NATS header; the consumers (projections, notifications) open their spans
//! with [`continue_from`], so one user action's trace runs across the API, the relay and the
//! consumers even when they are separate processes. The binary installs the exporter's
//! [`Propagation`] once at start; without one (traces off) nothing is stored or continued.
use std::sync::OnceLock;

/// Metadata key and NATS header that carry the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// How the process's tracing backend reads and continues trace contexts.
pub trait Propagation: Send + Sync {
    /// The `traceparent` of the current span, when it is sampled.
    fn current(&self) -> Option<String>;
    /// Makes `span` a child of the remote span `traceparent` names.
    fn set_parent(&self, span: &tracing::Span, traceparent: &str);
}

static PROPAGATION: OnceLock<Box<dyn Propagation>> = OnceLock::new();

/// Installs the process's propagation (once; later calls are ignored).
pub fn install(propagation: Box<dyn Propagation>) {
    let _ = PROPAGATION.set(propagation);
}

/// The `traceparent` of the current span, if traces are exported and the span is sampled.
pub fn current() -> Option<String> {
    PROPAGATION.get()?.current()
}

/// Whether traces are exported by this process.
pub fn enabled() -> bool {
    PROPAGATION.get().is_some()
}

/// Continues the trace `traceparent` names in `span` (nothing when traces are off or the
/// value is not a valid trace context).
pub fn continue_from(span: &tracing::Span, traceparent: &str) {
    if let Some(p) = PROPAGATION.get() {
        if valid(traceparent) {
            p.set_parent(span, traceparent);
        }
    }
}

/// A version-00 `traceparent`: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, ids
/// not all zeros.
pub fn valid(traceparent: &str) -> bool {
    let parts: Vec<&str> = traceparent.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    matches!(parts.as_slice(), [v, t, s, f]
        if *v == "00" && hex(t, 32) && hex(s, 16) && hex(f, 2)
            && t.bytes().any(|b| b != b'0') && s.bytes().any(|b| b != b'0'))
}

#[cfg(test)]
mod tests {
    use super::valid;

    #[test]
    fn only_well_formed_trace_contexts_are_continued() {
        assert!(valid(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!valid(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!valid(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"
        ));
        assert!(!valid(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!valid(
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"
        ));
        assert!(!valid("garbage"));
    }
}
