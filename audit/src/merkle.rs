//! The Merkle tree of RFC 9162 §2.1: hashing (§2.1.1), inclusion proofs (§2.1.3) and
//! consistency proofs (§2.1.4), with their verification.
//!
//! Proofs are built from the hashes of *aligned full subtrees* only: a subtree of `2^level`
//! leaves starting at leaf `index · 2^level`. Every range the RFC's recursion visits is either
//! such a subtree or splits into one on the left and a smaller range on the right, so a store
//! that keeps each full subtree's hash once it is complete ([`Frontier`] yields them) answers
//! any proof in O(log n) lookups ([`Nodes`]).
use crate::leaf::Hash;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};

/// RFC 9162 interior node: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The hash of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: u64) -> u64 {
    debug_assert!(n > 1);
    1 << (63 - (n - 1).leading_zeros())
}

/// Where the hashes of aligned full subtrees come from (level 0: the leaves).
pub trait Nodes {
    fn node(&self, level: u32, index: u64) -> Hash;
}

/// The tree hash of leaves `[start, end)` (a range the RFC's recursion visits).
fn range_hash(nodes: &impl Nodes, start: u64, end: u64) -> Hash {
    let n = end - start;
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return nodes.node(n.trailing_zeros(), start / n);
    }
    let k = split(n);
    node_hash(
        &range_hash(nodes, start, start + k),
        &range_hash(nodes, start + k, end),
    )
}

/// The root of the first `size` leaves.
pub fn root(nodes: &impl Nodes, size: u64) -> Hash {
    if size == 0 {
        return empty_root();
    }
    range_hash(nodes, 0, size)
}

fn path(nodes: &impl Nodes, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
    let n = end - start;
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(nodes, m, start, start + k, out);
        out.push(range_hash(nodes, start + k, end));
    } else {
        path(nodes, m - k, start + k, end, out);
        out.push(range_hash(nodes, start, start + k));
    }
}

/// The inclusion proof (audit path) of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof(nodes: &impl Nodes, index: u64, size: u64) -> Vec<Hash> {
    assert!(index < size, "leaf {index} is not in a tree of {size}");
    let mut out = Vec::new();
    path(nodes, index, 0, size, &mut out);
    out
}

fn subproof(nodes: &impl Nodes, m: u64, start: u64, end: u64, whole: bool, out: &mut Vec<Hash>) {
    let n = end - start;
    if m == n {
        if !whole {
            out.push(range_hash(nodes, start, end));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(nodes, m, start, start + k, whole, out);
        out.push(range_hash(nodes, start + k, end));
    } else {
        subproof(nodes, m - k, start + k, end, false, out);
        out.push(range_hash(nodes, start, start + k));
    }
}

/// The consistency proof between the trees of `from` and `to` leaves (0 < from ≤ to).
pub fn consistency_proof(nodes: &impl Nodes, from: u64, to: u64) -> Vec<Hash> {
    assert!(
        0 < from && from <= to,
        "no consistency proof from {from} to {to}"
    );
    let mut out = Vec::new();
    if from < to {
        subproof(nodes, from, 0, to, true, &mut out);
    }
    out
}

/// Records which nodes a computation asks for (answering zeros), so a database can fetch them
/// all in one query before the real run.
#[derive(Default)]
pub struct Wanted(std::cell::RefCell<BTreeSet<(u32, u64)>>);

impl Nodes for Wanted {
    fn node(&self, level: u32, index: u64) -> Hash {
        self.0.borrow_mut().insert((level, index));
        [0; 32]
    }
}

impl Wanted {
    pub fn into_set(self) -> BTreeSet<(u32, u64)> {
        self.0.into_inner()
    }
}

/// Nodes fetched ahead (see [`Wanted`]).
pub struct Fetched(pub HashMap<(u32, u64), Hash>);

impl Nodes for Fetched {
    fn node(&self, level: u32, index: u64) -> Hash {
        // Only ever asked for what `Wanted` recorded for the same computation.
        self.0.get(&(level, index)).copied().unwrap_or([0; 32])
    }
}

/// All leaves in memory (verifiers, tests): a subtree's hash is computed from them.
pub struct Leaves<'a>(pub &'a [Hash]);

impl Nodes for Leaves<'_> {
    fn node(&self, level: u32, index: u64) -> Hash {
        let width = 1u64 << level;
        let start = (index * width) as usize;
        subtree(&self.0[start..start + width as usize])
    }
}

fn subtree(leaves: &[Hash]) -> Hash {
    if leaves.len() == 1 {
        return leaves[0];
    }
    let half = leaves.len() / 2;
    node_hash(&subtree(&leaves[..half]), &subtree(&leaves[half..]))
}

