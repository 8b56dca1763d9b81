//! The event bus: the store published, in commit-safe order, to whoever builds read models.
//!
//! - [`relay`]: reads committed events in `(transaction, position)` order and publishes each to
//!   JetStream as `<prefix>.<aggregate_type>.<aggregate_id>` with `Nats-Msg-Id` = the event's id,
//!   advancing its checkpoint only after JetStream acknowledged the whole batch.
//! - [`local`]: the same relay step feeding an in-process broadcast (embedded mode).
//!
//! Every published event carries the order key of the event published before it ([`Link`]),
//! so a consumer can tell a duplicate (already applied), the next event (apply it) and a gap
//! (read the missing events from the store) apart.
#![forbid(unsafe_code)]

pub mod local;
pub mod relay;

pub use local::{LocalBus, LocalRelay};
pub use relay::{decode, DecodeError, Relay, RelayConfig, RelayError};

use std::sync::Arc;
use store::history::Checkpoint;
use store::StoredEvent;

/// An event as published, with the order key of the event its publisher sent before it.
#[derive(Clone, Debug)]
pub struct Link {
    pub prev: Checkpoint,
    pub event: Arc<StoredEvent>,
    /// The trace to continue when applying it (the relay's span, from the `traceparent`
    /// header; in-process, the writer's, from the event's metadata).
    pub traceparent: Option<String>,
}

/// Header with the event's transaction order key (`tx`), not part of the JSON body.
pub const TX_HEADER: &str = "Zhilego-Tx";
/// Header with the previous published event's `tx:position`.
pub const PREV_HEADER: &str = "Zhilego-Prev";

/// Links events read from the store in commit-safe order after `from`.
pub fn chain(from: Checkpoint, events: Vec<StoredEvent>) -> Vec<Link> {
    let mut prev = from;
    events
        .into_iter()
        .map(|event| {
            let link = Link {
                prev,
                traceparent: event.traceparent().map(str::to_string),
                event: Arc::new(event),
            };
            prev = link.event.checkpoint();
            link
        })
        .collect()
}

/// Reads `links` from a consumer at `from`: the events that continue from it (duplicates
/// skipped), where they lead, and the first event that does not connect (a gap to fill from
/// the store), if any.
pub fn follow(
    from: Checkpoint,
    links: &[Link],
) -> (Vec<&StoredEvent>, Checkpoint, Option<Checkpoint>) {
    let mut tail = from;
    let mut run = Vec::new();
    for link in links {
        let at = link.event.checkpoint();
        if at <= tail {
            continue; // already applied
        }
        if link.prev != tail {
            return (run, tail, Some(at));
        }
        run.push(&*link.event);
        tail = at;
    }
    (run, tail, None)
}
