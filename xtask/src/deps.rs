//! `cargo xtask deps [--check]`: the import graph of `src/` (the library), and a check
//! that it has no cycles.
//!
//! The house rule is "no import cycles": a module that uses another should not be used
//! by it, directly or around a loop, so that each can be read and changed on its own.
//! Rust compiles cycles happily, so this task is what holds the rule. It reads paths, not
//! types: every `crate::a::b`, `super::x` and path through a child module
//! (`child::item`) outside comments and `#[cfg(test)]` modules is an edge from the file's
//! module to the module the path names (the longest prefix that is a file in `src/`).
//! A path through a `pub use` is followed to where the item is defined, since a folder's
//! `mod.rs` that re-exports names only gathers them. Edges are checked at two levels:
//!
//! - between top-level modules (`auth`, `broker`, `config`, …);
//! - between sibling submodules of each folder module (`broker::queue`,
//!   `broker::vhost`, …). Edges between a folder's `mod.rs` and its own children are
//!   left out: the children are parts of that one module (an index of a routing table,
//!   the handshake of a connection), and a module may talk to its parts.
//!
//! [`KNOWN`] lists the cycles that are there today, each with its reason, so that the
//! check fails on every new one. Without `--check` the task prints the edges too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Cycles known and not yet removed: (scope, the modules in it, why). A cycle whose
/// modules all fall in one entry is reported but does not fail the check.
const KNOWN: &[(&str, &[&str], &str)] = &[];

/// A module's path below the crate root: `src/broker/queue.rs` is `["broker", "queue"]`.
type ModPath = Vec<String>;

/// Where an edge was seen, for the report.
#[derive(Debug, Clone)]
struct Site {
    file: String,
    line: usize,
}

pub fn main(root: &Path, args: &[&str]) -> ExitCode {
    let check = match args {
        [] => false,
        ["--check"] => true,
        _ => {
            eprintln!("usage: cargo xtask deps [--check]");
            return ExitCode::from(2);
        }
    };
    let src = root.join("src");
    let files = match library_files(&src) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {}: {e}", src.display());
            return ExitCode::FAILURE;
        }
    };
    let mut sources = Vec::new();
    for (path, module) in files {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let name = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                sources.push((name, module, text));
            }
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let graphs = graphs(&sources);
    let mut cycles = 0;
    for (scope, edges) in &graphs {
        if !check {
            for ((from, to), site) in edges {
                println!("{scope}: {from} -> {to}  ({}:{})", site.file, site.line);
            }
        }
        for cycle in cycles_of(edges) {
            let known = KNOWN.iter().find(|(s, members, _)| {
                s == scope && cycle.iter().all(|m| members.contains(&m.as_str()))
            });
            if let Some((_, _, why)) = known {
                if !check {
                    println!(
                        "known import cycle in {scope}: {} ({why})",
                        cycle.join(" -> ")
                    );
                }
                continue;
            }
            cycles += 1;
            eprintln!("import cycle in {scope}: {}", cycle.join(" -> "));
            for pair in cycle.windows(2) {
                if let Some(site) = edges.get(&(pair[0].clone(), pair[1].clone())) {
                    eprintln!("  {} -> {}: {}:{}", pair[0], pair[1], site.file, site.line);
                }
            }
        }
    }
    if cycles > 0 {
        eprintln!("{cycles} import cycle(s) in src/");
        return ExitCode::FAILURE;
    }
    if check {
        println!("no import cycles in src/");
    }
    ExitCode::SUCCESS
}

/// Every `.rs` file of the library with its module path (not `main.rs`, not `bin/`).
fn library_files(src: &Path) -> std::io::Result<Vec<(PathBuf, ModPath)>> {
    let mut out = Vec::new();
    let mut stack = vec![(src.to_path_buf(), Vec::<String>::new())];
    while let Some((dir, module)) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(String::from) else {
                continue;
            };
            if path.is_dir() {
                if module.is_empty() && name == "bin" {
                    continue;
                }
                let mut m = module.clone();
                m.push(name);
                stack.push((path, m));
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let mut m = module.clone();
                match stem {
                    "mod" => {}
                    "lib" | "main" if module.is_empty() => {
                        if stem == "main" {
                            continue;
                        }
                    }
                    _ => m.push(stem.to_string()),
                }
                out.push((path, m));
            }
        }
    }
    out.sort();
    Ok(out)
}

