//! Resident memory of a sled 0.34 store as it grows, per key layout: what bounds a member's RSS
//! at a million records (BENCHMARKS.md, DESIGN §12: ≤ 150 MiB). Writes N synthetic 2.2 KB
//! records in batches of 256, flushed after each, and prints VmRSS every 10% — for the store's
//! layout (a chunk value per `CHUNK` records + id index + subject index) and for parts of it.
//! `cargo run --release -p tfx-tools --example sled_rss -- LAYOUT [N]`, LAYOUT one of
//! `store`, `store+log` (also the head, checkpoint and Merkle keys an append rewrites), `chunk`,
//! `chunk+id`, `per-record` (one value per record, nothing else), `vlog` (as `store`, but each
//! chunk's bytes appended to a file beside sled, which holds where); in the environment,
//! `CHUNK=64` (records per chunk value, default 64), `CACHE_MIB=32` (sled's cache, default the
//! store's) and `FLUSHER=1` (flush from another thread every 20 ms, as the node's sync driver
//! did, instead of after each batch); `READ=1` then reopens the store and reads every record
//! back in fetch-sized ranges, as a member serving a catch-up does (`READ=2`: twice over);
//! `DIR=path` keeps the store there (default: a temporary directory) and `SKIP_WRITE=1` only
//! reads an existing one; `SEGMENT_KIB=512` sets sled's segment size (larger segments raise its
//! blob threshold; they did not change what reads keep); `COLLECT=K` pins and flushes
//! crossbeam-epoch K times after each batch, as the store's `reclaim` does (the `vlog` layout
//! at 1M records: 1,007 MiB without, 161 MiB with `COLLECT=64`).
#![allow(clippy::unwrap_used)] // a measurement harness: any failure should stop it loudly

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Prints VmRSS every 10% of `n` (and at the end).
fn progress(what: &str, done: u64, n: u64, start: std::time::Instant) {
    if done % (n / 10).max(256) < 256 || done == n {
        println!(
            "{what}: {done} records, {} MiB RSS, {:.0} s",
            rss_kib() / 1024,
            start.elapsed().as_secs_f64()
        );
    }
}

/// `COLLECT=K`: pin and flush crossbeam-epoch K times, each freeing up to 8 bags of sled's
/// deferred garbage (old node versions, paged-out pages).
fn collect_garbage() {
    let k: usize = std::env::var("COLLECT").map_or(0, |s| s.parse().unwrap());
    for _ in 0..k {
        crossbeam_epoch::pin().flush();
    }
}

