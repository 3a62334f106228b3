//! The sync state machine (DESIGN §7), sans-IO in the style of quinn-proto: the node (or the
//! simulator) feeds it connections, messages, its own durable head and the time through
//! `handle_*`, and drains what it wants sent and what happened through [`SyncCore::poll_transmit`],
//! [`SyncCore::poll_event`] and [`SyncCore::poll_timeout`]. It never does I/O itself; it reads and
//! atomically appends through the [`Store`] it is handed.
//!
//! One round, per peer: each side sends [`Hello`] (a digest of every head it holds, plus roster
//! and policy versions) on connect; after that, one side of each pair sends one every
//! anti-entropy interval and the other every [`QUIET_SIDE_ROUNDS`] intervals
//! ([`SyncCore::starts_rounds`]). Equal digests end the round, so members in sync exchange about
//! one small message per interval. Otherwise the receiver answers with [`Heads`], both exchange
//! them, and each fetches exactly the ranges it lacks, a few chunks
//! in flight per origin spread over every peer that has them (so a new member catches up from
//! several peers at once). New local appends are pushed to peers as soon as they are durable.
//!
//! Architecture invariants:
//! - nothing from a peer is stored before it verifies: every record's signature under the
//!   origin's roster key valid at its issue time, its origin and sequence number, its issuer
//!   role, every disclosure's digest, and any checkpoint's signature and root;
//! - a peer that sends anything that fails verification or decoding is disconnected with a
//!   reason ([`Event::Disconnect`]) and nothing of that message is kept;
//! - the local origin's log is served only up to the durable head the node reports (serving an
//!   unflushed record that a crash then loses would make this node equivocate);
//! - every queue and loop over peer-supplied counts is bounded ([`wire`] limits, [`READY_CHUNKS_MAX`],
//!   [`PEER_FETCHES_MAX`]).

mod audit;
mod precheck;
pub mod wire;

pub use audit::PENDING_WITNESSED_MAX;
pub use precheck::Prechecked;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::checkpoint::{verify_checkpoint, Checkpoint};
use crate::ids::{Hash, LogIndex, MemberId, RecordId, Timestamp};
use crate::limits::POLICIES_PER_MESSAGE_MAX;
use crate::merkle::{leaf_hash, Frontier};
use crate::minimize::{envelope_header, filter};
use crate::policy::{
    check_current_governors, verify_policy_chain, Policy, PolicyError, SignedPolicy, View,
};
use crate::record::{VerifiedRecord, VerifyError};
use crate::roster::{verify_chain, Roster, RosterError, SignedRoster};
use crate::schema::RecordKind;
use crate::store::{
    subjects_of_bytes, AppendBatch, LogHead, Store, StoreNodes, StoredRecord, STORED_LEVEL_MIN,
};
use wire::{
    heads_digest, Fetch, Heads, Hello, Message, Records, WireRecord, FRAME_BYTES_MAX,
    RECORDS_PER_MESSAGE_MAX, ROSTERS_PER_MESSAGE_MAX,
};

/// Verified chunks waiting for an earlier gap to fill, per origin. Each is at most one message
/// (~1.2 MiB typical), so this bounds buffered catch-up data per origin at ~20 MiB.
pub const READY_CHUNKS_MAX: usize = 16;

/// Fetches outstanding to one peer. Its server answers them in order, so more only queue there.
pub const PEER_FETCHES_MAX: usize = 16;

/// The side of a pair that does not start the anti-entropy rounds still sends a Hello every this
/// many intervals. Its peer's Hellos already let it find any difference within one interval (it
/// answers with Heads); its own Hellos only refresh what its peer knows of it — its roster and
/// policy versions, and that it holds what the peer holds — should a message about them ever be
/// lost.
pub const QUIET_SIDE_ROUNDS: u64 = 8;

/// Records pushed to a peer when the local durable head advances. A larger jump (after a long
/// offline period) is left to the peer's fetches, which are flow-controlled.
pub const PUSH_RECORDS_MAX: u64 = 4 * RECORDS_PER_MESSAGE_MAX as u64;

/// Timing and parallelism. Defaults suit a LAN/WAN consortium; the simulator shortens them.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// The member this node is (its own log is never accepted from peers).
    pub local: MemberId,
    /// Milliseconds between `Hello`s to each peer: the safety net behind pushes.
    pub anti_entropy_ms: u64,
    /// Milliseconds before an unanswered fetch is given up and re-requested (possibly elsewhere).
    pub fetch_timeout_ms: u64,
    /// Chunks in flight per origin (across all peers).
    pub pipeline: usize,
    /// Start in recovery (after a restore from backup): the local log is fetched from peers
    /// like any other until they have reported and none holds more of it, and only then does
    /// [`Event::Recovered`] let the node issue again (SPEC §14.4).
    pub recovering: bool,
    /// How many other active members must report their heads before recovery ends; `None`
    /// means every one of them.
    pub recovery_peers: Option<usize>,
    /// The record-signing key this node cosigns other origins' checkpoints with (SPEC §17);
    /// `None` makes it a non-witness (it still checks and keeps others' cosignatures).
    pub witness_key: Option<std::sync::Arc<crate::keys::SigningKey>>,
    /// Milliseconds between cosigning rounds: at most one cosignature per origin per round.
    pub witness_ms: u64,
}

impl SyncConfig {
    pub fn new(local: MemberId) -> Self {
        SyncConfig {
            local,
            anti_entropy_ms: 5_000,
            fetch_timeout_ms: 30_000,
            pipeline: 8,
            recovering: false,
            recovery_peers: None,
            witness_key: None,
            witness_ms: 5_000,
        }
    }
}

/// Why the core asks for a connection to be closed. The transport reports the two differently
/// (close code, counters): a violation is the peer's fault and an operator should look at it; a
/// membership change is governance working as intended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectCause {
    /// The peer sent something malformed, unverifiable or contradicting its own claims.
    Violation,
    /// The peer is revoked or absent in the current roster.
    NotMember,
}

