#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! Deterministic simulation of the sync core (DESIGN §7): 5–20 nodes exchange real encoded
//! messages over a simulated network that loses, duplicates and reorders them; partitions come
//! and go; nodes crash and lose whatever they had not flushed; in about a third of the seeds a
//! node's store is replaced by an earlier backup and it must recover its own newer records from
//! peers before issuing again; one member joins late with an empty store. After the final heal
//! every node must hold the same heads, every stored log must re-verify, no node may still be
//! recovering, and no honest node may ever be disconnected or see a fork.
//!
//! `SIM_SEEDS=N` runs N seeds (default 1000); `SIM_SEED=S` replays one. A failure prints its
//! seed.

mod common;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use common::{
    append, credit_body, genesis_roster_with, member_id, sign_policy, sign_roster, CrashStore, Rng,
    T0,
};
use tfx_protocol::checkpoint::verify_checkpoint;
use tfx_protocol::disclosure::Disclosure;
use tfx_protocol::ids::sha256;
use tfx_protocol::log::verify_log;
use tfx_protocol::merkle;
use tfx_protocol::minimize::mask_fields;
use tfx_protocol::roster::verify_chain;
use tfx_protocol::roster::Roster;
use tfx_protocol::roster::SignedRoster;
use tfx_protocol::store::StoreNodes;
use tfx_protocol::store::{LogHead, Store};
use tfx_protocol::sync::wire::Message;
use tfx_protocol::sync::{Event, Prechecked, SyncConfig, SyncCore};
use tfx_protocol::validate::RecordBody;
use tfx_protocol::witness::{count_witnesses, Witnessed};
use tfx_protocol::{LogIndex, MemberId, RecordId};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Deliver {
        to: usize,
        from: usize,
        epoch: u64,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
        generation: u64,
    },
    Flush(usize),
    Append(usize),
    Crash(usize),
    /// The node's store is lost and restored from a backup taken earlier (SPEC §14).
    Restore(usize),
    Start(usize),
    Partition,
    FinalHeal,
}

struct Node {
    store: CrashStore,
    core: Option<SyncCore>,
    /// The local log's head as flushed.
    durable: LogHead,
    timer: u64,
    /// Restored from a backup and not yet recovered: starts in recovery and issues nothing.
    recovering: bool,
    /// The local log's size right after the last restore.
    restored_size: u64,
}

struct Sim {
    seed: u64,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    nodes: Vec<Node>,
    ids: Vec<MemberId>,
    group: Vec<u64>,
    /// Connection epoch per (low, high) pair; odd while connected.
    epochs: BTreeMap<(usize, usize), u64>,
    genesis: [u8; 32],
    chain: Vec<Vec<u8>>,
    policies: Vec<Vec<u8>>,
    /// Every disclosure any node reported sending: (recipient, record) → mask of fields.
    ledger: BTreeMap<(usize, RecordId), u32>,
    body: RecordBody,
    loss: u64,
    dup: u64,
    active_until: u64,
    salt: u64,
    messages: u64,
    /// Per restored origin, the smallest size its log was restored to: its records from there
    /// on may have been recovered from a peer holding only its view of them.
    restored: BTreeMap<usize, u64>,
    /// Own records restored nodes took back from peers.
    recovered: u64,
    /// Witnessed checkpoints found at the end, each checked against its log.
    witnessed: u64,
}

/// Every third member is a central bank, which sees every field; the others are banks, which
/// see [`SIM_VIEW`]. Both issue credit records, so records relayed through a bank reach a central
/// bank short of fields and must be completed from their origin.
fn sim_role(i: usize) -> &'static str {
    if i % 3 == 2 {
        "central-bank"
    } else {
        "bank"
    }
}

/// The simulated policy's view for banks: these fields of others' records only.
const SIM_VIEW: [&str; 5] = [
    "lender",
    "balance_fen",
    "classification",
    "overdue_days",
    "balance_band",
];

