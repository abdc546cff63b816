//! The protocol code generator: spec XML -> checked model -> Rust.
//!
//! `cargo xtask codegen` calls [`generate`] and writes the files it returns;
//! `cargo xtask codegen --check` compares them with what is checked in. The pipeline:
//!
//! 1. [`spec::read_manifest`] reads `spec/protocol.xml`, the list of layers in merge order;
//! 2. [`spec::load_layers`] reads each layer ([`xml`]), merges them and checks the result
//!    into a [`model::Spec`] (every problem an [`Error`] with file and line);
//! 3. [`peer::load`] reads the peer agent's state machines against that model, and
//!    [`machine::load`] each event-driven state machine (`<state-machine>`), listed in
//!    the manifest or, by [`machine::load_embedded`], inside the peer agent's file;
//! 4. the emitters in [`emit`] and [`peer`] turn the model into token streams, which are
//!    formatted (prettyplease, then rustfmt so `cargo fmt --check` agrees) and stamped
//!    with the spec's hash ([`stamp`]).

pub mod emit;
pub mod error;
pub mod machine;
pub mod model;
pub mod naming;
pub mod peer;
pub mod spec;
pub mod stamp;
pub mod xml;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use proc_macro2::TokenStream;

pub use error::{Error, Loc, Result};

/// Where generated Rust goes, relative to the repository root.
pub const GENERATED_DIR: &str = "src/protocol/generated";
/// Where the peer agent's diagram goes, relative to the repository root.
pub const PEER_DIAGRAM: &str = "spec/amq_peer.md";
/// Where the generated proptest strategies go (used by the broker's tests only).
pub const ARBITRARY: &str = "tests/support/arbitrary.rs";
/// Test overlays: tunnel services the tests define, relative to the repository root.
/// Each is merged over the broker's spec for checking, but its Rust goes to
/// [`TEST_GENERATED_DIR`], not into the broker.
pub const TEST_OVERLAYS: &str = "tests/overlays";
/// Where a test overlay's generated Rust goes: `tunnel-counter.xml` gives
/// `tunnel_counter.rs`.
pub const TEST_GENERATED_DIR: &str = "tests/support/generated";

/// One file the generator writes, with its path relative to the repository root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: PathBuf,
    pub contents: String,
}

/// Everything read from a spec directory.
pub struct Loaded {
    pub spec: model::Spec,
    pub peer: Option<peer::PeerAgent>,
    pub machines: Vec<machine::Machine>,
}

/// Reads, merges and checks the spec in `spec_dir`.
pub fn load(spec_dir: &Path) -> Result<Loaded> {
    let manifest = spec::read_manifest(spec_dir)?;
    let spec = spec::load_layers(&manifest.layers)?;
    let peer = match &manifest.peer_agent {
        Some(path) => Some(peer::load(path, &spec)?),
        None => None,
    };
    let mut machines = manifest
        .state_machines
        .iter()
        .map(|p| machine::load(p))
        .collect::<Result<Vec<_>>>()?;
    // Machines that belong with the peer agent sit in its file.
    if let Some(path) = &manifest.peer_agent {
        machines.extend(machine::load_embedded(path)?);
    }
    if let Some((a, b)) = machines.iter().enumerate().find_map(|(i, a)| {
        machines[i + 1..]
            .iter()
            .find(|b| b.module() == a.module())
            .map(|b| (a, b))
    }) {
        return Err(Error::spec(
            &b.states[0].loc,
            format!(
                "two state machines make the module {} ({} and {})",
                a.module(),
                a.file.display(),
                b.file.display()
            ),
        ));
    }
    Ok(Loaded {
        spec,
        peer,
        machines,
    })
}

