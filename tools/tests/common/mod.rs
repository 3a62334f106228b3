//! Helpers shared by the `tfx` binary's integration tests.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a subset; failures are test failures

pub mod net;

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `tfx` binary built for these tests.
pub fn tfx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tfx"))
        .args(args)
        .output()
        .unwrap()
}

/// Everything the command printed, stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}
