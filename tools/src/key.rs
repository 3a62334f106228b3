//! `tfx key`: record-signing keys and pseudonym secrets, generated on the member's own machine.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use tfx_node::keyfile;

use crate::Outcome;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Generate an Ed25519 record-signing key: DIR/record-signing.key (0600) and DIR/record-signing.pub.
    #[command(after_help = "Example:\n  tfx key generate --out /etc/tfx/keys\n\n\
        The private key never leaves this machine; share record-signing.pub (or its key id).")]
    Generate {
        /// Directory to write the key pair into (created 0700 if missing; existing keys are never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Generate a 256-bit consortium pseudonym secret (0600).
    #[command(
        after_help = "Example:\n  tfx key pseudonym-secret --out consortium/pseudonym.secret\n\n\
        Issuing members hold this secret; the risk-warning member and auditors must not."
    )]
    PseudonymSecret {
        /// File to create.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cmd: KeyCommand) -> anyhow::Result<Outcome> {
    match cmd {
        KeyCommand::Generate { out } => {
            create_private_dir(&out)?;
            let public =
                keyfile::generate_signing_key(&out).context("generating record-signing key")?;
            println!("wrote {}", out.join(keyfile::SIGNING_KEY_FILE).display());
            println!("wrote {}", out.join(keyfile::VERIFYING_KEY_FILE).display());
            println!("key id {}", public.id());
        }
        KeyCommand::PseudonymSecret { out } => {
            keyfile::generate_secret(&out).context("generating pseudonym secret")?;
            println!("wrote {}", out.display());
        }
    }
    Ok(Outcome::Ok)
}

/// Creates `dir` (and parents) 0700 if it does not exist.
pub fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}
