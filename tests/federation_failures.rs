//! The federation failures RabbitMQ's users report (issue 11, point 6), between
//! in-process brokers: the downstream's memory alarm and the upstream's
//! connection.blocked show as `blocked` and stop the link; removing the upstream,
//! deleting the federated exchange or restarting the downstream leaves no orphaned
//! upstream queue, internal exchange or binding; and a link re-declares no queue a user
//! deleted, except its own upstream queue.

mod support;

use fedamq::BrokerHandle;
use fedamq::federation::LinkState;
use fedamq::protocol::ShortString;
use lapin::options::{ConfirmSelectOptions, QueueDeleteOptions};
use serde_json::json;
use support::broker::channel;
use support::fault_proxy::FaultProxy;
use support::federation::*;

const QUEUE: &str = "federation: fed -> down";

/// `down` (named "down") federating `fed` from `up` in `mode`, with a confirm channel
/// on each; returns once the link runs.
async fn link(
    up: &BrokerHandle,
    down: &BrokerHandle,
    mode: &str,
) -> (Vec<lapin::Connection>, lapin::Channel, lapin::Channel) {
    let (conns, uch, dch) = fed_on_both(up, down).await;
    federate_with(
        down,
        "up",
        &up.url("guest", "guest"),
        "^fed$",
        json!({"fedamq-mode": mode}),
    );
    eventually("the link runs", || links_run(down, 1)).await;
    (conns, uch, dch)
}

fn state(b: &BrokerHandle) -> (LinkState, String) {
    let l = &links(b)[0];
    (l.state, l.reason.clone())
}

