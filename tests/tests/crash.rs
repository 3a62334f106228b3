#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! Crash safety (DESIGN §6): a child process appends from 8 concurrent submitters and prints every
//! acknowledgement; it is killed with SIGKILL at a random moment, 25 times over the same data
//! directory. After each kill the store reopens, every acknowledged record is present at its
//! sequence number with its id, and the log verifies end to end against its latest checkpoint.
//! Replay a failing run with `CRASH_SEED=<seed>` (printed on failure).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tfx_node::sled_store::SledStore;
use tfx_protocol::keys::SigningKey;
use tfx_protocol::log::verify_log;
use tfx_protocol::store::Store;
use tfx_protocol::{LogIndex, MemberId, RecordId};

const KILLS: usize = 25;
/// Each child lives between these many milliseconds after its first acknowledgement.
const LIFETIME_MS: (u64, u64) = (5, 300);
/// How long a child may take to acknowledge its first record before the test gives up.
const FIRST_ACK_DEADLINE: Duration = Duration::from_secs(30);

/// xorshift64*: a tiny seeded generator so the kill schedule is replayable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn sigkill_never_loses_an_acknowledged_record() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test seed: CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let origin = MemberId::new(tfx_tests::CRASH_ORIGIN).unwrap();
    let key = SigningKey::from_seed(&tfx_tests::CRASH_KEY_SEED);
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    for round in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tfx-crash-child"))
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<(u64, String)>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut parts = line.split(' ');
                if let (Some("ack"), Some(seq), Some(id)) =
                    (parts.next(), parts.next(), parts.next())
                {
                    let _ = tx.send((seq.parse().unwrap(), id.to_string()));
                }
            }
        });
        // Wait for the first acknowledgement (so every round really appends), then a random time.
        let first = rx.recv_timeout(FIRST_ACK_DEADLINE);
        assert!(
            first.is_ok(),
            "round {round}: child acknowledged nothing within {FIRST_ACK_DEADLINE:?} (seed {seed})"
        );
        let lifetime = LIFETIME_MS.0 + rng.next() % (LIFETIME_MS.1 - LIFETIME_MS.0);
        std::thread::sleep(Duration::from_millis(lifetime));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        reader.join().unwrap();
        let before = acked.len();
        for (seq, id) in first.into_iter().chain(rx.try_iter()) {
            if let Some(old) = acked.insert(seq, id.clone()) {
                assert_eq!(old, id, "round {round}: seq {seq} acknowledged twice with different records (seed {seed})");
            }
        }
        check_store(dir.path(), &origin, &key, &acked, round, seed);
        eprintln!(
            "round {round}: killed after {lifetime} ms, {} new acks, {} total",
            acked.len() - before,
            acked.len()
        );
    }
    assert!(
        acked.len() > KILLS,
        "too few appends to mean anything: {}",
        acked.len()
    );
}

fn check_store(
    dir: &std::path::Path,
    origin: &MemberId,
    key: &SigningKey,
    acked: &BTreeMap<u64, String>,
    round: usize,
    seed: u64,
) {
    let started = Instant::now();
    let store = SledStore::open(dir)
        .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e} (seed {seed})"));
    let head = store.head(origin).unwrap().expect("a log exists");
    for (seq, id) in acked {
        let env = store.envelope(origin, LogIndex(*seq)).unwrap();
        let env = env
            .unwrap_or_else(|| panic!("round {round}: acknowledged seq {seq} lost (seed {seed})"));
        assert_eq!(
            &RecordId::of_envelope(&env).to_hex(),
            id,
            "round {round}: seq {seq} holds another record"
        );
        assert!(*seq < head.size);
    }
    let report = verify_log(&store, origin, key.verifying_key(), &mut |_| {}).unwrap_or_else(|e| {
        panic!("round {round}: log does not verify after SIGKILL: {e} (seed {seed})")
    });
    // Local-origin invariant: the latest checkpoint covers every durable record.
    assert_eq!(
        report.checkpoint_size, report.size,
        "round {round} (seed {seed})"
    );
    eprintln!(
        "round {round}: store of {} records verified in {:?}",
        report.size,
        started.elapsed()
    );
}