type Edges = BTreeMap<(String, String), Site>;

/// The edges at each level: "src" (top-level modules) and one graph per folder module.
fn graphs(sources: &[(String, ModPath, String)]) -> BTreeMap<String, Edges> {
    let modules: BTreeSet<ModPath> = sources.iter().map(|(_, m, _)| m.clone()).collect();
    let mut reexports = Reexports::new();
    for (_, module, text) in sources {
        reexports.extend(reexports_in(module, text));
    }
    let mut graphs: BTreeMap<String, Edges> = BTreeMap::new();
    for (file, module, text) in sources {
        if module.is_empty() {
            continue; // lib.rs declares the modules; it is no module's dependency.
        }
        for (line, target) in references(module, text, &modules, &reexports) {
            let site = Site {
                file: file.clone(),
                line,
            };
            // Top level.
            if target[0] != module[0] {
                graphs
                    .entry("src".into())
                    .or_default()
                    .entry((module[0].clone(), target[0].clone()))
                    .or_insert(site);
                continue;
            }
            // Inside each folder the two share: the first submodules that differ.
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            let folder = &module[..common];
            let node = |m: &ModPath| m[common].clone();
            // A folder's mod.rs and its own children are one module (see the module docs).
            if module.len() == common || target.len() == common {
                continue;
            }
            let (from, to) = (node(module), node(&target));
            if from != to {
                graphs
                    .entry(folder.join("::"))
                    .or_default()
                    .entry((from, to))
                    .or_insert(site);
            }
        }
    }
    graphs
}

/// The modules `text` (the file of `module`) refers to, with line numbers.
fn references(
    module: &ModPath,
    text: &str,
    modules: &BTreeSet<ModPath>,
    reexports: &Reexports,
) -> Vec<(usize, ModPath)> {
    let children: BTreeSet<&str> = modules
        .iter()
        .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
        .map(|m| m[module.len()].as_str())
        .collect();
    let mut out = Vec::new();
    for (i, line) in code_lines(text) {
        for path in paths_in(line) {
            let absolute = match path.first().map(String::as_str) {
                Some("crate") => path[1..].to_vec(),
                Some("super") => {
                    let ups = path.iter().take_while(|s| *s == "super").count();
                    if ups > module.len() {
                        continue;
                    }
                    let mut p = module[..module.len() - ups].to_vec();
                    p.extend_from_slice(&path[ups..]);
                    p
                }
                Some("self") => {
                    let mut p = module.clone();
                    p.extend_from_slice(&path[1..]);
                    p
                }
                Some(first) if children.contains(first) => {
                    let mut p = module.clone();
                    p.extend_from_slice(&path);
                    p
                }
                _ => continue,
            };
            let absolute = resolve(absolute, reexports);
            // The longest prefix that is a module file.
            let target = (1..=absolute.len())
                .rev()
                .map(|n| absolute[..n].to_vec())
                .find(|p| modules.contains(p));
            if let Some(target) = target {
                if !target.is_empty() && &target != module {
                    out.push((i + 1, target));
                }
            }
        }
    }
    out
}

/// `pub use` items: the path they are re-exported as, to the path they come from.
type Reexports = BTreeMap<ModPath, ModPath>;

