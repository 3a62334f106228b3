//! Test helper for the SIGKILL crash test: opens the sled store in the given directory, appends
//! synthetic records from several concurrent submitters forever, and prints `ack <seq> <record id>`
//! to stdout after each acknowledgement. The parent kills it at a random moment and checks that
//! every printed record survived.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use tfx_node::appender::{Appender, AppenderConfig};
use tfx_node::sled_store::SledStore;
use tfx_protocol::keys::SigningKey;
use tfx_protocol::MemberId;
use tfx_tests::{CRASH_KEY_SEED, CRASH_ORIGIN};

/// Concurrent submitters: enough that group commits hold several records each.
const SUBMITTERS: u64 = 8;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .context("usage: tfx-crash-child DIR")?;
    let store = Arc::new(SledStore::open(std::path::Path::new(&dir))?);
    let config = AppenderConfig {
        origin: MemberId::new(CRASH_ORIGIN)?,
        key: SigningKey::from_seed(&CRASH_KEY_SEED),
        previous_keys: Vec::new(),
        pseudonym: None,
    };
    let appender = Arc::new(Appender::start(store, config)?);
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(1024);
    for t in 0..SUBMITTERS {
        let (appender, tx) = (appender.clone(), tx.clone());
        std::thread::spawn(move || {
            for n in (t..).step_by(SUBMITTERS as usize) {
                let Ok(body) = tfx_node::synthetic::credit(n) else {
                    return;
                };
                match appender.append_blocking(body) {
                    Ok(r) => {
                        if tx.send(format!("ack {} {}\n", r.seq, r.id)).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    for line in rx {
        out.write_all(line.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}
