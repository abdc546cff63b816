//! Event-driven state machines: `<state-machine>` files (format in the header comment of
//! `spec/ha.xml`), or `<state-machine>` elements inside another spec file such as
//! `spec/amq_peer.xml` ([`load_embedded`]), read into a checked [`Machine`], then written as Rust (an enum of
//! states, of events and of actions, a trait of guards and a pure transition function)
//! and as a Mermaid diagram with a table.
//!
//! Generic on purpose: nothing here knows what a machine is for. The runtime that
//! drives one feeds it events, answers its guards and performs its actions; the
//! machine itself holds no time, no I/O and no state but the one it is given.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;
use quote::quote;

use crate::emit::{doc_attrs, doc_text};
use crate::error::{Error, Loc, Result};
use crate::naming;
use crate::xml::{self, Element};

/// A named thing of a machine (state, event, guard or action) with its doc.
#[derive(Debug, Clone)]
pub struct Item {
    pub name: String,
    pub doc: Option<String>,
    pub loc: Loc,
}

/// A guard as a transition uses it: `!name` negates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub guard: String,
    pub holds: bool,
}

#[derive(Debug, Clone)]
pub struct Transition {
    pub from: String,
    pub event: String,
    pub when: Vec<Condition>,
    pub to: String,
    pub actions: Vec<String>,
    pub doc: Option<String>,
    pub loc: Loc,
}

/// One checked state machine.
#[derive(Debug, Clone)]
pub struct Machine {
    pub name: String,
    /// The XML file it was read from (named in the diagram).
    pub file: PathBuf,
    /// Whether it is an element inside `file` rather than the whole file.
    pub embedded: bool,
    pub doc: Option<String>,
    pub states: Vec<Item>,
    pub initial: String,
    pub events: Vec<Item>,
    pub guards: Vec<Item>,
    pub actions: Vec<Item>,
    pub transitions: Vec<Transition>,
}

impl Machine {
    /// The generated module's name: `ha` gives `ha_machine`.
    pub fn module(&self) -> String {
        format!("{}_machine", naming::field(&self.name))
    }

    /// Where its diagram goes, relative to the repository root: beside its XML, as
    /// `<file>.md`, or `<file>-<name>.md` for a machine inside another file.
    pub fn diagram_path(&self) -> PathBuf {
        let stem = self
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.name.clone());
        if self.embedded {
            Path::new("spec").join(format!("{stem}-{}.md", self.name))
        } else {
            Path::new("spec").join(format!("{stem}.md"))
        }
    }
}

/// Reads and checks the machine in `path`.
pub fn load(path: &Path) -> Result<Machine> {
    let root = xml::read_file(path)?;
    read(path, &root, false)
}

/// Reads and checks every `<state-machine>` among the children of the root of `path`
/// (a file of another kind, such as the peer agent's), in file order.
pub fn load_embedded(path: &Path) -> Result<Vec<Machine>> {
    let root = xml::read_file(path)?;
    embedded(path, &root)
}

fn embedded(path: &Path, root: &Element) -> Result<Vec<Machine>> {
    let mut out: Vec<Machine> = Vec::new();
    for el in root.children_named("state-machine") {
        let m = read(path, el, true)?;
        if out.iter().any(|o| o.name == m.name) {
            return Err(Error::spec(
                &el.loc,
                format!("a second state machine named {}", m.name),
            ));
        }
        out.push(m);
    }
    Ok(out)
}