fn spread(j: u64) -> Vec<u8> {
    let mut x = vec![0u8; 32];
    x[..8].copy_from_slice(&j.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    x
}

fn main() {
    let mut args = std::env::args().skip(1);
    let layout = args.next().unwrap_or_else(|| "store".into());
    let n: u64 = args.next().map_or(1_000_000, |s| s.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::var("DIR").map_or(dir.path().to_path_buf(), Into::into);
    let mut config = tfx_node::sled_store::sled_config(&path);
    if let Ok(mib) = std::env::var("CACHE_MIB") {
        config = config.cache_capacity(mib.parse::<u64>().unwrap() << 20);
    }
    if let Ok(kib) = std::env::var("SEGMENT_KIB") {
        config = config.segment_size(kib.parse::<usize>().unwrap() << 10);
    }
    let db = config.open().unwrap();
    let record = vec![7u8; 2200];
    let chunk: u64 = std::env::var("CHUNK").map_or(64, |s| s.parse().unwrap());
    // `FLUSHER=1`: flush from another thread every 20 ms, as the node's sync driver does,
    // instead of after each batch.
    let flusher = std::env::var("FLUSHER").is_ok();
    if flusher {
        let db = db.clone();
        std::thread::spawn(move || loop {
            db.flush().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        });
    }
    let start = std::time::Instant::now();
    println!("{layout} (chunk {chunk}): start {} MiB", rss_kib() / 1024);
    let write = std::env::var("SKIP_WRITE").is_err();
    // `vlog`: chunk bodies appended to a file beside sled, sled holding a pointer to each.
    let vlog_path = path.join("records.vlog");
    let mut vlog = (layout == "vlog").then(|| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&vlog_path)
            .unwrap()
    });
    let mut vlog_len = vlog.as_ref().map_or(0, |f| f.metadata().unwrap().len());
    for first in (0..n).step_by(256).filter(|_| write) {
        let mut b = sled::Batch::default();
        for j in first..(first + 256).min(n) {
            match layout.as_str() {
                "per-record" => {
                    let mut k = b"E\x06bank-a".to_vec();
                    k.extend_from_slice(&j.to_be_bytes());
                    b.insert(k, record.clone());
                }
                _ => {
                    if j % chunk == 0 {
                        let mut k = b"E\x06bank-a".to_vec();
                        k.extend_from_slice(&j.to_be_bytes());
                        let body = vec![7u8; 2200 * chunk as usize];
                        match vlog.as_mut() {
                            Some(f) => {
                                use std::io::Write;
                                f.write_all(&body).unwrap();
                                let at = [vlog_len, body.len() as u64];
                                vlog_len += body.len() as u64;
                                b.insert(k, at.map(u64::to_be_bytes).concat());
                            }
                            None => b.insert(k, body),
                        }
                    }
                    if layout != "chunk" {
                        let mut k = b"I".to_vec();
                        k.extend_from_slice(&spread(j));
                        b.insert(k, vec![6u8; 15]);
                    }
                    if layout.starts_with("store") || layout == "vlog" {
                        let mut k = b"S\x1291510100MA61234567".to_vec();
                        k[2 + (j % 16) as usize] = b'0' + (j % 7) as u8;
                        k.extend_from_slice(&(1_700_000_000_000 + j).to_be_bytes());
                        k.extend_from_slice(b"\x06bank-a");
                        k.extend_from_slice(&j.to_be_bytes());
                        b.insert(k, vec![1u8]);
                    }
                }
            }
        }
        if layout == "store+log" {
            // What else a node's append writes and reads: the head and latest checkpoint of the
            // origin (read, then rewritten every batch) and a stored Merkle node per 256.
            let head = b"H\x06bank-a".to_vec();
            let _ = db.get(&head).unwrap();
            b.insert(head, vec![5u8; 40]);
            b.insert(b"C\x06bank-a".to_vec(), vec![4u8; 200]);
            let mut k = b"N\x06bank-a\x08".to_vec();
            k.extend_from_slice(&first.to_be_bytes());
            b.insert(k, vec![3u8; 32]);
        }
        if let Some(f) = vlog.as_ref() {
            f.sync_data().unwrap(); // the bodies are durable before sled points at them
        }
        db.apply_batch(b).unwrap();
        if !flusher {
            db.flush().unwrap();
        }
        collect_garbage();
        progress(&layout, (first + 256).min(n), n, start);
    }
    drop(db);
    println!("{layout}: after close {} MiB", rss_kib() / 1024);
    if std::env::var("READ").is_ok() {
        // Reopened, then read back in order, as a member serving a catch-up does: a range
        // lookup per fetch of 256 records, scanning the chunks that hold them.
        let db = config.open().unwrap();
        let vlog = (layout == "vlog").then(|| std::fs::File::open(&vlog_path).unwrap());
        println!("{layout}: reopened, {} MiB RSS", rss_kib() / 1024);
        let start = std::time::Instant::now();
        let mut bytes = 0usize;
        // `READ=2`: read it all twice, to see whether the second pass pages anything in again.
        let passes: u64 = std::env::var("READ").unwrap().parse().unwrap_or(1);
        for first in (0..n * passes).step_by(256).map(|f| f % n) {
            let mut lo = b"E\x06bank-a".to_vec();
            lo.extend_from_slice(&(first - first % chunk).to_be_bytes());
            let mut hi = b"E\x06bank-a".to_vec();
            hi.extend_from_slice(&(first + 255).to_be_bytes());
            for kv in db.range(lo..=hi) {
                let v = kv.unwrap().1;
                bytes += match vlog.as_ref() {
                    Some(f) => {
                        use std::os::unix::fs::FileExt;
                        let at = |i: usize| u64::from_be_bytes(v[i..i + 8].try_into().unwrap());
                        let mut body = vec![0u8; at(8) as usize];
                        f.read_exact_at(&mut body, at(0)).unwrap();
                        body.len()
                    }
                    None => v.len(),
                };
            }
            collect_garbage();
            progress(&format!("{layout} read"), (first + 256).min(n), n, start);
        }
        assert!(bytes > 0);
    }
}
