//! History with its proof material, as JSON lines, and the offline check of such a file.
//!
//! The first line is the checkpoint (its signed note and the key); each following line is one
//! event as stored (payload as stored: sealed values stay ciphertext), its leaf index and
//! leaf hash, and its inclusion proof in the checkpoint's tree. docs/audit.md, "Exports".
use crate::leaf::{leaf_hash, Hash};
use crate::merkle::verify_inclusion;
use crate::note::NoteVerifier;
use crate::tree::Tree;
use crate::{b64, hash_from_b64};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use store::chain::{event_hash, GENESIS_HASH};
use store::history::{self, Checkpoint};
use store::{Database, StoreError, StoredEvent};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExportedCheckpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: String,
    /// The signed note exactly as served.
    pub text: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExportedKey {
    pub algorithm: String,
    pub public_key: String,
    /// The signed-note verifier key (`name+keyid+base64`).
    pub vkey: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub checkpoint: ExportedCheckpoint,
    pub key: ExportedKey,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExportedEvent {
    pub event: StoredEvent,
    pub leaf_index: u64,
    pub leaf_hash: String,
    pub audit_path: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no checkpoint has been signed yet")]
    NoCheckpoint,
    #[error("writing: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {message}")]
    Format { line: usize, message: String },
    #[error("the checkpoint: {0}")]
    Note(#[from] crate::note::NoteError),
}

/// Writes the events with `after < position ≤ until` that the latest checkpoint covers;
/// returns how many.
pub async fn export(
    db: &Database,
    verifier: &NoteVerifier,
    after: i64,
    until: i64,
    out: &mut impl std::io::Write,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<u64, ExportError> {
    let tree = Tree::new(db.clone());
    let latest = tree
        .latest_checkpoint()
        .await?
        .ok_or(ExportError::NoCheckpoint)?;
    let signed = verifier.open(&latest.note)?;
    let size = signed.checkpoint.tree_size;
    let header = Header {
        checkpoint: ExportedCheckpoint {
            origin: signed.checkpoint.origin.clone(),
            tree_size: size,
            root_hash: b64(&signed.checkpoint.root_hash),
            text: latest.note.clone(),
        },
        key: ExportedKey {
            algorithm: "ed25519".into(),
            public_key: b64(&verifier.public_key()),
            vkey: verifier.vkey(),
        },
    };
    serde_json::to_writer(&mut *out, &header).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    let mut at = Checkpoint::default();
    let mut index = 0u64;
    let mut written = 0u64;
    'read: while index < size {
        let events = history::events_after(db, at, 5000).await?;
        let Some(last) = events.last() else { break };
        at = last.checkpoint();
        for e in events {
            if index >= size {
                break 'read;
            }
            if e.position > after && e.position <= until {
                let proof = tree.inclusion_proof(index, size).await?;
                let line = ExportedEvent {
                    leaf_hash: b64(&leaf_hash(&e)),
                    leaf_index: index,
                    audit_path: proof.iter().map(|h| b64(h)).collect(),
                    event: e,
                };
                serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
                written += 1;
            }
            index += 1;
        }
        progress(index, size);
    }
    out.flush()?;
    Ok(written)
}

/// The verdict on an export.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ExportReport {
    pub ok: bool,
    pub origin: String,
    pub tree_size: u64,
    pub checked_events: u64,
    pub first_bad_position: Option<i64>,
    pub problems: Vec<String>,
}

/// Checks an export offline: the checkpoint's signature (with `trusted`, the key the auditor
/// holds; else the key the file names), each event's leaf hash recomputed from its fields,
/// each inclusion proof against the checkpoint's root, and the hash chain between the
/// exported events of each aggregate.
pub fn verify_export(
    text: &str,
    trusted: Option<&NoteVerifier>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<ExportReport, ExportError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines.next().ok_or(ExportError::Format {
        line: 1,
        message: "the file is empty".into(),
    })?;
    let header: Header = serde_json::from_str(first).map_err(|e| ExportError::Format {
        line: 1,
        message: e.to_string(),
    })?;
    let own;
    let verifier = match trusted {
        Some(v) => v,
        None => {
            let key = hash_from_b64(&header.key.public_key).ok_or(ExportError::Format {
                line: 1,
                message: "the key is not 32 bytes of base64".into(),
            })?;
            own = NoteVerifier::new(&header.checkpoint.origin, &key)
                .map_err(|message| ExportError::Format { line: 1, message })?;
            &own
        }
    };
    let signed = verifier.open(&header.checkpoint.text)?;
    let size = signed.checkpoint.tree_size;
    let root: Hash = signed.checkpoint.root_hash;
    let mut problems = Vec::new();
    let mut first_bad: Option<i64> = None;
    let mut checked = 0u64;
    // The newest exported event of each aggregate: (sequence, hash).
    let mut heads: HashMap<(String, String), (i64, String)> = HashMap::new();
    let total = text.lines().count().saturating_sub(1) as u64;
    for (n, line) in lines {
        let item: ExportedEvent = serde_json::from_str(line).map_err(|e| ExportError::Format {
            line: n + 1,
            message: e.to_string(),
        })?;
        let e = &item.event;
        let mut bad = |problem: String, problems: &mut Vec<String>| {
            if first_bad.is_none() {
                first_bad = Some(e.position);
            }
            problems.push(format!("position {}: {problem}", e.position));
        };
        let recomputed = leaf_hash(e);
        if hash_from_b64(&item.leaf_hash) != Some(recomputed) {
            bad(
                "the leaf hash does not match the event".into(),
                &mut problems,
            );
        }
        let path: Option<Vec<Hash>> = item.audit_path.iter().map(|h| hash_from_b64(h)).collect();
        match path {
            Some(path) if verify_inclusion(&recomputed, item.leaf_index, size, &path, &root) => {}
            _ => bad(
                format!(
                    "the event is not leaf {} of the checkpoint's tree",
                    item.leaf_index
                ),
                &mut problems,
            ),
        }
        let key = (e.aggregate_type.clone(), e.aggregate_id.clone());
        let prev = match heads.get(&key) {
            Some((seq, hash)) if *seq + 1 == e.sequence => Some(hash.clone()),
            _ if e.sequence == 1 => Some(GENESIS_HASH.to_string()),
            _ => None,
        };
        if let Some(prev) = prev {
            let input = e.chain_input();
            let stored = e
                .metadata
                .get("hash")
                .and_then(|h| h.as_str())
                .unwrap_or_default();
            if event_hash(&prev, &input) != stored {
                bad("the hash chain does not hold".into(), &mut problems);
            }
        }
        heads.insert(key, (e.sequence, e.hash.clone()));
        checked += 1;
        progress(checked, total);
    }
    Ok(ExportReport {
        ok: problems.is_empty(),
        origin: signed.checkpoint.origin,
        tree_size: size,
        checked_events: checked,
        first_bad_position: first_bad,
        problems,
    })
}
