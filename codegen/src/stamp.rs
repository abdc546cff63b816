//! The spec hash stamped into generated files, and the check that it is current.
//!
//! Shared by the generator (which writes the stamp) and the broker's `build.rs` (which
//! includes this file with `#[path]` and refuses to build when the spec changed but the
//! generated code was not rewritten). It therefore depends on nothing but `std` and `sha2`.

use std::fs;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

/// The comment line in every generated file that carries the hash.
pub const STAMP_PREFIX: &str = "// spec-hash: ";

/// SHA-256 over every `*.xml` file in `spec_dir`, taken in name order, each as its name,
/// a NUL, its text with line endings normalised to `\n`, and a NUL.
pub fn spec_hash(spec_dir: &Path) -> io::Result<String> {
    let mut names: Vec<String> = fs::read_dir(spec_dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".xml"))
        .collect();
    names.sort();
    let mut hasher = Sha256::new();
    for name in &names {
        let text = fs::read_to_string(spec_dir.join(name))?;
        hasher.update(name.as_bytes());
        hasher.update([0u8]);
        hasher.update(text.replace("\r\n", "\n").as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// The hash a generated file was stamped with, if it has a stamp line.
pub fn read_stamp(generated: &str) -> Option<&str> {
    generated
        .lines()
        .take(10)
        .find_map(|l| l.strip_prefix(STAMP_PREFIX))
        .map(str::trim)
}

/// Ok if every listed generated file carries the current hash of `spec_dir`.
pub fn check_stamps(spec_dir: &Path, generated: &[&Path]) -> Result<(), String> {
    let want =
        spec_hash(spec_dir).map_err(|e| format!("cannot read {}: {e}", spec_dir.display()))?;
    for file in generated {
        let text = fs::read_to_string(file)
            .map_err(|e| format!("{}: {e}; run `cargo xtask codegen`", file.display()))?;
        match read_stamp(&text) {
            Some(have) if have == want => {}
            _ => {
                return Err(format!(
                    "spec/ changed: run `cargo xtask codegen` ({} is stale)",
                    file.display()
                ));
            }
        }
    }
    Ok(())
}