/// Something the node must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Close the connection to `peer`: it broke the protocol, or is no longer an active member
    /// (`cause` says which). The core has already forgotten it.
    Disconnect {
        peer: MemberId,
        reason: String,
        cause: DisconnectCause,
    },
    /// A newer roster version verified against the current one; persist `bytes` and apply it to
    /// the transport (revoked members' connections are also reported as `Disconnect`).
    RosterAdopted { version: u64, bytes: Vec<u8> },
    /// Records of `origin` were verified and applied (not yet flushed): the log is now `head`.
    Applied { origin: MemberId, head: LogHead },
    /// The origin signed two different histories: sync with it stops (DESIGN §5; evidence and
    /// alerts are the auditing work).
    Fork {
        origin: MemberId,
        peer: MemberId,
        detail: String,
    },
    /// The store refused a write or read: the node must stop syncing and reopen the store.
    StoreFailed(String),
    /// A newer policy version verified; persist `bytes`.
    PolicyAdopted { version: u64, bytes: Vec<u8> },
    /// This member's view lost fields or retention (a newer policy, or roles taken away): the
    /// node must purge its store with [`crate::minimize::purge`] and [`SyncCore::view`].
    PurgeNeeded,
    /// Disclosures queued for `peer` (the disclosure ledger's entry): for each record, its
    /// position, id, kind and a mask of the fields sent ([`crate::minimize::mask_fields`]).
    Disclosed {
        peer: MemberId,
        origin: MemberId,
        policy_version: u64,
        records: Vec<(u64, RecordId, RecordKind, u32)>,
    },
    /// `peer` sent disclosures this node's view does not admit: they were dropped before
    /// anything was stored, and the sender is flagged. Field names only, never values.
    Refused {
        peer: MemberId,
        origin: MemberId,
        disclosures: u64,
        fields: BTreeSet<String>,
    },
    /// Records of `origin` already held gained disclosures a newer policy grants.
    Backfilled { origin: MemberId, records: u64 },
    /// Recovery after a restore is over: the peers required have reported and the local log
    /// holds everything any of them holds of it (`head`). The node may issue again once it has
    /// flushed the store.
    Recovered { head: LogHead },
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("roster: {0}")]
    Roster(#[from] RosterError),
    #[error("{0}")]
    Policy(#[from] PolicyError),
    #[error("store: {0}")]
    Store(String),
}

#[derive(Debug)]
struct Peer {
    /// What the peer has told us (or shown us) it holds, per origin.
    sizes: BTreeMap<MemberId, u64>,
    roster_version: u64,
    policy_version: u64,
    next_hello: u64,
    fetches: usize,
    /// The peer's view under the current policy and roster (what it may be sent).
    view: View,
    /// Whether its view covers this node's: records it holds complete are complete for us.
    covers: bool,
    /// Until its first heads arrive (at most this long after it connected), a narrower relay
    /// is not asked for records this peer could send complete: members connect within
    /// milliseconds of each other, and fetching from whichever told us first would mean
    /// fetching those records again for their other fields.
    heads_due: Option<u64>,
}

/// Re-fetching records already held to gain the disclosures a newer policy grants: one range
/// request in flight per origin, from `next` up to `end`.
#[derive(Debug)]
struct Backfill {
    next: u64,
    end: u64,
    /// (from, peer, deadline) of the request in flight.
    inflight: Option<(u64, MemberId, u64)>,
}

#[derive(Debug)]
struct Inflight {
    peer: MemberId,
    count: u64,
    deadline: u64,
}

/// Roster-dependent verification of one `Records` message done ahead of the core
/// ([`Prechecked`]), under the core's current roster version.
struct Checks {
    verified: Vec<Result<crate::record::VerifiedRecord, crate::record::VerifyError>>,
    checkpoint: Option<Result<crate::checkpoint::SignedCheckpoint, crate::record::VerifyError>>,
}

#[derive(Debug)]
struct Chunk {
    records: Vec<StoredRecord>,
    /// The checkpoint of size exactly `from + records.len()`, verified.
    checkpoint: Option<(Checkpoint, Vec<u8>)>,
    /// Names of the disclosures dropped as beyond this node's view.
    refused: Vec<String>,
}

/// The local log being recovered from peers after a restore (see [`SyncConfig::recovering`]).
#[derive(Debug)]
struct Recovery {
    /// The local log's frontier as recovered so far.
    frontier: Frontier,
    /// Members that have reported what they hold of the local log (kept across disconnects).
    reported: BTreeSet<MemberId>,
    /// The longest copy of the local log any peer reported or served. It only rises: a short
    /// answer (cut at the peer's checkpoint, say) or a disconnect must never end recovery
    /// below a size someone is known to hold.
    target: u64,
}

#[derive(Debug, Default)]
struct Pull {
    inflight: BTreeMap<u64, Inflight>,
    ready: BTreeMap<u64, Chunk>,
}

/// One member's sync state. See the module docs.
#[derive(Debug)]
pub struct SyncCore {
    config: SyncConfig,
    genesis: Hash,
    /// Every roster version from genesis, as signed.
    chain: Vec<Vec<u8>>,
    roster: Roster,
    roster_request: Option<(MemberId, u64)>,
    /// Every policy version from 1, as signed; empty before a policy is adopted.
    policies: Vec<Vec<u8>>,
    policy: Option<Policy>,
    /// This member's own view under the current policy and roster.
    view: View,
    policy_request: Option<(MemberId, u64)>,
    backfill: BTreeMap<MemberId, Backfill>,
    /// The local log's durable head.
    local: LogHead,
    /// Remote origins' logs as stored here.
    logs: BTreeMap<MemberId, Frontier>,
    /// The stored (latest verified) checkpoint per remote origin.
    checkpoints: BTreeMap<MemberId, (Checkpoint, Vec<u8>)>,
    audit: audit::AuditState,
    next_witness: u64,
    peers: BTreeMap<MemberId, Peer>,
    pulls: BTreeMap<MemberId, Pull>,
    frozen: BTreeSet<MemberId>,
    failed: bool,
    recovery: Option<Recovery>,
    /// The latest time any handler was given (ms), for rules that need "now" without one.
    clock: u64,
    transmit: VecDeque<(MemberId, Message)>,
    events: VecDeque<Event>,
}

fn store_err(e: impl std::fmt::Display) -> SyncError {
    SyncError::Store(e.to_string())
}

impl SyncCore {
    /// Loads every remote log's frontier from `store` and verifies the roster chain from the
    /// trusted genesis. `local` is the local log's durable head.
    pub fn new<S: Store>(
        config: SyncConfig,
        store: &S,
        genesis: Hash,
        chain: Vec<Vec<u8>>,
        policies: Vec<Vec<u8>>,
        local: LogHead,
    ) -> Result<Self, SyncError> {
        let roster = verify_chain(&genesis, &chain)?;
        let policy = verify_policy_chain(&policies, |v| roster_at(&chain, v))?;
        let mut logs = BTreeMap::new();
        let mut checkpoints = BTreeMap::new();
        let recovery = if config.recovering {
            let frontier = Frontier::load(&StoreNodes::new(store, &config.local), local.size)
                .map_err(|e| SyncError::Store(format!("log of {}: {e}", config.local)))?;
            Some(Recovery {
                frontier,
                reported: BTreeSet::new(),
                target: local.size,
            })
        } else {
            None
        };
        for origin in store.origins().map_err(store_err)? {
            if origin == config.local {
                continue;
            }
            let size = store
                .head(&origin)
                .map_err(store_err)?
                .map_or(0, |h| h.size);
            let frontier = Frontier::load(&StoreNodes::new(store, &origin), size)
                .map_err(|e| SyncError::Store(format!("log of {origin}: {e}")))?;
            if let Some(bytes) = store.checkpoint(&origin).map_err(store_err)? {
                let cp = Checkpoint::decode_unverified(&bytes).map_err(store_err)?;
                checkpoints.insert(origin.clone(), (cp, bytes));
            }
            logs.insert(origin, frontier);
        }
        let mut backfill = BTreeMap::new();
        for (origin, next, end) in store.backfills().map_err(store_err)? {
            backfill.insert(
                origin,
                Backfill {
                    next,
                    end,
                    inflight: None,
                },
            );
        }
        let audit = audit::AuditState::load(store, &config.local, &roster)?;
        let frozen = audit.evidence.keys().cloned().collect();
        let mut core = SyncCore {
            config,
            genesis,
            chain,
            roster,
            roster_request: None,
            policies,
            policy,
            view: View::none(),
            policy_request: None,
            backfill,
            local,
            logs,
            checkpoints,
            audit,
            next_witness: 0,
            peers: BTreeMap::new(),
            pulls: BTreeMap::new(),
            frozen,
            failed: false,
            recovery,
            clock: 0,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        };
        core.view = core.view_of(&core.config.local.clone());
        core.check_recovered();
        Ok(core)
    }

    /// The view of `member` under the current policy and roster (none without a policy).
    pub fn view_of(&self, member: &MemberId) -> View {
        match (&self.policy, self.roster.member(member)) {
            (Some(p), Some(m)) => p.view(&m.roles),
            _ => View::none(),
        }
    }

    /// This member's own view: what it may hold of other origins' records.
    pub fn view(&self) -> &View {
        &self.view
    }

    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    fn policy_version(&self) -> u64 {
        self.policy.as_ref().map_or(0, |p| p.version)
    }

    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The member this core syncs for.
    pub fn local(&self) -> &MemberId {
        &self.config.local
    }

    pub fn genesis(&self) -> &Hash {
        &self.genesis
    }

    /// Every head this node holds (the local one at its durable size).
    pub fn heads(&self) -> Vec<(MemberId, LogHead)> {
        let mut out: Vec<_> = self
            .logs
            .iter()
            .map(|(o, f)| {
                (
                    o.clone(),
                    LogHead {
                        size: f.size(),
                        root: f.root(),
                    },
                )
            })
            .collect();
        if self.local.size > 0 {
            out.push((self.config.local.clone(), self.local));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// What connected peers have told us they hold: (peer, origin, size).
    pub fn peer_sizes(&self) -> Vec<(MemberId, MemberId, u64)> {
        self.peers
            .iter()
            .flat_map(|(p, st)| {
                st.sizes
                    .iter()
                    .map(move |(o, s)| (p.clone(), o.clone(), *s))
            })
            .collect()
    }

    pub fn connected(&self) -> impl Iterator<Item = &MemberId> {
        self.peers.keys()
    }

    /// Origins with records still to be completed with fields this node's view grants:
    /// (origin, next, end).
    pub fn backfilling(&self) -> Vec<(MemberId, u64, u64)> {
        self.backfill
            .iter()
            .map(|(o, b)| (o.clone(), b.next, b.end))
            .collect()
    }

    pub fn frozen(&self) -> impl Iterator<Item = &MemberId> {
        self.frozen.iter()
    }

    pub fn poll_transmit(&mut self) -> Option<(MemberId, Message)> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next time (ms) at which [`SyncCore::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let hellos = self
            .peers
            .values()
            .flat_map(|p| std::iter::once(p.next_hello).chain(p.heads_due));
        let fetches = self
            .pulls
            .values()
            .flat_map(|p| p.inflight.values().map(|i| i.deadline));
        let roster = self.roster_request.as_ref().map(|(_, d)| *d);
        let witnessing = self.config.witness_key.is_some() || self.audit.announce.is_some();
        let witness = (witnessing && !self.peers.is_empty()).then_some(self.next_witness);
        hellos.chain(fetches).chain(roster).chain(witness).min()
    }

    fn size(&self, origin: &MemberId) -> u64 {
        if origin == &self.config.local {
            return self.local.size;
        }
        self.logs.get(origin).map_or(0, Frontier::size)
    }

    /// Whether this node starts the anti-entropy rounds with `peer`: the side with the smaller
    /// member id, so both sides agree without asking. A round between
    /// members in sync is then one Hello and its transport acknowledgement, not a Hello each way:
    /// the receiver compares digests just the same and answers with Heads when they differ.
    pub fn starts_rounds(&self, peer: &MemberId) -> bool {
        self.config.local < *peer
    }

    /// Whether recovery still waits for `peer` to report what it holds.
    fn awaiting_report(&self, peer: &MemberId) -> bool {
        self.recovery
            .as_ref()
            .is_some_and(|r| !r.reported.contains(peer))
    }

    /// Milliseconds between this node's Hellos to `peer` (see [`QUIET_SIDE_ROUNDS`]).
    fn hello_interval(&self, peer: &MemberId) -> u64 {
        if self.starts_rounds(peer) || self.awaiting_report(peer) {
            self.config.anti_entropy_ms
        } else {
            self.config
                .anti_entropy_ms
                .saturating_mul(QUIET_SIDE_ROUNDS)
        }
    }

    fn hello(&self) -> Message {
        Message::Hello(Hello {
            roster_version: self.roster.version,
            policy_version: self.policy_version(),
            digest: self.digest(),
        })
    }

    fn digest(&self) -> Hash {
        let heads = self.heads();
        heads_digest(heads.iter().map(|(o, h)| (o, h)))
    }

    fn send(&mut self, peer: &MemberId, m: Message) {
        self.transmit.push_back((peer.clone(), m));
    }

    /// Forgets a peer and asks the node to close its connection.
    fn drop_peer(&mut self, peer: &MemberId, reason: String, cause: DisconnectCause) {
        self.forget(peer);
        self.events.push_back(Event::Disconnect {
            peer: peer.clone(),
            reason,
            cause,
        });
    }

    fn forget(&mut self, peer: &MemberId) {
        self.peers.remove(peer);
        for pull in self.pulls.values_mut() {
            pull.inflight.retain(|_, i| &i.peer != peer);
        }
        if self.roster_request.as_ref().is_some_and(|(p, _)| p == peer) {
            self.roster_request = None;
        }
        if self.policy_request.as_ref().is_some_and(|(p, _)| p == peer) {
            self.policy_request = None;
        }
        for b in self.backfill.values_mut() {
            if b.inflight.as_ref().is_some_and(|(_, p, _)| p == peer) {
                b.inflight = None;
            }
        }
        self.transmit.retain(|(p, _)| p != peer);
    }

    /// A connection to `peer` is up (the transport verified its certificate against the roster).
    pub fn handle_connected(&mut self, peer: MemberId, now: u64) {
        self.clock = self.clock.max(now);
        if self.failed {
            return;
        }
        if peer == self.config.local || !self.roster.is_active(&peer, Timestamp(now)) {
            self.events.push_back(Event::Disconnect {
                peer,
                reason: "not an active member in the current roster".into(),
                cause: DisconnectCause::NotMember,
            });
            return;
        }
        self.forget(&peer);
        let view = self.view_of(&peer);
        let covers = !view.narrows(&self.view);
        let interval = self.hello_interval(&peer);
        self.peers.insert(
            peer.clone(),
            Peer {
                sizes: BTreeMap::new(),
                roster_version: 0,
                policy_version: 0,
                next_hello: now.saturating_add(interval),
                fetches: 0,
                view,
                covers,
                heads_due: Some(now.saturating_add(self.config.anti_entropy_ms)),
            },
        );
        let hello = self.hello();
        self.send(&peer, hello);
        self.send_evidence(&peer);
    }

    pub fn handle_disconnected(&mut self, peer: &MemberId, now: u64) {
        self.forget(peer);
        self.schedule(now);
    }

    /// The local log became durable up to `head`: push new records to every peer known to have
    /// held our log up to within [`PUSH_RECORDS_MAX`] of the previous head, starting from what
    /// that peer holds and at most [`PUSH_RECORDS_MAX`] records.
    ///
    /// Knowledge of a peer lags under steady appends (its heads were sent before our latest
    /// pushes reached it), so requiring it to be exactly at our previous head would stop pushes
    /// for as long as the load lasts. Pushing from what it is known to hold instead may resend
    /// a few records it already has — the receiver skips them — and a peer further behind is
    /// left to fetch for itself, flow-controlled.
    pub fn handle_local_head<S: Store>(&mut self, store: &S, head: LogHead, now: u64) {
        let old = self.local;
        if head.size <= old.size {
            return;
        }
        self.local = head;
        if self.failed {
            return;
        }
        let local = self.config.local.clone();
        let mut by_start: BTreeMap<u64, Vec<MemberId>> = BTreeMap::new();
        for (id, p) in &self.peers {
            if let Some(&known) = p.sizes.get(&local) {
                if known < head.size && old.size.saturating_sub(known) <= PUSH_RECORDS_MAX {
                    by_start.entry(known).or_default().push(id.clone());
                }
            }
        }
        for (start, peers) in by_start {
            let end = head.size.min(start + PUSH_RECORDS_MAX);
            let mut from = start;
            while from < end {
                let count = (end - from).min(RECORDS_PER_MESSAGE_MAX as u64);
                let Some(records) = self.read_range(store, &local, from, from + count) else {
                    return;
                };
                let sent = records.records.len() as u64;
                if sent == 0 {
                    break;
                }
                let meta = annotate(&records);
                for peer in &peers {
                    let minimized = self.disclose(peer, &records, &meta, now);
                    self.send(peer, Message::Records(minimized));
                    if let Some(p) = self.peers.get_mut(peer) {
                        p.sizes.insert(local.clone(), from + sent);
                    }
                }
                from += sent;
            }
        }
    }

    /// Anti-entropy hellos, fetch timeouts and cosigning rounds due at `now`.
    pub fn handle_timeout<S: Store>(&mut self, store: &S, now: u64) {
        self.clock = self.clock.max(now);
        if self.failed {
            return;
        }
        let due: Vec<MemberId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.next_hello <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for p in self.peers.values_mut() {
            if p.heads_due.is_some_and(|t| t <= now) {
                p.heads_due = None;
            }
        }
        let hello = self.hello();
        for peer in due {
            let interval = self.hello_interval(&peer);
            if let Some(p) = self.peers.get_mut(&peer) {
                p.next_hello = now.saturating_add(interval);
            }
            if self.awaiting_report(&peer) {
                // Recovery must hear from every member, and a member in sync does not answer a
                // Hello; Heads are always answered.
                let heads = self.heads_message(store);
                self.send(&peer, heads);
            } else {
                self.send(&peer, hello.clone());
            }
        }
        for pull in self.pulls.values_mut() {
            let expired: Vec<u64> = pull
                .inflight
                .iter()
                .filter(|(_, i)| i.deadline <= now)
                .map(|(f, _)| *f)
                .collect();
            for from in expired {
                if let Some(i) = pull.inflight.remove(&from) {
                    if let Some(p) = self.peers.get_mut(&i.peer) {
                        p.fetches = p.fetches.saturating_sub(1);
                    }
                }
            }
        }
        if self.roster_request.as_ref().is_some_and(|(_, d)| *d <= now) {
            self.roster_request = None;
        }
        if self.policy_request.as_ref().is_some_and(|(_, d)| *d <= now) {
            self.policy_request = None;
        }
        for b in self.backfill.values_mut() {
            if b.inflight.as_ref().is_some_and(|(_, _, d)| *d <= now) {
                b.inflight = None;
            }
        }
        self.check_recovered();
        self.witness_due(store, now);
        self.schedule(now);
    }

    /// A decoded message from a connected peer.
    pub fn handle_message<S: Store>(&mut self, store: &S, peer: &MemberId, m: Message, now: u64) {
        self.clock = self.clock.max(now);
        if self.failed || !self.peers.contains_key(peer) {
            return;
        }
        match m {
            Message::Hello(h) => self.on_hello(store, peer, h, now),
            Message::Heads(h) => self.on_heads(store, peer, h, now),
            Message::Fetch(f) => self.on_fetch(store, peer, f, now),
            Message::Records(r) => self.on_records(store, peer, r, None, now),
            Message::RosterRequest { have } => self.on_roster_request(peer, have),
            Message::Rosters(v) => self.on_rosters(store, peer, v, now),
            Message::PolicyRequest { have } => self.on_policy_request(peer, have),
            Message::Policies(v) => self.on_policies(store, peer, v, now),
            Message::Witness(w) => self.on_witness(store, peer, w, now),
            Message::Evidence(e) => self.on_evidence(store, peer, e),
        }
    }

    /// A `Records` message from a connected peer whose signatures were checked off this thread
    /// ([`Prechecked`]); the same as `handle_message(Message::Records(..))` otherwise.
    pub fn handle_records<S: Store>(
        &mut self,
        store: &S,
        peer: &MemberId,
        p: Prechecked,
        now: u64,
    ) {
        self.clock = self.clock.max(now);
        if self.failed || !self.peers.contains_key(peer) {
            return;
        }
        // Results checked under another roster version are dropped, and the core verifies
        // again: a key rotated or revoked in between must be judged by the current roster.
        if p.roster_version != self.roster.version {
            let records = p.into_records();
            return self.on_records(store, peer, records, None, now);
        }
        let checks = Checks {
            verified: p.verified,
            checkpoint: p.checkpoint,
        };
        self.on_records(store, peer, p.records, Some(checks), now);
    }

    fn on_hello<S: Store>(&mut self, store: &S, peer: &MemberId, h: Hello, now: u64) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.roster_version = h.roster_version;
            p.policy_version = h.policy_version;
        }
        self.request_roster(peer, now);
        self.request_policy(peer, now);
        self.schedule_backfill(now);
        if h.digest == self.digest() {
            // The peer holds exactly what we hold: remember it, so new appends are pushed.
            let mut sizes: BTreeMap<MemberId, u64> =
                self.heads().into_iter().map(|(o, h)| (o, h.size)).collect();
            sizes.insert(self.config.local.clone(), self.local.size);
            if let Some(p) = self.peers.get_mut(peer) {
                p.sizes = sizes;
                p.heads_due = None;
            }
            if let Some(r) = &mut self.recovery {
                r.reported.insert(peer.clone());
                r.target = r.target.max(self.local.size);
            }
            self.check_recovered();
        } else {
            let heads = self.heads_message(store);
            self.send(peer, heads);
        }
    }

    /// Every head this node holds with its latest signed checkpoints, asking for the peer's.
    fn heads_message<S: Store>(&mut self, store: &S) -> Message {
        Message::Heads(Heads {
            reply: false,
            heads: self.heads(),
            checkpoints: self.shown_checkpoints(store),
        })
    }

    fn request_roster(&mut self, peer: &MemberId, now: u64) {
        let theirs = self.peers.get(peer).map_or(0, |p| p.roster_version);
        if theirs > self.roster.version && self.roster_request.is_none() {
            self.roster_request = Some((
                peer.clone(),
                now.saturating_add(self.config.fetch_timeout_ms),
            ));
            let have = self.roster.version;
            self.send(peer, Message::RosterRequest { have });
        }
    }

    fn on_heads<S: Store>(&mut self, store: &S, peer: &MemberId, h: Heads, now: u64) {
        // Heads are unsigned: a root that differs from ours proves nothing (a lying peer could
        // freeze an honest origin). The signed checkpoints that come with them are what is
        // compared, and a contradiction becomes evidence.
        for cp in &h.checkpoints {
            self.check_shown(store, peer, cp);
            if !self.peers.contains_key(peer) {
                return;
            }
        }
        let mine: BTreeMap<MemberId, LogHead> = self.heads().into_iter().collect();
        let mut sizes = BTreeMap::new();
        for (origin, head) in &h.heads {
            if self.roster.member(origin).is_none() {
                continue;
            }
            sizes.insert(origin.clone(), head.size);
        }
        // A peer's logs only grow while its connection lasts (a restart is a new connection,
        // which starts from nothing), so what we know only moves up. The heads it sent may
        // predate records we pushed it since: taking them as-is would stop pushes under steady
        // load until the next quiet moment, leaving new records to anti-entropy.
        // A log missing from its heads is one it holds nothing of: for ours, that makes it a
        // push target from 0.
        let theirs_of_ours = *sizes.entry(self.config.local.clone()).or_insert(0);
        if let Some(r) = &mut self.recovery {
            r.reported.insert(peer.clone());
            r.target = r.target.max(theirs_of_ours);
        }
        if let Some(p) = self.peers.get_mut(peer) {
            p.heads_due = None;
            for (origin, size) in sizes {
                let known = p.sizes.entry(origin).or_insert(0);
                *known = (*known).max(size);
            }
        }
        if !h.reply {
            let checkpoints = self.shown_checkpoints(store);
            self.send(
                peer,
                Message::Heads(Heads {
                    reply: true,
                    heads: mine.into_iter().collect(),
                    checkpoints,
                }),
            );
        }
        self.check_recovered();
        self.schedule(now);
    }

    /// Whether the local log is being recovered after a restore.
    pub fn recovering(&self) -> bool {
        self.recovery.is_some()
    }

    /// The peers whose heads recovery still waits for, and the size of the local log the
    /// peers that reported hold (for the node's status).
    pub fn recovery_progress(&self) -> Option<(Vec<MemberId>, u64)> {
        let r = self.recovery.as_ref()?;
        let waiting = self
            .recovery_members()
            .into_iter()
            .filter(|m| !r.reported.contains(m))
            .collect();
        Some((waiting, r.target))
    }

    /// The members whose heads recovery asks for: every other member active now (a revoked
    /// member cannot connect, so what it holds is out of reach).
    fn recovery_members(&self) -> Vec<MemberId> {
        let at = Timestamp(self.clock).max(self.roster.issued_at);
        self.roster
            .members
            .iter()
            .filter(|m| m.id != self.config.local && self.roster.is_active(&m.id, at))
            .map(|m| m.id.clone())
            .collect()
    }

    /// Ends recovery once enough peers have reported their heads and the local log holds as
    /// much of itself as any of them.
    fn check_recovered(&mut self) {
        let Some((waiting, target)) = self.recovery_progress() else {
            return;
        };
        let local = &self.config.local;
        let others = self.recovery_members().len();
        let required = self.config.recovery_peers.unwrap_or(others).min(others);
        let reported = others - waiting.len();
        let fetching = self
            .pulls
            .get(local)
            .is_some_and(|p| !p.inflight.is_empty() || !p.ready.is_empty());
        if reported < required || self.local.size < target || fetching {
            return;
        }
        self.recovery = None;
        self.pulls.remove(local);
        self.events.push_back(Event::Recovered { head: self.local });
    }

    fn fork(&mut self, origin: &MemberId, peer: &MemberId, detail: String) {
        self.frozen.insert(origin.clone());
        self.pulls.remove(origin);
        self.events.push_back(Event::Fork {
            origin: origin.clone(),
            peer: peer.clone(),
            detail,
        });
    }

    fn on_fetch<S: Store>(&mut self, store: &S, peer: &MemberId, f: Fetch, now: u64) {
        let end = f.from.saturating_add(u64::from(f.count));
        let records = self.read_range(store, &f.origin, f.from, end);
        if let Some(records) = records {
            let meta = annotate(&records);
            let minimized = self.disclose(peer, &records, &meta, now);
            self.send(peer, Message::Records(minimized));
        }
    }

    /// The records as `peer` may receive them: the envelopes, and of the disclosures only those
    /// its view admits now (DESIGN §8: enforced at every holder, whoever the origin). Reports
    /// what is disclosed as an [`Event::Disclosed`] for the ledger.
    fn disclose(
        &mut self,
        peer: &MemberId,
        records: &Records,
        meta: &[Option<(RecordKind, Timestamp)>],
        now: u64,
    ) -> Records {
        let none = View::none();
        let view = self.peers.get(peer).map_or(&none, |p| &p.view);
        // Its own records go back to their origin whole: it signed every field.
        let own = &records.origin == peer;
        let mut ledger = Vec::new();
        let minimized = records
            .records
            .iter()
            .zip(meta)
            .enumerate()
            .map(|(i, (w, m))| {
                let disclosures = match m {
                    Some((kind, issued_at)) => {
                        let f = if own {
                            crate::minimize::for_origin(*kind, &w.disclosures)
                        } else {
                            filter(view, *kind, *issued_at, now, &w.disclosures)
                        };
                        if !f.kept.is_empty() {
                            let id = RecordId::of_envelope(&w.envelope);
                            ledger.push((records.from + i as u64, id, *kind, f.mask));
                        }
                        f.kept
                    }
                    // Nothing held, or (never for stored records) an undecodable envelope.
                    None => Vec::new(),
                };
                WireRecord {
                    envelope: w.envelope.clone(),
                    disclosures,
                }
            })
            .collect();
        // Complete for the peer only if this node is the origin, or holds a view at least as
        // wide as the peer's and is not itself still completing these records.
        let end = records.from + records.records.len() as u64;
        let partial = records.origin != self.config.local
            && !own
            && (self.view.narrows(view)
                || self
                    .backfill
                    .get(&records.origin)
                    .is_some_and(|b| b.next < end && records.from < b.end));
        // Version 0 in the ledger: returned to their origin, not granted by any policy.
        let policy_version = if own { 0 } else { view.version };
        if !ledger.is_empty() {
            self.events.push_back(Event::Disclosed {
                peer: peer.clone(),
                origin: records.origin.clone(),
                policy_version,
                records: ledger,
            });
        }
        Records {
            origin: records.origin.clone(),
            from: records.from,
            records: minimized,
            checkpoint: records.checkpoint.clone(),
            partial,
        }
    }

    /// Reads records `from..end` of `origin` as this node may serve them: the local log only up
    /// to its durable head, cut short at the stored checkpoint when one falls inside the range
    /// (so it can travel with them), and within one frame. `None` after a store failure.
    fn read_range<S: Store>(
        &mut self,
        store: &S,
        origin: &MemberId,
        from: u64,
        end: u64,
    ) -> Option<Records> {
        let mut end = end.min(self.size(origin));
        let mut checkpoint = None;
        if from < end {
            match store.checkpoint(origin) {
                Ok(Some(bytes)) => {
                    if let Ok(cp) = Checkpoint::decode_unverified(&bytes) {
                        if cp.size > from && cp.size <= end {
                            end = cp.size;
                            checkpoint = Some(bytes);
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    self.store_failed(e);
                    return None;
                }
            }
        }
        let mut records = Vec::new();
        if from < end {
            let held = match store.records(origin, LogIndex(from), (end - from) as usize) {
                Ok(h) => h,
                Err(e) => {
                    self.store_failed(e);
                    return None;
                }
            };
            let mut bytes = 64 + checkpoint.as_ref().map_or(0, Vec::len);
            for h in held {
                if h.seq.0 != from + records.len() as u64 {
                    break;
                }
                let r = WireRecord {
                    envelope: h.envelope,
                    disclosures: h.disclosures,
                };
                bytes += wire::record_len(&r);
                if bytes > FRAME_BYTES_MAX && !records.is_empty() {
                    break;
                }
                records.push(r);
            }
        }
        if from + records.len() as u64 != end {
            checkpoint = None;
        }
        Some(Records {
            origin: origin.clone(),
            from,
            records,
            checkpoint,
            partial: false,
        })
    }

    fn store_failed(&mut self, e: impl std::fmt::Display) {
        self.failed = true;
        self.events.push_back(Event::StoreFailed(e.to_string()));
    }

    fn on_records<S: Store>(
        &mut self,
        store: &S,
        peer: &MemberId,
        r: Records,
        checks: Option<Checks>,
        now: u64,
    ) {
        let origin = r.origin.clone();
        let own = origin == self.config.local;
        if (own && self.recovery.is_none()) || self.frozen.contains(&origin) {
            return;
        }
        if self.roster.member(&origin).is_none() {
            self.drop_peer(
                peer,
                format!("sent records of {origin}, not a roster member"),
                DisconnectCause::Violation,
            );
            return;
        }
        let len = r.records.len() as u64;
        let end = r.from + len;
        if own {
            if let Some(rec) = &mut self.recovery {
                rec.target = rec.target.max(end);
            }
        }
        let pull = self.pulls.entry(origin.clone()).or_default();
        let mut requested = None;
        if pull.inflight.get(&r.from).is_some_and(|i| &i.peer == peer) {
            requested = pull.inflight.remove(&r.from).map(|i| i.count);
            if let Some(p) = self.peers.get_mut(peer) {
                p.fetches = p.fetches.saturating_sub(1);
            }
        }
        if let Some(p) = self.peers.get_mut(peer) {
            let known = p.sizes.entry(origin.clone()).or_insert(0);
            if requested.is_some_and(|c| len < c) {
                // A short answer: the peer holds exactly this much.
                *known = end;
            } else {
                *known = (*known).max(end);
            }
        }
        let applied = self.size(&origin);
        let answers_backfill = self.backfill.get(&origin).is_some_and(|b| {
            b.inflight
                .as_ref()
                .is_some_and(|(f, p, _)| *f == r.from && p == peer)
        });
        if answers_backfill {
            if end <= applied {
                self.on_backfill(store, peer, r, checks, now);
                return;
            }
            // Not all applied yet: take it as a normal answer, ask again later.
            if let Some(b) = self.backfill.get_mut(&origin) {
                b.inflight = None;
            }
        }
        if end <= applied || len == 0 {
            self.schedule(now);
            return;
        }
        let skip = applied.saturating_sub(r.from);
        let start = r.from + skip;
        let pull = self.pulls.entry(origin.clone()).or_default();
        if pull.ready.contains_key(&start) || pull.ready.len() >= READY_CHUNKS_MAX {
            self.schedule(now);
            return;
        }
        let partial = r.partial;
        let chunk = match self.verify_chunk(store, &origin, r, checks, skip as usize, now) {
            Ok(c) => c,
            Err(reason) => {
                self.drop_peer(peer, reason, DisconnectCause::Violation);
                self.schedule(now);
                return;
            }
        };
        self.refused(peer, &origin, &chunk.refused);
        // A relay serves what it holds under its own view: where ours is wider, the fields it
        // could not send are fetched again from the origin (or a peer whose view covers ours).
        if partial && !own {
            self.need_backfill(&origin, start, end);
        }
        self.pulls
            .entry(origin.clone())
            .or_default()
            .ready
            .insert(start, chunk);
        self.drain(store, &origin, peer);
        self.schedule(now);
    }

    /// Reports disclosures a peer sent beyond this node's view (already dropped).
    fn refused(&mut self, peer: &MemberId, origin: &MemberId, fields: &[String]) {
        if fields.is_empty() {
            return;
        }
        self.events.push_back(Event::Refused {
            peer: peer.clone(),
            origin: origin.clone(),
            disclosures: fields.len() as u64,
            fields: fields.iter().cloned().collect(),
        });
    }

    /// Verifies records `skip..` of a message and its checkpoint, returning them in stored
    /// form — keeping only the disclosures this node's view admits at `now` — or why the sender
    /// must be disconnected.
    fn verify_chunk<S: Store>(
        &self,
        store: &S,
        origin: &MemberId,
        r: Records,
        checks: Option<Checks>,
        skip: usize,
        now: u64,
    ) -> Result<Chunk, String> {
        let end = r.from + r.records.len() as u64;
        let roles = self
            .roster
            .member(origin)
            .map(|m| m.roles.clone())
            .unwrap_or_default();
        let mut wires: Vec<WireRecord> = r.records.into_iter().skip(skip).collect();
        // Signatures and disclosure digests on every core: the costly part of a catch-up, done
        // already when the message came prechecked. The checks after it are cheap and run in
        // order, so the first bad record is the one named.
        let roster = &self.roster;
        let (verified, checkpoint): (Vec<Result<VerifiedRecord, VerifyError>>, _) = match checks {
            Some(c) => (c.verified.into_iter().skip(skip).collect(), c.checkpoint),
            // The verified records keep the disclosure bytes; nothing else needs them.
            None => {
                let from = r.from + skip as u64;
                let held = precheck::Held::read(store, origin, from, wires.len());
                (
                    precheck::verify_taking_disclosures(&mut wires, from, &held, roster)
                        .into_iter()
                        .map(|r| r.map_err(|(e, _)| e))
                        .collect(),
                    None,
                )
            }
        };
        let mut records = Vec::with_capacity(wires.len());
        let mut refused = Vec::new();
        for (i, (w, v)) in wires.into_iter().zip(verified).enumerate() {
            let seq = r.from + (skip + i) as u64;
            let v =
                v.map_err(|e| format!("record {origin}#{seq} does not verify: {}", e.redacted()))?;
            let h = &v.envelope.header;
            if &h.origin != origin {
                return Err(format!(
                    "record sent as {origin}#{seq} claims origin {}",
                    h.origin
                ));
            }
            if h.seq.0 != seq {
                return Err(format!(
                    "record sent as {origin}#{seq} has sequence number {}",
                    h.seq.0
                ));
            }
            if !h
                .kind
                .issuer_roles()
                .iter()
                .any(|r| roles.iter().any(|m| m == r))
            {
                return Err(format!(
                    "record {origin}#{seq}: {origin} holds no role that may issue {} records",
                    h.kind
                ));
            }
            // Minimization on receipt: a disclosure beyond the view is verified (a forged one
            // is a violation like any other) but never stored — except in this node's own
            // records, recovered after a restore: it signed every field.
            let own = origin == &self.config.local;
            // In place: a catch-up passes every record through here.
            let mut kept = v.disclosures;
            kept.retain(|d| {
                let admitted = own || self.view.admits(h.kind, d.name(), h.issued_at, now);
                if !admitted {
                    refused.push(d.name().to_owned());
                }
                admitted
            });
            records.push(StoredRecord::new(v.envelope.id, h, w.envelope, kept));
        }
        let checkpoint = match r.checkpoint {
            None => None,
            Some(bytes) => {
                let cp = checkpoint
                    .unwrap_or_else(|| verify_checkpoint(&bytes, roster))
                    .map_err(|e| format!("checkpoint of {origin} does not verify: {e}"))?;
                if &cp.checkpoint.origin != origin || cp.checkpoint.size != end {
                    return Err(format!(
                        "checkpoint ({} size {}) does not end the records ({origin} ..{end})",
                        cp.checkpoint.origin, cp.checkpoint.size
                    ));
                }
                Some((cp.checkpoint, bytes))
            }
        };
        Ok(Chunk {
            records,
            checkpoint,
            refused,
        })
    }

    /// Applies every ready chunk that continues the stored log, one atomic batch each.
    fn drain<S: Store>(&mut self, store: &S, origin: &MemberId, peer: &MemberId) {
        loop {
            let applied = self.size(origin);
            let Some(pull) = self.pulls.get_mut(origin) else {
                return;
            };
            let Some((&from, _)) = pull.ready.iter().next() else {
                return;
            };
            if from > applied {
                return;
            }
            let Some(chunk) = pull.ready.remove(&from) else {
                return;
            };
            let skip = (applied - from) as usize;
            if skip >= chunk.records.len() {
                continue;
            }
            let own = origin == &self.config.local;
            let mut frontier = match (&self.recovery, own) {
                (Some(r), true) => r.frontier.clone(),
                (None, true) => return,
                _ => self.logs.get(origin).cloned().unwrap_or_default(),
            };
            let mut batch = AppendBatch::default();
            for r in chunk.records.into_iter().skip(skip) {
                for (id, hash) in frontier.push(leaf_hash(&r.envelope)) {
                    if id.level >= STORED_LEVEL_MIN {
                        batch.nodes.push((origin.clone(), id, hash));
                    }
                }
                batch.records.push(r);
            }
            let head = LogHead {
                size: frontier.size(),
                root: frontier.root(),
            };
            if let Some((cp, bytes)) = chunk.checkpoint {
                if cp.root != head.root {
                    self.unproduced(store, origin, peer, batch, &cp, &bytes);
                    return;
                }
                if self
                    .checkpoints
                    .get(origin)
                    .is_none_or(|(c, _)| c.size < cp.size)
                {
                    batch.checkpoints.push((origin.clone(), bytes.clone()));
                    if !own {
                        self.checkpoints.insert(origin.clone(), (cp, bytes));
                    }
                }
            }
            batch.heads.push((origin.clone(), head));
            if let Some(b) = self.backfill.get(origin) {
                batch.backfill.push((origin.clone(), Some((b.next, b.end))));
            }
            if let Err(e) = store.apply(&batch) {
                self.store_failed(e);
                return;
            }
            if own {
                if let Some(r) = &mut self.recovery {
                    r.frontier = frontier;
                }
                self.local = head;
            } else {
                self.logs.insert(origin.clone(), frontier);
            }
            self.events.push_back(Event::Applied {
                origin: origin.clone(),
                head,
            });
            if own {
                self.check_recovered();
            }
        }
    }

    /// Requests every missing range some peer has, up to the pipeline depth per origin.
    fn schedule(&mut self, now: u64) {
        if self.failed {
            return;
        }
        let origins: Vec<MemberId> = self
            .roster
            .members
            .iter()
            .map(|m| m.id.clone())
            .filter(|o| {
                (o != &self.config.local || self.recovery.is_some()) && !self.frozen.contains(o)
            })
            .collect();
        for origin in origins {
            let applied = self.size(&origin);
            let target = self
                .peers
                .values()
                .filter_map(|p| p.sizes.get(&origin))
                .copied()
                .max()
                .unwrap_or(0);
            if target <= applied {
                continue;
            }
            let pull = self.pulls.entry(origin.clone()).or_default();
            let mut covered: Vec<(u64, u64)> = pull
                .inflight
                .iter()
                .map(|(f, i)| (*f, f + i.count))
                .chain(
                    pull.ready
                        .iter()
                        .map(|(f, c)| (*f, f + c.records.len() as u64)),
                )
                .collect();
            covered.sort_unstable();
            let mut gaps = Vec::new();
            let mut cursor = applied;
            for (s, e) in covered {
                if s > cursor {
                    gaps.push((cursor, s));
                }
                cursor = cursor.max(e);
            }
            if cursor < target {
                gaps.push((cursor, target));
            }
            // A peer that could send these records complete has connected but not yet said
            // what it holds: relays wait for it (bounded by `Peer::heads_due`).
            let complete_unheard = self
                .peers
                .iter()
                .any(|(id, p)| (id == &origin || p.covers) && p.heads_due.is_some());
            let mut in_flight = pull.inflight.len();
            let mut requests = Vec::new();
            'gaps: for (mut s, e) in gaps {
                while s < e && in_flight < self.config.pipeline {
                    // The least-loaded peer that has record `s` and can send it complete (the
                    // origin, or a view covering ours); a narrower relay only when no such peer
                    // has it, since its records must be completed from the origin afterwards.
                    // Ties go to the lower id.
                    let Some((peer, their)) = self
                        .peers
                        .iter()
                        .filter(|(_, p)| p.fetches < PEER_FETCHES_MAX)
                        .filter_map(|(id, p)| {
                            let relay = id != &origin && !p.covers;
                            if relay && complete_unheard {
                                return None;
                            }
                            p.sizes
                                .get(&origin)
                                .filter(|n| **n > s)
                                .map(|n| (id, (relay, p.fetches), *n))
                        })
                        .min_by_key(|(_, load, _)| *load)
                        .map(|(id, _, n)| (id.clone(), n))
                    else {
                        break 'gaps;
                    };
                    let count = (e.min(their) - s).min(RECORDS_PER_MESSAGE_MAX as u64);
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.fetches += 1;
                    }
                    requests.push((peer, s, count));
                    in_flight += 1;
                    s += count;
                }
            }
            let deadline = now.saturating_add(self.config.fetch_timeout_ms);
            for (peer, from, count) in requests {
                if let Some(pull) = self.pulls.get_mut(&origin) {
                    pull.inflight.insert(
                        from,
                        Inflight {
                            peer: peer.clone(),
                            count,
                            deadline,
                        },
                    );
                }
                self.send(
                    &peer,
                    Message::Fetch(Fetch {
                        origin: origin.clone(),
                        from,
                        count: count as u32,
                    }),
                );
            }
        }
    }

    /// Answer to a back-fill fetch: the same envelopes as stored (anything else is a fork), with
    /// disclosures merged into what is held where the view now admits more.
    fn on_backfill<S: Store>(
        &mut self,
        store: &S,
        peer: &MemberId,
        r: Records,
        checks: Option<Checks>,
        now: u64,
    ) {
        let origin = r.origin.clone();
        let from = r.from;
        let len = r.records.len() as u64;
        let partial = r.partial;
        let chunk = match self.verify_chunk(store, &origin, r, checks, 0, now) {
            Ok(c) => c,
            Err(reason) => {
                self.drop_peer(peer, reason, DisconnectCause::Violation);
                return;
            }
        };
        self.refused(peer, &origin, &chunk.refused);
        let held = match store.records(&origin, LogIndex(from), len as usize) {
            Ok(h) => h,
            Err(e) => return self.store_failed(e),
        };
        let mut updates = Vec::new();
        for (mut got, have) in chunk.records.into_iter().zip(held) {
            if have.seq == got.seq && have.envelope != got.envelope {
                // Both envelopes verified under the origin's key: transferable evidence.
                let ev = crate::evidence::Evidence::Records {
                    origin: origin.clone(),
                    a: have.envelope,
                    b: got.envelope,
                };
                return self.raise(store, ev, peer);
            }
            if have.seq != got.seq {
                let detail = format!("{peer} serves a different record at {origin}#{}", got.seq.0);
                return self.fork(&origin, peer, detail);
            }
            let mut merged = have.disclosures;
            let before = merged.len();
            for d in got.disclosures {
                if !merged.contains(&d) {
                    merged.push(d);
                }
            }
            if merged.len() > before {
                got.subjects = subjects_of_bytes(&merged);
                got.disclosures = merged;
                updates.push(got);
            }
        }
        if !updates.is_empty() {
            if let Err(e) = store.replace_disclosures(&updates) {
                return self.store_failed(e);
            }
            self.events.push_back(Event::Backfilled {
                origin: origin.clone(),
                records: updates.len() as u64,
            });
        }
        let mut progress = None;
        if let Some(b) = self.backfill.get_mut(&origin) {
            b.inflight = None;
            if partial {
                // The source could not complete them either; ask again (the origin, ideally)
                // on the next round.
                return;
            }
            // Progress only from `next` on: the range may have grown below the request since
            // it was sent (a relayed chunk filling an earlier gap).
            if from <= b.next {
                b.next = b.next.max(from + len.max(1));
            }
            progress = Some((b.next < b.end).then_some((b.next, b.end)));
            if b.next >= b.end {
                self.backfill.remove(&origin);
            }
        }
        if let Some(state) = progress {
            self.persist_backfill(store, &origin, state);
        }
        self.schedule_backfill(now);
    }

    /// Records an origin's back-fill state in the store (after the disclosures it covers).
    fn persist_backfill<S: Store>(
        &mut self,
        store: &S,
        origin: &MemberId,
        state: Option<(u64, u64)>,
    ) {
        let batch = AppendBatch {
            backfill: vec![(origin.clone(), state)],
            ..AppendBatch::default()
        };
        if let Err(e) = store.apply(&batch) {
            self.store_failed(e);
        }
    }

    /// Adds `from..end` of `origin` to what is back-filled.
    fn need_backfill(&mut self, origin: &MemberId, from: u64, end: u64) {
        let b = self.backfill.entry(origin.clone()).or_insert(Backfill {
            next: from,
            end,
            inflight: None,
        });
        b.next = b.next.min(from);
        b.end = b.end.max(end);
    }

    /// Starts back-fill requests: for each origin being back-filled with nothing in flight, asks
    /// the origin itself when connected (it holds every field), else a peer on this policy
    /// version or newer whose view covers this node's and that holds the range.
    fn schedule_backfill(&mut self, now: u64) {
        let version = self.policy_version();
        let deadline = now.saturating_add(self.config.fetch_timeout_ms);
        let covering: BTreeSet<MemberId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.covers)
            .map(|(id, _)| id.clone())
            .collect();
        let mut requests = Vec::new();
        for (origin, b) in &mut self.backfill {
            if b.inflight.is_some() {
                continue;
            }
            let eligible = |id: &MemberId, p: &Peer| {
                p.policy_version >= version
                    && (id == origin
                        || (covering.contains(id)
                            && p.sizes.get(origin).is_some_and(|n| *n > b.next)))
            };
            let source = self
                .peers
                .get_key_value(origin)
                .filter(|(id, p)| eligible(id, p))
                .or_else(|| self.peers.iter().find(|(id, p)| eligible(id, p)))
                .map(|(id, _)| id);
            if let Some(peer) = source {
                let count = (b.end - b.next).min(RECORDS_PER_MESSAGE_MAX as u64);
                b.inflight = Some((b.next, peer.clone(), deadline));
                requests.push((
                    peer.clone(),
                    Fetch {
                        origin: origin.clone(),
                        from: b.next,
                        count: count as u32,
                    },
                ));
            }
        }
        for (peer, f) in requests {
            self.send(&peer, Message::Fetch(f));
        }
    }

    fn request_policy(&mut self, peer: &MemberId, now: u64) {
        let theirs = self.peers.get(peer).map_or(0, |p| p.policy_version);
        if theirs > self.policy_version() && self.policy_request.is_none() {
            self.policy_request = Some((
                peer.clone(),
                now.saturating_add(self.config.fetch_timeout_ms),
            ));
            let have = self.policy_version();
            self.send(peer, Message::PolicyRequest { have });
        }
    }

    fn on_policy_request(&mut self, peer: &MemberId, have: u64) {
        let versions = versions_after(&self.policies, have, POLICIES_PER_MESSAGE_MAX);
        self.send(peer, Message::Policies(versions));
    }

    fn on_policies<S: Store>(
        &mut self,
        store: &S,
        peer: &MemberId,
        versions: Vec<Vec<u8>>,
        now: u64,
    ) {
        if self.policy_request.as_ref().is_some_and(|(p, _)| p == peer) {
            self.policy_request = None;
        }
        for bytes in versions {
            match self.adopt_policy(store, bytes, now) {
                Ok(_) | Err(PolicyError::UnknownRoster { .. }) => {}
                Err(e) => {
                    // A roster version this node lacks is not the peer's fault: it is asked
                    // for by the roster exchange, and the policy again on the next hello.
                    self.drop_peer(
                        peer,
                        format!("sent a policy that does not verify: {e}"),
                        DisconnectCause::Violation,
                    );
                    return;
                }
            }
        }
        if self.peers.contains_key(peer) {
            self.request_policy(peer, now);
        }
    }

    /// A policy version an operator installed on this node (`tfx policy install`): adopted
    /// like one received from a peer, then announced to every peer.
    pub fn handle_local_policy<S: Store>(
        &mut self,
        store: &S,
        bytes: Vec<u8>,
        now: u64,
    ) -> Result<u64, PolicyError> {
        let version = self.adopt_policy(store, bytes, now)?;
        Ok(version)
    }

    /// Verifies `bytes` as the next policy version and adopts it: persisted by the node
    /// ([`Event::PolicyAdopted`]), announced to peers, fields it grants back-filled, fields it
    /// takes away purged. Versions at or below the current one are ignored (`Ok(current)`).
    fn adopt_policy<S: Store>(
        &mut self,
        store: &S,
        bytes: Vec<u8>,
        now: u64,
    ) -> Result<u64, PolicyError> {
        let next = SignedPolicy::decode(&bytes)?;
        if next.policy.version <= self.policy_version() {
            return Ok(self.policy_version());
        }
        next.verify_successor(self.policy.as_ref(), |v| roster_at(&self.chain, v))?;
        if let Some(under) = roster_at(&self.chain, next.policy.roster_version) {
            check_current_governors(&next.policy, &under, &self.roster)?;
        }
        let version = next.policy.version;
        self.policy = Some(next.policy);
        self.policies.push(bytes.clone());
        self.update_view(store, now);
        self.events
            .push_back(Event::PolicyAdopted { version, bytes });
        let hello = self.hello();
        let peers: Vec<MemberId> = self.peers.keys().cloned().collect();
        for p in peers {
            self.send(&p, hello.clone());
        }
        Ok(version)
    }

    /// Recomputes the local view after a policy or roster change: back-fills what it gained,
    /// and asks for a purge when it lost something.
    fn update_view<S: Store>(&mut self, store: &S, now: u64) {
        let new = self.view_of(&self.config.local.clone());
        let old = std::mem::replace(&mut self.view, new);
        let ids: Vec<MemberId> = self.peers.keys().cloned().collect();
        for id in ids {
            let view = self.view_of(&id);
            let covers = !view.narrows(&self.view);
            if let Some(p) = self.peers.get_mut(&id) {
                p.view = view;
                p.covers = covers;
            }
        }
        if self.view.grants_beyond(&old) {
            let mut batch = AppendBatch::default();
            for (origin, f) in &self.logs {
                if f.size() > 0 {
                    self.backfill.insert(
                        origin.clone(),
                        Backfill {
                            next: 0,
                            end: f.size(),
                            inflight: None,
                        },
                    );
                    batch.backfill.push((origin.clone(), Some((0, f.size()))));
                }
            }
            // Persisted before the node writes the policy file: a crash in between re-runs
            // the back-fill rather than forgetting it.
            if let Err(e) = store.apply(&batch) {
                self.store_failed(e);
            }
            self.schedule_backfill(now);
        }
        if self.view.narrows(&old) {
            self.events.push_back(Event::PurgeNeeded);
        }
    }

    fn on_roster_request(&mut self, peer: &MemberId, have: u64) {
        let versions = versions_after(&self.chain, have, ROSTERS_PER_MESSAGE_MAX);
        self.send(peer, Message::Rosters(versions));
    }

    fn on_rosters<S: Store>(
        &mut self,
        store: &S,
        peer: &MemberId,
        versions: Vec<Vec<u8>>,
        now: u64,
    ) {
        if self.roster_request.as_ref().is_some_and(|(p, _)| p == peer) {
            self.roster_request = None;
        }
        let mut adopted = false;
        for bytes in versions {
            let next = match SignedRoster::decode(&bytes) {
                Ok(r) => r,
                Err(e) => {
                    self.drop_peer(
                        peer,
                        format!("sent an undecodable roster: {e}"),
                        DisconnectCause::Violation,
                    );
                    return;
                }
            };
            if next.roster.version <= self.roster.version {
                continue;
            }
            if let Err(e) = next.verify_successor(&self.roster) {
                self.drop_peer(
                    peer,
                    format!(
                        "sent roster v{} that does not verify: {e}",
                        next.roster.version
                    ),
                    DisconnectCause::Violation,
                );
                return;
            }
            let version = next.roster.version;
            self.roster = next.roster;
            self.chain.push(bytes.clone());
            self.events
                .push_back(Event::RosterAdopted { version, bytes });
            adopted = true;
        }
        if adopted {
            self.update_view(store, now);
            let gone: Vec<MemberId> = self
                .peers
                .keys()
                .filter(|p| !self.roster.is_active(p, Timestamp(now)))
                .cloned()
                .collect();
            for p in gone {
                self.drop_peer(
                    &p,
                    format!(
                        "{p} is revoked or absent in roster v{}",
                        self.roster.version
                    ),
                    DisconnectCause::NotMember,
                );
            }
            let hello = self.hello();
            let peers: Vec<MemberId> = self.peers.keys().cloned().collect();
            for p in peers {
                self.send(&p, hello.clone());
            }
        }
        if self.peers.contains_key(peer) {
            self.request_roster(peer, now);
        }
    }
}

/// Roster version `version` from a verified chain (version 1 first), decoded.
fn roster_at(chain: &[Vec<u8>], version: u64) -> Option<Roster> {
    let i = usize::try_from(version.checked_sub(1)?).ok()?;
    SignedRoster::decode(chain.get(i)?).ok().map(|r| r.roster)
}

/// Each record's kind and issue time, decoded once per read (a push filters the same records
/// for several peers); `None` where nothing is held to filter.
fn annotate(records: &Records) -> Vec<Option<(RecordKind, Timestamp)>> {
    records
        .records
        .iter()
        .map(|w| {
            if w.disclosures.is_empty() {
                return None;
            }
            envelope_header(&w.envelope)
                .ok()
                .map(|h| (h.kind, h.issued_at))
        })
        .collect()
}

/// Versions `have + 1 ..` of a chain (version 1 first), at most `max`: the answer to a peer's
/// roster or policy request.
fn versions_after(chain: &[Vec<u8>], have: u64, max: usize) -> Vec<Vec<u8>> {
    let start = usize::try_from(have).unwrap_or(usize::MAX).min(chain.len());
    let end = (start + max).min(chain.len());
    chain[start..end].to_vec()
}
