//! One authenticated peer connection: two writer tasks (control and bulk streams) fed by bounded
//! queues, and a reader per incoming stream that decodes frames and hands messages to the sync
//! driver. Records have their signatures checked by the reader, on a blocking thread, under the
//! current roster ([`Prechecked`]): the driver then applies one message while the next is being
//! verified, instead of doing both in turn. A reader that meets an oversized or malformed frame, or an unknown stream, closes the
//! connection with [`CLOSE_PROTOCOL`] and logs the reason; nothing from that frame reaches the
//! driver. The driver's input queue is bounded, so a fast peer is slowed by QUIC flow control
//! rather than by our memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tfx_protocol::sync::wire::Message;
use tfx_protocol::sync::Prechecked;
use tfx_protocol::MemberId;
use tokio::sync::mpsc;

use crate::sled_store::SledStore;
use crate::transport::{
    read_frame, write_frame, FrameError, Membership, STREAM_BULK, STREAM_CONTROL, UNI_STREAMS_MAX,
};

/// Application close codes.
pub const CLOSE_SHUTDOWN: u32 = 0;
pub const CLOSE_PROTOCOL: u32 = 1;
pub const CLOSE_POLICY: u32 = 2;
pub const CLOSE_REPLACED: u32 = 3;

/// Control messages queued for one peer. Hellos, heads and fetches are small and few per round;
/// a peer that lets this many pile up is not reading.
pub const CONTROL_QUEUE: usize = 256;

/// Bulk messages (up to ~1.2 MiB each) queued for one peer: enough for every fetch it may have
/// outstanding (`PEER_FETCHES_MAX`) plus pushes.
pub const BULK_QUEUE: usize = 64;

/// Sync traffic on one connection, counted as framed (4-byte length + message), both ways. QUIC's
/// own overhead (headers, acknowledgements, keep-alives) is in `quinn::Connection::stats`.
#[derive(Debug, Default)]
pub struct Traffic {
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub messages_received: AtomicU64,
}

impl Traffic {
    fn count(bytes: &AtomicU64, messages: &AtomicU64, payload: usize) {
        bytes.fetch_add(4 + payload as u64, Ordering::Relaxed);
        messages.fetch_add(1, Ordering::Relaxed);
    }
}

/// What connections tell the sync driver.
#[derive(Debug)]
pub enum Input {
    Connected {
        peer: MemberId,
        conn: quinn::Connection,
        /// Whether this node dialed it (else the peer did): of two connections to one peer,
        /// both sides keep the one the lower id dialed.
        dialed: bool,
        control: mpsc::Sender<Vec<u8>>,
        bulk: mpsc::Sender<Vec<u8>>,
        traffic: Arc<Traffic>,
    },
    Message {
        peer: MemberId,
        conn_id: usize,
        message: Message,
    },
    /// A `Records` message, its signatures already checked.
    Records {
        peer: MemberId,
        conn_id: usize,
        records: Prechecked,
    },
    Closed {
        peer: MemberId,
        conn_id: usize,
    },
    /// A policy version an operator installs through the local API; the reply says which
    /// version is now current, or why this one was refused.
    InstallPolicy {
        bytes: Vec<u8>,
        reply: tokio::sync::oneshot::Sender<Result<u64, String>>,
    },
}

/// Closes `conn` because the peer broke the protocol, logging why.
pub fn misbehaved(conn: &quinn::Connection, peer: &MemberId, reason: &str) {
    tracing::warn!(%peer, reason, "disconnecting peer: protocol violation");
    conn.close(
        quinn::VarInt::from_u32(CLOSE_PROTOCOL),
        b"protocol violation",
    );
}

/// Where a connection's messages go, and what its readers check them against.
#[derive(Debug, Clone)]
pub struct Receiving {
    pub driver: mpsc::Sender<Input>,
    /// The roster records are prechecked under.
    pub membership: Arc<Membership>,
    /// Read by the precheck: records whose envelopes are already held, byte for byte, skip
    /// their signature check (a back-fill, a resent push).
    pub store: Arc<SledStore>,
}

