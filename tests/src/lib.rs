//! Helpers shared by the cross-crate integration tests in `tests/tests/`, and the test helper
//! binary `tfx-crash-child` (see `src/bin/crash_child.rs`).

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `shared/` beside the repository (where CI and developers have it).
pub fn shared_dir() -> PathBuf {
    repo_root().join("../shared")
}

/// The fixed seed of the crash-test origin's signing key (test-only, never a real key).
pub const CRASH_KEY_SEED: [u8; 32] = [0x5a; 32];
/// The crash-test origin.
pub const CRASH_ORIGIN: &str = "crash-origin";
