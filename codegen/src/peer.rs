//! The peer agent: `spec/amq_peer.xml` read into a checked model, and the Rust and the
//! diagram generated from it.
//!
//! The peer agent is the client side of one AMQP connection (a peering is a client of a
//! remote server). The XML describes it as state machines, one per scope:
//!
//! - a `connection` machine for channel 0 (the connection class), and
//! - a `channel` machine, one instance per channel the owner opens.
//!
//! Each state lists the incoming methods legal in it (`<on>`), what the agent answers at
//! once, the next state and whether the method goes to the owner; `otherwise` says what
//! happens to every other incoming method (refused with a reply code, or discarded);
//! `<send>` and `requests` say what the owner may send in the state. The file's own
//! comment documents the format in full.
//!
//! [`load`] reads and checks the XML against the merged [`Spec`]; [`emit_rust`] writes
//! the machines as exhaustive matches (no wildcard arm, so every state × method pair is
//! decided by the generator), the owner trait, the tables and tests walking every pair;
//! [`emit_mermaid`] writes the Markdown document with one diagram per machine.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;

use crate::error::{Error, Loc, Result};
use crate::model::{self, Spec};
use crate::naming;
use crate::xml::{self, Element};

/// The reply code for a method the client never receives, or one on the wrong channel.
const WRONG_METHOD_CODE: &str = "command-invalid";

/// The whole peer agent.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerAgent {
    pub name: String,
    pub doc: Option<String>,
    pub machines: Vec<Machine>,
    pub loc: Loc,
}

/// Which methods a machine sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Channel 0: the methods of the `connection` class.
    Connection,
    /// Channels 1…: the methods of every other class.
    Channel,
}

impl Scope {
    /// Whether methods of `class` travel in this scope.
    pub fn covers(self, class: &str) -> bool {
        (class == "connection") == (self == Scope::Connection)
    }

    pub fn name(self) -> &'static str {
        match self {
            Scope::Connection => "connection",
            Scope::Channel => "channel",
        }
    }
}

/// One state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub name: String,
    pub scope: Scope,
    pub doc: Option<String>,
    /// In file order; exactly one is initial.
    pub states: Vec<State>,
    pub loc: Loc,
}

impl Machine {
    pub fn initial(&self) -> &State {
        self.states
            .iter()
            .find(|s| s.initial)
            .expect("load checks there is exactly one initial state")
    }

    /// Every method the agent answers with, anywhere in the machine.
    fn answers(&self) -> BTreeSet<&str> {
        self.states
            .iter()
            .flat_map(|s| s.on.iter())
            .flat_map(|o| o.answers.iter().map(String::as_str))
            .collect()
    }

    /// Every method named by a `<send>` anywhere in the machine.
    fn sent(&self) -> BTreeSet<&str> {
        self.states
            .iter()
            .flat_map(|s| s.sends.iter().map(|s| s.method.as_str()))
            .collect()
    }

    /// The requests of this machine, in spec order: methods of its scope the server
    /// receives that are neither an answer nor a `<send>` anywhere in the machine.
    pub fn requests<'a>(&self, spec: &'a Spec) -> Vec<(&'a model::Class, &'a model::Method)> {
        let answers = self.answers();
        let sent = self.sent();
        spec.methods()
            .filter(|(c, m)| {
                let dotted = naming::dotted(&c.name, &m.name);
                m.receivers.server
                    && self.scope.covers(&c.name)
                    && !answers.contains(dotted.as_str())
                    && !sent.contains(dotted.as_str())
            })
            .collect()
    }
}

/// What happens to an incoming method a state does not list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Otherwise {
    /// Refused with the reply code of this name (a constant of the spec).
    Refuse(String),
    /// Discarded.
    Ignore,
}

/// What a connection state does with methods arriving on channels other than 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelTraffic {
    /// Handed to the channel machine of their channel.
    Pass,
    /// Discarded.
    Ignore,
    /// Refused with the reply code of this name.
    Refuse(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub name: String,
    pub doc: Option<String>,
    pub initial: bool,
    pub otherwise: Otherwise,
    /// Set for the states of a connection-scope machine (defaulted from `otherwise`).
    pub channels: Option<ChannelTraffic>,
    /// Whether the owner may send any request of the machine in this state.
    pub requests: bool,
    pub on: Vec<On>,
    pub sends: Vec<OwnerSend>,
    pub loc: Loc,
}

/// An incoming method legal in a state.
#[derive(Debug, Clone, PartialEq)]
pub struct On {
    /// Dotted name, e.g. `connection.start`.
    pub method: String,
    /// What the agent sends at once, in order (dotted names).
    pub answers: Vec<String>,
    /// The next state (the same state when the XML says nothing).
    pub next: String,
    /// Whether the method is handed to the owner.
    pub owner: bool,
    pub doc: Option<String>,
    pub loc: Loc,
}

/// A method the owner may send in a state, and where that leads.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerSend {
    pub method: String,
    pub next: String,
    pub doc: Option<String>,
    pub loc: Loc,
}

// ---------------------------------------------------------------------------------------
// Loading and checking
// ---------------------------------------------------------------------------------------

/// Reads `amq_peer.xml` and checks it against the merged protocol.
pub fn load(path: &Path, spec: &Spec) -> Result<PeerAgent> {
    let root = xml::read_file(path)?;
    from_element(&root, spec)
}

/// Checks a parsed `<peer-agent>` element against the merged protocol.
fn from_element(root: &Element, spec: &Spec) -> Result<PeerAgent> {
    if root.name != "peer-agent" {
        return Err(Error::spec(
            &root.loc,
            format!(
                "expected <peer-agent> as the root element, found <{}>",
                root.name
            ),
        ));
    }
    root.only_attrs(&["name", "side"])?;
    // `<state-machine>`s ride along in this file; machine.rs reads them.
    root.only_children(&["doc", "machine", "state-machine"])?;
    let name = root.required("name")?.to_string();
    let side = root.required("side")?;
    if side != "client" {
        return Err(Error::spec(
            &root.loc,
            format!("only side=\"client\" peer agents are supported, not {side:?}"),
        ));
    }
    if reply_code(spec, WRONG_METHOD_CODE).is_none() {
        return Err(Error::spec(
            &root.loc,
            format!(
                "the spec has no reply code `{WRONG_METHOD_CODE}`, which the peer agent uses for \
                 methods on the wrong side or channel"
            ),
        ));
    }

    let mut machines: Vec<Machine> = Vec::new();
    for el in root.children_named("machine") {
        let (name, scope) = machine_header(el)?;
        if let Some(other) = machines
            .iter()
            .find(|m| naming::type_name(&m.name) == naming::type_name(&name))
        {
            return Err(Error::clash(
                &el.loc,
                &other.loc,
                format!("duplicate machine `{name}`"),
            ));
        }
        if let Some(other) = machines.iter().find(|m| m.scope == scope) {
            return Err(Error::clash(
                &el.loc,
                &other.loc,
                format!(
                    "a second machine of scope {} (`{name}`); there is one per scope",
                    scope.name()
                ),
            ));
        }
        machines.push(machine(el, name, scope, spec)?);
    }
    if machines.is_empty() {
        return Err(Error::spec(&root.loc, "the peer agent has no <machine>"));
    }
    Ok(PeerAgent {
        name,
        doc: root.doc(),
        machines,
        loc: root.loc.clone(),
    })
}

/// A `<machine>`'s name and scope, checked before its states.
fn machine_header(el: &Element) -> Result<(String, Scope)> {
    el.only_attrs(&["name", "scope"])?;
    el.only_children(&["doc", "state"])?;
    let name = identifier(el, "name")?;
    let scope = match el.required("scope")? {
        "connection" => Scope::Connection,
        "channel" => Scope::Channel,
        other => {
            return Err(Error::spec(
                &el.loc,
                format!("`scope` must be connection or channel, not {other:?}"),
            ));
        }
    };
    Ok((name, scope))
}

fn machine(el: &Element, name: String, scope: Scope, spec: &Spec) -> Result<Machine> {
    let mut states: Vec<State> = Vec::new();
    for s in el.children_named("state") {
        let state = state(s, scope, spec)?;
        if let Some(other) = states
            .iter()
            .find(|o| naming::type_name(&o.name) == naming::type_name(&state.name))
        {
            return Err(Error::clash(
                &state.loc,
                &other.loc,
                format!("duplicate state `{}` in machine `{name}`", state.name),
            ));
        }
        states.push(state);
    }
    if states.is_empty() {
        return Err(Error::spec(
            &el.loc,
            format!("machine `{name}` has no <state>"),
        ));
    }
    let initial: Vec<&State> = states.iter().filter(|s| s.initial).collect();
    match initial.as_slice() {
        [_] => {}
        [] => {
            return Err(Error::spec(
                &el.loc,
                format!("machine `{name}` has no initial state (mark one with initial=\"1\")"),
            ));
        }
        [first, second, ..] => {
            return Err(Error::clash(
                &second.loc,
                &first.loc,
                format!("machine `{name}` has several initial states"),
            ));
        }
    }
    let known: BTreeSet<&str> = states.iter().map(|s| s.name.as_str()).collect();
    for state in &states {
        let targets = state
            .on
            .iter()
            .map(|o| (&o.next, &o.loc))
            .chain(state.sends.iter().map(|s| (&s.next, &s.loc)));
        for (next, loc) in targets {
            if !known.contains(next.as_str()) {
                return Err(Error::spec(
                    loc,
                    format!("`next` names unknown state `{next}` of machine `{name}`"),
                ));
            }
        }
    }
    Ok(Machine {
        name,
        scope,
        doc: el.doc(),
        states,
        loc: el.loc.clone(),
    })
}