fn read(path: &Path, root: &Element, embedded: bool) -> Result<Machine> {
    if root.name != "state-machine" {
        return Err(Error::spec(
            &root.loc,
            "a state machine file's root must be <state-machine>",
        ));
    }
    root.only_attrs(&["name"])?;
    root.only_children(&["doc", "state", "event", "guard", "action", "transition"])?;
    let name = root.required("name")?.to_string();
    check_name(&root.loc, &name)?;
    let items = |kind: &str| -> Result<Vec<Item>> {
        let mut out: Vec<Item> = Vec::new();
        for el in root.children_named(kind) {
            if kind == "state" {
                el.only_attrs(&["name", "initial"])?;
            } else {
                el.only_attrs(&["name"])?;
            }
            el.only_children(&["doc"])?;
            let name = el.required("name")?.to_string();
            check_name(&el.loc, &name)?;
            if let Some(prev) = out.iter().find(|i| i.name == name) {
                return Err(Error::clash(
                    &el.loc,
                    &prev.loc,
                    format!("{kind} {name} is declared twice"),
                ));
            }
            out.push(Item {
                name,
                doc: el.doc(),
                loc: el.loc.clone(),
            });
        }
        Ok(out)
    };
    let states = items("state")?;
    let events = items("event")?;
    let guards = items("guard")?;
    let actions = items("action")?;
    if states.is_empty() {
        return Err(Error::spec(&root.loc, "a state machine needs a <state>"));
    }
    let mut initial = None;
    for el in root.children_named("state") {
        if el.flag("initial")? {
            if initial.is_some() {
                return Err(Error::spec(&el.loc, "a second initial state"));
            }
            initial = Some(el.required("name")?.to_string());
        }
    }
    let initial =
        initial.ok_or_else(|| Error::spec(&root.loc, "no state is marked initial=\"1\""))?;

    let known = |list: &[Item], kind: &str, name: &str, loc: &Loc| -> Result<()> {
        if list.iter().any(|i| i.name == name) {
            Ok(())
        } else {
            Err(Error::spec(loc, format!("unknown {kind} {name}")))
        }
    };
    let mut transitions: Vec<Transition> = Vec::new();
    for el in root.children_named("transition") {
        el.only_attrs(&["from", "event", "when", "to", "do"])?;
        el.only_children(&["doc"])?;
        let loc = el.loc.clone();
        let from = el.required("from")?.to_string();
        known(&states, "state", &from, &loc)?;
        let event = el.required("event")?.to_string();
        known(&events, "event", &event, &loc)?;
        let to = el.attr("to").unwrap_or(&from).to_string();
        known(&states, "state", &to, &loc)?;
        let mut when = Vec::new();
        for word in el.attr("when").unwrap_or("").split_whitespace() {
            let (guard, holds) = match word.strip_prefix('!') {
                Some(g) => (g, false),
                None => (word, true),
            };
            known(&guards, "guard", guard, &loc)?;
            when.push(Condition {
                guard: guard.to_string(),
                holds,
            });
        }
        let mut acts = Vec::new();
        for word in el.attr("do").unwrap_or("").split_whitespace() {
            known(&actions, "action", word, &loc)?;
            acts.push(word.to_string());
        }
        if let Some(prev) = transitions
            .iter()
            .find(|t| t.from == from && t.event == event && t.when.is_empty())
        {
            return Err(Error::clash(
                &loc,
                &prev.loc,
                format!(
                    "this transition from {from} on {event} can never be taken: an earlier one has no guard"
                ),
            ));
        }
        transitions.push(Transition {
            from,
            event,
            when,
            to,
            actions: acts,
            doc: el.doc(),
            loc,
        });
    }
    let machine = Machine {
        name,
        file: path.to_path_buf(),
        embedded,
        doc: root.doc(),
        states,
        initial,
        events,
        guards,
        actions,
        transitions,
    };
    check_used(&machine)?;
    Ok(machine)
}

fn check_name(loc: &Loc, name: &str) -> Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::spec(
            loc,
            format!("name {name:?}: use lower-case letters, digits and '-'"),
        ))
    }
}

