//! RFC 9162 Merkle tree hashing for origin logs (DESIGN §5, fixed): leaf = SHA-256(0x00 ‖
//! envelope), node = SHA-256(0x01 ‖ left ‖ right), the root of the empty tree SHA-256(""). Proof
//! generation reads complete subtree hashes through [`NodeSource`]; verification is pure.
//!
//! Node addressing: `(level, index)` is the root of the perfect subtree covering leaves
//! `[index·2^level, (index+1)·2^level)`. Only complete subtrees are ever stored, so a node, once
//! written, never changes — the log is append-only down to its storage.

use crate::ids::{sha256, Hash};

/// Levels in a tree of at most 2^63 leaves.
pub const LEVELS_MAX: u8 = 64;

pub fn leaf_hash(envelope: &[u8]) -> Hash {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&[0x00]);
    ctx.update(envelope);
    to_hash(ctx)
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&[0x01]);
    ctx.update(left);
    ctx.update(right);
    to_hash(ctx)
}

fn to_hash(ctx: ring::digest::Context) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

pub fn empty_root() -> Hash {
    sha256(b"")
}

/// A complete subtree's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("merkle node level {} index {} is missing from the store", .0.level, .0.index)]
    MissingNode(NodeId),
    #[error("index {index} is outside a tree of size {size}")]
    OutOfRange { index: u64, size: u64 },
    #[error("tree sizes {old} → {new} do not grow")]
    BadSizes { old: u64, new: u64 },
    #[error("proof has the wrong length")]
    WrongLength,
    #[error("proof does not lead to the expected root")]
    RootMismatch,
}

/// Where proof generation finds complete subtree hashes.
pub trait NodeSource {
    fn node(&self, id: NodeId) -> Option<Hash>;
}

fn get(src: &dyn NodeSource, level: u8, index: u64) -> Result<Hash, ProofError> {
    let id = NodeId { level, index };
    src.node(id).ok_or(ProofError::MissingNode(id))
}

/// Largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH of leaves `[start, end)`, built from complete subtrees.
pub fn subtree_root(src: &dyn NodeSource, start: u64, end: u64) -> Result<Hash, ProofError> {
    let n = end - start;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return get(src, n.trailing_zeros() as u8, start / n);
    }
    let k = split(n);
    Ok(node_hash(
        &subtree_root(src, start, start + k)?,
        &subtree_root(src, start + k, end)?,
    ))
}

pub fn root(src: &dyn NodeSource, size: u64) -> Result<Hash, ProofError> {
    subtree_root(src, 0, size)
}

/// RFC 9162 §2.1.3.1 PATH(m, D[n]) for leaf `index` in a tree of `size`.
pub fn inclusion_proof(
    src: &dyn NodeSource,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange { index, size });
    }
    let mut path = Vec::new();
    path_into(src, index, 0, size, &mut path)?;
    Ok(path)
}