fn state(el: &Element, scope: Scope, spec: &Spec) -> Result<State> {
    el.only_attrs(&["name", "initial", "otherwise", "channels", "requests"])?;
    el.only_children(&["doc", "on", "send"])?;
    let name = identifier(el, "name")?;
    let otherwise = match el.required("otherwise")? {
        "ignore" => Otherwise::Ignore,
        other => Otherwise::Refuse(refusal(el, "otherwise", other, spec)?),
    };
    let channels = match (scope, el.attr("channels")) {
        (Scope::Channel, Some(_)) => {
            return Err(Error::spec(
                &el.loc,
                "`channels` belongs on states of the connection machine only",
            ));
        }
        (Scope::Channel, None) => None,
        (Scope::Connection, None) => Some(match &otherwise {
            Otherwise::Ignore => ChannelTraffic::Ignore,
            Otherwise::Refuse(code) => ChannelTraffic::Refuse(code.clone()),
        }),
        (Scope::Connection, Some("pass")) => Some(ChannelTraffic::Pass),
        (Scope::Connection, Some("ignore")) => Some(ChannelTraffic::Ignore),
        (Scope::Connection, Some(other)) => Some(ChannelTraffic::Refuse(refusal(
            el, "channels", other, spec,
        )?)),
    };

    let mut on: Vec<On> = Vec::new();
    let mut sends: Vec<OwnerSend> = Vec::new();
    for child in &el.children {
        match child.name.as_str() {
            "on" => {
                let o = on_element(child, scope, &name, spec)?;
                if let Some(other) = on.iter().find(|x| x.method == o.method) {
                    return Err(Error::clash(
                        &o.loc,
                        &other.loc,
                        format!("state `{name}` handles {} twice", o.method),
                    ));
                }
                on.push(o);
            }
            "send" => {
                let s = send_element(child, scope, &name, spec)?;
                if let Some(other) = sends.iter().find(|x| x.method == s.method) {
                    return Err(Error::clash(
                        &s.loc,
                        &other.loc,
                        format!("state `{name}` lists <send> of {} twice", s.method),
                    ));
                }
                sends.push(s);
            }
            _ => {}
        }
    }
    Ok(State {
        name,
        doc: el.doc(),
        initial: el.flag("initial")?,
        otherwise,
        channels,
        requests: el.flag("requests")?,
        on,
        sends,
        loc: el.loc.clone(),
    })
}

fn on_element(el: &Element, scope: Scope, state: &str, spec: &Spec) -> Result<On> {
    el.only_attrs(&["method", "answer", "next", "owner"])?;
    el.only_children(&["doc"])?;
    let method = el.required("method")?;
    let (_, m) = method_in_scope(el, method, scope, spec)?;
    if !m.receivers.client {
        return Err(Error::spec(
            &el.loc,
            format!(
                "{method} is never received by the client (no client chassis), so it cannot \
                 be an incoming method of the peer agent"
            ),
        ));
    }
    let mut answers: Vec<String> = Vec::new();
    for answer in el.attr("answer").unwrap_or("").split_whitespace() {
        let (_, a) = method_in_scope(el, answer, scope, spec)?;
        if !a.receivers.server {
            return Err(Error::spec(
                &el.loc,
                format!(
                    "answer {answer} is never received by the server (no server chassis), so \
                     the client cannot send it"
                ),
            ));
        }
        if answers.iter().any(|x| x == answer) {
            return Err(Error::spec(
                &el.loc,
                format!("answer {answer} is listed twice"),
            ));
        }
        answers.push(answer.to_string());
    }
    Ok(On {
        method: method.to_string(),
        answers,
        next: el.attr("next").unwrap_or(state).to_string(),
        owner: el.flag("owner")?,
        doc: el.doc(),
        loc: el.loc.clone(),
    })
}

fn send_element(el: &Element, scope: Scope, state: &str, spec: &Spec) -> Result<OwnerSend> {
    el.only_attrs(&["method", "next"])?;
    el.only_children(&["doc"])?;
    let method = el.required("method")?;
    let (_, m) = method_in_scope(el, method, scope, spec)?;
    if !m.receivers.server {
        return Err(Error::spec(
            &el.loc,
            format!(
                "{method} is never received by the server (no server chassis), so the owner \
                 cannot send it"
            ),
        ));
    }
    Ok(OwnerSend {
        method: method.to_string(),
        next: el.attr("next").unwrap_or(state).to_string(),
        doc: el.doc(),
        loc: el.loc.clone(),
    })
}

/// Looks up a dotted method name and checks it travels in the machine's scope.
fn method_in_scope<'a>(
    el: &Element,
    dotted: &str,
    scope: Scope,
    spec: &'a Spec,
) -> Result<(&'a model::Class, &'a model::Method)> {
    let (class, method) = spec.method(dotted).ok_or_else(|| {
        Error::spec(
            &el.loc,
            format!("unknown method {dotted:?} (expected class.method, e.g. basic.deliver)"),
        )
    })?;
    if !scope.covers(&class.name) {
        let why = match scope {
            Scope::Connection => {
                "the connection machine sees channel 0 only, which carries \
                                  the connection class alone"
            }
            Scope::Channel => {
                "connection class methods travel on channel 0, which the \
                               connection machine handles"
            }
        };
        return Err(Error::spec(
            &el.loc,
            format!(
                "{dotted} does not belong in a {}-scope machine: {why}",
                scope.name()
            ),
        ));
    }
    Ok((class, method))
}

/// Parses `refuse:NAME` into a reply-code constant name the spec has.
fn refusal(el: &Element, attr: &str, value: &str, spec: &Spec) -> Result<String> {
    let Some(code) = value.strip_prefix("refuse:") else {
        return Err(Error::spec(
            &el.loc,
            format!("`{attr}` must be ignore or refuse:REPLY-CODE, not {value:?}"),
        ));
    };
    match reply_code(spec, code) {
        Some(c) if c.class.is_some() => Ok(code.to_string()),
        Some(_) => Err(Error::spec(
            &el.loc,
            format!("`{attr}` refuses with {code}, which is not an error reply code"),
        )),
        None => Err(Error::spec(
            &el.loc,
            format!("`{attr}` names unknown reply code {code:?}"),
        )),
    }
}

fn reply_code<'a>(spec: &'a Spec, name: &str) -> Option<&'a model::Constant> {
    spec.constants
        .iter()
        .find(|c| c.name == name && c.is_reply_code())
}

/// A machine or state name: lower-case words joined by single hyphens, so it makes a
/// clean Rust identifier and Mermaid id.
fn identifier(el: &Element, attr: &str) -> Result<String> {
    let name = el.required(attr)?;
    let ok = !name.is_empty()
        && name.split('-').all(|word| {
            word.starts_with(|c: char| c.is_ascii_lowercase())
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if ok {
        Ok(name.to_string())
    } else {
        Err(Error::spec(
            &el.loc,
            format!(
                "`{attr}` must be lower-case words joined by single hyphens (e.g. awaiting-tune), \
                 not {name:?}"
            ),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Rust
// ---------------------------------------------------------------------------------------

/// One method of the spec as the emitter needs it.
struct MethodInfo<'a> {
    class: &'a str,
    dotted: String,
    variant: Ident,
    client: bool,
}

/// How a machine treats a method its state does not list.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Unlisted {
    /// Client-received and of the machine's scope: the state's `otherwise`.
    Unexpected,
    /// The client never receives it.
    WrongSide,
    /// Of the other scope.
    WrongScope,
}

impl MethodInfo<'_> {
    fn unlisted(&self, scope: Scope) -> Unlisted {
        if !self.client {
            Unlisted::WrongSide
        } else if !scope.covers(self.class) {
            Unlisted::WrongScope
        } else {
            Unlisted::Unexpected
        }
    }
}

/// Writes the peer agent module (`src/protocol/generated/peer_agent.rs`).
pub fn emit_rust(agent: &PeerAgent, spec: &Spec) -> TokenStream {
    let methods: Vec<MethodInfo> = spec
        .methods()
        .map(|(c, m)| MethodInfo {
            class: &c.name,
            dotted: naming::dotted(&c.name, &m.name),
            variant: naming::method_type(&c.name, &m.name),
            client: m.receivers.client,
        })
        .collect();

    let module_doc = module_doc(agent);
    let answer = emit_answer(agent, spec);
    let common = emit_common();
    let machines: Vec<TokenStream> = agent
        .machines
        .iter()
        .map(|m| emit_machine(m, spec, &methods))
        .collect();
    let owner = emit_owner(agent, spec, &methods);
    let tests = emit_tests(agent, spec, &methods);

    quote! {
        #(#![doc = #module_doc])*

        use super::constants::ReplyCode;
        use super::methods::Method;

        #common
        #answer
        #(#machines)*
        #owner
        #tests
    }
}

/// The module's doc comment, one string per line (so it prints as `//!` lines).
fn module_doc(agent: &PeerAgent) -> Vec<String> {
    // The caller's preamble carries the headline; start a new paragraph after it.
    let mut lines = vec![String::new()];
    if let Some(d) = &agent.doc {
        lines.extend(wrap(d, 88).into_iter().map(|l| format!(" {l}")));
        lines.push(String::new());
    }
    let name = format!("Peer agent `{}`.", agent.name);
    lines.push(format!(" {name}"));
    lines.push(String::new());
    let about = "Each machine has a state enum and a `*_transition` function deciding, for every \
                 state and every incoming method, whether the method is accepted, what the agent \
                 answers at once, the next state and whether the owner gets the method; any \
                 other method is refused with a reply code or discarded. `*_send` says what the \
                 owner may send in a state. [`PeerOwner`] is the owner's side, fed by \
                 [`hand_to_owner`] and [`hand_content_to_owner`]. The same data is in the \
                 `*_TRANSITIONS` and `*_SENDS` tables, which the tests below check the \
                 functions against, and drawn in";
    let about = format!("{about} `{}`.", crate::PEER_DIAGRAM);
    lines.extend(wrap(&about, 88).into_iter().map(|l| format!(" {l}")));
    lines
}

/// Greedy word wrap for doc comments.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// `#[doc]` attributes for a doc string from the XML, wrapped.
fn doc_attr(doc: &Option<String>) -> TokenStream {
    let lines = doc
        .as_deref()
        .map(|d| wrap(d, 88))
        .unwrap_or_default()
        .into_iter()
        .map(|l| format!(" {l}"));
    quote!(#(#[doc = #lines])*)
}

fn emit_common() -> TokenStream {
    quote! {
        /// What a machine does with an incoming method it accepts.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct Transition<S: 'static> {
            /// The state the machine moves to.
            pub next: S,
            /// What the agent sends at once, in order (the runtime builds the methods).
            pub send: &'static [Answer],
            /// Whether the method is handed to the owner (see [`hand_to_owner`]).
            pub to_owner: bool,
        }

        /// Why an incoming method is not acceptable: the runtime closes the channel (soft
        /// error) or the connection (hard error) with this code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct Refusal {
            pub code: ReplyCode,
            pub text: &'static str,
        }

        /// A declared transition, as data: `method` (dotted name) arriving in `state`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct TransitionRow<S: 'static> {
            pub state: S,
            pub method: &'static str,
            pub transition: Transition<S>,
        }

        /// A declared owner send, as data: the owner may send `method` in `state`, and the
        /// machine moves to `next`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct SendRow<S: 'static> {
            pub state: S,
            pub method: &'static str,
            pub next: S,
        }
    }
}

