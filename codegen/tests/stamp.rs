//! The freshness guard: a spec edit without regeneration is caught.

mod support;

use std::fs;

use codegen::stamp;

#[test]
fn editing_a_spec_file_makes_the_stamp_stale() {
    let dir = support::copy_spec();
    let out = tempfile::tempdir().unwrap();
    let generated = out.path().join("mod.rs");
    let hash = stamp::spec_hash(dir.path()).unwrap();
    fs::write(
        &generated,
        format!("// Generated\n{}{hash}\n", stamp::STAMP_PREFIX),
    )
    .unwrap();
    stamp::check_stamps(dir.path(), &[generated.as_path()]).expect("fresh stamp passes");

    // Any edit, even a comment, changes the hash.
    let base = dir.path().join("amqp0-9-1.xml");
    let text = fs::read_to_string(&base).unwrap();
    fs::write(&base, format!("{text}\n<!-- edited -->\n")).unwrap();
    let err = stamp::check_stamps(dir.path(), &[generated.as_path()]).unwrap_err();
    assert!(
        err.starts_with("spec/ changed: run `cargo xtask codegen`"),
        "{err}"
    );
}

#[test]
fn line_endings_do_not_change_the_hash() {
    let dir = support::copy_spec();
    let before = stamp::spec_hash(dir.path()).unwrap();
    let base = dir.path().join("amqp0-9-1.xml");
    let text = fs::read_to_string(&base).unwrap();
    fs::write(&base, text.replace('\n', "\r\n")).unwrap();
    assert_eq!(stamp::spec_hash(dir.path()).unwrap(), before);
}

#[test]
fn the_checked_in_generated_code_is_fresh() {
    // The same check build.rs makes, over the repository's own files.
    let root = support::real_spec_dir().join("..");
    let gen_dir = root.join(codegen::GENERATED_DIR);
    let files: Vec<_> = fs::read_dir(&gen_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    assert!(files.len() >= 5, "generated files missing: {files:?}");
    let refs: Vec<_> = files.iter().map(|p| p.as_path()).collect();
    stamp::check_stamps(&support::real_spec_dir(), &refs).expect("stamps are current");
    // And the contents match what the generator writes now.
    for f in codegen::generate(&support::real_spec_dir()).unwrap() {
        let on_disk = fs::read_to_string(root.join(&f.path)).unwrap();
        assert!(
            on_disk == f.contents,
            "{} is stale: run `cargo xtask codegen`",
            f.path.display()
        );
    }
}
