//! Key and secret files on disk. Private material is written 0600 with `create_new` (never
//! overwriting a key), read only when no group or other permission bit is set, and zeroized
//! after parsing. Formats: PKCS#8 PEM (`PRIVATE KEY`) for the Ed25519 record-signing key (and,
//! through the helpers `pki` uses, the ECDSA P-256 CA and TLS keys), SPKI PEM
//! (`PUBLIC KEY`) for its public half — what OpenSSL and every COSE library read — and 64 hex
//! digits for the consortium pseudonym secret.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

use std::path::{Path, PathBuf};

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::Ed25519KeyPair;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use tfx_protocol::keys::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::limits::KEY_FILE_BYTES_MAX;

/// File names `tfx key generate` writes in its output directory.
pub const SIGNING_KEY_FILE: &str = "record-signing.key";
pub const VERIFYING_KEY_FILE: &str = "record-signing.pub";

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} already exists; refusing to overwrite a key")]
    Exists { path: PathBuf },
    #[error("private key file {path} is readable by group or others (mode {mode:04o}); run: chmod 600 {path}")]
    LoosePermissions { path: PathBuf, mode: u32 },
    #[error("{path}: larger than {max} bytes; not a key file")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("random number generator unavailable")]
    Rng,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// PEM-encodes `der`. Both the base64 text and the result are zeroized on drop: for a private
/// key they are key material too.
fn pem(label: &str, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    // Sized up front: a reallocation would leave an unzeroized copy behind.
    let mut out = Zeroizing::new(String::with_capacity(
        b64.len() + b64.len() / 64 + 2 * label.len() + 48,
    ));
    out.push_str(&format!("-----BEGIN {label}-----\n"));
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// PEM-encodes public material (a certificate).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    pem(label, der).to_string()
}

/// Writes `contents` to a new file with `mode`, fsyncs it, and refuses to replace anything.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyFileError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyFileError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                KeyFileError::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
    // The umask may have narrowed the mode; it can only have removed bits, never added them.
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(io(path))
}

/// Reads a private file after checking that no group/other permission bit is set. The file is
/// opened once — not following a symlink, not blocking on a FIFO — and its type and mode are
/// checked on that open handle, so nothing can be swapped in between check and read.
pub(crate) fn read_private(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(io(path))?;
    let meta = f.metadata().map_err(io(path))?;
    if !meta.is_file() {
        let reason = "not a regular file".to_string();
        return Err(KeyFileError::Format {
            path: path.to_path_buf(),
            reason,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::LoosePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    read_handle(f, path)
}

/// Reads a public file (certificate, public key), at most `KEY_FILE_BYTES_MAX` bytes.
pub(crate) fn read_bounded(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    read_handle(File::open(path).map_err(io(path))?, path)
}

fn read_handle(f: File, path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let mut buf = Zeroizing::new(Vec::new());
    f.take(KEY_FILE_BYTES_MAX + 1)
        .read_to_end(&mut buf)
        .map_err(io(path))?;
    if buf.len() as u64 > KEY_FILE_BYTES_MAX {
        return Err(KeyFileError::TooLarge {
            path: path.to_path_buf(),
            max: KEY_FILE_BYTES_MAX,
        });
    }
    Ok(buf)
}

/// Creates `dir` and any missing parents with mode 0700 (an existing directory is left as is).
pub(crate) fn create_key_dir(dir: &Path) -> Result<(), KeyFileError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))
}

/// Writes `der` as a PEM block labelled `label` to a new file with mode 0600, never overwriting
/// an existing file. The PEM text is zeroized after writing.
pub(crate) fn write_private_pem(path: &Path, label: &str, der: &[u8]) -> Result<(), KeyFileError> {
    write_new(path, pem(label, der).as_bytes(), 0o600)
}

/// Writes public material (a certificate) to a new file with mode 0644, never overwriting.
pub(crate) fn write_public(path: &Path, contents: &[u8]) -> Result<(), KeyFileError> {
    write_new(path, contents, 0o644)
}

/// Generates an Ed25519 record-signing key in `dir`: `record-signing.key` (0600) and
/// `record-signing.pub` (0644). Creates `dir` (0700) if needed; never overwrites.
pub fn generate_signing_key(dir: &Path) -> Result<VerifyingKey, KeyFileError> {
    generate_signing_key_as(dir, SIGNING_KEY_FILE, VERIFYING_KEY_FILE)
}