fn path_into(
    src: &dyn NodeSource,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path_into(src, m, start, start + k, out)?;
        out.push(subtree_root(src, start + k, end)?);
    } else {
        path_into(src, m - k, start + k, end, out)?;
        out.push(subtree_root(src, start, start + k)?);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.1 PROOF(m, D[n]) from size `old` to size `new`.
pub fn consistency_proof(
    src: &dyn NodeSource,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ProofError> {
    if old > new {
        return Err(ProofError::BadSizes { old, new });
    }
    let mut out = Vec::new();
    if old > 0 && old < new {
        subproof_into(src, old, 0, new, true, &mut out)?;
    }
    Ok(out)
}

fn subproof_into(
    src: &dyn NodeSource,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = end - start;
    if m == n {
        if !whole {
            out.push(subtree_root(src, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof_into(src, m, start, start + k, whole, out)?;
        out.push(subtree_root(src, start + k, end)?);
    } else {
        subproof_into(src, m - k, start + k, end, false, out)?;
        out.push(subtree_root(src, start, start + k)?);
    }
    Ok(())
}

/// RFC 9162 §2.1.3.2: verifies that `leaf` is at `index` in the tree of `size` with `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: verifies that the tree of `old` leaves with `old_root` is a prefix of the
/// tree of `new` leaves with `new_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::BadSizes { old, new });
    }
    if old == new || old == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        // A size-0 tree is a prefix of anything; equal sizes need equal roots.
        return if old == 0 || old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The right edge of a log: the roots of the perfect subtrees that make up its `size` leaves,
/// largest first. Appending needs only this (O(log n) state), and each append yields the nodes
/// it completes, for the store to persist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    /// `(level, hash)`, levels strictly decreasing.
    nodes: Vec<(u8, Hash)>,
}

impl Frontier {
    /// Rebuilds the frontier of a tree of `size` from stored nodes.
    pub fn load(src: &dyn NodeSource, size: u64) -> Result<Self, ProofError> {
        let mut nodes = Vec::new();
        let mut start = 0u64;
        for level in (0..LEVELS_MAX).rev() {
            let width = 1u64 << level;
            if size & width != 0 {
                nodes.push((level, get(src, level, start >> level)?));
                start += width;
            }
        }
        Ok(Frontier { size, nodes })
    }

    /// A frontier from its subtree roots, largest first (as [`Frontier::hashes`] lists them):
    /// one per bit set in `size`. `None` when the count does not match.
    pub fn from_hashes(size: u64, hashes: &[Hash]) -> Option<Self> {
        let levels: Vec<u8> = (0..LEVELS_MAX)
            .rev()
            .filter(|l| size & (1u64 << l) != 0)
            .collect();
        if levels.len() != hashes.len() {
            return None;
        }
        Some(Frontier {
            size,
            nodes: levels.into_iter().zip(hashes.iter().copied()).collect(),
        })
    }

    /// The subtree roots, largest first: what [`Frontier::from_hashes`] takes back.
    pub fn hashes(&self) -> Vec<Hash> {
        self.nodes.iter().map(|(_, h)| *h).collect()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; returns every node this completes (the leaf itself first).
    pub fn push(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let index = self.size;
        let mut completed = vec![(NodeId { level: 0, index }, leaf)];
        let mut carry = (0u8, leaf);
        while let Some(&(level, left)) = self.nodes.last() {
            if level != carry.0 {
                break;
            }
            self.nodes.pop();
            let parent = (level + 1, node_hash(&left, &carry.1));
            completed.push((
                NodeId {
                    level: parent.0,
                    index: index >> parent.0,
                },
                parent.1,
            ));
            carry = parent;
        }
        self.nodes.push(carry);
        self.size += 1;
        completed
    }

    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return empty_root();
        };
        for (_, left) in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// Complete-subtree hashes in memory, for tests, the simulator and proof checks.
#[derive(Debug, Clone, Default)]
pub struct MemoryNodes(pub std::collections::HashMap<NodeId, Hash>);

impl NodeSource for MemoryNodes {
    fn node(&self, id: NodeId) -> Option<Hash> {
        self.0.get(&id).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MTH straight from RFC 9162's recursive definition, as the reference.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn build(n: u64) -> (MemoryNodes, Vec<Hash>, Frontier) {
        let mut f = Frontier::default();
        let mut nodes = MemoryNodes::default();
        let mut leaves = Vec::new();
        for i in 0..n {
            let leaf = leaf_hash(&i.to_be_bytes());
            leaves.push(leaf);
            nodes.0.extend(f.push(leaf));
        }
        (nodes, leaves, f)
    }

    #[test]
    fn roots_match_reference_definition() {
        let (nodes, leaves, _) = build(70);
        let mut f = Frontier::default();
        for n in 0..=70u64 {
            let want = reference_root(&leaves[..n as usize]);
            assert_eq!(root(&nodes, n), Ok(want), "size {n}");
            assert_eq!(f.root(), want, "frontier size {n}");
            assert_eq!(Frontier::load(&nodes, n).map(|l| l.root()), Ok(want));
            if n < 70 {
                f.push(leaves[n as usize]);
            }
        }
    }

    #[test]
    fn rfc9162_known_answer() {
        // Empty tree and single leaf over the empty string (RFC 6962 test data, as in Trillian).
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }
}
