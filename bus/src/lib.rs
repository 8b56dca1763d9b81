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

use std::any::Any;
use std::sync::{Arc, OnceLock};
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
    /// What consumers derive from the event, derived once: every consumer of an in-process
    /// batch holds the same link, so the first to decode the event leaves the decoded form
    /// here for the others (see `projections::event::decode_links_until_fault`).
    pub memo: Memo,
}

/// A slot, shared by the clones of a [`Link`], for a value derived from its event.
#[derive(Clone, Default)]
pub struct Memo(Arc<OnceLock<Box<dyn Any + Send + Sync>>>);

impl Memo {
    /// The value of type `T` in the slot, else `make`'s, kept in the slot if it is still empty
    /// (a value of another type there is left, and `make`'s given unshared). Two consumers at
    /// the same instant may both make it; either value is the same.
    pub fn get_or_init<T: Clone + Send + Sync + 'static>(&self, make: impl FnOnce() -> T) -> T {
        if let Some(held) = self.0.get() {
            return match held.downcast_ref::<T>() {
                Some(value) => value.clone(),
                None => make(),
            };
        }
        let value = make();
        let _ = self.0.set(Box::new(value.clone()));
        value
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Memo(set)"
        } else {
            "Memo(empty)"
        })
    }
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
                memo: Memo::default(),
            };
            prev = link.event.checkpoint();
            link
        })
        .collect()
}

/// Reads `links` from a consumer at `from`: the links that continue from it (duplicates
/// skipped), where they lead, and the first event that does not connect (a gap to fill from
/// the store), if any.
pub fn follow(from: Checkpoint, links: &[Link]) -> (Vec<&Link>, Checkpoint, Option<Checkpoint>) {
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
        run.push(link);
        tail = at;
    }
    (run, tail, None)
}

#[cfg(test)]
mod tests {
    use super::Memo;

    #[test]
    fn a_memo_is_made_once_and_shared_by_its_clones() {
        let memo = Memo::default();
        let clone = memo.clone();
        let mut made = 0;
        let first: u32 = memo.get_or_init(|| {
            made += 1;
            7
        });
        let second: u32 = clone.get_or_init(|| {
            made += 1;
            8
        });
        assert_eq!((first, second, made), (7, 7, 1));
        // Another type is not what the slot holds: made, not kept, and the slot keeps its own.
        let other: String = clone.get_or_init(|| "x".to_string());
        assert_eq!(other, "x");
        assert_eq!(memo.get_or_init(|| 9u32), 7);
        assert_eq!(format!("{memo:?}"), "Memo(set)");
        assert_eq!(format!("{:?}", Memo::default()), "Memo(empty)");
    }
}