/// File names of the next record-signing key while a rotation is pending (`tfx member
/// rotate-key`); they replace [`SIGNING_KEY_FILE`] / [`VERIFYING_KEY_FILE`] once the roster lists
/// the new key.
pub const NEXT_SIGNING_KEY_FILE: &str = "record-signing.next.key";
pub const NEXT_VERIFYING_KEY_FILE: &str = "record-signing.next.pub";

/// [`generate_signing_key`] with chosen file names in `dir`.
pub fn generate_signing_key_as(
    dir: &Path,
    key_file: &str,
    pub_file: &str,
) -> Result<VerifyingKey, KeyFileError> {
    create_key_dir(dir)?;
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyFileError::Rng)?;
    let der = Zeroizing::new(pkcs8.as_ref().to_vec());
    let key_path = dir.join(key_file);
    let pub_path = dir.join(pub_file);
    if pub_path.exists() {
        return Err(KeyFileError::Exists { path: pub_path });
    }
    let key = SigningKey::from_pkcs8(&der).map_err(|e| KeyFileError::Format {
        path: key_path.clone(),
        reason: e.to_string(),
    })?;
    let private_pem = pem("PRIVATE KEY", &der);
    write_new(&key_path, private_pem.as_bytes(), 0o600)?;
    let public = *key.verifying_key();
    write_new(
        &pub_path,
        pem("PUBLIC KEY", &public.to_spki_der()).as_bytes(),
        0o644,
    )?;
    Ok(public)
}

/// Loads an Ed25519 private key (PKCS#8 PEM), refusing files readable by group or others.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let bytes = read_private(path)?;
    let der = PrivatePkcs8KeyDer::from_pem_slice(&bytes).map_err(|e| KeyFileError::Format {
        path: path.to_path_buf(),
        reason: format!("not a PKCS#8 PEM private key: {e}"),
    })?;
    let der = Zeroizing::new(der.secret_pkcs8_der().to_vec());
    SigningKey::from_pkcs8(&der).map_err(|e| KeyFileError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Loads an Ed25519 public key (SPKI PEM).
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyFileError> {
    let bytes = read_bounded(path)?;
    let format = |reason: String| KeyFileError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let spki = SubjectPublicKeyInfoDer::from_pem_slice(&bytes)
        .map_err(|e| format(format!("not a PEM public key: {e}")))?;
    VerifyingKey::from_spki_der(spki.as_ref()).map_err(|e| format(e.to_string()))
}

/// Writes a fresh 256-bit consortium pseudonym secret (64 hex digits, 0600).
pub fn generate_secret(path: &Path) -> Result<(), KeyFileError> {
    let mut secret = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(&mut secret[..])
        .map_err(|_| KeyFileError::Rng)?;
    write_secret(path, &secret[..])
}

/// Writes `secret` as 64 hex digits to a new file, 0600 (refuses to overwrite): pseudonym
/// secrets and X25519 delivery keys alike.
pub fn write_secret(path: &Path, secret: &[u8]) -> Result<(), KeyFileError> {
    let text = Zeroizing::new(format!("{}\n", hex::encode(secret)));
    write_new(path, text.as_bytes(), 0o600)
}

/// Loads a secret written by [`generate_secret`] or [`write_secret`].
pub fn load_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let bytes = read_private(path)?;
    let text = std::str::from_utf8(&bytes).unwrap_or_default().trim();
    let secret = hex::decode(text).map_err(|_| KeyFileError::Format {
        path: path.to_path_buf(),
        reason: "expected hex digits".into(),
    })?;
    Ok(Zeroizing::new(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_load_and_refuse_loose_permissions() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let public = generate_signing_key(dir.path())?;
        let key_path = dir.path().join(SIGNING_KEY_FILE);
        assert_eq!(fs::metadata(&key_path)?.permissions().mode() & 0o777, 0o600);
        assert_eq!(load_signing_key(&key_path)?.verifying_key(), &public);
        assert_eq!(
            load_verifying_key(&dir.path().join(VERIFYING_KEY_FILE))?,
            public
        );
        assert!(matches!(
            generate_signing_key(dir.path()),
            Err(KeyFileError::Exists { .. })
        ));
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o640))?;
        let err = load_signing_key(&key_path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("mode 0640") && err.contains("chmod 600"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn secrets() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("pseudonym.secret");
        generate_secret(&path)?;
        assert_eq!(load_secret(&path)?.len(), 32);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o604))?;
        assert!(matches!(
            load_secret(&path),
            Err(KeyFileError::LoosePermissions { mode: 0o604, .. })
        ));
        Ok(())
    }
}
