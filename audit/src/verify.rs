//! The store checked against a checkpoint held outside it: the hash chains, and the Merkle
//! tree recomputed from the events as stored, in commit order. Any change, removal,
//! insertion or reordering among the first `tree_size` events gives another root.
//!
//! The first bad position is found by comparing the recomputed leaves with the notary's
//! stored leaves, which are trusted only if they reproduce the checkpoint's root themselves
//! (a root is a commitment to every leaf). If they do not (the leaf table was rewritten too),
//! the earliest position where the store and the leaf table differ is named, or the first
//! event when they agree with each other but not with the checkpoint: from there on nothing can
//! be told apart from a forgery.
use crate::leaf::{leaf_hash, Hash};
use crate::merkle::{self, Frontier};
use crate::note::{NoteError, NoteVerifier};
use crate::tree::Tree;
use serde::Serialize;
use store::history::{self, Checkpoint};
use store::{Database, StoreError, VerifyReport};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the checkpoint: {0}")]
    Note(#[from] NoteError),
}

/// Where the store does not match the checkpoint.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TreeBreak {
    /// The first position that does not match (the event the checkpoint has at that place).
    pub position: i64,
    pub leaf_index: u64,
    pub problem: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CheckpointReport {
    pub ok: bool,
    pub origin: String,
    pub tree_size: u64,
    /// Events recomputed into the tree.
    pub checked_events: u64,
    /// The tree's verdict: `None` when the store reproduces the checkpoint's root.
    pub tree: Option<TreeBreak>,
    /// Every aggregate's hash chain, checked in commit order (all events, also those after
    /// the checkpoint).
    pub chains: VerifyReport,
    /// The first position that does not match, of the tree and the chains.
    pub first_bad_position: Option<i64>,
}

/// Reading batch.
const BATCH: i64 = 5000;

/// What one pass has computed so far.
#[derive(Default)]
struct Work {
    /// (position, leaf hash) of the events the checkpoint covers, in commit order.
    leaves: Vec<(i64, Hash)>,
    frontier: Frontier,
    chains: store::history::ChainCheck,
    seen: u64,
}

impl Work {
    fn take(&mut self, events: &[store::StoredEvent], size: u64) {
        let mut completed = Vec::new();
        for e in events {
            if (self.leaves.len() as u64) < size {
                let h = leaf_hash(e);
                self.frontier.push(h, &mut completed);
                completed.clear();
                self.leaves.push((e.position, h));
            }
            self.chains.step(e);
            self.seen += 1;
        }
    }
}

/// Checks the store against the signed checkpoint `note` (its text as served); `progress`
/// hears (events done, events to do).
pub async fn against_checkpoint(
    db: &Database,
    verifier: &NoteVerifier,
    note: &str,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<CheckpointReport, VerifyError> {
    let signed = verifier.open(note)?;
    let size = signed.checkpoint.tree_size;
    let total = history::event_count(db).await?.max(0) as u64;
    // One pass in commit order: the leaves of the first `size` events, and every chain. The
    // next batch is read while the last one is hashed on another thread.
    let mut work = Work::default();
    let mut at = Checkpoint::default();
    let mut pending: Option<tokio::task::JoinHandle<Work>> = None;
    loop {
        let next = history::events_after(db, at, BATCH);
        let (events, done) = match pending.take() {
            Some(hashing) => {
                let (events, done) = tokio::join!(next, hashing);
                (
                    events?,
                    Some(done.map_err(|source| StoreError::Task {
                        task: "hashing",
                        source,
                    })?),
                )
            }
            None => (next.await?, None),
        };
        if let Some(done) = done {
            work = done;
            progress(work.seen, total.max(size));
        }
        let Some(last) = events.last() else { break };
        at = last.checkpoint();
        let mut batch = std::mem::take(&mut work);
        pending = Some(tokio::task::spawn_blocking(move || {
            batch.take(&events, size);
            batch
        }));
    }
    if let Some(hashing) = pending {
        work = hashing.await.map_err(|source| StoreError::Task {
            task: "hashing",
            source,
        })?;
    }
    let Work {
        leaves,
        frontier,
        chains,
        ..
    } = work;
    let tree = if leaves.len() as u64 == size && frontier.root() == signed.checkpoint.root_hash {
        None
    } else {
        Some(locate(db, &leaves, size, &signed.checkpoint.root_hash).await?)
    };
    metrics::counter!("zhilego_audit_verifications_total").increment(1);
    let chains = chains.finish();
    let first_bad_position = tree
        .as_ref()
        .map(|t| t.position)
        .into_iter()
        .chain(chains.broken.iter().map(|b| b.position))
        .min();
    let ok = first_bad_position.is_none();
    if !ok {
        metrics::counter!("zhilego_audit_verification_failures_total").increment(1);
    }
    Ok(CheckpointReport {
        ok,
        origin: signed.checkpoint.origin,
        tree_size: size,
        checked_events: leaves.len() as u64,
        tree,
        chains,
        first_bad_position,
    })
}

/// Names the first leaf where the store departs from the checkpoint.
async fn locate(
    db: &Database,
    leaves: &[(i64, Hash)],
    size: u64,
    root: &Hash,
) -> Result<TreeBreak, StoreError> {
    let tree = Tree::new(db.clone());
    let mut stored = Vec::with_capacity(size as usize);
    while (stored.len() as u64) < size {
        let batch = tree.leaves(stored.len() as u64, 50_000).await?;
        if batch.is_empty() {
            break;
        }
        stored.extend(batch);
    }
    let stored_hashes: Vec<Hash> = stored.iter().map(|l| l.leaf_hash).collect();
    let trusted = stored.len() as u64 == size
        && stored
            .iter()
            .enumerate()
            .all(|(i, l)| l.leaf_index == i as u64)
        && merkle::root(&merkle::Leaves(&stored_hashes), size) == *root;
    let first_diff = (0..size as usize).find(|&i| match (leaves.get(i), stored.get(i)) {
        (Some((p, h)), Some(l)) => *p != l.position || *h != l.leaf_hash,
        _ => true,
    });
    let i = match (trusted, first_diff) {
        (_, Some(i)) => i,
        (false, None) => 0,
        // Trusted leaves equal to the store's give the checkpoint's root: not reached.
        (true, None) => 0,
    };
    let expected = stored.get(i).map(|l| l.position);
    let found = leaves.get(i).map(|(p, _)| *p);
    let position = expected.or(found).unwrap_or(0);
    let mut problem = match (expected, found) {
        (Some(e), Some(f)) if e == f => format!("the event at position {e} was changed"),
        (Some(e), Some(f)) => format!(
            "the checkpoint has the event at position {e} here, the store has position {f}: events were removed, added or reordered"
        ),
        (Some(e), None) => format!("the event at position {e} and every later one are missing"),
        (None, Some(f)) => format!("the event at position {f} is not the one the checkpoint holds"),
        (None, None) => "the store does not match the checkpoint".to_string(),
    };
    if !trusted {
        problem.push_str(
            " (the notary's leaf table does not match the checkpoint either: it was rewritten too, so the position is the earliest the store and the table disagree)",
        );
    }
    Ok(TreeBreak {
        position,
        leaf_index: i as u64,
        problem,
    })
}
