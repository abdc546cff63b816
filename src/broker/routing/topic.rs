//! Topic exchanges: binding keys are patterns over the dot-separated words of the
//! routing key.
//!
//! Semantics are RabbitMQ's (`rabbit_db_topic_exchange`): keys split on every `.` and
//! empty words are words (`"a..b"` is three words), except that the empty key has no
//! words at all (`split_topic_key(<<>>) -> []`), so `#` matches `""` and `*` does not. A
//! binding word `*` matches exactly one word, `#` zero or more; only a whole word is a
//! wildcard (`a#` is literal), and routing-key words are always literal.
//!
//! The patterns form a trie with three kinds of edge: a literal word, `*` and `#`. A
//! node reached through a `#` edge absorbs any number of further words. Matching runs
//! the trie as an automaton: the set of active nodes is advanced one routing-key word at
//! a time and deduplicated at each step, so a pattern like `#.#.#.#.a` costs a few nodes
//! per word instead of the exponential number of ways it can align with the key, and
//! bindings that share no prefix with the key are never looked at.

use super::{Counts, Destination, Interner};
use crate::broker::hash::HashMap;

const ROOT: usize = 0;

/// Words of a routing or binding key: split on every `.`, but the empty key has none.
fn words(key: &[u8]) -> impl Iterator<Item = &[u8]> {
    let n = if key.is_empty() { 0 } else { usize::MAX };
    key.split(|&b| b == b'.').take(n)
}

#[derive(Debug, Clone)]
pub(super) struct TopicIndex {
    /// Node 0 is the root; ids of removed nodes are reused through `free`.
    nodes: Vec<Node>,
    free: Vec<usize>,
    /// Nodes hold destination ids: several nodes can match one message, and
    /// deduplicating ids is much cheaper than comparing names.
    dests: Interner<Destination>,
}

