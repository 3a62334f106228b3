#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! Deterministic simulation of a forking origin (DESIGN §5): one member's identity runs twice —
//! twins with the same key, each appending its own records after an optional common prefix —
//! each twin connected to a different group of honest nodes, which replicate within their
//! group. When the groups join, every honest node must hold verified evidence against the origin
//! and have frozen it within one anti-entropy interval, and no honest origin may be frozen.
//!
//! `FORK_SEEDS=N` runs N seeds (default 100); `FORK_SEED=S` replays one. A failure prints its
//! seed.

mod common;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use common::{append, chain, credit_body, member_id, member_key, Rng, T0};
use tfx_protocol::evidence::Evidence;
use tfx_protocol::roster::verify_chain;
use tfx_protocol::store::{LogHead, MemoryStore, Store};
use tfx_protocol::sync::wire::Message;
use tfx_protocol::sync::{Event, SyncConfig, SyncCore};
use tfx_protocol::MemberId;

const ANTI_ENTROPY_MS: u64 = 200;
/// When the two groups are joined.
const JOIN_AT: u64 = T0 + 3_000;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Deliver {
        to: usize,
        from: usize,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
        generation: u64,
    },
    Join,
}

struct Node {
    id: MemberId,
    store: MemoryStore,
    core: SyncCore,
    timer: u64,
    /// Node index of each connected peer, by member id.
    links: BTreeMap<MemberId, usize>,
}

