//! Resource limits of the node. Each bounds memory or latency under load; the reason for each
//! number is beside it.

/// Appends waiting for the committer. Submitters beyond this wait (backpressure) instead of
/// growing memory: 4096 × ~2 KiB records ≈ 8 MiB queued at most.
pub const APPEND_QUEUE_CAPACITY: usize = 4096;

/// Records per group commit. Large enough to amortise one fsync and one checkpoint signature over
/// many records (sled flush ~75 µs on this class of machine, far more on real disks), small
/// enough that one batch (~2 KiB × 1024 ≈ 2 MiB) stays cheap to hold and apply.
pub const COMMIT_BATCH_MAX: usize = 1024;

/// Below this many records a batch is sealed on the sealer thread alone. Sealing one record costs
/// ~60 µs (mostly the Ed25519 signature) and a scoped helper thread ~20 µs to start, so helpers
/// pay off from a handful of records.
pub const PARALLEL_SEAL_MIN: usize = 4;

/// Sealing threads per batch, at most. Signing is the CPU cost of an append; more threads than
/// cores only adds contention.
pub const SEAL_THREADS_MAX: usize = 8;

/// sled's page cache. sled's default (1 GiB) let a member holding 1M records reach ~2.5 GiB
/// RSS (`tfx bench replicate`); DESIGN §12 budgets 150 MiB for the whole node. Reads that miss
/// go to the OS page cache, which the kernel can reclaim, unlike our heap. This bounds less
/// than it says: sled 0.34's LRU counts accesses per shard (256 of them) in blocks of 64 before
/// it evicts anything and keeps a page per shard however large, so up to ~16k recently read pages
/// stay resident whatever this is. With 64 KiB chunk values in sled that was every page a
/// catch-up read (200k records: 440 MB at 32 and at 8 MiB alike); it is why chunk bodies moved to
/// the value log (`vlog.rs`) and sled keeps only small pages. Now that it holds only index pages
/// — charged at their serialized size, less than they take decoded (heaptrack, 200k records at
/// 32 MiB: ~80 MB of sled nodes at the peak) — the size shows:
/// members held 118–144 / 85–94 / 61–76 MiB after a 200k-record bench at 32 / 16 / 8 MiB, with
/// catch-up rates within the run-to-run spread, and the bench's member 157 MiB at 1M records
/// with 16 MiB against 132 with 8 (BENCHMARKS.md, "sled's cache at 8 MiB"): at 16 MiB it
/// was over DESIGN's 150. The price: under load an append more often reads back and decodes
/// the index leaves it inserts into (origin acknowledgement p50 8.6 → 12.5 ms in that run, not
/// a clean A/B: BENCHMARKS.md says why).
pub const STORE_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// Largest key or secret file we read (a PEM Ed25519 key is ~120 bytes).
pub const KEY_FILE_BYTES_MAX: u64 = 16 * 1024;

/// How long opening a store waits for sled's directory lock. A store dropped moments ago in this
/// process may still hold it while sled's threads wind down; longer than this means another
/// process (another tfx-node) has the directory, and we say so.
pub const STORE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
