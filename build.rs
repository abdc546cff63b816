//! Refuses to build when `spec/` changed but `cargo xtask codegen` was not run.
//!
//! The generated files carry the hash of the spec they were made from; this compares it
//! with the spec as it is now. It reads no XML, so a normal build needs no generator.

#[path = "codegen/src/stamp.rs"]
mod stamp;

use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec = root.join("spec");
    let generated_dir = root.join("src/protocol/generated");
    println!("cargo::rerun-if-changed=spec");
    println!("cargo::rerun-if-changed=src/protocol/generated");
    let mut files: Vec<_> = std::fs::read_dir(&generated_dir)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "rs"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    if files.is_empty() {
        println!(
            "cargo::error=no generated code in src/protocol/generated: run `cargo xtask codegen`"
        );
        return;
    }
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    if let Err(msg) = stamp::check_stamps(&spec, &refs) {
        println!("cargo::error={msg}");
    }
}