struct World {
    seed: u64,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    nodes: Vec<Node>,
    /// Honest nodes are 0..honest; then twin A, twin B.
    honest: usize,
    group: Vec<u8>,
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng(seed);
        let honest = rng.range(3, 9) as usize;
        let forker = honest; // member id index of the twins
        let (genesis, roster_chain) = chain(honest + 1);
        let body = credit_body();
        let prefix = rng.range(0, 40) as usize;
        let mut nodes = Vec::new();
        for i in 0..honest + 2 {
            let member = i.min(forker);
            let store = MemoryStore::new();
            if i < honest {
                append(
                    &store,
                    member,
                    &body,
                    rng.range(1, 5) as usize,
                    T0,
                    seed + i as u64,
                );
            } else {
                // The twins: the same prefix, then each its own records at the same positions.
                if prefix > 0 {
                    append(&store, member, &body, prefix, T0, 7);
                }
                let own = rng.range(1, 300) as usize;
                append(&store, member, &body, own, T0 + 1, 1_000 + i as u64);
            }
            let head = store.head(&member_id(member)).unwrap().unwrap_or(LogHead {
                size: 0,
                root: [0; 32],
            });
            let mut config = SyncConfig::new(member_id(member));
            config.anti_entropy_ms = ANTI_ENTROPY_MS;
            config.fetch_timeout_ms = 1_000;
            config.witness_key = Some(std::sync::Arc::new(member_key(member)));
            config.witness_ms = ANTI_ENTROPY_MS;
            let core =
                SyncCore::new(config, &store, genesis, roster_chain.clone(), vec![], head).unwrap();
            nodes.push(Node {
                id: member_id(member),
                store,
                core,
                timer: 0,
                links: BTreeMap::new(),
            });
        }
        // Two groups of honest nodes, each with one twin.
        let mut group: Vec<u8> = (0..honest).map(|i| (i % 2) as u8).collect();
        group.push(0);
        group.push(1);
        let mut w = World {
            seed,
            rng,
            now: T0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            honest,
            group,
        };
        for a in 0..w.nodes.len() {
            for b in a + 1..w.nodes.len() {
                if w.group[a] == w.group[b] {
                    w.link(a, b);
                }
            }
        }
        w.at(JOIN_AT, Ev::Join);
        w
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq, ev)));
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "FORK_SEED={} failed at t+{}ms: {what}",
            self.seed,
            self.now - T0
        );
    }

    fn link(&mut self, a: usize, b: usize) {
        let (ida, idb) = (self.nodes[a].id.clone(), self.nodes[b].id.clone());
        self.nodes[a].links.insert(idb.clone(), b);
        self.nodes[b].links.insert(ida.clone(), a);
        let now = self.now;
        self.nodes[a].core.handle_connected(idb, now);
        self.nodes[b].core.handle_connected(ida, now);
        self.pump(a);
        self.pump(b);
    }

    fn pump(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut sends = Vec::new();
        while let Some(s) = node.core.poll_transmit() {
            sends.push(s);
        }
        let mut events = Vec::new();
        while let Some(e) = node.core.poll_event() {
            events.push(e);
        }
        let timeout = node.core.poll_timeout();
        for e in events {
            match e {
                Event::Applied { .. } | Event::Disclosed { .. } | Event::Fork { .. } => {}
                Event::Disconnect { peer, reason, .. } => {
                    let honest_peer =
                        matches!(self.nodes[i].links.get(&peer), Some(&j) if j < self.honest);
                    if i < self.honest && honest_peer {
                        self.fail(format!(
                            "{} dropped honest {peer}: {reason}",
                            self.nodes[i].id
                        ));
                    }
                    if let Some(j) = self.nodes[i].links.remove(&peer) {
                        let me = self.nodes[i].id.clone();
                        self.nodes[j].links.remove(&me);
                        let now = self.now;
                        self.nodes[j].core.handle_disconnected(&me, now);
                    }
                }
                other => self.fail(format!("{} reported {other:?}", self.nodes[i].id)),
            }
        }
        for (peer, m) in sends {
            let Some(&to) = self.nodes[i].links.get(&peer) else {
                continue;
            };
            let delay = self.rng.range(1, 40);
            let bytes = m.encode();
            self.at(self.now + delay, Ev::Deliver { to, from: i, bytes });
        }
        if let Some(t) = timeout {
            let node = &mut self.nodes[i];
            node.timer += 1;
            let generation = node.timer;
            self.at(
                t.max(self.now),
                Ev::Timer {
                    node: i,
                    generation,
                },
            );
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { to, from, bytes } => {
                let from_id = self.nodes[from].id.clone();
                if self.nodes[to].links.get(&from_id) != Some(&from) {
                    return; // that link is gone
                }
                let m = Message::decode(&bytes).unwrap();
                let now = self.now;
                let node = &mut self.nodes[to];
                node.core.handle_message(&node.store, &from_id, m, now);
                self.pump(to);
            }
            Ev::Timer {
                node: i,
                generation,
            } => {
                if self.nodes[i].timer != generation {
                    return;
                }
                let now = self.now;
                let node = &mut self.nodes[i];
                node.core.handle_timeout(&node.store, now);
                self.pump(i);
            }
            Ev::Join => {
                // Both branches must have reached honest nodes, or the test shows nothing.
                let forker = member_id(self.honest);
                for twin in [self.honest, self.honest + 1] {
                    let head = self.nodes[twin].store.head(&forker).unwrap().unwrap();
                    let reached = (0..self.honest)
                        .any(|h| self.nodes[h].store.head(&forker).unwrap() == Some(head));
                    if !reached {
                        self.fail(format!(
                            "twin {twin}'s branch reached no honest node before the join"
                        ));
                    }
                }
                for a in 0..self.honest {
                    for b in a + 1..self.honest {
                        if self.group[a] != self.group[b] {
                            self.link(a, b);
                        }
                    }
                }
            }
        }
    }

    fn run(mut self) -> u64 {
        let forker = member_id(self.honest);
        let deadline = JOIN_AT + ANTI_ENTROPY_MS;
        while let Some(Reverse((t, _, ev))) = self.queue.pop() {
            if t > deadline {
                break;
            }
            self.now = t;
            self.step(ev);
            if t < JOIN_AT && (0..self.honest).any(|h| self.nodes[h].core.frozen().count() > 0) {
                self.fail("an honest node froze an origin before the branches met".into());
            }
        }
        let (genesis, roster_chain) = chain(self.honest + 1);
        let roster = verify_chain(&genesis, &roster_chain).unwrap();
        let mut kinds = 0u64;
        for h in 0..self.honest {
            let node = &self.nodes[h];
            let frozen: Vec<&MemberId> = node.core.frozen().collect();
            if frozen != vec![&forker] {
                self.fail(format!(
                    "{} froze {frozen:?} within one anti-entropy interval of the join",
                    node.id
                ));
            }
            let held = node.store.evidence().unwrap();
            let [(origin, bytes)] = &held[..] else {
                self.fail(format!(
                    "{} holds {} pieces of evidence",
                    node.id,
                    held.len()
                ));
            };
            let ev = Evidence::decode(bytes).unwrap();
            let eq = ev
                .verify(&roster)
                .unwrap_or_else(|e| self.fail(format!("{}: evidence: {e}", node.id)));
            assert_eq!((origin, &eq.origin), (&forker, &forker));
            kinds |= match ev {
                Evidence::Records { .. } => 1,
                Evidence::Checkpoints { .. } => 2,
                Evidence::Inconsistent { .. } => 4,
                Evidence::Diverged { .. } => 8,
            };
        }
        kinds
    }
}

#[test]
fn a_forking_origin_is_caught_by_every_honest_node_within_one_anti_entropy_interval() {
    let seeds: Vec<u64> = match std::env::var("FORK_SEED") {
        Ok(s) => vec![s.parse().expect("FORK_SEED must be an integer")],
        Err(_) => {
            let n: u64 = std::env::var("FORK_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(100);
            (1..=n).collect()
        }
    };
    let mut kinds = 0;
    for seed in &seeds {
        kinds |= World::new(*seed).run();
    }
    eprintln!(
        "{} seeds; evidence kinds seen (bits 1..4): {kinds:04b}",
        seeds.len()
    );
    if seeds.len() >= 50 {
        assert!(kinds & 2 != 0, "no seed produced checkpoint evidence");
        assert!(
            kinds & 8 != 0,
            "no seed produced consistency-proof evidence"
        );
    }
}