/// Runs a connection (`dialed` by this node, or accepted) until it closes. Returns after the
/// driver has been told.
pub async fn run(conn: quinn::Connection, peer: MemberId, dialed: bool, receiving: Receiving) {
    let driver = receiving.driver.clone();
    let conn_id = conn.stable_id();
    let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let (bulk, bulk_rx) = mpsc::channel(BULK_QUEUE);
    let traffic = Arc::new(Traffic::default());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(writer(
        conn.clone(),
        STREAM_CONTROL,
        control_rx,
        traffic.clone(),
    ));
    tasks.spawn(writer(conn.clone(), STREAM_BULK, bulk_rx, traffic.clone()));
    let connected = Input::Connected {
        peer: peer.clone(),
        conn: conn.clone(),
        dialed,
        control,
        bulk,
        traffic: traffic.clone(),
    };
    if driver.send(connected).await.is_err() {
        return;
    }
    let accept = {
        let (conn, peer) = (conn.clone(), peer.clone());
        async move {
            let mut readers = tokio::task::JoinSet::new();
            for _ in 0..UNI_STREAMS_MAX {
                match conn.accept_uni().await {
                    Ok(stream) => {
                        readers.spawn(reader(
                            stream,
                            conn.clone(),
                            peer.clone(),
                            traffic.clone(),
                            receiving.clone(),
                        ));
                    }
                    Err(_) => break,
                }
            }
            while readers.join_next().await.is_some() {}
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = conn.closed() => {}
    }
    let reason = conn.closed().await;
    tracing::info!(%peer, %reason, "connection closed");
    tasks.abort_all();
    let _ = driver.send(Input::Closed { peer, conn_id }).await;
}

async fn writer(
    conn: quinn::Connection,
    tag: u8,
    mut rx: mpsc::Receiver<Vec<u8>>,
    traffic: Arc<Traffic>,
) {
    let Ok(mut stream) = conn.open_uni().await else {
        return;
    };
    if stream.write_all(&[tag]).await.is_err() {
        return;
    }
    while let Some(frame) = rx.recv().await {
        if write_frame(&mut stream, &frame).await.is_err() {
            return;
        }
        Traffic::count(&traffic.bytes_sent, &traffic.messages_sent, frame.len());
    }
    let _ = stream.finish();
}

async fn reader(
    mut stream: quinn::RecvStream,
    conn: quinn::Connection,
    peer: MemberId,
    traffic: Arc<Traffic>,
    receiving: Receiving,
) {
    let Receiving {
        driver,
        membership,
        store,
    } = receiving;
    let conn_id = conn.stable_id();
    let mut tag = [0u8; 1];
    if stream.read_exact(&mut tag).await.is_err() {
        return;
    }
    if tag[0] != STREAM_CONTROL && tag[0] != STREAM_BULK {
        misbehaved(&conn, &peer, &format!("unknown stream tag {}", tag[0]));
        return;
    }
    loop {
        let frame = match read_frame(&mut stream).await {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e @ (FrameError::Oversized(_) | FrameError::Truncated)) => {
                misbehaved(&conn, &peer, &e.to_string());
                return;
            }
            Err(FrameError::Read(_)) => return,
        };
        Traffic::count(
            &traffic.bytes_received,
            &traffic.messages_received,
            frame.len(),
        );
        let message = match Message::decode(&frame) {
            Ok(m) => m,
            Err(e) => {
                misbehaved(&conn, &peer, &format!("malformed frame: {e}"));
                return;
            }
        };
        let input = match message {
            Message::Records(records) => {
                // The roster as the transport holds it, which the driver sets to the core's
                // on every adoption; the core re-verifies if it has moved on meanwhile.
                let roster = membership.roster();
                let store = store.clone();
                let check = tokio::task::spawn_blocking(move || {
                    Prechecked::check(records, &roster, store.as_ref())
                });
                let records = match check.await {
                    Ok(records) => records,
                    Err(e) if e.is_panic() => {
                        // A bug the peer's bytes reached: drop the peer, keep the node.
                        tracing::error!(%peer, "verifying a peer's records panicked");
                        misbehaved(&conn, &peer, "its records could not be verified");
                        return;
                    }
                    Err(_) => return, // the runtime is shutting down
                };
                Input::Records {
                    peer: peer.clone(),
                    conn_id,
                    records,
                }
            }
            message => Input::Message {
                peer: peer.clone(),
                conn_id,
                message,
            },
        };
        if driver.send(input).await.is_err() {
            return;
        }
    }
}
