//! The sync driver: the one task that owns the [`SyncCore`]. It feeds the core connection
//! events, decoded messages, the appender's durable head and timer expiries, then moves the
//! core's output — frames onto peers' queues, disconnects, adopted rosters and policies
//! (persisted; rosters then handed to the transport), disclosures (entered in the ledger,
//! durably, before they leave), applied batches (sled flushed by the driver itself at most every
//! [`SYNC_FLUSH_INTERVAL`]) — and publishes a [`SyncStatus`] for the
//! local API.
//!
//! The core is synchronous and touches sled; its calls run under `block_in_place` so a large
//! batch's verification never stalls other tasks on this worker.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tfx_protocol::store::{LogHead, Store};
use tfx_protocol::sync::wire::Message;
use tfx_protocol::sync::{DisconnectCause, Event, SyncCore};
use tfx_protocol::MemberId;
use tokio::sync::{mpsc, watch};

use crate::connection::{self, Input, Traffic, CLOSE_POLICY, CLOSE_REPLACED};
use crate::ledger::{Ledger, LedgerEntry};
use crate::sled_store::SledStore;
use crate::transport::Membership;
use tfx_protocol::minimize::purge;

/// Inputs queued for the driver from all connections together: bounded so that readers wait
/// (and QUIC flow control slows their peers) when the driver is busy.
pub const INPUT_QUEUE: usize = 1024;

/// Two connections to one peer that came up within this of each other were dialed by both
/// sides at once; longer apart, the newer one means the peer lost the older. Handshakes finish
/// on the two sides about a round trip apart, so this is ample even across a WAN, and short
/// enough that a peer restarting right after connecting is refused only briefly (it redials).
pub const DIAL_RACE_WINDOW: Duration = Duration::from_secs(3);

/// How often the published status is refreshed.
const STATUS_INTERVAL: Duration = Duration::from_millis(200);

/// How often, at most, the driver flushes sled after applying records from peers. The records
/// are durable once applied (each batch's value-log frame is fsynced first), but the flush runs
/// on the driver, between its steps, not beside them: sled writes the log out on its own I/O threads,
/// and applying batches faster than they are written piles up its 512 KiB write buffers (73 MB
/// of them at the peak of a 100k catch-up under heaptrack), which the allocator then cannot
/// hand back. Flushing in line makes catch-up wait for the disk instead. The interval keeps a
/// steady trickle of pushed records from costing one fsync each.
pub const SYNC_FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// Longest wait between retries of a failing flush of synced records, which double up to this.
/// Retrying every 20 ms logged fifty errors a second on a full disk (`tfx bench replicate` ran
/// out of space). sled 0.34 fails every operation after a write error until the store is
/// reopened, so what the retries mostly buy is a readable log; the health check reports the
/// store as not writable meanwhile.
pub const SYNC_FLUSH_RETRY_MAX: Duration = Duration::from_secs(5);

/// One connected peer as the status reports it.
#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    pub member: String,
    pub connected: bool,
    pub address: Option<String>,
    /// Records the peer holds that this node lacks, per origin (from its last heads).
    pub ahead: BTreeMap<String, u64>,
    /// Records this node holds that the peer lacks, per origin.
    pub behind: BTreeMap<String, u64>,
    /// Traffic on the current connection (reset when it is replaced); absent when disconnected.
    pub traffic: Option<TrafficStatus>,
}

/// Bytes exchanged with one peer over its current connection.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficStatus {
    /// Sync messages as framed (4-byte length + CBOR), each way.
    pub sync_bytes_sent: u64,
    pub sync_bytes_received: u64,
    pub sync_messages_sent: u64,
    pub sync_messages_received: u64,
    /// Everything on the wire, as UDP payload: sync frames plus QUIC headers, encryption,
    /// acknowledgements and keep-alives.
    pub udp_bytes_sent: u64,
    pub udp_bytes_received: u64,
}