/// The distinct answers of all machines, in spec order.
fn answer_methods<'a>(
    agent: &PeerAgent,
    spec: &'a Spec,
) -> Vec<(&'a model::Class, &'a model::Method)> {
    let used: BTreeSet<&str> = agent.machines.iter().flat_map(|m| m.answers()).collect();
    spec.methods()
        .filter(|(c, m)| used.contains(naming::dotted(&c.name, &m.name).as_str()))
        .collect()
}

fn emit_answer(agent: &PeerAgent, spec: &Spec) -> TokenStream {
    let answers = answer_methods(agent, spec);
    let variants: Vec<Ident> = answers
        .iter()
        .map(|(c, m)| naming::method_type(&c.name, &m.name))
        .collect();
    let docs: Vec<String> = answers
        .iter()
        .map(|(c, m)| format!(" Send {}.", naming::dotted(&c.name, &m.name)))
        .collect();
    let names: Vec<String> = answers
        .iter()
        .map(|(c, m)| naming::dotted(&c.name, &m.name))
        .collect();
    let class_ids: Vec<Literal> = answers
        .iter()
        .map(|(c, _)| Literal::u16_unsuffixed(c.index))
        .collect();
    let method_ids: Vec<Literal> = answers
        .iter()
        .map(|(_, m)| Literal::u16_unsuffixed(m.index))
        .collect();
    let count = Literal::usize_unsuffixed(answers.len());
    quote! {
        /// A method the agent sends by itself in answer to an incoming one. The machine
        /// only says which; the runtime builds it (it knows the credentials, the tuning and
        /// the channel).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Answer {
            #(#[doc = #docs] #variants,)*
        }

        impl Answer {
            pub const ALL: [Answer; #count] = [#(Answer::#variants),*];

            /// The dotted method name, e.g. `connection.start-ok`.
            pub const fn name(self) -> &'static str {
                match self { #(Answer::#variants => #names,)* }
            }

            pub const fn class_id(self) -> u16 {
                match self { #(Answer::#variants => #class_ids,)* }
            }

            pub const fn method_id(self) -> u16 {
                match self { #(Answer::#variants => #method_ids,)* }
            }
        }
    }
}

/// Names used for one machine's items.
struct MachineNames {
    state: Ident,
    transition_fn: Ident,
    send_fn: Ident,
    transitions: Ident,
    sends: Ident,
    requests: Ident,
    incoming: Ident,
}

fn machine_names(machine: &Machine) -> MachineNames {
    let n = &machine.name;
    MachineNames {
        state: naming::type_name(&format!("{n}-state")),
        transition_fn: naming::field(&format!("{n}-transition")),
        send_fn: naming::field(&format!("{n}-send")),
        transitions: naming::constant(&format!("{n}-transitions")),
        sends: naming::constant(&format!("{n}-sends")),
        requests: naming::constant(&format!("{n}-requests")),
        incoming: naming::constant(&format!("{n}-incoming")),
    }
}

fn reply_code_tokens(name: &str) -> TokenStream {
    let v = naming::type_name(name);
    quote!(ReplyCode::#v)
}

fn answers_tokens(answers: &[String]) -> TokenStream {
    let variants = answers.iter().map(|a| {
        let (c, m) = a.split_once('.').unwrap_or((a, ""));
        naming::method_type(c, m)
    });
    quote!(&[#(Answer::#variants),*])
}

fn method_variant(dotted: &str) -> Ident {
    let (c, m) = dotted.split_once('.').unwrap_or((dotted, ""));
    naming::method_type(c, m)
}

fn emit_machine(machine: &Machine, spec: &Spec, methods: &[MethodInfo]) -> TokenStream {
    let names = machine_names(machine);
    let state_ty = &names.state;
    let mname = &machine.name;
    let state_variants: Vec<Ident> = machine
        .states
        .iter()
        .map(|s| naming::type_name(&s.name))
        .collect();
    let variant_of = |state: &str| naming::type_name(state);
    let state_docs: Vec<TokenStream> = machine.states.iter().map(|s| doc_attr(&s.doc)).collect();
    let default_attrs: Vec<TokenStream> = machine
        .states
        .iter()
        .map(|s| {
            if s.initial {
                quote!(#[default])
            } else {
                TokenStream::new()
            }
        })
        .collect();
    let state_names: Vec<&str> = machine.states.iter().map(|s| s.name.as_str()).collect();
    let count = Literal::usize_unsuffixed(machine.states.len());
    let initial = variant_of(&machine.initial().name);
    let machine_doc = doc_attr(&machine.doc);
    let scope_doc = format!(
        " States of the `{mname}` machine ({}).",
        match machine.scope {
            Scope::Connection => "channel 0",
            Scope::Channel => "one per channel",
        }
    );
    let unlisted_arms = machine.states.iter().map(|s| {
        let v = variant_of(&s.name);
        match &s.otherwise {
            Otherwise::Ignore => quote!(#state_ty::#v => None,),
            Otherwise::Refuse(code) => {
                let code = reply_code_tokens(code);
                quote!(#state_ty::#v => Some(#code),)
            }
        }
    });
    let requests_arms = machine.states.iter().map(|s| {
        let v = variant_of(&s.name);
        let r = s.requests;
        quote!(#state_ty::#v => #r,)
    });
    let channel_traffic = if machine.scope == Scope::Connection {
        let arms = machine.states.iter().map(|s| {
            let v = variant_of(&s.name);
            match s.channels.as_ref().unwrap_or(&ChannelTraffic::Ignore) {
                ChannelTraffic::Pass => quote!(#state_ty::#v => Ok(true),),
                ChannelTraffic::Ignore => quote!(#state_ty::#v => Ok(false),),
                ChannelTraffic::Refuse(code) => {
                    let code = reply_code_tokens(code);
                    let text = format!("method on a channel while the {mname} is {}", s.name);
                    quote!(#state_ty::#v => Err(Refusal { code: #code, text: #text }),)
                }
            }
        });
        quote! {
            /// What happens in this state to a method arriving on a channel other than 0:
            /// `Ok(true)` hand it to that channel's machine, `Ok(false)` discard it, `Err`
            /// refuse it.
            pub const fn channel_traffic(self) -> Result<bool, Refusal> {
                match self { #(#arms)* }
            }
        }
    } else {
        TokenStream::new()
    };

    // The transition function: per state, the declared arms, then the rest grouped.
    let mut arms: Vec<TokenStream> = Vec::new();
    for state in &machine.states {
        let sv = variant_of(&state.name);
        let listed: BTreeSet<&str> = state.on.iter().map(|o| o.method.as_str()).collect();
        for on in &state.on {
            let mv = method_variant(&on.method);
            let next = variant_of(&on.next);
            let send = answers_tokens(&on.answers);
            let owner = on.owner;
            arms.push(quote! {
                (#state_ty::#sv, Method::#mv(_)) => Ok(Some(Transition {
                    next: #state_ty::#next,
                    send: #send,
                    to_owner: #owner,
                })),
            });
        }
        let rest: Vec<&MethodInfo> = methods
            .iter()
            .filter(|m| !listed.contains(m.dotted.as_str()))
            .collect();
        match &state.otherwise {
            Otherwise::Ignore => {
                if !rest.is_empty() {
                    let vs = rest.iter().map(|m| &m.variant);
                    arms.push(quote!((#state_ty::#sv, #(Method::#vs(_))|*) => Ok(None),));
                }
            }
            Otherwise::Refuse(code) => {
                let mut groups: BTreeMap<Unlisted, Vec<&Ident>> = BTreeMap::new();
                for m in &rest {
                    groups
                        .entry(m.unlisted(machine.scope))
                        .or_default()
                        .push(&m.variant);
                }
                for (kind, vs) in groups {
                    let (code, text) = match kind {
                        Unlisted::Unexpected => (
                            reply_code_tokens(code),
                            format!("unexpected method in {mname} state {}", state.name),
                        ),
                        Unlisted::WrongSide => (
                            reply_code_tokens(WRONG_METHOD_CODE),
                            "method that only a server receives".to_string(),
                        ),
                        Unlisted::WrongScope => (
                            reply_code_tokens(WRONG_METHOD_CODE),
                            match machine.scope {
                                Scope::Connection => {
                                    "method of a class other than connection on channel 0"
                                        .to_string()
                                }
                                Scope::Channel => {
                                    "connection class method on a channel other than 0".to_string()
                                }
                            },
                        ),
                    };
                    arms.push(quote! {
                        (#state_ty::#sv, #(Method::#vs(_))|*) =>
                            Err(Refusal { code: #code, text: #text }),
                    });
                }
            }
        }
    }

    // The send function: per state, the declared sends, the requests, then the rest.
    let requests = machine.requests(spec);
    let request_names: BTreeSet<String> = requests
        .iter()
        .map(|(c, m)| naming::dotted(&c.name, &m.name))
        .collect();
    let mut send_arms: Vec<TokenStream> = Vec::new();
    for state in &machine.states {
        let sv = variant_of(&state.name);
        let mut allowed: BTreeSet<&str> = BTreeSet::new();
        for send in &state.sends {
            let mv = method_variant(&send.method);
            let next = variant_of(&send.next);
            allowed.insert(&send.method);
            send_arms.push(quote!((#state_ty::#sv, Method::#mv(_)) => Some(#state_ty::#next),));
        }
        if state.requests {
            let vs: Vec<&Ident> = methods
                .iter()
                .filter(|m| {
                    request_names.contains(&m.dotted) && !allowed.contains(m.dotted.as_str())
                })
                .map(|m| &m.variant)
                .collect();
            if !vs.is_empty() {
                send_arms
                    .push(quote!((#state_ty::#sv, #(Method::#vs(_))|*) => Some(#state_ty::#sv),));
            }
            allowed.extend(request_names.iter().map(String::as_str));
        }
        let vs: Vec<&Ident> = methods
            .iter()
            .filter(|m| !allowed.contains(m.dotted.as_str()))
            .map(|m| &m.variant)
            .collect();
        if !vs.is_empty() {
            send_arms.push(quote!((#state_ty::#sv, #(Method::#vs(_))|*) => None,));
        }
    }

    // The tables.
    let rows = machine.states.iter().flat_map(|s| {
        s.on.iter().map(move |on| {
            let sv = variant_of(&s.name);
            let next = variant_of(&on.next);
            let send = answers_tokens(&on.answers);
            let owner = on.owner;
            let method = &on.method;
            quote! {
                TransitionRow {
                    state: #state_ty::#sv,
                    method: #method,
                    transition: Transition { next: #state_ty::#next, send: #send, to_owner: #owner },
                },
            }
        })
    });
    let send_rows = machine.states.iter().flat_map(|s| {
        s.sends.iter().map(move |send| {
            let sv = variant_of(&s.name);
            let next = variant_of(&send.next);
            let method = &send.method;
            quote!(SendRow { state: #state_ty::#sv, method: #method, next: #state_ty::#next },)
        })
    });
    let request_strs = requests
        .iter()
        .map(|(c, m)| naming::dotted(&c.name, &m.name));
    let incoming_strs = methods
        .iter()
        .filter(|m| m.unlisted(machine.scope) == Unlisted::Unexpected)
        .map(|m| m.dotted.as_str());

    let MachineNames {
        transition_fn,
        send_fn,
        transitions,
        sends,
        requests: requests_const,
        incoming,
        ..
    } = &names;
    let transition_doc = format!(
        " Decides what the `{mname}` machine does with `method` arriving in `state`: \
         `Ok(Some(_))` accept it, `Ok(None)` discard it, `Err(_)` refuse it."
    );
    let send_doc = format!(
        " Whether the owner may send `method` in `state` of the `{mname}` machine, and the \
         state that leads to (`None`: not now)."
    );
    let transitions_doc =
        format!(" Every declared transition of the `{mname}` machine, in file order.");
    let sends_doc = format!(" Every declared owner send of the `{mname}` machine, in file order.");
    let requests_doc = format!(
        " The requests of the `{mname}` machine: what the owner may send in a state that \
         takes requests (without a state change)."
    );
    let incoming_doc = format!(
        " The methods the `{mname}` machine may receive (the client receives them, and they \
         travel in its scope)."
    );

    let [
        transition_doc,
        send_doc,
        transitions_doc,
        sends_doc,
        requests_doc,
        incoming_doc,
    ] = [
        transition_doc,
        send_doc,
        transitions_doc,
        sends_doc,
        requests_doc,
        incoming_doc,
    ]
    .map(|d| doc_attr(&Some(d)));
    let scope_doc = doc_attr(&Some(scope_doc));
    let gap = if machine.doc.is_some() {
        quote!(#[doc = ""])
    } else {
        TokenStream::new()
    };

    quote! {
        #machine_doc
        #gap
        #scope_doc
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub enum #state_ty {
            #(#state_docs #default_attrs #state_variants,)*
        }

        impl #state_ty {
            /// Every state, in the order of the spec.
            pub const ALL: [#state_ty; #count] = [#(#state_ty::#state_variants),*];

            /// The state's name in the spec.
            pub const fn name(self) -> &'static str {
                match self { #(#state_ty::#state_variants => #state_names,)* }
            }

            /// The state a new machine starts in.
            pub const fn initial() -> Self {
                #state_ty::#initial
            }

            /// The reply code an unlisted incoming method of this machine is refused with;
            /// `None` when the state discards unlisted methods. (Methods the client never
            /// receives, or of the other scope, are refused with command-invalid.)
            pub const fn unlisted(self) -> Option<ReplyCode> {
                match self { #(#unlisted_arms)* }
            }

            /// Whether the owner may send the machine's requests in this state.
            pub const fn takes_requests(self) -> bool {
                match self { #(#requests_arms)* }
            }

            #channel_traffic
        }

        #transition_doc
        pub fn #transition_fn(
            state: #state_ty,
            method: &Method,
        ) -> Result<Option<Transition<#state_ty>>, Refusal> {
            match (state, method) {
                #(#arms)*
            }
        }

        #send_doc
        pub fn #send_fn(state: #state_ty, method: &Method) -> Option<#state_ty> {
            match (state, method) {
                #(#send_arms)*
            }
        }

        #transitions_doc
        pub const #transitions: &[TransitionRow<#state_ty>] = &[#(#rows)*];

        #sends_doc
        pub const #sends: &[SendRow<#state_ty>] = &[#(#send_rows)*];

        #requests_doc
        pub const #requests_const: &[&str] = &[#(#request_strs),*];

        #incoming_doc
        pub const #incoming: &[&str] = &[#(#incoming_strs),*];
    }
}

/// The methods handed to the owner (by any state of any machine), in spec order.
fn owner_methods<'a>(
    agent: &PeerAgent,
    spec: &'a Spec,
) -> Vec<(&'a model::Class, &'a model::Method)> {
    let bound: BTreeSet<&str> = agent
        .machines
        .iter()
        .flat_map(|m| m.states.iter())
        .flat_map(|s| s.on.iter())
        .filter(|o| o.owner)
        .map(|o| o.method.as_str())
        .collect();
    spec.methods()
        .filter(|(c, m)| bound.contains(naming::dotted(&c.name, &m.name).as_str()))
        .collect()
}

fn emit_owner(agent: &PeerAgent, spec: &Spec, methods: &[MethodInfo]) -> TokenStream {
    let owned = owner_methods(agent, spec);
    let owned_names: BTreeSet<String> = owned
        .iter()
        .map(|(c, m)| naming::dotted(&c.name, &m.name))
        .collect();
    let trait_fns = owned.iter().map(|(c, m)| {
        let f = naming::handler_fn(&c.name, &m.name);
        let ty = naming::method_type(&c.name, &m.name);
        let doc = format!(
            " The server sent {} on `channel`{}.",
            naming::dotted(&c.name, &m.name),
            if m.content { ", with its content" } else { "" }
        );
        if m.content {
            quote! {
                #[doc = #doc]
                fn #f(&mut self, channel: u16, method: super::methods::#ty, content: Self::Content);
            }
        } else {
            quote! {
                #[doc = #doc]
                fn #f(&mut self, channel: u16, method: super::methods::#ty);
            }
        }
    });

    let route = |content: bool| -> (Vec<TokenStream>, Vec<&Ident>) {
        let mut arms = Vec::new();
        let mut rest = Vec::new();
        for (c, m) in spec.methods() {
            let dotted = naming::dotted(&c.name, &m.name);
            let variant = naming::method_type(&c.name, &m.name);
            let info = methods.iter().find(|i| i.dotted == dotted);
            let Some(info) = info else { continue };
            if owned_names.contains(&dotted) && m.content == content {
                let f = naming::handler_fn(&c.name, &m.name);
                arms.push(if content {
                    quote! {
                        Method::#variant(m) => {
                            owner.#f(channel, m, content);
                            Ok(())
                        }
                    }
                } else {
                    quote! {
                        Method::#variant(m) => {
                            owner.#f(channel, m);
                            Ok(())
                        }
                    }
                });
            } else {
                rest.push(&info.variant);
            }
        }
        (arms, rest)
    };
    let (plain_arms, plain_rest) = route(false);
    let plain_rest_arm = if plain_rest.is_empty() {
        TokenStream::new()
    } else {
        quote!(other @ (#(Method::#plain_rest(_))|*) => Err(other),)
    };
    let (content_arms, content_rest) = route(true);
    let content_rest_arm = if content_rest.is_empty() {
        TokenStream::new()
    } else {
        quote!(other @ (#(Method::#content_rest(_))|*) => Err((other, content)),)
    };
    let owner_plain = owned
        .iter()
        .filter(|(_, m)| !m.content)
        .map(|(c, m)| naming::dotted(&c.name, &m.name));
    let owner_content = owned
        .iter()
        .filter(|(_, m)| m.content)
        .map(|(c, m)| naming::dotted(&c.name, &m.name));

    quote! {
        /// The owner of a peer agent (e.g. a peering): what it is told. The runtime calls
        /// these through [`hand_to_owner`] and [`hand_content_to_owner`] for every accepted
        /// method whose transition says `to_owner`.
        pub trait PeerOwner {
            /// The assembled content (header and body) of a delivered, returned or fetched
            /// message, as the runtime builds it.
            type Content;
            #(#trait_fns)*
        }

        /// The owner-bound methods without content, in spec order.
        pub const OWNER_BOUND: &[&str] = &[#(#owner_plain),*];

        /// The owner-bound methods that carry content, in spec order.
        pub const OWNER_BOUND_WITH_CONTENT: &[&str] = &[#(#owner_content),*];

        /// Hands an owner-bound method without content to the owner; gives the method back
        /// if it is not one (not owner-bound, or carrying content: see
        /// [`hand_content_to_owner`]).
        #[allow(clippy::result_large_err)]
        pub fn hand_to_owner<O: PeerOwner + ?Sized>(
            owner: &mut O,
            channel: u16,
            method: Method,
        ) -> Result<(), Method> {
            match method {
                #(#plain_arms)*
                #plain_rest_arm
            }
        }

        /// Hands an owner-bound method that carries content to the owner, with its content;
        /// gives both back if the method is not one.
        #[allow(clippy::result_large_err, clippy::type_complexity)]
        pub fn hand_content_to_owner<O: PeerOwner + ?Sized>(
            owner: &mut O,
            channel: u16,
            method: Method,
            content: O::Content,
        ) -> Result<(), (Method, O::Content)> {
            match method {
                #(#content_arms)*
                #content_rest_arm
            }
        }
    }
}

fn emit_tests(agent: &PeerAgent, spec: &Spec, methods: &[MethodInfo]) -> TokenStream {
    let constructors = methods.iter().map(|m| {
        let v = &m.variant;
        quote!(Method::#v(Default::default()))
    });
    let wrong = reply_code_tokens(WRONG_METHOD_CODE);
    let machine_tests = agent.machines.iter().map(|machine| {
        let MachineNames {
            state,
            transition_fn,
            send_fn,
            transitions,
            sends,
            requests,
            incoming,
        } = machine_names(machine);
        let walk = naming::field(&format!("{}-walks-every-state-and-method", machine.name));
        let walk_sends = naming::field(&format!("{}-sends-match-table", machine.name));
        let tables = naming::field(&format!("{}-tables-are-consistent", machine.name));
        let traffic = if machine.scope == Scope::Connection {
            quote! {
                for state in #state::ALL {
                    if let Err(refusal) = state.channel_traffic() {
                        assert!(!refusal.text.is_empty());
                    }
                }
            }
        } else {
            TokenStream::new()
        };
        quote! {
            #[test]
            fn #walk() {
                for state in #state::ALL {
                    for method in all_methods() {
                        let name = method.name();
                        let got = #transition_fn(state, &method);
                        let declared = #transitions
                            .iter()
                            .find(|row| row.state == state && row.method == name);
                        if let Some(row) = declared {
                            assert_eq!(got, Ok(Some(row.transition)), "{name} in {}", state.name());
                            continue;
                        }
                        match state.unlisted() {
                            None => assert_eq!(got, Ok(None), "{name} in {}", state.name()),
                            Some(code) => {
                                let expected = if #incoming.contains(&name) { code } else { #wrong };
                                match got {
                                    Err(refusal) => {
                                        assert_eq!(refusal.code, expected, "{name} in {}", state.name());
                                        assert!(!refusal.text.is_empty());
                                    }
                                    other => panic!("{name} in {}: expected a refusal, got {other:?}", state.name()),
                                }
                            }
                        }
                    }
                }
            }

            #[test]
            fn #walk_sends() {
                for state in #state::ALL {
                    for method in all_methods() {
                        let name = method.name();
                        let declared = #sends
                            .iter()
                            .find(|row| row.state == state && row.method == name);
                        let expected = match declared {
                            Some(row) => Some(row.next),
                            None if state.takes_requests() && #requests.contains(&name) => Some(state),
                            None => None,
                        };
                        assert_eq!(#send_fn(state, &method), expected, "{name} in {}", state.name());
                    }
                }
            }

            #[test]
            fn #tables() {
                assert_eq!(#state::ALL.iter().filter(|s| **s == #state::initial()).count(), 1);
                assert_eq!(#state::default(), #state::initial());
                for row in #transitions {
                    assert!(#incoming.contains(&row.method), "{} is not incoming", row.method);
                    if row.transition.to_owner {
                        assert!(
                            OWNER_BOUND.contains(&row.method) || OWNER_BOUND_WITH_CONTENT.contains(&row.method),
                            "{} goes to the owner but is not owner-bound", row.method
                        );
                    }
                }
                for state in #state::ALL {
                    assert!(!state.name().is_empty());
                }
                #traffic
            }
        }
    });

    let owned = owner_methods(agent, spec);
    let recorder_fns = owned.iter().map(|(c, m)| {
        let f = naming::handler_fn(&c.name, &m.name);
        let ty = naming::method_type(&c.name, &m.name);
        let dotted = naming::dotted(&c.name, &m.name);
        if m.content {
            quote! {
                fn #f(&mut self, channel: u16, _method: super::super::methods::#ty, content: u32) {
                    self.0.push((channel, #dotted, Some(content)));
                }
            }
        } else {
            quote! {
                fn #f(&mut self, channel: u16, _method: super::super::methods::#ty) {
                    self.0.push((channel, #dotted, None));
                }
            }
        }
    });

    quote! {
        #[cfg(test)]
        mod tests {
            use super::*;

            /// One value of every method of the protocol.
            fn all_methods() -> Vec<Method> {
                vec![#(#constructors),*]
            }

            #(#machine_tests)*

            #[derive(Default)]
            struct Recorder(Vec<(u16, &'static str, Option<u32>)>);

            impl PeerOwner for Recorder {
                type Content = u32;
                #(#recorder_fns)*
            }

            #[test]
            fn owner_gets_exactly_the_owner_bound_methods() {
                for method in all_methods() {
                    let name = method.name();
                    let mut owner = Recorder::default();
                    let plain = hand_to_owner(&mut owner, 7, method);
                    if OWNER_BOUND.contains(&name) {
                        assert!(plain.is_ok(), "{name}");
                        assert_eq!(owner.0, vec![(7, name, None)]);
                        continue;
                    }
                    let method = plain.expect_err(name);
                    assert_eq!(method.name(), name);
                    assert!(owner.0.is_empty());
                    let with_content = hand_content_to_owner(&mut owner, 9, method, 42);
                    if OWNER_BOUND_WITH_CONTENT.contains(&name) {
                        assert!(with_content.is_ok(), "{name}");
                        assert_eq!(owner.0, vec![(9, name, Some(42))]);
                    } else {
                        let (method, content) = with_content.expect_err(name);
                        assert_eq!(method.name(), name);
                        assert_eq!(content, 42);
                        assert!(owner.0.is_empty());
                    }
                }
            }

            #[test]
            fn answers_name_their_methods() {
                for answer in Answer::ALL {
                    assert!(answer.name().contains('.'));
                    assert!(answer.class_id() > 0);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Mermaid
// ---------------------------------------------------------------------------------------

/// Writes the peer agent's Markdown page (`spec/amq_peer.md`): one Mermaid state diagram
/// and tables per machine.
pub fn emit_mermaid(agent: &PeerAgent) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# The peer agent `{}`\n", agent.name);
    let _ = writeln!(
        out,
        "Drawn from `spec/amq_peer.xml`, like the Rust in `{}/peer_agent.rs`.\n",
        crate::GENERATED_DIR
    );
    if let Some(doc) = &agent.doc {
        let _ = writeln!(out, "{doc}\n");
    }
    out.push_str(
        "Edges are labelled `incoming / answers`; `(owner)` marks a method handed to the \
         owner; `send x` is the owner sending x, and `send any request` the owner sending any \
         method of the machine's scope that the server receives and that is neither an answer \
         nor a listed send. Where a state has many incoming methods that only go to the owner, \
         the diagram counts them and the table below it lists them. An incoming method a \
         state does not list is refused with the reply code given for the state, or discarded \
         where the state says so; a method the client never receives, or one on the wrong \
         channel, is refused with command-invalid unless the state discards everything.\n",
    );
    for machine in &agent.machines {
        mermaid_machine(&mut out, machine);
    }
    out
}

/// How many owner-only self-loops a state may draw before the diagram counts them instead.
const MERMAID_LOOP_LIMIT: usize = 4;

fn mermaid_id(state: &str) -> String {
    format!("s_{}", state.replace('-', "_"))
}

fn mermaid_machine(out: &mut String, machine: &Machine) {
    let _ = writeln!(
        out,
        "\n## The `{}` machine ({})\n",
        machine.name,
        match machine.scope {
            Scope::Connection => "channel 0",
            Scope::Channel => "one per channel",
        }
    );
    if let Some(doc) = &machine.doc {
        let _ = writeln!(out, "{doc}\n");
    }
    out.push_str("```mermaid\nstateDiagram-v2\n");
    for s in &machine.states {
        let _ = writeln!(out, "    state \"{}\" as {}", s.name, mermaid_id(&s.name));
    }
    let _ = writeln!(out, "    [*] --> {}", mermaid_id(&machine.initial().name));
    // One edge per (from, to), its labels joined, in file order.
    let mut raw: Vec<(&str, &str, String)> = Vec::new();
    for s in &machine.states {
        for on in &s.on {
            raw.push((&s.name, &on.next, transition_label(on)));
        }
        for send in &s.sends {
            raw.push((&s.name, &send.next, format!("send {}", send.method)));
        }
        if s.requests {
            raw.push((&s.name, &s.name, "send any request".to_string()));
        }
    }
    // Many owner-only self-loops (replies, deliveries) would make one huge label: count them.
    for s in &machine.states {
        let quiet = |o: &On| o.next == s.name && o.answers.is_empty() && o.owner;
        let n = s.on.iter().filter(|o| quiet(o)).count();
        if n > MERMAID_LOOP_LIMIT {
            let labels: BTreeSet<String> =
                s.on.iter()
                    .filter(|o| quiet(o))
                    .map(transition_label)
                    .collect();
            raw.retain(|(from, to, label)| {
                !(*from == s.name && *to == s.name && labels.contains(label))
            });
            raw.push((
                &s.name,
                &s.name,
                format!("{n} incoming methods, each to the owner (see the table)"),
            ));
        }
    }
    let mut edges: Vec<((&str, &str), Vec<String>)> = Vec::new();
    for (from, to, label) in raw {
        match edges.iter_mut().find(|(k, _)| *k == (from, to)) {
            Some((_, labels)) => labels.push(label),
            None => edges.push(((from, to), vec![label])),
        }
    }
    let mut leaves: Vec<&str> = Vec::new();
    for s in &machine.states {
        if edges.iter().all(|((from, _), _)| *from != s.name) {
            leaves.push(&s.name);
        }
    }
    for ((from, to), labels) in &edges {
        let _ = writeln!(
            out,
            "    {} --> {} : {}",
            mermaid_id(from),
            mermaid_id(to),
            labels.join("<br/>")
        );
    }
    for leaf in leaves {
        let _ = writeln!(out, "    {} --> [*]", mermaid_id(leaf));
    }
    out.push_str("```\n\n");

    out.push_str("| state | unlisted incoming methods |");
    let connection = machine.scope == Scope::Connection;
    if connection {
        out.push_str(" other channels |");
    }
    out.push_str(" owner requests | meaning |\n|---|---|");
    if connection {
        out.push_str("---|");
    }
    out.push_str("---|---|\n");
    for s in &machine.states {
        let name = if s.initial {
            format!("**{}** (initial)", s.name)
        } else {
            format!("**{}**", s.name)
        };
        let _ = write!(out, "| {name} | {} |", otherwise_text(&s.otherwise));
        if connection {
            let traffic = match s.channels.as_ref().unwrap_or(&ChannelTraffic::Ignore) {
                ChannelTraffic::Pass => "passed to the channel".to_string(),
                ChannelTraffic::Ignore => "discarded".to_string(),
                ChannelTraffic::Refuse(code) => format!("refused: {code}"),
            };
            let _ = write!(out, " {traffic} |");
        }
        let _ = writeln!(
            out,
            " {} | {} |",
            if s.requests { "yes" } else { "no" },
            s.doc.as_deref().unwrap_or("").replace('|', "\\|")
        );
    }

    out.push_str("\n| state | incoming | answer | next | to owner |\n|---|---|---|---|---|\n");
    for s in &machine.states {
        for on in &s.on {
            let answers = if on.answers.is_empty() {
                "—".to_string()
            } else {
                on.answers.join(", ")
            };
            let _ = writeln!(
                out,
                "| {} | {} | {answers} | {} | {} |",
                s.name,
                on.method,
                on.next,
                if on.owner { "yes" } else { "no" }
            );
        }
    }
    if machine.states.iter().any(|s| !s.sends.is_empty()) {
        out.push_str("\n| state | owner sends | next |\n|---|---|---|\n");
        for s in &machine.states {
            for send in &s.sends {
                let _ = writeln!(out, "| {} | {} | {} |", s.name, send.method, send.next);
            }
        }
    }
}

fn transition_label(on: &On) -> String {
    let mut label = on.method.clone();
    if !on.answers.is_empty() {
        let _ = write!(label, " / {}", on.answers.join(", "));
    }
    if on.owner {
        label.push_str(" (owner)");
    }
    label
}

fn otherwise_text(otherwise: &Otherwise) -> String {
    match otherwise {
        Otherwise::Ignore => "discarded".to_string(),
        Otherwise::Refuse(code) => format!("refused: {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Class, Constant, ConstantType, ErrorClass, Method, Receivers};

    const C: u8 = 1;
    const S: u8 = 2;
    const CS: u8 = 3;
    const CONTENT: u8 = 4;

    fn loc() -> Loc {
        Loc::new(Path::new("test.xml"), 1)
    }

    fn method(name: &str, index: u16, flags: u8) -> Method {
        Method {
            name: name.to_string(),
            index,
            synchronous: false,
            content: flags & CONTENT != 0,
            responses: Vec::new(),
            receivers: Receivers {
                client: flags & C != 0,
                server: flags & S != 0,
                peer: false,
            },
            fields: Vec::new(),
            doc: None,
            loc: loc(),
        }
    }

    /// A method: name, index, receivers and content flags.
    type MethodRow<'a> = (&'a str, u16, u8);
    /// A class: name, index, methods.
    type ClassRow<'a> = (&'a str, u16, &'a [MethodRow<'a>]);

    fn spec_of(classes: &[ClassRow]) -> Spec {
        let codes = [
            ("reply-success", 200, None),
            ("not-found", 404, Some(ErrorClass::Soft)),
            ("command-invalid", 503, Some(ErrorClass::Hard)),
            ("channel-error", 504, Some(ErrorClass::Hard)),
            ("unexpected-frame", 505, Some(ErrorClass::Hard)),
        ];
        let mut constants: Vec<Constant> = codes
            .iter()
            .map(|&(name, value, class)| Constant {
                name: name.to_string(),
                value,
                ty: ConstantType::Short,
                class,
                doc: None,
                loc: loc(),
            })
            .collect();
        constants.push(Constant {
            name: "frame-end".to_string(),
            value: 206,
            ty: ConstantType::Octet,
            class: None,
            doc: None,
            loc: loc(),
        });
        Spec {
            major: 0,
            minor: 9,
            revision: 1,
            port: 5672,
            constants,
            domains: Vec::new(),
            classes: classes
                .iter()
                .map(|&(name, index, methods)| Class {
                    name: name.to_string(),
                    index,
                    properties: Vec::new(),
                    methods: methods.iter().map(|&(n, i, f)| method(n, i, f)).collect(),
                    version: None,
                    doc: None,
                    loc: loc(),
                })
                .collect(),
        }
    }

    /// AMQP 0-9-1 with the RabbitMQ extensions, as far as the peer agent cares.
    fn amqp_spec() -> Spec {
        spec_of(&[
            (
                "connection",
                10,
                &[
                    ("start", 10, C),
                    ("start-ok", 11, S),
                    ("secure", 20, C),
                    ("secure-ok", 21, S),
                    ("tune", 30, C),
                    ("tune-ok", 31, S),
                    ("open", 40, S),
                    ("open-ok", 41, C),
                    ("close", 50, CS),
                    ("close-ok", 51, CS),
                    ("blocked", 60, C),
                    ("unblocked", 61, C),
                    ("update-secret", 70, S),
                    ("update-secret-ok", 71, C),
                ],
            ),
            (
                "channel",
                20,
                &[
                    ("open", 10, S),
                    ("open-ok", 11, C),
                    ("flow", 20, CS),
                    ("flow-ok", 21, CS),
                    ("close", 40, CS),
                    ("close-ok", 41, CS),
                ],
            ),
            (
                "exchange",
                40,
                &[
                    ("declare", 10, S),
                    ("declare-ok", 11, C),
                    ("delete", 20, S),
                    ("delete-ok", 21, C),
                    ("bind", 30, S),
                    ("bind-ok", 31, C),
                    ("unbind", 40, S),
                    ("unbind-ok", 51, C),
                ],
            ),
            (
                "queue",
                50,
                &[
                    ("declare", 10, S),
                    ("declare-ok", 11, C),
                    ("bind", 20, S),
                    ("bind-ok", 21, C),
                    ("purge", 30, S),
                    ("purge-ok", 31, C),
                    ("delete", 40, S),
                    ("delete-ok", 41, C),
                    ("unbind", 50, S),
                    ("unbind-ok", 51, C),
                ],
            ),
            (
                "basic",
                60,
                &[
                    ("qos", 10, S),
                    ("qos-ok", 11, C),
                    ("consume", 20, S),
                    ("consume-ok", 21, C),
                    ("cancel", 30, CS),
                    ("cancel-ok", 31, C),
                    ("publish", 40, S | CONTENT),
                    ("return", 50, C | CONTENT),
                    ("deliver", 60, C | CONTENT),
                    ("get", 70, S),
                    ("get-ok", 71, C | CONTENT),
                    ("get-empty", 72, C),
                    ("ack", 80, CS),
                    ("reject", 90, S),
                    ("recover-async", 100, S),
                    ("recover", 110, S),
                    ("recover-ok", 111, C),
                    ("nack", 120, CS),
                ],
            ),
            ("confirm", 85, &[("select", 10, S), ("select-ok", 11, C)]),
            (
                "tx",
                90,
                &[
                    ("select", 10, S),
                    ("select-ok", 11, C),
                    ("commit", 20, S),
                    ("commit-ok", 21, C),
                    ("rollback", 30, S),
                    ("rollback-ok", 31, C),
                ],
            ),
        ])
    }

    /// A few methods: enough for every check.
    fn small_spec() -> Spec {
        spec_of(&[
            (
                "connection",
                10,
                &[
                    ("start", 10, C),
                    ("start-ok", 11, S),
                    ("close", 50, CS),
                    ("close-ok", 51, CS),
                ],
            ),
            (
                "channel",
                20,
                &[
                    ("open", 10, S),
                    ("open-ok", 11, C),
                    ("close", 40, CS),
                    ("close-ok", 41, CS),
                ],
            ),
            (
                "basic",
                60,
                &[
                    ("publish", 40, S | CONTENT),
                    ("deliver", 60, C | CONTENT),
                    ("ack", 80, CS),
                    ("reject", 90, S),
                ],
            ),
        ])
    }

    const GOOD: &str = r#"<peer-agent name="t" side="client">
  <doc>Test agent.</doc>
  <machine name="connection" scope="connection">
    <state name="awaiting-start" initial="1" otherwise="refuse:command-invalid">
      <on method="connection.start" answer="connection.start-ok" next="open" owner="1"/>
    </state>
    <state name="open" otherwise="refuse:command-invalid" channels="pass">
      <on method="connection.close" answer="connection.close-ok" next="closed" owner="1"/>
      <send method="connection.close" next="closing"/>
    </state>
    <state name="closing" otherwise="ignore">
      <on method="connection.close-ok" next="closed"/>
    </state>
    <state name="closed" otherwise="ignore"/>
  </machine>
  <machine name="channel" scope="channel">
    <state name="closed" initial="1" otherwise="refuse:channel-error">
      <send method="channel.open" next="opening"/>
    </state>
    <state name="opening" otherwise="refuse:command-invalid">
      <on method="channel.open-ok" next="open" owner="1"/>
    </state>
    <state name="open" otherwise="refuse:command-invalid" requests="1">
      <on method="basic.deliver" owner="1"/>
      <on method="basic.ack" owner="1"/>
      <on method="channel.close" answer="channel.close-ok" next="closed" owner="1"/>
      <send method="channel.close" next="closing"/>
    </state>
    <state name="closing" otherwise="ignore">
      <on method="channel.close-ok" next="closed" owner="1"/>
    </state>
  </machine>
</peer-agent>
"#;

    fn parse(text: &str, spec: &Spec) -> Result<PeerAgent> {
        let root = xml::parse(Path::new("test.xml"), text)?;
        from_element(&root, spec)
    }

    /// Loads `GOOD` with `from` replaced by `to` and returns the error message.
    fn error_after(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "test edit {from:?} does not apply");
        let text = GOOD.replacen(from, to, 1);
        match parse(&text, &small_spec()) {
            Ok(_) => panic!("expected an error after replacing {from:?} with {to:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn assert_error(from: &str, to: &str, line: u32, needle: &str) {
        let msg = error_after(from, to);
        assert!(
            msg.starts_with(&format!("test.xml:{line}:")),
            "expected line {line}: {msg}"
        );
        assert!(msg.contains(needle), "expected {needle:?} in: {msg}");
    }

    fn file_of(tokens: TokenStream) -> syn::File {
        syn::parse2::<syn::File>(tokens).expect("generated code parses")
    }

    #[test]
    fn good_agent_loads() {
        let agent = parse(GOOD, &small_spec()).unwrap();
        assert_eq!(agent.name, "t");
        assert_eq!(agent.doc.as_deref(), Some("Test agent."));
        assert_eq!(agent.machines.len(), 2);
        let conn = &agent.machines[0];
        assert_eq!(conn.scope, Scope::Connection);
        assert_eq!(conn.initial().name, "awaiting-start");
        assert_eq!(conn.states[1].channels, Some(ChannelTraffic::Pass));
        // Defaulted from `otherwise`.
        assert_eq!(
            conn.states[0].channels,
            Some(ChannelTraffic::Refuse("command-invalid".into()))
        );
        assert_eq!(conn.states[2].channels, Some(ChannelTraffic::Ignore));
        let start = &conn.states[0].on[0];
        assert_eq!(start.answers, vec!["connection.start-ok".to_string()]);
        assert!(start.owner);
        assert_eq!(start.loc.line, 5);
        let chan = &agent.machines[1];
        assert_eq!(chan.states[0].channels, None);
        // `next` defaults to the state itself.
        assert_eq!(chan.states[2].on[0].next, "open");
        assert!(!chan.states[2].on[0].answers.iter().any(|_| true));
        // Requests: server-received, channel scope, not answers, not sends.
        let spec = small_spec();
        let requests: Vec<String> = chan
            .requests(&spec)
            .iter()
            .map(|(c, m)| naming::dotted(&c.name, &m.name))
            .collect();
        assert_eq!(requests, ["basic.publish", "basic.ack", "basic.reject"]);
    }

    #[test]
    fn root_errors() {
        assert_error(
            r#"<peer-agent name="t" side="client">"#,
            r#"<peer-agent name="t" side="server">"#,
            1,
            "side",
        );
        assert_error(
            r#"side="client""#,
            r#"side="client" colour="red""#,
            1,
            "unexpected attribute `colour`",
        );
        assert_error("<doc>Test agent.</doc>", "<docs/>", 2, "unexpected <docs>");
        let text = GOOD.replace("<doc>Test agent.</doc>", "");
        let text = text.split("  <machine").next().unwrap().to_string() + "</peer-agent>";
        let msg = parse(&text, &small_spec()).unwrap_err().to_string();
        assert!(msg.contains("no <machine>"), "{msg}");
        let msg = parse("<amqp/>", &small_spec()).unwrap_err().to_string();
        assert!(msg.contains("expected <peer-agent>"), "{msg}");
    }

    #[test]
    fn missing_command_invalid_is_an_error() {
        let mut spec = small_spec();
        spec.constants.retain(|c| c.name != "command-invalid");
        let msg = parse(GOOD, &spec).unwrap_err().to_string();
        assert!(msg.starts_with("test.xml:1:"), "{msg}");
        assert!(msg.contains("command-invalid"), "{msg}");
    }

    #[test]
    fn machine_errors() {
        assert_error(
            r#"<machine name="channel" scope="channel">"#,
            r#"<machine name="connection" scope="channel">"#,
            16,
            "duplicate machine `connection`",
        );
        assert_error(
            r#"<machine name="channel" scope="channel">"#,
            r#"<machine name="other" scope="connection">"#,
            16,
            "a second machine of scope connection",
        );
        assert_error(
            r#"<machine name="channel" scope="channel">"#,
            r#"<machine name="channel" scope="session">"#,
            16,
            "`scope` must be connection or channel",
        );
        assert_error(
            r#"<machine name="channel" scope="channel">"#,
            r#"<machine name="Channel" scope="channel">"#,
            16,
            "lower-case words",
        );
    }

    #[test]
    fn state_errors() {
        // Duplicate state (line of the second one).
        assert_error(
            r#"<state name="closing" otherwise="ignore">
      <on method="channel.close-ok""#,
            r#"<state name="open" otherwise="ignore">
      <on method="channel.close-ok""#,
            29,
            "duplicate state `open`",
        );
        // No initial state.
        assert_error(
            r#"<state name="awaiting-start" initial="1""#,
            r#"<state name="awaiting-start""#,
            3,
            "no initial state",
        );
        // Several initial states: reported at the second.
        assert_error(
            r#"<state name="closed" otherwise="ignore"/>"#,
            r#"<state name="closed" initial="1" otherwise="ignore"/>"#,
            14,
            "several initial states",
        );
        // Unknown `next`.
        assert_error(
            r#"next="open" owner="1"/>
    </state>
    <state name="open" otherwise="refuse:command-invalid" channels="pass">"#,
            r#"next="opened" owner="1"/>
    </state>
    <state name="open" otherwise="refuse:command-invalid" channels="pass">"#,
            5,
            "unknown state `opened`",
        );
        assert_error(
            r#"<send method="channel.open" next="opening"/>"#,
            r#"<send method="channel.open" next="nowhere"/>"#,
            18,
            "unknown state `nowhere`",
        );
        // Unknown reply code, a non-error reply code, a malformed `otherwise`.
        assert_error(
            r#"<state name="closed" initial="1" otherwise="refuse:channel-error">"#,
            r#"<state name="closed" initial="1" otherwise="refuse:channel-trouble">"#,
            17,
            "unknown reply code \"channel-trouble\"",
        );
        assert_error(
            r#"<state name="closed" initial="1" otherwise="refuse:channel-error">"#,
            r#"<state name="closed" initial="1" otherwise="refuse:reply-success">"#,
            17,
            "not an error reply code",
        );
        assert_error(
            r#"<state name="closed" initial="1" otherwise="refuse:channel-error">"#,
            r#"<state name="closed" initial="1" otherwise="reject">"#,
            17,
            "must be ignore or refuse:REPLY-CODE",
        );
        assert_error(
            r#"<state name="closed" initial="1" otherwise="refuse:channel-error">"#,
            r#"<state name="closed" initial="1">"#,
            17,
            "missing the `otherwise` attribute",
        );
        // `channels` on a channel state; a bad `channels` value.
        assert_error(
            r#"<state name="opening" otherwise="refuse:command-invalid">"#,
            r#"<state name="opening" otherwise="refuse:command-invalid" channels="pass">"#,
            20,
            "connection machine only",
        );
        assert_error(
            r#"channels="pass">"#,
            r#"channels="refuse:no-such-code">"#,
            7,
            "unknown reply code",
        );
        assert_error(
            r#"<state name="closed" otherwise="ignore"/>"#,
            r#"<state name="closed" otherwise="ignore" initial="yes"/>"#,
            14,
            "must be 0 or 1",
        );
    }

    #[test]
    fn on_errors() {
        // Unknown method.
        assert_error(
            r#"<on method="basic.deliver" owner="1"/>"#,
            r#"<on method="basic.deliverr" owner="1"/>"#,
            24,
            "unknown method \"basic.deliverr\"",
        );
        assert_error(
            r#"<on method="basic.deliver" owner="1"/>"#,
            r#"<on method="deliver" owner="1"/>"#,
            24,
            "unknown method",
        );
        // A method the client never receives.
        assert_error(
            r#"<on method="basic.deliver" owner="1"/>"#,
            r#"<on method="basic.publish" owner="1"/>"#,
            24,
            "never received by the client",
        );
        // Duplicate <on>, reported at the second.
        assert_error(
            r#"<on method="basic.ack" owner="1"/>"#,
            r#"<on method="basic.deliver"/>"#,
            25,
            "handles basic.deliver twice",
        );
        // An answer naming an unknown method, or one the server does not receive.
        assert_error(
            r#"answer="connection.start-ok""#,
            r#"answer="connection.start-okay""#,
            5,
            "unknown method \"connection.start-okay\"",
        );
        assert_error(
            r#"answer="connection.start-ok""#,
            r#"answer="connection.start""#,
            5,
            "never received by the server",
        );
        assert_error(
            r#"answer="connection.start-ok""#,
            r#"answer="connection.start-ok connection.start-ok""#,
            5,
            "listed twice",
        );
        // Scope: connection methods in the channel machine and the other way round.
        assert_error(
            r#"<on method="basic.deliver" owner="1"/>"#,
            r#"<on method="connection.start" owner="1"/>"#,
            24,
            "does not belong in a channel-scope machine",
        );
        assert_error(
            r#"<on method="connection.close-ok" next="closed"/>"#,
            r#"<on method="channel.close-ok" next="closed"/>"#,
            12,
            "does not belong in a connection-scope machine",
        );
        assert_error(
            r#"<on method="channel.close" answer="channel.close-ok""#,
            r#"<on method="channel.close" answer="connection.close-ok""#,
            26,
            "does not belong in a channel-scope machine",
        );
        assert_error(
            r#"<on method="basic.ack" owner="1"/>"#,
            r#"<on method="basic.ack" owner="1" colour="red"/>"#,
            25,
            "unexpected attribute",
        );
    }

    #[test]
    fn send_errors() {
        assert_error(
            r#"<send method="channel.open" next="opening"/>"#,
            r#"<send method="channel.open-ok" next="opening"/>"#,
            18,
            "never received by the server",
        );
        assert_error(
            r#"<send method="channel.open" next="opening"/>"#,
            r#"<send method="connection.close" next="opening"/>"#,
            18,
            "does not belong in a channel-scope machine",
        );
        assert_error(
            r#"<send method="channel.open" next="opening"/>"#,
            r#"<send method="channel.open" next="opening"/><send method="channel.open"/>"#,
            18,
            "<send> of channel.open twice",
        );
        assert_error(
            r#"<send method="channel.open" next="opening"/>"#,
            r#"<send method="channel.opening" next="opening"/>"#,
            18,
            "unknown method",
        );
    }

    /// The names of the functions in `file` whose `match` has a `_` arm.
    fn functions_with_wildcards(file: &syn::File) -> Vec<String> {
        fn has_wild(expr: &syn::Expr) -> bool {
            match expr {
                syn::Expr::Match(m) => m.arms.iter().any(|arm| match &arm.pat {
                    syn::Pat::Wild(_) => true,
                    syn::Pat::Tuple(t) => t.elems.iter().all(|p| matches!(p, syn::Pat::Wild(_))),
                    syn::Pat::Ident(i) => i.subpat.is_none(),
                    _ => false,
                }),
                syn::Expr::Block(b) => b.block.stmts.iter().any(|s| match s {
                    syn::Stmt::Expr(e, _) => has_wild(e),
                    _ => false,
                }),
                _ => false,
            }
        }
        let mut found = Vec::new();
        for item in &file.items {
            if let syn::Item::Fn(f) = item {
                let wild = f.block.stmts.iter().any(|s| match s {
                    syn::Stmt::Expr(e, _) => has_wild(e),
                    _ => false,
                });
                if wild {
                    found.push(f.sig.ident.to_string());
                }
            }
        }
        found
    }

    #[test]
    fn small_agent_emits_parsable_rust_without_wildcards() {
        let spec = small_spec();
        let agent = parse(GOOD, &spec).unwrap();
        let file = file_of(emit_rust(&agent, &spec));
        let fns: Vec<String> = file
            .items
            .iter()
            .filter_map(|i| match i {
                syn::Item::Fn(f) => Some(f.sig.ident.to_string()),
                _ => None,
            })
            .collect();
        for expected in [
            "connection_transition",
            "connection_send",
            "channel_transition",
            "channel_send",
            "hand_to_owner",
            "hand_content_to_owner",
        ] {
            assert!(
                fns.iter().any(|f| f == expected),
                "{expected} missing: {fns:?}"
            );
        }
        assert!(functions_with_wildcards(&file).is_empty());
        let text = prettyplease::unparse(&file);
        for needle in [
            "pub enum ConnectionState",
            "pub enum ChannelState",
            "pub enum Answer",
            "ConnectionStartOk",
            "ChannelCloseOk",
            "pub trait PeerOwner",
            "content: Self::Content,",
            "fn connection_start(",
            "method: super::methods::ConnectionStart,",
            "pub const CONNECTION_TRANSITIONS",
            "pub const CHANNEL_SENDS",
            "pub const fn channel_traffic(self)",
            "ReplyCode::ChannelError",
            "mod tests",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        // basic.reject is server-only: refused as a wrong-side method, not as unexpected.
        assert!(text.contains("method that only a server receives"));
        // Only answers the machines use.
        assert!(!text.contains("Answer::ChannelOpen,"));
    }

    #[test]
    fn shipped_xml_loads_against_amqp_and_rabbitmq() {
        let spec = amqp_spec();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/amq_peer.xml");
        let agent = load(&path, &spec).unwrap_or_else(|e| panic!("{e}"));
        let names = |m: &Machine| m.states.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&agent.machines[0]),
            [
                "awaiting-start",
                "awaiting-tune",
                "awaiting-open-ok",
                "open",
                "closing",
                "closed"
            ]
        );
        assert_eq!(
            names(&agent.machines[1]),
            ["closed", "opening", "open", "closing"]
        );
        // Every method the client can receive on a channel is decided in the open state.
        let open = &agent.machines[1].states[2];
        for (c, m) in spec.methods() {
            if m.receivers.client
                && c.name != "connection"
                && !(c.name == "channel" && m.name.starts_with("open"))
                && m.name != "close-ok"
            {
                let dotted = naming::dotted(&c.name, &m.name);
                assert!(
                    open.on.iter().any(|o| o.method == dotted),
                    "{dotted} not handled when open"
                );
            }
        }
        let file = file_of(emit_rust(&agent, &spec));
        assert!(functions_with_wildcards(&file).is_empty());
        let text = prettyplease::unparse(&file);
        for needle in [
            "ConnectionStartOk",
            "ConnectionSecureOk",
            "ConnectionTuneOk",
            "ConnectionOpen",
            "ConnectionCloseOk",
            "ChannelCloseOk",
            "ChannelFlowOk",
            "fn basic_nack(",
            "super::methods::BasicNack",
            "fn connection_blocked(",
        ] {
            assert!(text.contains(needle), "{needle:?} missing");
        }
        let md = emit_mermaid(&agent);
        assert!(md.starts_with("# The peer agent `amq_peer`"));
        assert_eq!(md.matches("```mermaid\nstateDiagram-v2\n").count(), 2);
        assert!(md.contains(
            "s_awaiting_start --> s_awaiting_tune : connection.start / connection.start-ok (owner)"
        ));
        assert!(md.contains("s_open --> s_closing : send connection.close"));
        assert!(md.contains("s_closed --> [*]"));
        assert!(md.contains(
            "s_open --> s_open : channel.flow / channel.flow-ok (owner)<br/>send any request<br/>25 incoming methods, each to the owner (see the table)\n"
        ));
        assert!(md.contains("| open | basic.deliver | — | open | yes |"));
        assert!(md.contains(
            "s_awaiting_tune --> s_awaiting_open_ok : connection.tune / connection.tune-ok, connection.open"
        ));
    }

    #[test]
    fn shipped_xml_loads_against_the_real_spec() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec");
        let loaded = crate::load(&dir).unwrap_or_else(|e| panic!("{e}"));
        let agent = loaded.peer.expect("protocol.xml names the peer agent");
        // The shipped agent decides the same methods against the real spec as against
        // the hand-built table above.
        let reference = load(&dir.join("amq_peer.xml"), &amqp_spec()).unwrap();
        assert_eq!(agent.machines.len(), reference.machines.len());
        for (real, hand) in agent.machines.iter().zip(&reference.machines) {
            assert_eq!(real.states, hand.states);
        }
        syn::parse2::<syn::File>(emit_rust(&agent, &loaded.spec)).expect("parses");
    }

    #[test]
    fn mermaid_marks_initial_and_terminal_states() {
        let agent = parse(GOOD, &small_spec()).unwrap();
        let md = emit_mermaid(&agent);
        assert!(md.contains("    [*] --> s_awaiting_start\n"));
        assert!(md.contains("    [*] --> s_closed\n"));
        assert!(md.contains("    state \"awaiting-start\" as s_awaiting_start\n"));
        // The connection's closed state is a leaf; the channel's is not (it can reopen).
        assert_eq!(md.matches("s_closed --> [*]").count(), 1);
        assert!(md.contains(
            "s_open --> s_open : basic.deliver (owner)<br/>basic.ack (owner)<br/>send any request"
        ));
        assert!(md.contains("| **awaiting-start** (initial) | refused: command-invalid | refused: command-invalid | no |"));
    }
}
