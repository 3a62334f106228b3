//! Crash-safe file writes shared by the node (adopted rosters) and the CLI (records, bundles,
//! configs): a temporary file in the same directory, fsync, rename, fsync of the directory.
//! Readers see the old or the new content, never a mix, and a crash loses nothing. Also how the
//! store opens its own files (owner-only).

use std::io;
use std::path::Path;

/// Replaces `path` atomically.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomically(path, bytes, true)
}

/// Writes `path` atomically, failing if it already exists.
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomically(path, bytes, false)
}

fn write_atomically(path: &Path, bytes: &[u8], overwrite: bool) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    io::Write::write_all(&mut tmp, bytes)?;
    tmp.as_file().sync_all()?;
    let persisted = if overwrite {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    persisted.map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Opens `path` for reading and writing, creating it with mode 0600 if it does not exist; an
/// existing file keeps its contents. For the store's own files, which may hold field values.
pub fn open_private_rw(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}
