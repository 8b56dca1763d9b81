//! The notary's tree as the database keeps it: leaves (`audit_leaves`), full subtrees
//! (`audit_nodes`), signed checkpoints (`audit_checkpoints`); proofs read O(log n) rows.
use crate::leaf::Hash;
use crate::merkle::{self, Fetched, Nodes, Wanted};
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::collections::{BTreeSet, HashMap};
use store::{with_pool, Database, StoreError};

/// The lowest level of the tree kept in `audit_nodes`: a subtree below it spans fewer than
/// `2^STORED_FROM` leaves and is hashed from them when a proof needs it (one read of at most
/// 64 leaves), which spares the notary writing a node row for almost every leaf.
pub const STORED_FROM: u32 = 6;

/// A leaf as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredLeaf {
    pub leaf_index: u64,
    pub position: i64,
    pub leaf_hash: Hash,
}

/// A checkpoint as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredCheckpoint {
    pub tree_size: u64,
    pub root_hash: Hash,
    pub note: String,
    pub signed_at: DateTime<Utc>,
}

fn hash(bytes: Vec<u8>) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Integrity("a stored tree hash is not 32 bytes".into()))
}

/// Reads the tree.
#[derive(Clone, Debug)]
pub struct Tree {
    db: Database,
}

impl Tree {
    pub fn new(db: Database) -> Tree {
        Tree { db }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// How many leaves the tree has.
    pub async fn size(&self) -> Result<u64, StoreError> {
        let n: Option<i64> = with_pool!(&self.db, pool => {
            sqlx::query_scalar("SELECT max(leaf_index) + 1 FROM audit_leaves").fetch_one(pool).await?
        });
        Ok(n.unwrap_or(0) as u64)
    }

    /// The hashes of the given aligned subtrees: levels from [`STORED_FROM`] up as stored,
    /// lower ones (and leaves) computed from the leaves they span, read in one query.
    pub async fn fetch(&self, wanted: &BTreeSet<(u32, u64)>) -> Result<Fetched, StoreError> {
        let mut found = HashMap::with_capacity(wanted.len());
        // Leaf ranges [start, end) that the low nodes span, merged.
        let mut spans: Vec<(u64, u64)> = wanted
            .iter()
            .filter(|(l, _)| *l < STORED_FROM)
            .map(|&(l, i)| (i << l, (i + 1) << l))
            .collect();
        spans.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(spans.len());
        for (a, b) in spans {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        let nodes: Vec<String> = wanted
            .iter()
            .filter(|(l, _)| *l >= STORED_FROM)
            .map(|(l, i)| format!("({l}, {i})"))
            .collect();
        // The lists are numbers this code made, not input: safe to inline.
        if !merged.is_empty() {
            let ranges: Vec<String> = merged
                .iter()
                .map(|(a, b)| format!("(leaf_index >= {a} AND leaf_index < {b})"))
                .collect();
            let sql = format!(
                "SELECT leaf_index, leaf_hash FROM audit_leaves WHERE {} ORDER BY leaf_index",
                ranges.join(" OR ")
            );
            let rows: Vec<(i64, Vec<u8>)> = with_pool!(&self.db, pool => {
                sqlx::query_as(&sql).fetch_all(pool).await?
            });
            let mut leaves: HashMap<u64, Hash> = HashMap::with_capacity(rows.len());
            for (i, h) in rows {
                leaves.insert(i as u64, hash(h)?);
            }
            for &(l, i) in wanted.iter().filter(|(l, _)| *l < STORED_FROM) {
                let span: Option<Vec<Hash>> = ((i << l)..((i + 1) << l))
                    .map(|j| leaves.get(&j).copied())
                    .collect();
                if let Some(span) = span {
                    found.insert((l, i), merkle::Leaves(&span).node(l, 0));
                }
            }
        }
        if !nodes.is_empty() {
            let sql = format!(
                "SELECT level, idx, hash FROM audit_nodes WHERE (level, idx) IN (VALUES {})",
                nodes.join(",")
            );
            let rows: Vec<(i32, i64, Vec<u8>)> = with_pool!(&self.db, pool => {
                sqlx::query_as(&sql).fetch_all(pool).await?
            });
            for (l, i, h) in rows {
                found.insert((l as u32, i as u64), hash(h)?);
            }
        }
        if found.len() != wanted.len() {
            return Err(StoreError::Integrity(format!(
                "the audit tree lacks {} of the {} nodes asked for",
                wanted.len() - found.len(),
                wanted.len()
            )));
        }
        Ok(Fetched(found))
    }

    /// Runs `f` twice: once to learn the nodes it reads, then on those nodes fetched.
    async fn with_nodes<T>(&self, f: impl Fn(&dyn NodesDyn) -> T) -> Result<T, StoreError> {
        let wanted = Wanted::default();
        f(&wanted);
        let fetched = self.fetch(&wanted.into_set()).await?;
        Ok(f(&fetched))
    }

    /// The root of the first `size` leaves.
    pub async fn root(&self, size: u64) -> Result<Hash, StoreError> {
        self.with_nodes(|n| merkle::root(&Dyn(n), size)).await
    }

    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        self.with_nodes(|n| merkle::inclusion_proof(&Dyn(n), index, size))
            .await
    }

    pub async fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
        self.with_nodes(|n| merkle::consistency_proof(&Dyn(n), from, to))
            .await
    }

