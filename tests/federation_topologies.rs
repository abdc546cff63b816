//! Loop prevention on the topologies RabbitMQ's guide names (issue 11, point 7): a
//! complete graph of 4 (`max-hops` 1), a ring of 6 (`max-hops` 5) and a tree of depth 3
//! federated both ways, all in-process fedamq brokers. Each message published on a
//! node reaches every bound queue it may reach exactly once: the cluster names in
//! `x-received-from` and `x-bound-from` plus `max-hops` keep it from coming back or
//! arriving twice by another path.

mod support;

use std::collections::{BTreeMap, HashMap};

use fedamq::BrokerHandle;
use lapin::Channel;
use lapin::options::ConfirmSelectOptions;
use serde_json::json;
use support::broker::channel;
use support::federation::*;

/// Messages each publishing node sends.
const PER_NODE: usize = 5;

/// `edges`: (downstream, upstream) pairs; each downstream federates `fed` from its
/// upstreams with `max_hops`. Every node has a queue bound with `#`; `publishers`
/// each publish [`PER_NODE`] messages.
async fn exactly_once(n: usize, edges: &[(usize, usize)], max_hops: i64, publishers: &[usize]) {
    let mut nodes = Vec::new();
    let mut channels: Vec<(lapin::Connection, Channel)> = Vec::new();
    for i in 0..n {
        let b = bare_node(&format!("n{i}")).await;
        let (c, ch) = channel(&b).await;
        declare_topic(&ch, "fed").await;
        bound_queue(&ch, "q", "fed", "#").await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        nodes.push(b);
        channels.push((c, ch));
    }
    for &(down, up) in edges {
        federate_with(
            &nodes[down],
            &format!("n{up}"),
            &nodes[up].url("guest", "guest"),
            "^fed$",
            json!({"max-hops": max_hops}),
        );
    }
    let upstreams = |d: usize| edges.iter().filter(|e| e.0 == d).count();
    // The bindings each exchange ends with: its queue's, and one per path a binding
    // travels against the flow (no node twice, at most max-hops long).
    let expected_bindings = bindings_expected(n, edges, max_hops);
    for (i, node) in nodes.iter().enumerate() {
        eventually(&format!("n{i}'s links run"), || {
            links_run(node, upstreams(i))
        })
        .await;
        eventually(
            &format!("n{i} has {} bindings", expected_bindings[i]),
            || bindings_of(node, "fed") == expected_bindings[i],
        )
        .await;
    }
    for &p in publishers {
        for m in 0..PER_NODE {
            publish_confirmed(&channels[p].1, "fed", "k", format!("n{p}-{m}").as_bytes()).await;
        }
    }
    // Where each message may go: along the flow (upstream to downstream), no node
    // twice, at most max-hops links.
    let reach = reachable(n, edges, max_hops);
    for (d, node) in nodes.iter().enumerate() {
        let want = publishers.iter().filter(|&&p| reach[p][d]).count() * PER_NODE;
        wait_depth(node, "q", want).await;
    }
    // Nothing more on its way: every link's upstream queue is empty and settled.
    eventually("every upstream queue empty", || {
        nodes.iter().all(|b| {
            root(b)
                .queues()
                .iter()
                .filter(|q| q.name().as_bytes().starts_with(b"federation: "))
                .all(|q| q.message_count() == 0 && q.unacked_count() == 0)
        })
    })
    .await;
    for node in &nodes {
        eventually("links settled", || links_settled(node)).await;
    }
    for (d, (_, ch)) in channels.iter().enumerate() {
        let (seen, _) = drain(ch, "q").await;
        let mut want = HashMap::new();
        for &p in publishers.iter().filter(|&&p| reach[p][d]) {
            for m in 0..PER_NODE {
                want.insert(format!("n{p}-{m}").into_bytes(), 1usize);
            }
        }
        let show = |m: &HashMap<Vec<u8>, usize>| -> BTreeMap<String, usize> {
            m.iter()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), *v))
                .collect()
        };
        assert_eq!(show(&seen), show(&want), "what n{d}'s queue got");
    }
    drop(channels);
    drop::<Vec<BrokerHandle>>(nodes);
}

/// Simple paths from each node, following `step(node) -> next nodes`, at most
/// `max_hops` long: calls `visit(start, end)` for each (start ≠ end).
fn paths(
    n: usize,
    step: &dyn Fn(usize) -> Vec<usize>,
    max_hops: i64,
    visit: &mut dyn FnMut(usize, usize),
) {
    fn walk(
        path: &mut Vec<usize>,
        step: &dyn Fn(usize) -> Vec<usize>,
        left: i64,
        visit: &mut dyn FnMut(usize, usize),
    ) {
        if left == 0 {
            return;
        }
        let here = *path.last().unwrap();
        for next in step(here) {
            if path.contains(&next) {
                continue;
            }
            visit(path[0], next);
            path.push(next);
            walk(path, step, left - 1, visit);
            path.pop();
        }
    }
    for start in 0..n {
        walk(&mut vec![start], step, max_hops, visit);
    }
}

/// Per node: 1 (its queue) + the number of binding paths ending there.
fn bindings_expected(n: usize, edges: &[(usize, usize)], max_hops: i64) -> Vec<usize> {
    let mut count = vec![1; n];
    let up = |d: usize| edges.iter().filter(|e| e.0 == d).map(|e| e.1).collect();
    paths(n, &up, max_hops, &mut |_, end| count[end] += 1);
    count
}

/// `reach[p][d]`: a message published on `p` reaches `d`'s queue.
fn reachable(n: usize, edges: &[(usize, usize)], max_hops: i64) -> Vec<Vec<bool>> {
    let mut reach = vec![vec![false; n]; n];
    for (i, r) in reach.iter_mut().enumerate() {
        r[i] = true;
    }
    let down = |u: usize| edges.iter().filter(|e| e.1 == u).map(|e| e.0).collect();
    paths(n, &down, max_hops, &mut |p, d| reach[p][d] = true);
    reach
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_graph_of_4_with_max_hops_1() {
    let mut edges = Vec::new();
    for d in 0..4 {
        for u in (0..4).filter(|u| *u != d) {
            edges.push((d, u));
        }
    }
    exactly_once(4, &edges, 1, &[0, 1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_of_6_with_max_hops_5() {
    // Node i federates from node i-1: messages go round one way.
    let edges: Vec<_> = (0..6).map(|i| (i, (i + 5) % 6)).collect();
    exactly_once(6, &edges, 5, &[0, 1, 2, 3, 4, 5]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_of_depth_3_federated_both_ways() {
    // A binary tree (node i's parent is (i-1)/2), each edge federated both ways; the
    // longest path, leaf to leaf through the root, is 6 links.
    let mut edges = Vec::new();
    for child in 1..15 {
        let parent = (child - 1) / 2;
        edges.push((child, parent));
        edges.push((parent, child));
    }
    exactly_once(15, &edges, 6, &[0, 1, 7, 14]).await;
}