/// A folder module's `pub use child::Item` makes `folder::Item` a name for
/// `folder::child::Item`: a user of that name depends on `child`, not on the folder's
/// `mod.rs`, which only gathers names.
fn reexports_in(module: &ModPath, text: &str) -> Reexports {
    let mut out = Reexports::new();
    let code: String = code_lines(text)
        .into_iter()
        .map(|(_, l)| l)
        .collect::<Vec<_>>()
        .join(" ");
    for statement in code.split(';') {
        let statement = statement.trim();
        let Some(rest) = statement
            .strip_prefix("pub use ")
            .or_else(|| statement.strip_prefix("pub(crate) use "))
        else {
            continue;
        };
        let rest: String = rest.split_whitespace().collect::<Vec<_>>().join(" ");
        let (prefix, items) = match rest.split_once("::{") {
            Some((prefix, group)) => (
                prefix.to_string(),
                group
                    .trim_end_matches('}')
                    .split(',')
                    .map(str::trim)
                    .collect(),
            ),
            None => match rest.rsplit_once("::") {
                Some((prefix, item)) => (prefix.to_string(), vec![item.trim()]),
                None => continue,
            },
        };
        let mut base: ModPath = match prefix.split("::").next() {
            Some("crate") => Vec::new(),
            Some("self") => module.clone(),
            Some("super") => module[..module.len().saturating_sub(1)].to_vec(),
            _ => module.clone(),
        };
        base.extend(
            prefix
                .split("::")
                .filter(|s| !matches!(*s, "crate" | "self" | "super"))
                .map(String::from),
        );
        for item in items {
            let (path, alias) = match item.split_once(" as ") {
                Some((path, alias)) => (path.trim(), alias.trim()),
                None => (item, item.rsplit("::").next().unwrap_or(item)),
            };
            if path.is_empty() || path == "*" || path.contains('{') {
                continue;
            }
            let mut from = base.clone();
            from.extend(path.split("::").map(String::from));
            let mut name = module.clone();
            name.push(alias.to_string());
            out.insert(name, from);
        }
    }
    out
}

/// Follows re-exports until the path names where the item is defined.
fn resolve(mut path: ModPath, reexports: &Reexports) -> ModPath {
    for _ in 0..8 {
        let hit = (1..=path.len())
            .rev()
            .find_map(|n| reexports.get(&path[..n]).map(|to| (n, to)));
        let Some((n, to)) = hit else {
            break;
        };
        let mut next = to.clone();
        next.extend_from_slice(&path[n..]);
        path = next;
    }
    path
}

/// The lines that are code: comments removed, and nothing from the first
/// `#[cfg(test)]` module on (a test module's imports are not the module's).
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines.get(i + 1).is_some_and(|next| {
                next.trim_start().starts_with("mod ")
                    || next.trim_start().starts_with("pub(crate) mod ")
                    || next.trim_start().starts_with("pub mod ")
            })
        {
            break;
        }
        let code = match line.find("//") {
            Some(p) => &line[..p],
            None => line,
        };
        out.push((i, code));
    }
    out
}

/// Every path in a line of code, with `{a, b::c}` groups expanded one level:
/// `use super::{a, b::c}` gives `super::a` and `super::b::c`. Only the first two
/// segments after a group matter here, so deeper groups are not expanded.
fn paths_in(line: &str) -> Vec<Vec<String>> {
    let bytes = line.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        // A path starts at an identifier not preceded by `::`, `.` or an identifier char.
        if !is_ident(bytes[i])
            || (i > 0 && (is_ident(bytes[i - 1]) || bytes[i - 1] == b'.'))
            || line[..i].ends_with("::")
        {
            i += 1;
            continue;
        }
        let mut segments = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < bytes.len() && is_ident(bytes[j]) {
                j += 1;
            }
            segments.push(line[start..j].to_string());
            if line[j..].starts_with("::") {
                j += 2;
                if line[j..].starts_with('{') {
                    let close = line[j..].find('}').map_or(line.len(), |p| j + p);
                    for item in line[j + 1..close].split(',') {
                        let first = item.trim().split("::").next().unwrap_or("").trim();
                        if !first.is_empty() && first.bytes().all(is_ident) {
                            let mut p = segments.clone();
                            p.push(first.to_string());
                            out.push(p);
                        }
                    }
                    j = close;
                    segments.clear();
                    break;
                }
                if j < bytes.len() && is_ident(bytes[j]) {
                    continue;
                }
            }
            break;
        }
        if segments.len() > 1 {
            out.push(segments);
        }
        i = j.max(i + 1);
    }
    out
}

