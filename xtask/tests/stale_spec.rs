//! Editing spec/ without regenerating breaks both `cargo xtask codegen --check` and
//! `cargo build`; regenerating fixes both. Runs on a scratch copy of the repository.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn xtask(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("XTASK_ROOT", root)
        .output()
        .unwrap()
}

fn cargo_check(root: &Path) -> Output {
    // A target dir of its own (kept between runs) so this does not wait on the lock
    // of the build running this test.
    let target = repo_root().join("target").join("stale-spec-check");
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["check", "--offline", "--quiet", "-p", "fedamq", "--lib"])
        .current_dir(root)
        .env("CARGO_TARGET_DIR", target)
        .env("CARGO_INCREMENTAL", "0")
        .output()
        .unwrap()
}

#[test]
fn a_spec_edit_without_codegen_fails_check_and_build_until_regenerated() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path();
    for dir in ["spec", "src", "codegen", "xtask", "tests", ".cargo"] {
        copy_dir(&repo_root().join(dir), &root.join(dir));
    }
    for file in ["Cargo.toml", "Cargo.lock", "build.rs"] {
        fs::copy(repo_root().join(file), root.join(file)).unwrap();
    }

    // The copy is fresh to begin with.
    let out = xtask(root, &["codegen", "--check"]);
    assert!(out.status.success(), "{}", text(&out));

    // Change a doc string in the base spec and do not regenerate.
    let spec = root.join("spec/amqp0-9-1.xml");
    let xml = fs::read_to_string(&spec).unwrap();
    let edited = xml.replacen("<doc>", "<doc>Edited. ", 1);
    assert_ne!(xml, edited);
    fs::write(&spec, edited).unwrap();

    let out = xtask(root, &["codegen", "--check"]);
    assert!(!out.status.success(), "--check passed on a stale tree");
    assert!(
        text(&out).contains("stale: src/protocol/generated/"),
        "{}",
        text(&out)
    );

    let out = cargo_check(root);
    assert!(!out.status.success(), "the build passed on a stale tree");
    assert!(
        text(&out).contains("spec/ changed: run `cargo xtask codegen`"),
        "{}",
        text(&out)
    );

    // Regenerating makes both pass again.
    let out = xtask(root, &["codegen"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = xtask(root, &["codegen", "--check"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = cargo_check(root);
    assert!(out.status.success(), "{}", text(&out));
}