/// The right edge of a growing tree: the full subtrees its leaves make so far, largest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Frontier {
    size: u64,
    /// (level, hash) of each full subtree, by falling level.
    stack: Vec<(u32, Hash)>,
}

impl Frontier {
    /// Rebuilds the frontier of a tree of `size` leaves from its stored nodes.
    pub fn at(nodes: &impl Nodes, size: u64) -> Frontier {
        let mut stack = Vec::new();
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size & (1 << level) != 0 {
                stack.push((level, nodes.node(level, start >> level)));
                start += 1 << level;
            }
        }
        Frontier { size, stack }
    }

    /// The nodes [`Frontier::at`] reads for a tree of `size` leaves.
    pub fn needed(size: u64) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size & (1 << level) != 0 {
                out.push((level, start >> level));
                start += 1 << level;
            }
        }
        out
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf; `completed` gets each full subtree above the leaves it completes, as
    /// `(level, index, hash)`.
    pub fn push(&mut self, leaf: Hash, completed: &mut Vec<(u32, u64, Hash)>) {
        self.size += 1;
        let mut level = 0u32;
        let mut hash = leaf;
        while let Some(&(top_level, top)) = self.stack.last() {
            if top_level != level {
                break;
            }
            self.stack.pop();
            hash = node_hash(&top, &hash);
            level += 1;
            completed.push((level, (self.size >> level) - 1, hash));
        }
        self.stack.push((level, hash));
    }

    /// The tree's root.
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return empty_root();
        };
        for (_, left) in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && &r == root
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    from: u64,
    to: u64,
    proof: &[Hash],
    from_root: &Hash,
    to_root: &Hash,
) -> bool {
    if from == 0 || from > to {
        return false;
    }
    if from == to {
        return proof.is_empty() && from_root == to_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*from_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f, mut s) = (from - 1, to - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && &fr == from_root && &sr == to_root
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf::leaf_hash_of;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash_of(format!("leaf {i}").as_bytes()))
            .collect()
    }

    /// The RFC's definition, literally: MTH by recursion on the list.
    fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    #[test]
    fn roots_match_the_definition_and_the_frontier() {
        let all = leaves(70);
        let mut frontier = Frontier::default();
        let mut completed = Vec::new();
        let mut stored: HashMap<(u32, u64), Hash> = HashMap::new();
        for (i, leaf) in all.iter().enumerate() {
            stored.insert((0, i as u64), *leaf);
            frontier.push(*leaf, &mut completed);
            for (level, index, hash) in completed.drain(..) {
                stored.insert((level, index), hash);
            }
            let n = i + 1;
            assert_eq!(frontier.root(), mth(&all[..n]), "size {n}");
            assert_eq!(root(&Leaves(&all), n as u64), mth(&all[..n]));
            assert_eq!(root(&Fetched(stored.clone()), n as u64), mth(&all[..n]));
            assert_eq!(Frontier::at(&Fetched(stored.clone()), n as u64), frontier);
        }
        assert_eq!(root(&Leaves(&all), 0), empty_root());
    }

    #[test]
    fn inclusion_and_consistency_proofs_verify_and_catch_changes() {
        let all = leaves(33);
        let nodes = Leaves(&all);
        for size in 1..=33u64 {
            let r = mth(&all[..size as usize]);
            for i in 0..size {
                let proof = inclusion_proof(&nodes, i, size);
                assert!(
                    verify_inclusion(&all[i as usize], i, size, &proof, &r),
                    "{i}/{size}"
                );
                let other = &all[(i as usize + 1) % 33];
                assert!(!verify_inclusion(other, i, size, &proof, &r));
                if !proof.is_empty() {
                    let mut bad = proof.clone();
                    bad[0][0] ^= 1;
                    assert!(!verify_inclusion(&all[i as usize], i, size, &bad, &r));
                }
            }
            for from in 1..=size {
                let proof = consistency_proof(&nodes, from, size);
                let fr = mth(&all[..from as usize]);
                assert!(
                    verify_consistency(from, size, &proof, &fr, &r),
                    "{from}->{size}"
                );
                if from < size {
                    let other = mth(&all[1..from as usize + 1]);
                    assert!(!verify_consistency(from, size, &proof, &other, &r));
                }
            }
        }
    }

    #[test]
    fn the_wanted_nodes_are_enough() {
        let all = leaves(45);
        let wanted = Wanted::default();
        inclusion_proof(&wanted, 17, 45);
        let fetched = Fetched(
            wanted
                .into_set()
                .into_iter()
                .map(|(l, i)| ((l, i), Leaves(&all).node(l, i)))
                .collect(),
        );
        assert_eq!(
            inclusion_proof(&fetched, 17, 45),
            inclusion_proof(&Leaves(&all), 17, 45)
        );
    }
}