impl Default for TopicIndex {
    fn default() -> Self {
        TopicIndex {
            nodes: vec![Node::default()],
            free: Vec::new(),
            dests: Interner::default(),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Node {
    words: Edges,
    star: Option<usize>,
    hash: Option<usize>,
    /// Reached through a `#` edge: stays active whatever words follow.
    absorbs: bool,
    /// Destination ids of the bindings whose pattern ends here.
    dests: Counts<usize>,
}

impl Node {
    fn is_unused(&self) -> bool {
        self.dests.is_empty() && self.words.is_empty() && self.star.is_none() && self.hash.is_none()
    }
}

/// One step of a pattern.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Word(&'a [u8]),
    Star,
    Hash,
}

impl<'a> Step<'a> {
    fn of(word: &'a [u8]) -> Self {
        match word {
            b"*" => Step::Star,
            b"#" => Step::Hash,
            w => Step::Word(w),
        }
    }
}

/// Literal-word edges. Most nodes have a handful, where comparing slices beats
/// hashing; a node with many (typically the root) switches to a map.
#[derive(Debug, Clone)]
enum Edges {
    Few(Vec<(Box<[u8]>, usize)>),
    Many(HashMap<Box<[u8]>, usize>),
}

impl Default for Edges {
    fn default() -> Self {
        Edges::Few(Vec::new())
    }
}

const FEW_EDGES: usize = 8;

impl Edges {
    fn get(&self, word: &[u8]) -> Option<usize> {
        match self {
            Edges::Few(v) => v.iter().find(|(w, _)| **w == *word).map(|(_, n)| *n),
            Edges::Many(m) => m.get(word).copied(),
        }
    }

    fn insert(&mut self, word: &[u8], node: usize) {
        match self {
            Edges::Few(v) if v.len() < FEW_EDGES => v.push((word.into(), node)),
            Edges::Few(v) => {
                let mut m: HashMap<Box<[u8]>, usize> = std::mem::take(v).into_iter().collect();
                m.insert(word.into(), node);
                *self = Edges::Many(m);
            }
            Edges::Many(m) => {
                m.insert(word.into(), node);
            }
        }
    }

    fn remove(&mut self, word: &[u8]) {
        match self {
            Edges::Few(v) => v.retain(|(w, _)| **w != *word),
            Edges::Many(m) => {
                m.remove(word);
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Edges::Few(v) => v.is_empty(),
            Edges::Many(m) => m.is_empty(),
        }
    }
}

impl TopicIndex {
    fn child(&self, node: usize, step: Step<'_>) -> Option<usize> {
        let n = self.nodes.get(node)?;
        match step {
            Step::Word(w) => n.words.get(w),
            Step::Star => n.star,
            Step::Hash => n.hash,
        }
    }

    fn new_node(&mut self, absorbs: bool) -> usize {
        let node = Node {
            absorbs,
            ..Node::default()
        };
        match self.free.pop() {
            Some(id) if id < self.nodes.len() => {
                self.nodes[id] = node;
                id
            }
            _ => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        }
    }

    pub(super) fn add(&mut self, pattern: &[u8], dest: &Destination) {
        let mut node = ROOT;
        for w in words(pattern) {
            let step = Step::of(w);
            node = match self.child(node, step) {
                Some(next) => next,
                None => {
                    let next = self.new_node(matches!(step, Step::Hash));
                    let Some(n) = self.nodes.get_mut(node) else {
                        return;
                    };
                    match step {
                        Step::Word(w) => n.words.insert(w, next),
                        Step::Star => n.star = Some(next),
                        Step::Hash => n.hash = Some(next),
                    }
                    next
                }
            };
        }
        if let Some(n) = self.nodes.get_mut(node) {
            let id = self.dests.intern(dest);
            n.dests.add(&id);
        }
    }

    /// Forgets one binding of `dest` at `pattern`, then prunes the nodes that no longer
    /// lead to any binding, so a churn of short-lived bindings does not grow the trie.
    pub(super) fn remove(&mut self, pattern: &[u8], dest: &Destination) {
        let mut path: Vec<(usize, Step<'_>)> = Vec::new();
        let mut node = ROOT;
        for w in words(pattern) {
            let step = Step::of(w);
            let Some(next) = self.child(node, step) else {
                return;
            };
            path.push((node, step));
            node = next;
        }
        let (Some(n), Some(id)) = (self.nodes.get_mut(node), self.dests.id(dest)) else {
            return;
        };
        if !n.dests.values().any(|&d| d == id) {
            return;
        }
        n.dests.remove(&id);
        self.dests.release(id);
        while let Some((parent, step)) = path.pop() {
            if !self.nodes.get(node).is_some_and(Node::is_unused) {
                break;
            }
            if let Some(p) = self.nodes.get_mut(parent) {
                match step {
                    Step::Word(w) => p.words.remove(w),
                    Step::Star => p.star = None,
                    Step::Hash => p.hash = None,
                }
            }
            if let Some(n) = self.nodes.get_mut(node) {
                // Drops the node's (empty) containers now rather than at reuse.
                *n = Node::default();
            }
            self.free.push(node);
            node = parent;
        }
    }

    pub(super) fn route(&self, key: &[u8], out: &mut Vec<Destination>) {
        let mut active = NodeSet::default();
        let mut next = NodeSet::default();
        active.push(ROOT);
        self.close(&mut active);
        for w in words(key) {
            next.clear();
            for &id in active.as_slice() {
                let Some(n) = self.nodes.get(id) else {
                    continue;
                };
                if n.absorbs {
                    next.push(id);
                }
                if let Some(c) = n.words.get(w) {
                    next.push(c);
                }
                if let Some(c) = n.star {
                    next.push(c);
                }
            }
            self.close(&mut next);
            if next.is_empty() {
                return;
            }
            std::mem::swap(&mut active, &mut next);
        }
        let emitting = || {
            active
                .as_slice()
                .iter()
                .filter_map(|&id| self.nodes.get(id))
                .filter(|n| !n.dests.is_empty())
        };
        // Each node's destinations are unique; only several nodes can repeat one.
        let several = emitting().nth(1).is_some();
        let mut found = NodeSet::default();
        let mut fits = true;
        for n in emitting() {
            for &d in n.dests.values() {
                fits &= found.push_inline(d);
            }
        }
        if fits {
            if several {
                found.sort_dedup();
            }
            out.extend(
                found
                    .as_slice()
                    .iter()
                    .filter_map(|&d| self.dests.get(d))
                    .cloned(),
            );
        } else {
            // Too many matches to deduplicate on the stack: do it in the caller's
            // vector rather than allocate.
            let start = out.len();
            for n in emitting() {
                out.extend(n.dests.values().filter_map(|&d| self.dests.get(d)).cloned());
            }
            if several {
                dedup_tail(out, start);
            }
        }
    }

    /// Adds the nodes reachable through `#` edges (a `#` may match no word), then
    /// removes duplicates: a `#` node can be both still absorbing and re-entered from
    /// its parent.
    fn close(&self, set: &mut NodeSet) {
        let mut i = 0;
        while let Some(id) = set.get(i) {
            if let Some(h) = self.nodes.get(id).and_then(|n| n.hash) {
                set.push(h);
            }
            i += 1;
        }
        set.sort_dedup();
    }

    #[cfg(test)]
    fn live_nodes(&self) -> usize {
        self.nodes.len() - self.free.len()
    }
}

/// Removes duplicates from `out[start..]` in place (sorting that part).
fn dedup_tail(out: &mut Vec<Destination>, start: usize) {
    let Some(tail) = out.get_mut(start..) else {
        return;
    };
    if tail.len() < 2 {
        return;
    }
    tail.sort_unstable();
    let mut kept = 1;
    for i in 1..tail.len() {
        if tail.get(i) != tail.get(kept - 1) {
            tail.swap(kept, i);
            kept += 1;
        }
    }
    out.truncate(start + kept);
}

/// A set of ids (of nodes, or of destinations) kept on the stack while small, so
/// routing does not allocate. A set of active nodes spills to the heap when a key keeps
/// more than [`INLINE`] patterns alive at once, which takes a binding set with
/// wildcards at many positions; that is the one case where routing allocates.
struct NodeSet {
    inline: [usize; INLINE],
    len: usize,
    heap: Vec<usize>,
    spilled: bool,
}

const INLINE: usize = 64;

impl Default for NodeSet {
    fn default() -> Self {
        NodeSet {
            inline: [0; INLINE],
            len: 0,
            heap: Vec::new(),
            spilled: false,
        }
    }
}

impl NodeSet {
    /// Adds `id` if it fits on the stack; false (and nothing added) once full.
    fn push_inline(&mut self, id: usize) -> bool {
        match self.inline.get_mut(self.len) {
            Some(slot) if !self.spilled => {
                *slot = id;
                self.len += 1;
                true
            }
            _ => false,
        }
    }

    fn push(&mut self, id: usize) {
        if !self.spilled {
            if let Some(slot) = self.inline.get_mut(self.len) {
                *slot = id;
                self.len += 1;
                return;
            }
            self.heap.clear();
            self.heap.extend_from_slice(&self.inline);
            self.spilled = true;
        }
        self.heap.push(id);
    }

    fn as_slice(&self) -> &[usize] {
        if self.spilled {
            &self.heap
        } else {
            self.inline.get(..self.len).unwrap_or_default()
        }
    }

    fn get(&self, i: usize) -> Option<usize> {
        self.as_slice().get(i).copied()
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    fn clear(&mut self) {
        self.len = 0;
        self.heap.clear();
        self.spilled = false;
    }

    fn sort_dedup(&mut self) {
        if self.spilled {
            self.heap.sort_unstable();
            self.heap.dedup();
            return;
        }
        let Some(s) = self.inline.get_mut(..self.len) else {
            return;
        };
        if s.len() < 2 {
            return;
        }
        s.sort_unstable();
        let mut kept = 1;
        for i in 1..s.len() {
            if s.get(i) != s.get(kept - 1) {
                s.swap(kept, i);
                kept += 1;
            }
        }
        self.len = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{binding, q, routed, ss, topic_matches};
    use super::super::{Binding, Destination, ExchangeKind, RoutingTable};
    use super::*;
    use crate::protocol::FieldTable;
    use proptest::prelude::*;

    fn topic(patterns: &[&str]) -> RoutingTable {
        let mut t = RoutingTable::new(ExchangeKind::Topic);
        for p in patterns {
            assert_eq!(t.bind(binding(q(p), p, FieldTable::new())), Ok(true));
        }
        t
    }

    /// The patterns (named by their queue) that `key` reaches.
    fn hits(t: &RoutingTable, key: &str) -> Vec<String> {
        routed(t, key, None)
            .into_iter()
            .map(|d| d.name().to_string())
            .collect()
    }

    fn index(t: &RoutingTable) -> &TopicIndex {
        match &t.index {
            super::super::Index::Topic(i) => i,
            _ => unreachable!("a topic table"),
        }
    }

    #[test]
    fn words_split_like_rabbitmq() {
        let w = |k: &str| {
            words(k.as_bytes())
                .map(|w| w.to_vec())
                .collect::<Vec<Vec<u8>>>()
        };
        assert!(w("").is_empty());
        assert_eq!(w("a"), [b"a".to_vec()]);
        assert_eq!(w("."), [Vec::<u8>::new(), vec![]]);
        assert_eq!(w("a..b"), [b"a".to_vec(), vec![], b"b".to_vec()]);
        assert_eq!(w("a."), [b"a".to_vec(), vec![]]);
    }

    #[test]
    fn star_is_exactly_one_word() {
        let t = topic(&["a.*.b"]);
        assert_eq!(hits(&t, "a.x.b"), ["a.*.b"]);
        assert_eq!(hits(&t, "a..b"), ["a.*.b"]);
        assert!(hits(&t, "a.b").is_empty());
        assert!(hits(&t, "a.x.y.b").is_empty());
        let t = topic(&["*"]);
        assert_eq!(hits(&t, "a"), ["*"]);
        assert!(hits(&t, "").is_empty(), "the empty key has no word");
        assert!(hits(&t, ".").is_empty(), "\".\" is two words");
        assert!(hits(&t, "a.b").is_empty());
    }

    #[test]
    fn hash_is_zero_or_more_words() {
        let t = topic(&["#"]);
        for key in ["", "a", "a.b.c", ".", "..", "#", "*"] {
            assert_eq!(hits(&t, key), ["#"], "{key:?}");
        }
        let t = topic(&["a.#"]);
        assert_eq!(hits(&t, "a"), ["a.#"]);
        assert_eq!(hits(&t, "a.b"), ["a.#"]);
        assert_eq!(hits(&t, "a.b.c"), ["a.#"]);
        assert_eq!(hits(&t, "a."), ["a.#"]);
        assert!(hits(&t, "b").is_empty());
        assert!(hits(&t, "").is_empty());
        let t = topic(&["#.a"]);
        assert_eq!(hits(&t, "a"), ["#.a"]);
        assert_eq!(hits(&t, "x.y.a"), ["#.a"]);
        assert!(hits(&t, "a.x").is_empty());
        let t = topic(&["a.#.b"]);
        for key in ["a.b", "a.x.b", "a.x.y.b", "a.b.b"] {
            assert_eq!(hits(&t, key), ["a.#.b"], "{key:?}");
        }
        assert!(hits(&t, "a.b.c").is_empty());
        assert!(hits(&t, "b.a.b").is_empty());
    }

    #[test]
    fn wildcards_combined() {
        let t = topic(&["#.#", "*.#", "#.*", "*.*", "#.*.#"]);
        assert_eq!(hits(&t, ""), ["#.#"]);
        assert_eq!(hits(&t, "a"), ["#.#", "#.*", "#.*.#", "*.#"]);
        assert_eq!(hits(&t, "a.b"), ["#.#", "#.*", "#.*.#", "*.#", "*.*"]);
        assert_eq!(hits(&t, "a.b.c"), ["#.#", "#.*", "#.*.#", "*.#"]);
    }

    #[test]
    fn empty_binding_key_matches_only_the_empty_routing_key() {
        let t = topic(&[""]);
        assert_eq!(hits(&t, ""), [""]);
        assert!(hits(&t, ".").is_empty());
        assert!(hits(&t, "a").is_empty());
    }

    #[test]
    fn only_whole_words_are_wildcards() {
        let t = topic(&["a#", "*a", "a.b#"]);
        assert_eq!(hits(&t, "a#"), ["a#"]);
        assert!(hits(&t, "ab").is_empty());
        assert_eq!(hits(&t, "*a"), ["*a"]);
        assert!(hits(&t, "ba").is_empty());
        assert!(hits(&t, "a.b").is_empty());
        // Routing-key words are literal: "*" in a key does not match the word "a".
        let t = topic(&["a", "*"]);
        assert_eq!(hits(&t, "*"), ["*"]);
        assert_eq!(hits(&t, "#"), ["*"]);
    }

    #[test]
    fn overlapping_patterns_to_one_queue_deliver_once() {
        let mut t = RoutingTable::new(ExchangeKind::Topic);
        for p in ["a.b", "a.*", "#", "a.#", "#.b", "*.*"] {
            t.bind(binding(q("only"), p, FieldTable::new())).unwrap();
        }
        t.bind(binding(q("other"), "a.*", FieldTable::new()))
            .unwrap();
        assert_eq!(routed(&t, "a.b", None), [q("only"), q("other")]);
        assert_eq!(routed(&t, "x", None), [q("only")]);
    }

    #[test]
    fn pathological_hash_patterns_stay_linear() {
        let pattern = vec!["#"; 60].join(".") + ".a";
        let mut t = RoutingTable::new(ExchangeKind::Topic);
        t.bind(binding(q("p"), &pattern, FieldTable::new()))
            .unwrap();
        t.bind(binding(
            q("s"),
            &vec!["*"; 100].join("."),
            FieldTable::new(),
        ))
        .unwrap();
        let miss = vec!["b"; 127].join(".");
        let hit = vec!["b"; 126].join(".") + ".a";
        let start = std::time::Instant::now();
        assert!(routed(&t, &miss, None).is_empty());
        assert_eq!(routed(&t, &hit, None), [q("p")]);
        // Backtracking would take C(187, 60) steps; the automaton takes microseconds.
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn many_live_patterns_spill_to_the_heap() {
        // Every mix of "x" and "*" over 7 words: the key x.x.x.x.x.x.x keeps 2^k nodes
        // alive after k words, more than fit inline.
        let mut t = RoutingTable::new(ExchangeKind::Topic);
        let mut other = RoutingTable::new(ExchangeKind::Topic);
        for mask in 0..128u32 {
            let p: Vec<&str> = (0..7)
                .map(|bit| if mask & (1 << bit) != 0 { "*" } else { "x" })
                .collect();
            let p = p.join(".");
            t.bind(binding(q(&p), &p, FieldTable::new())).unwrap();
            // The same patterns all to one queue: 128 matches, one copy.
            other
                .bind(binding(q("one"), &p, FieldTable::new()))
                .unwrap();
        }
        const { assert!(128 > INLINE) };
        assert_eq!(routed(&t, "x.x.x.x.x.x.x", None).len(), 128);
        assert_eq!(routed(&t, "x.x.x.x.x.x.y", None).len(), 64);
        assert!(routed(&t, "x.x.x.x.x.x", None).is_empty());
        assert_eq!(routed(&other, "x.x.x.x.x.x.x", None), [q("one")]);
    }

    #[test]
    fn more_matches_than_fit_inline_are_deduplicated_in_place() {
        let mut t = RoutingTable::new(ExchangeKind::Topic);
        for i in 0..100 {
            for p in ["a.b", "a.*", "#"] {
                t.bind(binding(q(&format!("q{i}")), p, FieldTable::new()))
                    .unwrap();
            }
        }
        let mut out = vec![q("caller's")];
        t.route(b"a.b", None, &mut out);
        assert_eq!(out.len(), 101);
        assert_eq!(out[0], q("caller's"));
        out.sort();
        out.dedup();
        assert_eq!(out.len(), 101);
        // One node matching: no deduplication needed, however many.
        assert_eq!(routed(&t, "z", None).len(), 100);
    }

    #[test]
    fn dedup_tail_only_touches_the_tail() {
        let mut v = vec![q("x"), q("x"), q("b"), q("a"), q("b"), q("a"), q("c")];
        dedup_tail(&mut v, 2);
        assert_eq!(v, [q("x"), q("x"), q("a"), q("b"), q("c")]);
        let mut short = vec![q("x")];
        dedup_tail(&mut short, 5);
        assert_eq!(short, [q("x")]);
    }

    #[test]
    fn unbinding_prunes_the_trie() {
        let patterns = ["a.b.c", "a.*.c", "a.#", "#", "#.#.x", "*", "", "a..b"];
        let mut t = topic(&patterns);
        assert!(index(&t).live_nodes() > 1);
        for p in patterns {
            assert!(t.unbind(&binding(q(p), p, FieldTable::new())), "{p}");
            // Survivors still route.
            assert!(hits(&t, p).iter().all(|h| h != p));
        }
        assert_eq!(index(&t).live_nodes(), 1, "only the root is left");
        assert_eq!(index(&t).dests.live(), 0, "no destination ids are held");
        // Freed nodes are reused.
        let before = index(&t).nodes.len();
        t.bind(binding(q("z"), "a.b", FieldTable::new())).unwrap();
        assert_eq!(index(&t).nodes.len(), before);
        assert_eq!(hits(&t, "a.b"), ["z"]);
    }

    #[test]
    fn partial_unbind_keeps_shared_prefixes() {
        let mut t = topic(&["a.b", "a.b.c"]);
        assert!(t.unbind(&binding(q("a.b"), "a.b", FieldTable::new())));
        assert!(hits(&t, "a.b").is_empty());
        assert_eq!(hits(&t, "a.b.c"), ["a.b.c"]);
        // Unbinding something never bound changes nothing.
        assert!(!t.unbind(&binding(q("a.b.c"), "a.b.x", FieldTable::new())));
        assert_eq!(hits(&t, "a.b.c"), ["a.b.c"]);
    }

    #[test]
    fn many_literal_children_use_a_map() {
        let names: Vec<String> = (0..50).map(|i| format!("w{i}.end")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut t = topic(&refs);
        assert!(matches!(index(&t).nodes[ROOT].words, Edges::Many(_)));
        for n in &names {
            assert_eq!(hits(&t, n), std::slice::from_ref(n));
        }
        for n in &names {
            assert!(t.unbind(&binding(q(n), n, FieldTable::new())));
        }
        assert_eq!(index(&t).live_nodes(), 1);
    }

    fn pattern() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            proptest::sample::select(&["a", "b", "", "*", "#", "ab"][..]),
            0..6,
        )
        .prop_map(|w| w.join("."))
    }

    fn key() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            proptest::sample::select(&["a", "b", "", "ab", "*", "#"][..]),
            0..7,
        )
        .prop_map(|w| w.join("."))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// The trie agrees with the recursive word-by-word definition.
        #[test]
        fn trie_agrees_with_reference(
            patterns in proptest::collection::vec(pattern(), 1..25),
            keys in proptest::collection::vec(key(), 1..10),
        ) {
            let mut t = RoutingTable::new(ExchangeKind::Topic);
            for (i, p) in patterns.iter().enumerate() {
                // Several patterns per queue, to exercise deduplication.
                let dest = q(&format!("q{}", i % 7));
                t.bind(Binding { destination: dest, routing_key: ss(p), arguments: FieldTable::new() })
                    .unwrap();
            }
            for k in &keys {
                let mut want: Vec<Destination> = patterns
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| topic_matches(p.as_bytes(), k.as_bytes()))
                    .map(|(i, _)| q(&format!("q{}", i % 7)))
                    .collect();
                want.sort();
                want.dedup();
                let mut got = Vec::new();
                t.route(k.as_bytes(), None, &mut got);
                let n = got.len();
                got.sort();
                got.dedup();
                prop_assert_eq!(n, got.len(), "duplicate destination for {:?}", k);
                prop_assert_eq!(got, want, "key {:?} patterns {:?}", k, patterns);
            }
        }

        #[test]
        fn any_key_routes_without_panicking(
            patterns in proptest::collection::vec(pattern(), 0..10),
            key in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let mut t = RoutingTable::new(ExchangeKind::Topic);
            for p in &patterns {
                t.bind(binding(q(p), p, FieldTable::new())).unwrap();
            }
            let mut out = Vec::new();
            t.route(&key, None, &mut out);
            prop_assert!(out.len() <= patterns.len());
        }
    }
}