/// Generates every file from the spec in `spec_dir`.
pub fn generate(spec_dir: &Path) -> Result<Vec<GeneratedFile>> {
    let loaded = load(spec_dir)?;
    let hash = stamp::spec_hash(spec_dir).map_err(|source| Error::Io {
        path: spec_dir.to_path_buf(),
        source,
    })?;
    let spec = &loaded.spec;
    let mut modules: Vec<(&str, &str, TokenStream)> = vec![
        (
            "constants",
            "Protocol constants and the reply codes.",
            emit::constants::emit(spec),
        ),
        (
            "methods",
            "One struct per method, the `Method` enum and per-method metadata.",
            emit::methods::emit(spec),
        ),
        (
            "properties",
            "Content-header properties.",
            emit::properties::emit(spec),
        ),
        (
            "dispatch",
            "Handler traits per class and receiving side, and the dispatch functions.",
            emit::dispatch::emit(spec),
        ),
        (
            "services",
            "Tunnel services: per service class, the trait its implementation provides.",
            emit::services::emit(spec),
        ),
    ];
    if let Some(agent) = &loaded.peer {
        modules.push((
            "peer_agent",
            "The peer agent: the client side of a connection as state machines.",
            peer::emit_rust(agent, spec),
        ));
    }
    let machine_modules: Vec<(String, String, TokenStream)> = loaded
        .machines
        .iter()
        .map(|m| {
            (
                m.module(),
                format!("The `{}` state machine (event-driven).", m.name),
                machine::emit_rust(m),
            )
        })
        .collect();
    for (name, doc, tokens) in &machine_modules {
        modules.push((name, doc, tokens.clone()));
    }
    // Alphabetical, as rustfmt orders `mod` items.
    modules.sort_by_key(|(name, _, _)| *name);
    let mut files = Vec::new();
    let mut mod_rs = String::new();
    for (name, doc, tokens) in &modules {
        let text = format_rust(name, tokens)?;
        files.push(GeneratedFile {
            path: Path::new(GENERATED_DIR).join(format!("{name}.rs")),
            contents: format!("{}{text}", preamble(&hash, doc)),
        });
        mod_rs.push_str(&format!("pub mod {name};\n"));
    }
    let mod_doc = format!(
        "//! The protocol layer generated from `spec/` (AMQP {}-{}-{} plus overlays).\n\n",
        spec.major, spec.minor, spec.revision
    );
    files.push(GeneratedFile {
        path: Path::new(GENERATED_DIR).join("mod.rs"),
        contents: format!("{}{mod_doc}{mod_rs}", preamble_plain(&hash)),
    });
    files.push(GeneratedFile {
        path: PathBuf::from(ARBITRARY),
        contents: format!(
            "{}{}",
            preamble(
                &hash,
                "Proptest strategies for every method and for the content properties."
            ),
            format_rust("arbitrary", &emit::arbitrary::emit(spec))?
        ),
    });
    files.extend(test_overlays(spec_dir, &hash)?);
    if let Some(agent) = &loaded.peer {
        files.push(GeneratedFile {
            path: PathBuf::from(PEER_DIAGRAM),
            contents: format!(
                "<!-- Generated by `cargo xtask codegen` from spec/; do not edit. spec-hash: {hash} -->\n\n{}",
                peer::emit_mermaid(agent)
            ),
        });
    }
    for m in &loaded.machines {
        files.push(GeneratedFile {
            path: m.diagram_path(),
            contents: format!(
                "<!-- Generated by `cargo xtask codegen` from spec/; do not edit. spec-hash: {hash} -->\n\n{}",
                machine::emit_mermaid(m)
            ),
        });
    }
    Ok(files)
}

/// The Rust of each test overlay (`tests/overlays/*.xml` beside `spec_dir`): the
/// service classes it adds, checked as merged over the broker's spec.
fn test_overlays(spec_dir: &Path, hash: &str) -> Result<Vec<GeneratedFile>> {
    let Some(dir) = spec_dir.parent().map(|root| root.join(TEST_OVERLAYS)) else {
        return Ok(Vec::new());
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut overlays: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    overlays.sort();
    let manifest = spec::read_manifest(spec_dir)?;
    let base = spec::load_layers(&manifest.layers)?;
    let mut files = Vec::new();
    for overlay in overlays {
        let mut layers = manifest.layers.clone();
        layers.push(overlay.clone());
        let merged = spec::load_layers(&layers)?;
        let added: Vec<&model::Class> = merged
            .classes
            .iter()
            .filter(|c| c.is_service() && !base.classes.iter().any(|b| b.index == c.index))
            .collect();
        let file_name = overlay
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = file_name.trim_end_matches(".xml").replace('-', "_");
        let doc = format!(
            "The tunnel services of the test overlay `{TEST_OVERLAYS}/{file_name}`, for the tests only (the broker carries them without knowing them)."
        );
        let text = format_rust(&stem, &emit::services::emit_external(&added))?;
        files.push(GeneratedFile {
            path: Path::new(TEST_GENERATED_DIR).join(format!("{stem}.rs")),
            contents: format!("{}{text}", preamble(hash, &doc)),
        });
    }
    Ok(files)
}

fn preamble_plain(hash: &str) -> String {
    format!(
        "// Generated by `cargo xtask codegen` from spec/ — do not edit.\n{}{hash}\n\n",
        stamp::STAMP_PREFIX
    )
}

fn preamble(hash: &str, doc: &str) -> String {
    format!("{}//! {doc}\n\n", preamble_plain(hash))
}

/// prettyplease for layout, then rustfmt so the result is what `cargo fmt` would keep.
fn format_rust(what: &str, tokens: &TokenStream) -> Result<String> {
    let file: syn::File = syn::parse2(tokens.clone()).map_err(|e| Error::Emit {
        what: what.to_string(),
        msg: e.to_string(),
    })?;
    let pretty = space_items(&prettyplease::unparse(&file));
    rustfmt(&pretty).map_err(|msg| Error::Emit {
        what: what.to_string(),
        msg,
    })
}

/// A blank line between top-level items (prettyplease packs them), for readable diffs.
fn space_items(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let mut prev = "";
    for line in text.lines() {
        let top_level_start = !line.is_empty() && !line.starts_with([' ', '}', ')', ']']);
        let after_block = prev == "}";
        let after_uses = prev.starts_with("use ") && !line.starts_with("use ");
        if top_level_start && (after_block || after_uses) {
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
        prev = line;
    }
    out
}

fn rustfmt(text: &str) -> std::result::Result<String, String> {
    let mut child = Command::new(std::env::var("RUSTFMT").unwrap_or_else(|_| "rustfmt".into()))
        .args(["--edition", "2024", "--emit", "stdout", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run rustfmt: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("rustfmt has no stdin")?;
    let input = text.to_string();
    // Write from another thread so a large file cannot deadlock on full pipes.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("rustfmt failed: {e}"))?;
    writer
        .join()
        .map_err(|_| "rustfmt writer panicked".to_string())?
        .map_err(|e| format!("writing to rustfmt: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "rustfmt failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("rustfmt output: {e}"))
}