const EMPTY: LogHead = LogHead {
    size: 0,
    root: [0; 32],
};

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let n = rng.range(5, 20) as usize;
        let chain = vec![sign_roster(genesis_roster_with(n, sim_role))];
        let genesis = sha256(&SignedRoster::decode(&chain[0]).unwrap().payload);
        let mut sim = Sim {
            seed,
            loss: rng.range(0, 150),
            dup: rng.range(0, 100),
            rng,
            now: T0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: (0..n)
                .map(|_| Node {
                    store: CrashStore::default(),
                    core: None,
                    durable: EMPTY,
                    timer: 0,
                    recovering: false,
                    restored_size: 0,
                })
                .collect(),
            ids: (0..n).map(member_id).collect(),
            group: vec![0; n],
            epochs: BTreeMap::new(),
            genesis,
            chain,
            ledger: BTreeMap::new(),
            policies: vec![
                sign_policy(
                    1,
                    None,
                    1,
                    &[
                        ("credit", "bank", &SIM_VIEW),
                        ("credit", "central-bank", &["*"]),
                    ],
                )
                .1,
            ],
            body: credit_body(),
            active_until: T0 + 2_000,
            salt: 0,
            messages: 0,
            restored: BTreeMap::new(),
            recovered: 0,
            witnessed: 0,
        };
        let late = sim.rng.range(0, n as u64 - 1) as usize;
        for i in 0..n {
            let at = if i == late {
                T0 + sim.rng.range(1_000, 2_500)
            } else {
                T0
            };
            sim.at(at, Ev::Start(i));
            let first = sim.rng.range(0, 400);
            sim.at(T0 + first, Ev::Append(i));
            let flush = sim.rng.range(5, 30);
            sim.at(T0 + flush, Ev::Flush(i));
        }
        for _ in 0..sim.rng.range(0, 3) {
            let t = sim.rng.range(100, 1_900);
            let victim = sim.rng.range(0, n as u64 - 1) as usize;
            sim.at(T0 + t, Ev::Crash(victim));
        }
        for _ in 0..sim.rng.range(0, 4) {
            let t = sim.rng.range(0, 1_900);
            sim.at(T0 + t, Ev::Partition);
        }
        if sim.rng.chance(300) {
            let t = sim.rng.range(500, 1_900);
            let victim = sim.rng.range(0, n as u64 - 1) as usize;
            sim.at(T0 + t, Ev::Restore(victim));
        }
        sim.at(sim.active_until, Ev::FinalHeal);
        sim
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq, ev)));
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "SIM_SEED={} failed at t+{}ms: {what}",
            self.seed,
            self.now - T0
        );
    }

    fn pair(a: usize, b: usize) -> (usize, usize) {
        (a.min(b), a.max(b))
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.nodes[a].core.is_some()
            && self.nodes[b].core.is_some()
            && self.group[a] == self.group[b]
    }

    /// Brings connections in line with who is up and the partition: the transport's job.
    fn reconnect(&mut self) {
        let n = self.nodes.len();
        for a in 0..n {
            for b in a + 1..n {
                let want = self.linked(a, b);
                let epoch = self.epochs.entry((a, b)).or_insert(0);
                let have = *epoch % 2 == 1;
                if want == have {
                    continue;
                }
                *epoch += 1;
                for (x, y) in [(a, b), (b, a)] {
                    let peer = self.ids[y].clone();
                    let now = self.now;
                    if let Some(core) = self.nodes[x].core.as_mut() {
                        if want {
                            core.handle_connected(peer, now);
                        } else {
                            core.handle_disconnected(&peer, now);
                        }
                    }
                }
                self.pump(a);
                self.pump(b);
            }
        }
    }

    /// Moves a node's outputs onto the network and re-arms its timer.
    fn pump(&mut self, i: usize) {
        let Some(core) = self.nodes[i].core.as_mut() else {
            return;
        };
        let mut sends = Vec::new();
        while let Some(s) = core.poll_transmit() {
            sends.push(s);
        }
        let mut events = Vec::new();
        while let Some(e) = core.poll_event() {
            events.push(e);
        }
        let timeout = core.poll_timeout();
        for e in events {
            match e {
                Event::Applied { .. } | Event::RosterAdopted { .. } | Event::Backfilled { .. } => {}
                Event::Recovered { head } => {
                    let node = &mut self.nodes[i];
                    self.recovered += head.size.saturating_sub(node.restored_size);
                    node.store.flush().unwrap();
                    node.recovering = false;
                    node.durable = head;
                }
                Event::Disclosed { peer, records, .. } => {
                    let to = self.ids.iter().position(|id| id == &peer).unwrap();
                    for (_, id, _, mask) in records {
                        *self.ledger.entry((to, id)).or_insert(0) |= mask;
                    }
                }
                other => self.fail(format!("node {} reported {other:?}", self.ids[i])),
            }
        }
        for (peer, m) in sends {
            let to = self.ids.iter().position(|id| id == &peer).unwrap();
            let epoch = self.epochs.get(&Self::pair(i, to)).copied().unwrap_or(0);
            if epoch % 2 == 0 {
                continue; // not connected: the transport drops it
            }
            let bytes = m.encode();
            self.messages += 1;
            let lossy = self.now < self.active_until;
            if lossy && self.rng.chance(self.loss) {
                continue;
            }
            let copies = if self.rng.chance(self.dup) { 2 } else { 1 };
            for _ in 0..copies {
                let delay = self.rng.range(1, 40);
                self.at(
                    self.now + delay,
                    Ev::Deliver {
                        to,
                        from: i,
                        epoch,
                        bytes: bytes.clone(),
                    },
                );
            }
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

    fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let head = node.store.head(&self.ids[i]).unwrap().unwrap_or(EMPTY);
        node.durable = head;
        let mut config = SyncConfig::new(self.ids[i].clone());
        config.anti_entropy_ms = 200;
        config.fetch_timeout_ms = 300;
        config.pipeline = 4;
        config.recovering = node.recovering;
        config.witness_key = Some(std::sync::Arc::new(common::member_key(i)));
        config.witness_ms = 1_500;
        let core = SyncCore::new(
            config,
            &node.store,
            self.genesis,
            self.chain.clone(),
            self.policies.clone(),
            head,
        )
        .unwrap_or_else(|e| self.fail(format!("restart of {}: {e}", self.ids[i])));
        self.nodes[i].core = Some(core);
        self.reconnect();
        self.pump(i);
    }

    fn step(&mut self, ev: Ev) {
        let active = self.now < self.active_until;
        match ev {
            Ev::Start(i) => {
                if self.nodes[i].core.is_none() {
                    self.start(i);
                }
            }
            Ev::Deliver {
                to,
                from,
                epoch,
                bytes,
            } => {
                if self.epochs.get(&Self::pair(to, from)) != Some(&epoch) {
                    return; // that connection is gone
                }
                let m = Message::decode(&bytes)
                    .unwrap_or_else(|e| self.fail(format!("undecodable message: {e}")));
                let peer = self.ids[from].clone();
                let now = self.now;
                if std::env::var("SIM_TRACE").is_ok() {
                    if let Message::Records(r) = &m {
                        eprintln!(
                            "t+{} {} -> {} records {}@{}..{} partial={} ndisc={:?}",
                            now - T0,
                            peer,
                            self.ids[to],
                            r.origin,
                            r.from,
                            r.from + r.records.len() as u64,
                            r.partial,
                            r.records.first().map(|w| w.disclosures.len())
                        );
                    }
                    if let Message::Fetch(f) = &m {
                        eprintln!(
                            "t+{} {} -> {} fetch {}@{}+{}",
                            now - T0,
                            peer,
                            self.ids[to],
                            f.origin,
                            f.from,
                            f.count
                        );
                    }
                }
                // Half the records messages arrive prechecked, as the node's connection readers
                // hand them over (a precheck under a stale roster: `sync.rs`).
                let precheck = matches!(m, Message::Records(_)) && self.rng.chance(500);
                let node = &mut self.nodes[to];
                if let Some(core) = node.core.as_mut() {
                    match m {
                        Message::Records(r) if precheck => {
                            let p = Prechecked::check(r, core.roster(), &node.store);
                            core.handle_records(&node.store, &peer, p, now);
                        }
                        m => core.handle_message(&node.store, &peer, m, now),
                    }
                    if std::env::var("SIM_TRACE").is_ok() {
                        eprintln!("   {} backfilling {:?}", self.ids[to], core.backfilling());
                    }
                }
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
                if let Some(core) = node.core.as_mut() {
                    core.handle_timeout(&node.store, now);
                }
                self.pump(i);
            }
            Ev::Flush(i) => {
                let node = &mut self.nodes[i];
                if node.core.is_some() {
                    node.store.flush().unwrap();
                    let head = node.store.head(&self.ids[i]).unwrap().unwrap_or(EMPTY);
                    if head.size > node.durable.size {
                        node.durable = head;
                        if let Some(core) = node.core.as_mut() {
                            core.handle_local_head(&node.store, head, self.now);
                        }
                    }
                    self.pump(i);
                }
                let next = self.rng.range(5, 30);
                self.at(self.now + next, Ev::Flush(i));
            }
            Ev::Append(i) => {
                if !active {
                    return;
                }
                if self.nodes[i].core.is_some() && !self.nodes[i].recovering {
                    let count = self.rng.range(1, 2) as usize;
                    self.salt += 1;
                    append(
                        &self.nodes[i].store,
                        i,
                        &self.body,
                        count,
                        self.now,
                        self.salt,
                    );
                }
                let next = self.rng.range(500, 1_500);
                self.at(self.now + next, Ev::Append(i));
            }
            Ev::Crash(i) => {
                if self.nodes[i].core.take().is_some() {
                    self.nodes[i].store.crash();
                    self.reconnect();
                    let back = self.rng.range(50, 500);
                    self.at(self.now + back, Ev::Start(i));
                }
            }
            Ev::Restore(i) => {
                if self.nodes[i].core.take().is_some() {
                    let keep = self.rng.range(0, self.nodes[i].store.flushed_ops() as u64) as usize;
                    let node = &mut self.nodes[i];
                    node.store.restore(keep);
                    node.recovering = true;
                    let size = node.store.head(&self.ids[i]).unwrap().map_or(0, |h| h.size);
                    node.restored_size = size;
                    let at = self.restored.entry(i).or_insert(size);
                    *at = (*at).min(size);
                    self.reconnect();
                    let back = self.rng.range(50, 500);
                    self.at(self.now + back, Ev::Start(i));
                }
            }
            Ev::Partition => {
                let groups = self.rng.range(1, 3);
                for g in 0..self.group.len() {
                    self.group[g] = self.rng.range(0, groups - 1);
                }
                self.reconnect();
            }
            Ev::FinalHeal => {
                self.group.iter_mut().for_each(|g| *g = 0);
                for i in 0..self.nodes.len() {
                    if self.nodes[i].core.is_none() {
                        self.start(i);
                    }
                }
                self.reconnect();
            }
        }
    }

    fn converged(&self) -> bool {
        let heads: Vec<_> = self
            .nodes
            .iter()
            .map(|n| n.core.as_ref().map(|c| c.heads()))
            .collect();
        let Some(Some(first)) = heads.first() else {
            return false;
        };
        // Every origin's log everywhere equals that origin's own durable log.
        let expected: Vec<(MemberId, LogHead)> = self
            .ids
            .iter()
            .zip(&self.nodes)
            .filter(|(_, n)| n.durable.size > 0)
            .map(|(id, n)| (id.clone(), n.durable))
            .collect();
        // …and every relayed record is complete with the fields its holder's view grants.
        let complete = self
            .nodes
            .iter()
            .all(|n| n.core.as_ref().is_some_and(|c| c.backfilling().is_empty()));
        first == &expected && heads.iter().all(|h| h.as_ref() == Some(first)) && complete
    }

    fn run(mut self) -> (usize, u64, u64, u64, u64) {
        let deadline = self.active_until + 60_000;
        let mut next_check = self.active_until + 500;
        while let Some(Reverse((t, _, ev))) = self.queue.pop() {
            self.now = t;
            self.step(ev);
            if self.now >= next_check {
                if self.converged() {
                    break;
                }
                next_check = self.now + 50;
            }
            if self.now > deadline {
                let heads: Vec<_> = self
                    .nodes
                    .iter()
                    .map(|n| {
                        n.core.as_ref().map(|c| {
                            c.heads()
                                .iter()
                                .map(|(o, h)| (o.to_string(), h.size))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                self.fail(format!(
                    "no convergence 60 s after the final heal: {heads:?}"
                ));
            }
        }
        if !self.converged() {
            self.fail("the event queue ran dry before convergence".into());
        }
        if let Some(i) = self.nodes.iter().position(|n| n.recovering) {
            self.fail(format!("{} never recovered after its restore", self.ids[i]));
        }
        // Flush everything, then every node must re-verify every log it holds.
        let roster = verify_chain(&self.genesis, &self.chain).unwrap();
        let mut records = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            node.store.flush().unwrap();
            for origin in node.store.origins().unwrap() {
                let report =
                    verify_log(&node.store, &origin, &roster, &mut |_| {}).unwrap_or_else(|e| {
                        self.fail(format!(
                            "{} holds a log of {origin} that fails verification: {e}",
                            self.ids[i]
                        ))
                    });
                records += report.size;
                if origin != self.ids[i] {
                    self.check_view(i, &origin);
                }
                self.witnessed += self.check_witnessed(i, &origin, &roster);
            }
        }
        (
            self.nodes.len(),
            records,
            self.messages,
            self.recovered,
            self.witnessed,
        )
    }

    /// Every witnessed checkpoint `node` holds of `origin` is signed by the origin, commits to
    /// exactly the root of the log the node holds at its size, and carries only valid
    /// cosignatures of it by other members. Returns how many it holds.
    fn check_witnessed(&self, node: usize, origin: &MemberId, roster: &Roster) -> u64 {
        let store = &self.nodes[node].store;
        let held = store.witnessed(origin).unwrap();
        for (size, bytes) in &held {
            let w = Witnessed::decode(bytes).unwrap();
            let cp = verify_checkpoint(&w.checkpoint, roster)
                .unwrap_or_else(|e| {
                    self.fail(format!("{}: witnessed checkpoint: {e}", self.ids[node]))
                })
                .checkpoint;
            let root = merkle::root(&StoreNodes::new(store, origin), *size).unwrap();
            if cp.size != *size || cp.root != root {
                self.fail(format!(
                    "{} keeps a checkpoint of {origin} at {size} that its log does not produce",
                    self.ids[node]
                ));
            }
            let (witnesses, errors) = count_witnesses(&cp, &w.cosignatures, roster);
            if !errors.is_empty() || witnesses.is_empty() {
                self.fail(format!(
                    "{} keeps cosignatures of {origin}@{size} that do not count: {errors:?}",
                    self.ids[node]
                ));
            }
        }
        held.len() as u64
    }
}

impl Sim {
    /// Every record `node` holds of `origin` carries exactly the policy's view of the fields the
    /// origin disclosed: minimization held through loss, relays, crashes and catch-up.
    fn check_view(&self, node: usize, origin: &MemberId) {
        let mine = self.nodes[node]
            .store
            .records(origin, LogIndex(0), usize::MAX)
            .unwrap();
        let o = self.ids.iter().position(|m| m == origin).unwrap();
        let theirs = self.nodes[o]
            .store
            .records(origin, LogIndex(0), usize::MAX)
            .unwrap();
        let recovered_from = self.restored.get(&o).copied().unwrap_or(u64::MAX);
        for (held, full) in mine.iter().zip(&theirs) {
            if held.seq.0 >= recovered_from {
                continue;
            }
            // The cheap name reader: thousands of records per seed are checked.
            let names = |ds: &[Vec<u8>]| -> Vec<String> {
                let mut n: Vec<String> = ds
                    .iter()
                    .map(|d| Disclosure::field_name(d).unwrap().to_owned())
                    .collect();
                n.sort();
                n
            };
            let want: Vec<String> = names(&full.disclosures)
                .into_iter()
                .filter(|n| sim_role(node) == "central-bank" || SIM_VIEW.contains(&n.as_str()))
                .collect();
            let id = RecordId::of_envelope(&held.envelope);
            let logged = mask_fields(
                self.body.kind,
                self.ledger.get(&(node, id)).copied().unwrap_or(0),
            );
            if let Some(missing) = want.iter().find(|f| !logged.contains(&f.as_str())) {
                self.fail(format!(
                    "{} holds {origin}#{} field {missing}, which no ledger shows sent to it (logged {logged:?}, holds {:?})",
                    self.ids[node], held.seq.0, names(&held.disclosures)
                ));
            }
            if names(&held.disclosures) != want {
                self.fail(format!(
                    "{} holds {origin}#{} with fields {:?}, its view is {want:?}",
                    self.ids[node],
                    held.seq.0,
                    names(&held.disclosures)
                ));
            }
        }
    }
}

#[test]
fn sync_converges_under_loss_partitions_crashes_restores_and_a_late_joiner() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED must be an integer")],
        Err(_) => {
            let n: u64 = std::env::var("SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1000);
            (1..=n).collect()
        }
    };
    // Seeds are independent: spread them over the machine's cores.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let totals = std::sync::Mutex::new((0, 0, 0, 0, 0));
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(seed) = seeds.get(k) else { break };
                let (n, r, m, rec, w) = Sim::new(*seed).run();
                let mut t = totals.lock().unwrap();
                t.0 += n;
                t.1 += r;
                t.2 += m;
                t.3 += rec;
                t.4 += w;
            });
        }
    });
    let (nodes, records, messages, recovered, witnessed) = totals.into_inner().unwrap();
    eprintln!(
        "{} seeds: {nodes} nodes, {records} stored records verified, {messages} messages, {recovered} own records recovered after restores, {witnessed} witnessed checkpoints checked",
        seeds.len()
    );
    assert!(records > 0, "the simulation stored nothing");
    assert!(witnessed > 0, "no node witnessed anything");
    if seeds.len() >= 100 {
        assert!(
            recovered > 0,
            "no restore lost records that peers held: recovery untested"
        );
    }
}