/// Every state reachable from the initial one; every event, guard and action used.
fn check_used(m: &Machine) -> Result<()> {
    let mut reached: BTreeSet<&str> = BTreeSet::from([m.initial.as_str()]);
    loop {
        let before = reached.len();
        for t in &m.transitions {
            if reached.contains(t.from.as_str()) {
                reached.insert(t.to.as_str());
            }
        }
        if reached.len() == before {
            break;
        }
    }
    for s in &m.states {
        if !reached.contains(s.name.as_str()) {
            return Err(Error::spec(
                &s.loc,
                format!("state {} is never reached", s.name),
            ));
        }
    }
    for e in &m.events {
        if !m.transitions.iter().any(|t| t.event == e.name) {
            return Err(Error::spec(
                &e.loc,
                format!("event {} has no transition", e.name),
            ));
        }
    }
    for g in &m.guards {
        if !m
            .transitions
            .iter()
            .any(|t| t.when.iter().any(|c| c.guard == g.name))
        {
            return Err(Error::spec(
                &g.loc,
                format!("guard {} is used by no transition", g.name),
            ));
        }
    }
    for a in &m.actions {
        if !m.transitions.iter().any(|t| t.actions.contains(&a.name)) {
            return Err(Error::spec(
                &a.loc,
                format!("action {} is done by no transition", a.name),
            ));
        }
    }
    Ok(())
}

