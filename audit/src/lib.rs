//! Tamper evidence and history for auditors.
//!
//! - [`leaf`]: the canonical, length-prefixed encoding of one stored event and its RFC 9162
//!   leaf hash.
//! - [`canonical`]: canonical JSON straight from stored JSON text (verify's and the notary's
//!   fast path).
//! - [`merkle`]: the RFC 9162 tree: roots, inclusion and consistency proofs, their checks.
//! - [`note`]: checkpoints as C2SP signed notes (Ed25519).
//! - [`tree`]: the tree as the database keeps it (leaves, full subtrees, checkpoints).
//! - [`notary`]: the follower of the store that appends leaves and signs checkpoints.
//! - [`verify`]: the store checked against a checkpoint held outside, naming the first bad
//!   position; [`export`]: history with proof material, verified offline.
//! - [`views`]: what the audit API shows: events (sealed values marked), state as of a point
//!   folded by the domain aggregates, diffs, correlation trees.
//!
//! docs/audit.md describes the bytes, the tree and the notes for verifiers written elsewhere.
#![forbid(unsafe_code)]

pub mod canonical;
pub mod export;
pub mod leaf;
pub mod merkle;
pub mod notary;
pub mod note;
pub mod queries;
pub mod scan;
pub mod snapshots;
pub mod tree;
pub mod verify;
pub mod views;

pub use leaf::Hash;

/// Base64 (standard, padded) as checkpoints and proofs carry hashes.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A 32-byte hash from base64.
pub fn hash_from_b64(text: &str) -> Option<Hash> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?
        .try_into()
        .ok()
}
