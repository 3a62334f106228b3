#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! RFC 9162 proofs, exhaustively: for every tree size 1..=300, every inclusion proof and every
//! consistency proof verifies, and tampered proofs, indices, sizes and roots fail.

use tfx_protocol::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion,
    Frontier, MemoryNodes,
};
use tfx_protocol::Hash;

const SIZE_MAX: u64 = 300;

fn tree() -> (MemoryNodes, Vec<Hash>, Vec<Hash>) {
    let mut f = Frontier::default();
    let mut nodes = MemoryNodes::default();
    let mut leaves = Vec::new();
    let mut roots = vec![f.root()];
    for i in 0..SIZE_MAX {
        let leaf = leaf_hash(format!("envelope {i}").as_bytes());
        leaves.push(leaf);
        nodes.0.extend(f.push(leaf));
        roots.push(f.root());
    }
    (nodes, leaves, roots)
}

fn flip(h: &Hash) -> Hash {
    let mut t = *h;
    t[7] ^= 0x10;
    t
}

#[test]
fn inclusion_every_leaf_every_size() {
    let (nodes, leaves, roots) = tree();
    for size in 1..=SIZE_MAX {
        let r = &roots[size as usize];
        assert_eq!(root(&nodes, size).as_ref(), Ok(r));
        for index in 0..size {
            let leaf = &leaves[index as usize];
            let proof = inclusion_proof(&nodes, index, size).unwrap();
            assert_eq!(
                verify_inclusion(leaf, index, size, &proof, r),
                Ok(()),
                "size {size} index {index}"
            );
            // Tampering: a wrong leaf, root, index or size, or any altered/missing/extra proof node.
            assert!(verify_inclusion(&flip(leaf), index, size, &proof, r).is_err());
            assert!(verify_inclusion(leaf, index, size, &proof, &flip(r)).is_err());
            if size > 1 {
                assert!(verify_inclusion(leaf, (index + 1) % size, size, &proof, r).is_err());
            }
            // The same proof against the next tree (its real root) fails: sizes come with their roots.
            if size < SIZE_MAX {
                assert!(
                    verify_inclusion(leaf, index, size + 1, &proof, &roots[size as usize + 1])
                        .is_err()
                );
            }
            for k in 0..proof.len() {
                let mut bad = proof.clone();
                bad[k] = flip(&bad[k]);
                assert!(verify_inclusion(leaf, index, size, &bad, r).is_err());
            }
            if !proof.is_empty() {
                assert!(verify_inclusion(leaf, index, size, &proof[1..], r).is_err());
            }
            let mut long = proof.clone();
            long.push(*leaf);
            assert!(verify_inclusion(leaf, index, size, &long, r).is_err());
        }
    }
}

#[test]
fn consistency_every_pair_of_sizes() {
    let (nodes, _, roots) = tree();
    for new in 1..=SIZE_MAX {
        let new_root = &roots[new as usize];
        for old in 1..=new {
            let old_root = &roots[old as usize];
            let proof = consistency_proof(&nodes, old, new).unwrap();
            assert_eq!(
                verify_consistency(old, new, old_root, new_root, &proof),
                Ok(()),
                "{old} -> {new}"
            );
            if old == new {
                assert!(verify_consistency(old, new, old_root, &flip(new_root), &proof).is_err());
                continue;
            }
            assert!(verify_consistency(old, new, &flip(old_root), new_root, &proof).is_err());
            assert!(verify_consistency(old, new, old_root, &flip(new_root), &proof).is_err());
            // A neighbouring old size with its own (real) root must not pass with this proof.
            if old > 1 {
                let other = &roots[old as usize - 1];
                assert!(
                    verify_consistency(old - 1, new, other, new_root, &proof).is_err(),
                    "{old} -> {new}"
                );
            }
            for k in 0..proof.len() {
                let mut bad = proof.clone();
                bad[k] = flip(&bad[k]);
                assert!(
                    verify_consistency(old, new, old_root, new_root, &bad).is_err(),
                    "{old} -> {new} node {k}"
                );
            }
            assert!(verify_consistency(old, new, old_root, new_root, &proof[1..]).is_err());
        }
    }
}

#[test]
fn proof_bounds() {
    let (nodes, _, roots) = tree();
    assert!(inclusion_proof(&nodes, 5, 5).is_err());
    assert!(consistency_proof(&nodes, 6, 5).is_err());
    // A node the store lacks is reported, not invented.
    assert!(inclusion_proof(&nodes, 0, SIZE_MAX + 1).is_err());
    assert_eq!(verify_consistency(0, 9, &roots[0], &roots[9], &[]), Ok(()));
}