/// Each strongly connected component of more than one node, as a loop through it
/// (first node repeated at the end).
fn cycles_of(edges: &Edges) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
        next.entry(to).or_default();
    }
    let reaches = |from: &str, to: &str| -> Option<Vec<String>> {
        // Breadth-first, keeping the parent of each node, for a shortest path.
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([from]);
        while let Some(n) = queue.pop_front() {
            for &m in &next[n] {
                if parent.contains_key(m) {
                    continue;
                }
                parent.insert(m, n);
                if m == to {
                    let mut path = vec![to.to_string()];
                    let mut at = to;
                    while at != from || path.len() == 1 {
                        at = parent[at];
                        path.push(at.to_string());
                        if at == from {
                            break;
                        }
                    }
                    path.reverse();
                    return Some(path);
                }
                queue.push_back(m);
            }
        }
        None
    };
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for &node in next.keys() {
        if seen.contains(node) {
            continue;
        }
        if let Some(cycle) = reaches(node, node) {
            seen.extend(cycle.iter().cloned());
            out.push(cycle);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> ModPath {
        s.split("::").map(String::from).collect()
    }

    fn edges(files: &[(&str, &str)]) -> BTreeMap<String, Edges> {
        let sources: Vec<_> = files
            .iter()
            .map(|(module, text)| (module.to_string(), m(module), text.to_string()))
            .collect();
        graphs(&sources)
    }

    #[test]
    fn paths_and_groups() {
        assert_eq!(
            paths_in("use super::{a, b::c, self};"),
            [
                vec!["super", "a"],
                vec!["super", "b"],
                vec!["super", "self"]
            ]
        );
        assert_eq!(
            paths_in("let x = crate::broker::dead_letter::is_cycle(&m);"),
            [vec!["crate", "broker", "dead_letter", "is_cycle"]]
        );
        assert!(paths_in("x.y::<u8>()").is_empty());
    }

    #[test]
    fn finds_a_sibling_cycle() {
        let g = edges(&[
            ("b::queue", "use super::vhost::VHost;"),
            ("b::vhost", "use super::consumer::X;"),
            ("b::consumer", "use crate::b::queue::Queue; // super::vhost"),
            ("b", ""),
        ]);
        let cycles = cycles_of(&g["b"]);
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].len(), 4);
    }

    #[test]
    fn comments_and_test_modules_do_not_count() {
        let g = edges(&[
            (
                "a",
                "// crate::b::x\n#[cfg(test)]\nmod tests {\n use crate::b::y;\n}",
            ),
            ("b", "use crate::a::z;"),
        ]);
        assert!(cycles_of(&g["src"]).is_empty());
        let g = edges(&[
            ("a", "fn f() { crate::b::x(); }"),
            ("b", "use crate::a::z;"),
        ]);
        assert_eq!(cycles_of(&g["src"]).len(), 1);
    }

    #[test]
    fn reexports_are_followed() {
        let g = edges(&[
            (
                "p",
                "pub use t::{FieldTable, Other as O};\npub use err::DecodeError;",
            ),
            ("p::t", "use super::DecodeError; use crate::p::t::X;"),
            ("p::err", "use crate::p::O;"),
        ]);
        // Followed through mod.rs's names, the two parts use each other.
        assert_eq!(cycles_of(&g["p"]).len(), 1);
        let pairs: Vec<_> = g["p"].keys().cloned().collect();
        assert!(pairs.contains(&("t".into(), "err".into())), "{pairs:?}");
        assert!(pairs.contains(&("err".into(), "t".into())), "{pairs:?}");
    }

    #[test]
    fn a_folder_and_its_children_are_one_module() {
        let g = edges(&[
            ("c", "use users::Users; fn f() { password::hash(); }"),
            ("c::users", "use super::Thing;"),
            ("c::password", "use super::users::Users;"),
            ("c::users::inner", "use super::super::password::X;"),
        ]);
        let pairs: Vec<_> = g["c"].keys().cloned().collect();
        assert_eq!(
            pairs,
            [
                ("password".to_string(), "users".to_string()),
                ("users".to_string(), "password".to_string())
            ]
        );
        assert_eq!(cycles_of(&g["c"]).len(), 1);
    }
}
