//! The activation epoch on disk: a number raised at every activation, so that when two
//! actives meet after a split the one that activated last is known. It must survive a
//! restart (a restarted broker must not reuse an epoch it already served under), so it
//! is written to a temporary file, synced, and renamed over the old one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The epoch file of one broker.
#[derive(Debug)]
pub struct EpochFile {
    path: PathBuf,
    value: u64,
}

impl EpochFile {
    /// Reads `path`; a missing file is epoch 0. A file that is not a number is an
    /// error rather than 0, so a damaged file cannot silently lose the epoch.
    pub fn open(path: &Path) -> std::io::Result<EpochFile> {
        let value = match fs::read_to_string(path) {
            Ok(text) => text.trim().parse::<u64>().map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: not an epoch number: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(EpochFile {
            path: path.to_path_buf(),
            value,
        })
    }

    /// The last epoch this broker activated with (0: never).
    pub fn get(&self) -> u64 {
        self.value
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Activates: the new epoch is above both ours and `seen` (the highest the peer
    /// announced), written and synced before it is returned.
    pub fn raise(&mut self, seen: u64) -> std::io::Result<u64> {
        let next = self.value.max(seen).saturating_add(1);
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = fs::File::create(&tmp)?;
            writeln!(f, "{next}")?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The rename itself is durable only once the directory is synced.
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.value = next;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("epoch");
        let mut e = EpochFile::open(&path).unwrap();
        assert_eq!(e.get(), 0);
        assert_eq!(e.raise(0).unwrap(), 1);
        assert_eq!(e.raise(5).unwrap(), 6);
        assert_eq!(EpochFile::open(&path).unwrap().get(), 6);
        fs::write(&path, "garbage").unwrap();
        assert!(EpochFile::open(&path).is_err());
    }
}