    /// The leaf of the event at `position`, if the notary has it.
    pub async fn leaf_at_position(&self, position: i64) -> Result<Option<StoredLeaf>, StoreError> {
        let row: Option<(i64, i64, Vec<u8>)> = with_pool!(&self.db, pool => {
            sqlx::query_as("SELECT leaf_index, position, leaf_hash FROM audit_leaves WHERE position = $1")
                .bind(position)
                .fetch_optional(pool)
                .await?
        });
        row.map(|(i, p, h)| {
            Ok(StoredLeaf {
                leaf_index: i as u64,
                position: p,
                leaf_hash: hash(h)?,
            })
        })
        .transpose()
    }

    /// Leaves from `from` (a leaf index) on, at most `limit`.
    pub async fn leaves(&self, from: u64, limit: i64) -> Result<Vec<StoredLeaf>, StoreError> {
        let rows: Vec<(i64, i64, Vec<u8>)> = with_pool!(&self.db, pool => {
            sqlx::query_as(
                "SELECT leaf_index, position, leaf_hash FROM audit_leaves \
                 WHERE leaf_index >= $1 ORDER BY leaf_index LIMIT $2",
            )
            .bind(from as i64)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(i, p, h)| {
                Ok(StoredLeaf {
                    leaf_index: i as u64,
                    position: p,
                    leaf_hash: hash(h)?,
                })
            })
            .collect()
    }

    /// The newest signed checkpoint.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.checkpoint_where("ORDER BY tree_size DESC LIMIT 1", None)
            .await
    }

    /// The checkpoint of exactly `size` leaves, if one was signed.
    pub async fn checkpoint(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.checkpoint_where("WHERE tree_size = $1", Some(size as i64))
            .await
    }

    async fn checkpoint_where(
        &self,
        tail: &str,
        bind: Option<i64>,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let sql =
            format!("SELECT tree_size, root_hash, note, signed_at FROM audit_checkpoints {tail}");
        let row = match &self.db {
            Database::Postgres(pool) => {
                let mut q = sqlx::query(&sql);
                if let Some(b) = bind {
                    q = q.bind(b);
                }
                match q.fetch_optional(pool).await? {
                    Some(r) => Some((
                        r.try_get::<i64, _>(0)?,
                        r.try_get::<Vec<u8>, _>(1)?,
                        r.try_get::<String, _>(2)?,
                        r.try_get::<DateTime<Utc>, _>(3)?,
                    )),
                    None => None,
                }
            }
            Database::Sqlite(pool) => {
                let mut q = sqlx::query(&sql);
                if let Some(b) = bind {
                    q = q.bind(b);
                }
                match q.fetch_optional(pool).await? {
                    Some(r) => {
                        let at: String = r.try_get(3)?;
                        Some((
                            r.try_get::<i64, _>(0)?,
                            r.try_get::<Vec<u8>, _>(1)?,
                            r.try_get::<String, _>(2)?,
                            DateTime::parse_from_rfc3339(&at)
                                .map(|t| t.with_timezone(&Utc))
                                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                        ))
                    }
                    None => None,
                }
            }
        };
        row.map(|(size, root, note, signed_at)| {
            Ok(StoredCheckpoint {
                tree_size: size as u64,
                root_hash: hash(root)?,
                note,
                signed_at,
            })
        })
        .transpose()
    }
}

/// Object-safe face of [`Nodes`], so one closure runs over both passes.
pub trait NodesDyn {
    fn node_dyn(&self, level: u32, index: u64) -> Hash;
}

impl<T: Nodes> NodesDyn for T {
    fn node_dyn(&self, level: u32, index: u64) -> Hash {
        self.node(level, index)
    }
}

struct Dyn<'a>(&'a dyn NodesDyn);

impl Nodes for Dyn<'_> {
    fn node(&self, level: u32, index: u64) -> Hash {
        self.0.node_dyn(level, index)
    }
}
