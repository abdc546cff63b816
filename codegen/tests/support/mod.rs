//! Shared helpers for the generator's tests: a scratch copy of the real spec directory.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

/// The repository's `spec/` directory.
pub fn real_spec_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec")
}

/// A temporary copy of `spec/` (the `*.xml` files), removed when dropped.
pub fn copy_spec() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in fs::read_dir(real_spec_dir()).expect("read spec/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "xml") {
            fs::copy(&path, dir.path().join(path.file_name().unwrap())).expect("copy");
        }
    }
    dir
}

/// A spec directory holding exactly the given files.
pub fn spec_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        fs::write(dir.path().join(name), text).expect("write");
    }
    dir
}

/// Adds a `<layer>` for `file` to the manifest in `dir`, after the existing layers.
pub fn add_layer(dir: &Path, file: &str) {
    let manifest = dir.join("protocol.xml");
    let text = fs::read_to_string(&manifest).expect("manifest");
    let marker = "<peer-agent";
    let layer = format!("<layer file=\"{file}\"/>\n  ");
    let text = match text.find(marker) {
        Some(at) => format!("{}{layer}{}", &text[..at], &text[at..]),
        None => text.replace("</protocol>", &format!("{layer}</protocol>")),
    };
    fs::write(manifest, text).expect("write manifest");
}