/// Federation objects on `up`: its `federation: …` queues and internal exchanges.
fn leftovers(up: &BrokerHandle) -> (Vec<String>, Vec<String>) {
    let v = root(up);
    let named = |n: &ShortString| String::from_utf8_lossy(n.as_bytes()).into_owned();
    let mut queues: Vec<String> = v
        .queues()
        .iter()
        .map(|q| named(q.name()))
        .filter(|n| n.starts_with("federation: "))
        .collect();
    let mut exchanges: Vec<String> = v
        .exchanges()
        .iter()
        .map(|x| named(&x.spec.name))
        .filter(|n| n.starts_with("federation: "))
        .collect();
    queues.sort();
    exchanges.sort();
    (queues, exchanges)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_downstream_memory_alarm_blocks_the_link() {
    let up = bare_node("up").await;
    let down = node_with_manual_alarm("down").await;
    let (_c, uch, dch) = link(&up, &down, "subscriber").await;
    bound_queue(&dch, "q", "fed", "#").await;
    eventually("mirrored", || bindings_of(&up, "fed") == 1).await;

    down.broker().set_alarm(true);
    eventually("blocked at once", || {
        state(&down) == (LinkState::Blocked, "downstream memory alarm".into())
    })
    .await;
    publish_confirmed(&uch, "fed", "k", b"during").await;
    // Sent to the link, which holds it: not published here, not acked upstream.
    let upstream_queue = ShortString::from_static(QUEUE);
    eventually("delivered to the link, unacked", || {
        root(&up)
            .queue(&upstream_queue)
            .is_some_and(|q| q.unacked_count() == 1)
    })
    .await;
    assert_eq!(depth(&down, "q"), 0);
    assert_eq!(links(&down)[0].counters.acked, 0);
    assert_eq!(state(&down).0, LinkState::Blocked);

    down.broker().set_alarm(false);
    wait_depth(&down, "q", 1).await;
    eventually("running again", || links_run(&down, 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstreams_connection_blocked_blocks_the_link() {
    let up = node_with_manual_alarm("up").await;
    let down = bare_node("down").await;
    let (_c, uch, dch) = link(&up, &down, "publisher").await;
    bound_queue(&uch, "upq", "fed", "#").await;
    publish_confirmed(&dch, "fed", "k", b"before").await;
    wait_depth(&up, "upq", 1).await;

    up.broker().set_alarm(true);
    // The link has published, so the upstream blocks it.
    eventually("blocked", || state(&down).0 == LinkState::Blocked).await;
    assert!(
        state(&down).1.contains("upstream blocked"),
        "{:?}",
        state(&down)
    );
    publish_confirmed(&dch, "fed", "k", b"during").await;
    assert_eq!(depth(&up, "upq"), 1, "nothing forwarded while blocked");

    up.broker().set_alarm(false);
    wait_depth(&up, "upq", 2).await;
    eventually("running again", || links_run(&down, 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_upstream_or_the_exchange_leaves_nothing_upstream() {
    let up = bare_node("up").await;
    let down = bare_node("down").await;
    let (_c, _uch, dch) = link(&up, &down, "subscriber").await;
    bound_queue(&dch, "q", "fed", "#").await;
    eventually("mirrored", || bindings_of(&up, "fed") == 1).await;
    assert_eq!(leftovers(&up).0, [QUEUE]);

    // The upstream parameter goes: the link stops and cleans up.
    root(&down)
        .clear_parameter("federation-upstream", "up")
        .unwrap();
    eventually("no link", || links(&down).is_empty()).await;
    eventually("nothing left upstream", || {
        leftovers(&up) == (vec![], vec![]) && bindings_of(&up, "fed") == 0
    })
    .await;

    // Back, then the federated exchange is deleted.
    federate(&down, "up", &up.url("guest", "guest"), "^fed$");
    eventually("the link runs", || links_run(&down, 1)).await;
    eventually("mirrored", || bindings_of(&up, "fed") == 1).await;
    dch.exchange_delete("fed", Default::default())
        .await
        .unwrap();
    eventually("no link", || links(&down).is_empty()).await;
    eventually("nothing left upstream", || {
        leftovers(&up) == (vec![], vec![]) && bindings_of(&up, "fed") == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_downstream_leaves_no_stale_binding_or_exchange() {
    let up = bare_node("up").await;
    let (_uc, uch) = channel(&up).await;
    uch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for run in 0..3 {
        let down = bare_node("down").await;
        let (_c, _uch, dch) = link(&up, &down, "subscriber").await;
        // A different binding each run: what earlier runs bound must not linger.
        let key = format!("run{run}.#");
        bound_queue(&dch, "q", "fed", &key).await;
        eventually("mirrored", || bindings_of(&up, "fed") == 1).await;
        eventually("one internal exchange", || leftovers(&up).1.len() == 1).await;
        assert_eq!(leftovers(&up).0, [QUEUE], "run {run}");
        for k in ["run0.x", "run1.x", "run2.x"] {
            publish_confirmed(&uch, "fed", k, k.as_bytes()).await;
        }
        wait_depth(&down, "q", 1).await;
        eventually("settled", || links_settled(&down)).await;
        let (seen, _) = drain(&dch, "q").await;
        assert_eq!(seen.len(), 1, "run {run}: {seen:?}");
        // An abnormal end (not a policy removal): the upstream queue stays for
        // `expires`, so the next run finds it.
        down.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_redeclares_only_its_own_queue() {
    let up = bare_node("up").await;
    let down = bare_node("down").await;
    let proxy = FaultProxy::start(up.local_addr()).await;
    let (_conns, uch, dch) = fed_on_both(&up, &down).await;
    bound_queue(&dch, "keep", "fed", "keep.#").await;
    bound_queue(&dch, "gone", "fed", "gone.#").await;
    federate(&down, "up", &proxy.url("guest", "guest", "/"), "^fed$");
    eventually("the link runs", || links_run(&down, 1)).await;
    eventually("mirrored", || bindings_of(&up, "fed") == 2).await;

    // A user deletes a downstream queue while the link is cut.
    proxy.set_refuse(true);
    proxy.cut();
    eventually("cut", || state(&down).0 != LinkState::Running).await;
    dch.queue_delete("gone", QueueDeleteOptions::default())
        .await
        .unwrap();
    proxy.set_refuse(false);
    eventually("its binding leaves the upstream", || {
        links_run(&down, 1) && bindings_of(&up, "fed") == 1
    })
    .await;
    let gone = ShortString::from_static("gone");
    assert!(root(&down).queue(&gone).is_none(), "re-declared downstream");
    assert!(root(&up).queue(&gone).is_none(), "declared upstream");

    // A user deletes the link's own upstream queue: the link declares it again.
    uch.queue_delete(QUEUE, QueueDeleteOptions::default())
        .await
        .unwrap();
    eventually("the upstream queue is back and bound", || {
        root(&up).queue(&ShortString::from_static(QUEUE)).is_some()
            && links_run(&down, 1)
            && bindings_of(&up, "fed") == 1
    })
    .await;
    publish_confirmed(&uch, "fed", "keep.1", b"keep.1").await;
    wait_depth(&down, "keep", 1).await;
}