/// The Rust module: `State`, `Event`, `Action`, the `Guards` trait, `Step` and
/// `transition`.
pub fn emit_rust(m: &Machine) -> TokenStream {
    let file = m
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let machine_doc = doc_attrs(m.doc.as_deref());
    let enum_of = |items: &[Item], ty: &str, what: &str| -> TokenStream {
        let ty = naming::type_name(ty);
        let doc = doc_text(&format!("The {what} of the `{}` machine ({file}).", m.name));
        let variants = items.iter().map(|i| {
            let v = naming::type_name(&i.name);
            let d = doc_attrs(i.doc.as_deref());
            quote! { #d #v, }
        });
        let all = items.iter().map(|i| naming::type_name(&i.name));
        let names = items.iter().map(|i| {
            let v = naming::type_name(&i.name);
            let n = &i.name;
            quote! { #ty::#v => #n, }
        });
        let parse = items.iter().map(|i| {
            let v = naming::type_name(&i.name);
            let n = &i.name;
            quote! { #n => Some(#ty::#v), }
        });
        quote! {
            #doc
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
            pub enum #ty { #(#variants)* }

            impl #ty {
                /// Every one, in spec order.
                pub const ALL: &[#ty] = &[#(#ty::#all),*];

                /// Its name in the spec.
                pub fn name(self) -> &'static str {
                    match self { #(#names)* }
                }

                /// The one named `name` in the spec.
                #[allow(clippy::match_single_binding)] // a machine without actions
                pub fn from_name(name: &str) -> Option<#ty> {
                    match name { #(#parse)* _ => None }
                }
            }

            impl std::fmt::Display for #ty {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str(self.name())
                }
            }
        }
    };
    let states = enum_of(&m.states, "state", "states");
    let events = enum_of(&m.events, "event", "events");
    let actions = enum_of(&m.actions, "action", "actions");
    let initial = naming::type_name(&m.initial);
    let guard_fns = m.guards.iter().map(|g| {
        let f = naming::field(&g.name);
        let d = doc_attrs(g.doc.as_deref());
        quote! { #d fn #f(&self) -> bool; }
    });
    let guards_doc = doc_text(&format!(
        "The questions the `{}` machine asks its runtime. Each is asked only when a transition depends on it, in the order the transition lists them.",
        m.name
    ));

    // One arm per (state, event) in spec order, trying its transitions in file order.
    let mut order: Vec<(&str, &str)> = Vec::new();
    for t in &m.transitions {
        if !order.contains(&(t.from.as_str(), t.event.as_str())) {
            order.push((t.from.as_str(), t.event.as_str()));
        }
    }
    let arms = order.iter().map(|(from, event)| {
        let s = naming::type_name(from);
        let e = naming::type_name(event);
        let tries = m
            .transitions
            .iter()
            .filter(|t| t.from == *from && t.event == *event)
            .map(|t| {
                let to = naming::type_name(&t.to);
                let acts = t.actions.iter().map(|a| naming::type_name(a));
                let step = quote! {
                    return Some(Step { next: State::#to, actions: &[#(Action::#acts),*] });
                };
                if t.when.is_empty() {
                    step
                } else {
                    let conds = t.when.iter().map(|c| {
                        let f = naming::field(&c.guard);
                        if c.holds {
                            quote!(guards.#f())
                        } else {
                            quote!(!guards.#f())
                        }
                    });
                    quote! { if #(#conds)&&* { #step } }
                }
            });
        let falls_through = m
            .transitions
            .iter()
            .filter(|t| t.from == *from && t.event == *event)
            .all(|t| !t.when.is_empty());
        let tail = if falls_through {
            quote!(None)
        } else {
            TokenStream::new()
        };
        quote! {
            (State::#s, Event::#e) => { #(#tries)* #tail }
        }
    });
    let fn_doc = doc_text(&format!(
        "What `event` does in `state`: the next state and the actions to take, in order, or None when the event changes nothing there. Pure: it asks `guards` and nothing else. The transitions are those of {file}."
    ));
    let table = m.transitions.iter().map(|t| {
        let s = naming::type_name(&t.from);
        let e = naming::type_name(&t.event);
        let to = naming::type_name(&t.to);
        quote! { (State::#s, Event::#e, State::#to) }
    });
    quote! {
        #machine_doc
        #states
        #events
        #actions

        impl State {
            /// Where the machine starts.
            pub const INITIAL: State = State::#initial;
        }

        #guards_doc
        pub trait Guards {
            #(#guard_fns)*
        }

        /// One transition taken.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct Step {
            pub next: State,
            pub actions: &'static [Action],
        }

        #fn_doc
        #[allow(unreachable_code, unused_variables, clippy::needless_return)]
        pub fn transition(state: State, event: Event, guards: &impl Guards) -> Option<Step> {
            match (state, event) {
                #(#arms)*
                _ => None,
            }
        }

        /// Every transition as (from, event, to), in spec order, for tests and tools.
        pub const TRANSITIONS: &[(State, Event, State)] = &[#(#table),*];
    }
}

/// The Markdown page: the machine's doc, a Mermaid diagram and a table of transitions.
pub fn emit_mermaid(m: &Machine) -> String {
    let file = m
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "# The `{}` state machine\n", m.name);
    let _ = writeln!(
        out,
        "Drawn from `spec/{file}`, like the Rust in `src/protocol/generated/{}.rs`.\n",
        m.module()
    );
    if let Some(doc) = &m.doc {
        let _ = writeln!(out, "{}\n", one_line(doc));
    }
    let _ = writeln!(
        out,
        "Edges are labelled `event [guards] / actions`; `!guard` means the guard does not hold. For one state and event the transitions are tried in the order of the table below; an event a state does not list changes nothing.\n"
    );
    let id = |s: &str| format!("s_{}", s.replace('-', "_"));
    let _ = writeln!(out, "```mermaid\nstateDiagram-v2");
    for s in &m.states {
        let _ = writeln!(out, "    state \"{}\" as {}", s.name, id(&s.name));
    }
    let _ = writeln!(out, "    [*] --> {}", id(&m.initial));
    // One edge per (from, to), its labels joined, so the diagram stays readable.
    let mut edges: Vec<((String, String), Vec<String>)> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for t in &m.transitions {
        let key = (t.from.clone(), t.to.clone());
        let label = label(t);
        match index.get(&key) {
            Some(&i) => edges[i].1.push(label),
            None => {
                index.insert(key.clone(), edges.len());
                edges.push((key, vec![label]));
            }
        }
    }
    for ((from, to), labels) in &edges {
        let _ = writeln!(
            out,
            "    {} --> {} : {}",
            id(from),
            id(to),
            labels.join("<br/>")
        );
    }
    let _ = writeln!(out, "```\n");
    let section = |out: &mut String, title: &str, items: &[Item]| {
        let _ = writeln!(out, "| {title} | meaning |\n|---|---|");
        for i in items {
            let mark = if title == "state" && i.name == m.initial {
                " (initial)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "| **{}**{mark} | {} |",
                i.name,
                i.doc.as_deref().map(one_line).unwrap_or_default()
            );
        }
        let _ = writeln!(out);
    };
    section(&mut out, "state", &m.states);
    section(&mut out, "event", &m.events);
    section(&mut out, "guard", &m.guards);
    section(&mut out, "action", &m.actions);
    let _ = writeln!(
        out,
        "| state | event | guards | next | actions | why |\n|---|---|---|---|---|---|"
    );
    for t in &m.transitions {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            t.from,
            t.event,
            or_dash(&conditions(t)),
            t.to,
            or_dash(&t.actions.join(", ")),
            t.doc.as_deref().map(one_line).unwrap_or_default()
        );
    }
    out
}

fn conditions(t: &Transition) -> String {
    t.when
        .iter()
        .map(|c| {
            if c.holds {
                c.guard.clone()
            } else {
                format!("!{}", c.guard)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn label(t: &Transition) -> String {
    let mut l = t.event.clone();
    let c = conditions(t);
    if !c.is_empty() {
        l.push_str(&format!(" [{c}]"));
    }
    if !t.actions.is_empty() {
        l.push_str(&format!(" / {}", t.actions.join(", ")));
    }
    l
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "—".into() } else { s.into() }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Machine> {
        let path = Path::new("m.xml");
        read(path, &xml::parse(path, text)?, false)
    }

    const OK: &str = r#"<state-machine name="door">
        <state name="shut" initial="1"/><state name="open"/>
        <event name="push"/><guard name="unlocked"/><action name="creak"/>
        <transition from="shut" event="push" when="unlocked" to="open" do="creak"/>
        <transition from="open" event="push" when="!unlocked" to="shut"/>
    </state-machine>"#;

    #[test]
    fn reads_a_machine() {
        let m = parse(OK).unwrap();
        assert_eq!(m.initial, "shut");
        assert_eq!(m.transitions.len(), 2);
        assert!(!m.transitions[1].when[0].holds);
        assert_eq!(m.module(), "door_machine");
        assert!(emit_mermaid(&m).contains("s_shut --> s_open : push [unlocked] / creak"));
        assert!(emit_rust(&m).to_string().contains("fn unlocked"));
    }

    #[test]
    fn reads_machines_inside_another_file() {
        let path = Path::new("spec/host.xml");
        let text = format!("<host><other/>{OK}</host>");
        let ms = embedded(path, &xml::parse(path, &text).unwrap()).unwrap();
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].module(), "door_machine");
        assert_eq!(ms[0].diagram_path(), Path::new("spec/host-door.md"));
        assert!(emit_mermaid(&ms[0]).contains("spec/host.xml"));
        assert_eq!(parse(OK).unwrap().diagram_path(), Path::new("spec/m.md"));

        let twice = format!("<host>{OK}{OK}</host>");
        let err = embedded(path, &xml::parse(path, &twice).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("a second state machine named door"), "{err}");
        let none = embedded(path, &xml::parse(path, "<host/>").unwrap()).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn the_peer_agent_file_holds_the_tunnel_machine() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/amq_peer.xml");
        let ms = load_embedded(&path).unwrap();
        let tunnel = ms
            .iter()
            .find(|m| m.name == "tunnel")
            .expect("tunnel machine");
        assert_eq!(tunnel.initial, "inactive");
        let states: Vec<&str> = tunnel.states.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            states,
            [
                "inactive", "opening", "open", "retrying", "failed", "closed"
            ]
        );
        assert_eq!(tunnel.diagram_path(), Path::new("spec/amq_peer-tunnel.md"));
        // Closed is final.
        assert!(!tunnel.transitions.iter().any(|t| t.from == "closed"));
    }

    #[test]
    fn refuses_bad_machines() {
        let cases = [
            (OK.replace("initial=\"1\"", ""), "initial"),
            (
                OK.replace("to=\"open\"", "to=\"ajar\""),
                "unknown state ajar",
            ),
            (
                OK.replace(r#"when="unlocked" to="open""#, r#"when="unlocked""#),
                "never reached",
            ),
            (
                OK.replace(
                    r#"<transition from="shut""#,
                    r#"<transition from="shut" event="push"/><transition from="shut""#,
                ),
                "never be taken",
            ),
            (OK.replace("do=\"creak\"", ""), "action creak"),
            (OK.replace("name=\"push\"", "name=\"Push\""), "lower-case"),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