impl TrafficStatus {
    fn of(link: &Link) -> Self {
        let t = &link.traffic;
        let udp = link.conn.stats();
        TrafficStatus {
            sync_bytes_sent: t.bytes_sent.load(Ordering::Relaxed),
            sync_bytes_received: t.bytes_received.load(Ordering::Relaxed),
            sync_messages_sent: t.messages_sent.load(Ordering::Relaxed),
            sync_messages_received: t.messages_received.load(Ordering::Relaxed),
            udp_bytes_sent: udp.udp_tx.bytes,
            udp_bytes_received: udp.udp_rx.bytes,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HeadStatus {
    pub origin: String,
    pub size: u64,
    pub root: String,
    /// Size of the latest checkpoint of this log held with cosignatures from the roster's
    /// witness quorum (SPEC §17): records below it are final.
    pub final_size: Option<u64>,
    /// Witnesses who cosigned that checkpoint.
    pub witnesses: usize,
}

/// An origin frozen on evidence that it signed two histories (SPEC §18).
#[derive(Debug, Clone, Serialize)]
pub struct EquivocationStatus {
    pub origin: String,
    /// What the evidence shows; never a field value.
    pub summary: String,
}

/// What the node's sync state looks like, for `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SyncStatus {
    pub member: String,
    pub roster_version: u64,
    pub heads: Vec<HeadStatus>,
    pub peers: Vec<PeerStatus>,
    pub frozen: Vec<String>,
    /// Evidence held of origins that signed two histories: the alert an operator must act on.
    pub equivocations: Vec<EquivocationStatus>,
    /// Batches of records received from peers and stored since start.
    pub received: u64,
    /// Peers disconnected for misbehaviour since start.
    pub misbehaviour: u64,
    /// The data-minimization policy version in force (0: none adopted, envelopes only).
    pub policy_version: u64,
    /// Disclosures peers sent beyond this node's view, dropped unstored, since start.
    pub refused_disclosures: u64,
    /// Peers flagged for sending disclosures beyond this node's view: member → disclosures.
    pub flagged: BTreeMap<String, u64>,
    /// Disclosures purged since start (narrower policy or expired retention).
    pub purged_disclosures: u64,
    /// Records held with fewer fields than this member's view grants, still being completed
    /// from their origin: origin → records left.
    pub backfilling: BTreeMap<String, u64>,
    /// Records received from peers, verified and stored since start: origin → records.
    pub received_records: BTreeMap<String, u64>,
    /// Forks detected since start (an origin signed two histories; it is then frozen).
    pub forks: u64,
    /// The store failure that stopped sync, if one did (restart the node).
    pub store_failed: Option<String>,
    /// While the local log is recovered after a restore: who has still to report, and the
    /// size of the local log the peers that did hold.
    pub recovering: Option<RecoveryStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecoveryStatus {
    pub waiting_for: Vec<String>,
    pub peers_hold: u64,
}

struct Link {
    conn: quinn::Connection,
    /// Dialed by the lower id of the pair: kept over a duplicate the other side dialed.
    preferred: bool,
    /// When it came up.
    since: std::time::Instant,
    control: mpsc::Sender<Vec<u8>>,
    bulk: mpsc::Sender<Vec<u8>>,
    traffic: Arc<Traffic>,
}

pub struct Driver {
    /// What the node wired up; the fields below are the driver's own.
    io: DriverParts,
    links: BTreeMap<MemberId, Link>,
    /// Records were applied since the last flush.
    synced_unflushed: bool,
    last_sync_flush: tokio::time::Instant,
    /// Flushes of synced records that failed in a row (backs off the retries).
    sync_flush_failures: u32,
    received: u64,
    misbehaviour: u64,
    refused: u64,
    flagged: BTreeMap<String, u64>,
    purged: u64,
    /// Each origin's log size when its records were last applied, to count records received.
    sizes: BTreeMap<MemberId, u64>,
    received_records: BTreeMap<String, u64>,
    forks: u64,
    store_failed: Option<String>,
    /// Ledger entries of this step's disclosures, written (durably) before they are sent.
    ledger_pending: Vec<LedgerEntry>,
    /// A ledger write failed this step: its disclosures are not sent.
    ledger_failed: bool,
}

/// What a driver is built from (the node's start wires these up).
#[derive(Debug)]
pub struct DriverParts {
    pub core: SyncCore,
    pub store: Arc<SledStore>,
    pub membership: Arc<Membership>,
    pub roster_dir: PathBuf,
    pub policy_dir: PathBuf,
    pub ledger: Arc<Ledger>,
    pub status: watch::Sender<SyncStatus>,
    /// Counts batches of peers' records applied, so the API's waiting reads wake at once.
    pub arrivals: watch::Sender<u64>,
    /// Bumped with the roster version so the dialer picks up new members.
    pub roster_version: watch::Sender<u64>,
    pub connected: Arc<std::sync::Mutex<std::collections::BTreeSet<MemberId>>>,
    /// How often expired retention is purged.
    pub retention_sweep: Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Released from its recovery hold when sync reports the local log recovered.
    pub appender: Arc<crate::appender::Appender>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("peers", &self.links.len())
            .finish()
    }
}

fn now_ms() -> u64 {
    crate::clock::now().0
}

impl Driver {
    pub fn new(parts: DriverParts) -> Self {
        let sizes = parts
            .core
            .heads()
            .into_iter()
            .map(|(o, h)| (o, h.size))
            .collect();
        Driver {
            io: parts,
            sizes,
            received_records: BTreeMap::new(),
            forks: 0,
            store_failed: None,
            links: BTreeMap::new(),
            synced_unflushed: false,
            last_sync_flush: tokio::time::Instant::now(),
            sync_flush_failures: 0,
            received: 0,
            misbehaviour: 0,
            refused: 0,
            flagged: BTreeMap::new(),
            purged: 0,
            ledger_pending: Vec::new(),
            ledger_failed: false,
        }
    }

    /// Runs until `shutdown` turns true or every input sender is gone.
    pub async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut durable: watch::Receiver<LogHead>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let head = *durable.borrow_and_update();
        self.with_core(|core, store| core.handle_local_head(store, head, now_ms()));
        // A store may hold fields a policy adopted while the node was down took away, or
        // whose retention ran out: sweep once at start, then periodically.
        self.purge("start");
        self.after();
        let mut status_tick = tokio::time::interval(STATUS_INTERVAL);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep_tick = tokio::time::interval(self.io.retention_sweep);
        sweep_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sweep_tick.tick().await;
        loop {
            let wake = self.io.core.poll_timeout().map(|t| {
                tokio::time::Instant::now() + Duration::from_millis(t.saturating_sub(now_ms()))
            });
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => self.input(input),
                    None => break,
                },
                changed = durable.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let head = *durable.borrow_and_update();
                    self.with_core(|core, store| core.handle_local_head(store, head, now_ms()));
                }
                _ = sweep_tick.tick() => {
                    if self.io.core.view().has_retention() {
                        self.purge("retention");
                    }
                }
                _ = sleep_until(self.sync_flush_at()) => {}
                _ = sleep_until(wake) => {
                    let now = now_ms();
                    self.with_core(|core, store| core.handle_timeout(store, now));
                }
                _ = status_tick.tick() => self.publish(),
                _ = shutdown.changed() => break,
            }
            self.after();
        }
        for (_, link) in std::mem::take(&mut self.links) {
            link.conn.close(
                quinn::VarInt::from_u32(crate::connection::CLOSE_SHUTDOWN),
                b"shutting down",
            );
        }
        if let Err(e) = self.io.store.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
    }

    /// When the records applied since the last flush are due to be flushed.
    fn sync_flush_at(&self) -> Option<tokio::time::Instant> {
        let wait = SYNC_FLUSH_INTERVAL
            .saturating_mul(1 << self.sync_flush_failures.min(16))
            .min(SYNC_FLUSH_RETRY_MAX);
        self.synced_unflushed.then(|| self.last_sync_flush + wait)
    }

    fn with_core(&mut self, f: impl FnOnce(&mut SyncCore, &SledStore)) {
        let store = self.io.store.clone();
        let core = &mut self.io.core;
        tokio::task::block_in_place(|| f(core, &store));
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Connected {
                peer,
                conn,
                dialed,
                control,
                bulk,
                traffic,
            } => {
                // Both members of a pair dial while they are not connected. Two connections
                // that came up within `DIAL_RACE_WINDOW` of each other are a race: both sides
                // keep the one the lower id dialed, so they settle on the same one whatever
                // order they see them in. Otherwise the newer replaces the older: the peer
                // dialed because it lost the older one (it restarted, say), which this side may
                // not notice before the idle timeout.
                let preferred = dialed == (self.io.core.local() < &peer);
                let race = self
                    .links
                    .get(&peer)
                    .is_some_and(|l| l.preferred && l.since.elapsed() < DIAL_RACE_WINDOW);
                if !preferred && race {
                    tracing::debug!(%peer, "closing a duplicate connection");
                    conn.close(quinn::VarInt::from_u32(CLOSE_REPLACED), b"duplicate");
                    return;
                }
                if let Some(old) = self.links.remove(&peer) {
                    old.conn
                        .close(quinn::VarInt::from_u32(CLOSE_REPLACED), b"replaced");
                    self.io.core.handle_disconnected(&peer, now_ms());
                }
                tracing::info!(%peer, address = %conn.remote_address(), "peer connected");
                self.links.insert(
                    peer.clone(),
                    Link {
                        conn,
                        preferred,
                        since: std::time::Instant::now(),
                        control,
                        bulk,
                        traffic,
                    },
                );
                self.set_connected(&peer, true);
                self.io.core.handle_connected(peer, now_ms());
            }
            Input::Message {
                peer,
                conn_id,
                message,
            } => {
                if !self.is_current(&peer, conn_id) {
                    return; // from a connection already replaced or closed
                }
                self.with_core(|core, store| core.handle_message(store, &peer, message, now_ms()));
            }
            Input::Records {
                peer,
                conn_id,
                records,
            } => {
                if !self.is_current(&peer, conn_id) {
                    return;
                }
                self.with_core(|core, store| core.handle_records(store, &peer, records, now_ms()));
            }
            Input::Closed { peer, conn_id } => {
                if self.is_current(&peer, conn_id) {
                    self.links.remove(&peer);
                    self.set_connected(&peer, false);
                    self.io.core.handle_disconnected(&peer, now_ms());
                }
            }
            Input::InstallPolicy { bytes, reply } => {
                let mut result = Err(String::new());
                self.with_core(|core, store| {
                    result = core
                        .handle_local_policy(store, bytes, now_ms())
                        .map_err(|e| e.to_string());
                });
                let _ = reply.send(result);
            }
        }
    }

    /// Whether `conn_id` is `peer`'s live connection (inputs from one already replaced or
    /// closed are dropped).
    fn is_current(&self, peer: &MemberId, conn_id: usize) -> bool {
        self.links.get(peer).map(|l| l.conn.stable_id()) == Some(conn_id)
    }

    fn set_connected(&self, peer: &MemberId, up: bool) {
        if let Ok(mut set) = self.io.connected.lock() {
            if up {
                set.insert(peer.clone());
            } else {
                set.remove(peer);
            }
        }
    }

    /// Moves everything the core produced.
    fn after(&mut self) {
        while let Some(event) = self.io.core.poll_event() {
            self.event(event);
        }
        // Architecture invariant: no disclosure leaves before its ledger entry is durable (one
        // value-log frame per driver step that disclosed anything).
        if !self.ledger_pending.is_empty() {
            let entries = std::mem::take(&mut self.ledger_pending);
            let ledger = self.io.ledger.clone();
            if let Err(e) = tokio::task::block_in_place(|| ledger.append(&entries)) {
                tracing::error!(error = %e, "could not record disclosures in the ledger: withholding them");
                self.ledger_failed = true;
            }
        }
        let withhold = std::mem::take(&mut self.ledger_failed);
        while let Some((peer, message)) = self.io.core.poll_transmit() {
            let Some(link) = self.links.get(&peer) else {
                continue;
            };
            if withhold && matches!(message, Message::Records(_)) {
                continue; // the peer fetches again after its timeout
            }
            let queue = match &message {
                Message::Records(r) => {
                    tracing::trace!(%peer, origin = %r.origin, from = r.from, count = r.records.len(), "sending records");
                    &link.bulk
                }
                Message::Rosters(_) | Message::Policies(_) => &link.bulk,
                _ => &link.control,
            };
            if let Err(e) = queue.try_send(message.encode()) {
                if matches!(e, mpsc::error::TrySendError::Full(_)) {
                    tracing::warn!(%peer, "disconnecting peer: its send queue is full (not reading)");
                    link.conn
                        .close(quinn::VarInt::from_u32(CLOSE_POLICY), b"send queue full");
                } else {
                    tracing::debug!(%peer, "its connection is closing: forgetting it");
                }
                // Forgotten now rather than when the close is reported, so that nothing more is
                // queued for it (each attempt would fail and log again) and the core asks others.
                self.links.remove(&peer);
                self.set_connected(&peer, false);
                self.io.core.handle_disconnected(&peer, now_ms());
            }
        }
        self.flush_synced();
    }

    /// Flushes sled when records applied from peers have waited [`SYNC_FLUSH_INTERVAL`]. They
    /// are durable already (each batch's value-log frame); the flush bounds what sled holds in
    /// its write buffers and what a crash leaves to apply again. After the step's messages are
    /// sent, so it never delays one.
    fn flush_synced(&mut self) {
        let due = self
            .sync_flush_at()
            .is_some_and(|at| at <= tokio::time::Instant::now());
        if !due {
            return;
        }
        let store = self.io.store.clone();
        let started = std::time::Instant::now();
        let flushed = tokio::task::block_in_place(|| store.flush());
        self.io.metrics.sync_flush.observe(started.elapsed());
        self.last_sync_flush = tokio::time::Instant::now();
        match flushed {
            Ok(()) => {
                if self.sync_flush_failures > 0 {
                    tracing::info!(
                        failures = self.sync_flush_failures,
                        "flushing synced records works again"
                    );
                }
                self.synced_unflushed = false;
                self.sync_flush_failures = 0;
            }
            // Kept unflushed: retried at doubling intervals, logged at the 1st, 2nd, 4th, …
            // failure in a row.
            Err(e) => {
                self.sync_flush_failures = self.sync_flush_failures.saturating_add(1);
                if self.sync_flush_failures.is_power_of_two() {
                    tracing::error!(
                        error = %e,
                        failures = self.sync_flush_failures,
                        "flushing synced records failed"
                    );
                }
            }
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Disconnect {
                peer,
                reason,
                cause,
            } => {
                let link = self.links.remove(&peer);
                match cause {
                    DisconnectCause::Violation => {
                        self.misbehaviour += 1;
                        match &link {
                            Some(link) => connection::misbehaved(&link.conn, &peer, &reason),
                            None => tracing::warn!(%peer, %reason, "peer broke the protocol"),
                        }
                    }
                    DisconnectCause::NotMember => {
                        tracing::warn!(%peer, %reason, "disconnecting peer: not a member");
                        if let Some(link) = link {
                            link.conn
                                .close(quinn::VarInt::from_u32(CLOSE_POLICY), b"not a member");
                        }
                    }
                }
                self.set_connected(&peer, false);
            }
            Event::RosterAdopted { version, bytes } => self.adopt(version, &bytes),
            Event::Applied { origin, head } => {
                tracing::debug!(%origin, size = head.size, "records applied");
                self.received += 1;
                let before = self.sizes.insert(origin.clone(), head.size).unwrap_or(0);
                *self.received_records.entry(origin.to_string()).or_insert(0) +=
                    head.size.saturating_sub(before);
                self.synced_unflushed = true;
                // Durable already (the batch's value-log frame), so readable at once.
                self.io.arrivals.send_modify(|n| *n += 1);
            }
            Event::Fork {
                origin,
                peer,
                detail,
            } => {
                self.forks += 1;
                tracing::error!(%origin, %peer, %detail, "origin forked its log: sync with it is frozen");
            }
            Event::StoreFailed(e) => {
                self.store_failed.get_or_insert_with(|| e.clone());
                // The core stops syncing itself; say so once.
                tracing::error!(error = %e, "store failure: sync stopped; restart the node to re-verify the store");
            }
            Event::PolicyAdopted { version, bytes } => {
                let path = crate::node::policy_file(&self.io.policy_dir, version);
                let written = std::fs::create_dir_all(&self.io.policy_dir)
                    .and_then(|()| crate::fsutil::replace_file(&path, &bytes));
                if let Err(e) = written {
                    tracing::error!(path = %path.display(), error = %e, "could not persist the adopted policy");
                }
                tracing::info!(version, "adopted policy version");
            }
            Event::PurgeNeeded => self.purge("policy"),
            Event::Disclosed {
                peer,
                origin,
                policy_version,
                records,
            } => {
                let entry = LedgerEntry {
                    at: crate::clock::now(),
                    recipient: peer,
                    origin,
                    policy_version,
                    records,
                };
                self.ledger_pending.push(entry);
            }
            Event::Refused {
                peer,
                origin,
                disclosures,
                fields,
            } => {
                self.refused += disclosures;
                *self.flagged.entry(peer.to_string()).or_insert(0) += disclosures;
                let fields: Vec<String> = fields.into_iter().collect();
                tracing::warn!(%peer, %origin, disclosures, fields = %fields.join(","), "peer sent disclosures beyond this member's view: dropped, peer flagged");
            }
            Event::Recovered { head } => self.recovered(head),
            Event::Backfilled { origin, records } => {
                tracing::info!(%origin, records, "back-filled fields the policy now grants");
                self.synced_unflushed = true;
            }
        }
    }

    /// Recovery after a restore is over: make what sync fetched of our own log durable, clear
    /// the store's mark (so a restart does not recover again), then let the appender issue.
    fn recovered(&mut self, head: LogHead) {
        let store = self.io.store.clone();
        let done = tokio::task::block_in_place(|| {
            store.flush()?;
            store.set_recovering(false)
        });
        match done {
            Ok(()) => {
                tracing::info!(
                    size = head.size,
                    "own log recovered from peers: issuing records again"
                );
                self.io.appender.recovered(head);
            }
            Err(e) => {
                tracing::error!(error = %e, "could not clear the recovery mark: still holding appends; restart the node");
            }
        }
    }

    /// Removes every held disclosure the current view no longer admits. Runs in the driver so
    /// no sync write interleaves with the chunk rewrites.
    fn purge(&mut self, why: &'static str) {
        let view = self.io.core.view().clone();
        let me = self.io.core.local().clone();
        let store = self.io.store.clone();
        let result = tokio::task::block_in_place(|| {
            let report = purge(&*store, &view, &me, now_ms())?;
            store.flush().map_err(|e| e.to_string())?;
            Ok::<_, String>(report)
        });
        match result {
            Ok(r) if r.disclosures > 0 => {
                self.purged += r.disclosures;
                let fields: Vec<String> = r.fields.into_iter().collect();
                tracing::info!(why, records = r.changed, disclosures = r.disclosures, fields = %fields.join(","), "purged disclosures beyond this member's view");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(why, error = %e, "purging disclosures failed"),
        }
    }

    /// Persists an adopted version and hands the transport the core's (already verified)
    /// current roster.
    fn adopt(&mut self, version: u64, bytes: &[u8]) {
        let path = crate::node::roster_file(&self.io.roster_dir, version);
        if let Err(e) = crate::fsutil::replace_file(&path, bytes) {
            tracing::error!(path = %path.display(), error = %e, "could not persist the adopted roster");
        }
        self.io.membership.set_roster(self.io.core.roster().clone());
        tracing::info!(version, "adopted roster version");
        let _ = self.io.roster_version.send(self.io.core.roster().version);
    }

    fn publish(&self) {
        let heads = self.io.core.heads();
        let mine: BTreeMap<&MemberId, u64> = heads.iter().map(|(o, h)| (o, h.size)).collect();
        let mut reported: BTreeMap<MemberId, BTreeMap<MemberId, u64>> = BTreeMap::new();
        for (peer, origin, size) in self.io.core.peer_sizes() {
            reported.entry(peer).or_default().insert(origin, size);
        }
        let roster = self.io.core.roster();
        let me = self.io.status.borrow().member.clone();
        let no_sizes = BTreeMap::new();
        let peers = roster
            .members
            .iter()
            .filter(|m| m.id.as_str() != me)
            .map(|m| {
                let link = self.links.get(&m.id);
                let theirs = reported.get(&m.id).unwrap_or(&no_sizes);
                let ahead = theirs
                    .iter()
                    .filter_map(|(o, n)| {
                        let have = mine.get(o).copied().unwrap_or(0);
                        (*n > have).then(|| (o.to_string(), n - have))
                    })
                    .collect();
                let behind = if link.is_some() {
                    mine.iter()
                        .filter_map(|(o, n)| {
                            let has = theirs.get(*o).copied().unwrap_or(0);
                            (*n > has).then(|| (o.to_string(), n - has))
                        })
                        .collect()
                } else {
                    BTreeMap::new()
                };
                PeerStatus {
                    member: m.id.to_string(),
                    connected: link.is_some(),
                    address: link.map(|l| l.conn.remote_address().to_string()),
                    ahead,
                    behind,
                    traffic: link.map(TrafficStatus::of),
                }
            })
            .collect();
        let status =
            SyncStatus {
                member: me,
                roster_version: roster.version,
                heads: heads
                    .iter()
                    .map(|(o, h)| {
                        let fin = self.io.core.latest_final(o);
                        HeadStatus {
                            origin: o.to_string(),
                            size: h.size,
                            root: hex::encode(h.root),
                            final_size: fin.map(|(s, _)| s),
                            witnesses: fin.map_or(0, |(_, w)| w),
                        }
                    })
                    .collect(),
                peers,
                frozen: self.io.core.frozen().map(|m| m.to_string()).collect(),
                equivocations: self
                    .io
                    .core
                    .evidence()
                    .map(|(o, _, summary)| EquivocationStatus {
                        origin: o.to_string(),
                        summary: summary.to_owned(),
                    })
                    .collect(),
                received: self.received,
                misbehaviour: self.misbehaviour,
                policy_version: self.io.core.policy().map_or(0, |p| p.version),
                refused_disclosures: self.refused,
                flagged: self.flagged.clone(),
                purged_disclosures: self.purged,
                backfilling: self
                    .io
                    .core
                    .backfilling()
                    .into_iter()
                    .map(|(o, next, end)| (o.to_string(), end.saturating_sub(next)))
                    .collect(),
                received_records: self.received_records.clone(),
                forks: self.forks,
                store_failed: self.store_failed.clone(),
                recovering: self.io.core.recovery_progress().map(|(waiting, target)| {
                    RecoveryStatus {
                        waiting_for: waiting.iter().map(|m| m.to_string()).collect(),
                        peers_hold: target,
                    }
                }),
            };
        if !self.links.is_empty() {
            self.io.metrics.peer_seen(crate::clock::now().0);
        }
        let _ = self.io.status.send(status);
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
