//! OpenAMQ's federation modes, chosen by the fedamq-only upstream key `fedamq-mode`,
//! between in-process brokers: publisher (local publishes also go up), locator (up
//! only when no local queue took them), fanout (client publishes go up unrouted and
//! come back down), service (only exclusive bindings mirrored; a bind mixing exclusive
//! and non-exclusive queues is refused with 530). Returns from the upstream reach the
//! original publisher, and a full forwarding backlog holds the publisher back (flow)
//! rather than dropping anything.

mod support;

use std::collections::HashMap;

use fedamq::BrokerHandle;
use fedamq::federation::LinkState;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use serde_json::json;
use support::broker::{channel, connect, reply_code};
use support::fault_proxy::FaultProxy;
use support::federation::*;

/// An upstream and a downstream whose `fed` topic exchange is federated from it in
/// `mode`, both with a confirm channel; the link runs.
struct Pair {
    up: BrokerHandle,
    down: BrokerHandle,
    uch: Channel,
    dch: Channel,
    _conns: Vec<lapin::Connection>,
}

async fn pair(mode: &str, upstream_uri: Option<String>, up: BrokerHandle) -> Pair {
    let down = bare_node("down").await;
    let (conns, uch, dch) = fed_on_both(&up, &down).await;
    let uri = upstream_uri.unwrap_or_else(|| up.url("guest", "guest"));
    federate_with(&down, "up", &uri, "^fed$", json!({"fedamq-mode": mode}));
    eventually("the link runs", || links_run(&down, 1)).await;
    Pair {
        up,
        down,
        uch,
        dch,
        _conns: conns,
    }
}

fn bodies(seen: &HashMap<Vec<u8>, usize>) -> Vec<String> {
    let mut v: Vec<String> = seen
        .iter()
        .map(|(k, n)| format!("{}x{n}", String::from_utf8_lossy(k)))
        .collect();
    v.sort();
    v
}

/// The cluster names in a message's `x-received-from`, newest first.
fn received_from(headers: &Option<FieldTable>) -> Vec<String> {
    let Some(AMQPValue::FieldArray(hops)) = headers
        .as_ref()
        .and_then(|h| h.inner().get("x-received-from").cloned())
    else {
        return Vec::new();
    };
    hops.as_slice()
        .iter()
        .filter_map(|h| match h {
            AMQPValue::FieldTable(t) => match t.inner().get("cluster-name") {
                Some(AMQPValue::LongString(s)) => Some(s.to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_mode_forwards_every_local_publish() {
    let p = pair("publisher", None, bare_node("up").await).await;
    bound_queue(&p.uch, "upq", "fed", "a.#").await;
    bound_queue(&p.dch, "downq", "fed", "a.#").await;
    for key in ["a.1", "a.2", "a.3"] {
        publish_confirmed(&p.dch, "fed", key, key.as_bytes()).await;
    }
    wait_depth(&p.up, "upq", 3).await;
    let (seen, headers) = drain(&p.uch, "upq").await;
    assert_eq!(bodies(&seen), ["a.1x1", "a.2x1", "a.3x1"]);
    assert_eq!(received_from(&headers), ["down"], "the hop is recorded");
    let (seen, _) = drain(&p.dch, "downq").await;
    assert_eq!(
        bodies(&seen),
        ["a.1x1", "a.2x1", "a.3x1"],
        "routed locally too"
    );

    // Nothing comes down: publisher mode mirrors no binding.
    assert_eq!(bindings_of(&p.up, "fed"), 1);
    publish_confirmed(&p.uch, "fed", "a.up", b"a.up").await;
    wait_depth(&p.up, "upq", 1).await;
    assert_eq!(links(&p.down)[0].counters.received, 0);

    // Unroutable upstream: returned to the original publisher.
    let (_c, plain) = channel(&p.down).await;
    assert_eq!(returned(&plain, "fed", "b.1").await, (312, b"b.1".to_vec()));
    eventually("counted", || links(&p.down)[0].counters.returned == 1).await;
    let l = &links(&p.down)[0];
    assert_eq!(l.mode, "publisher");
    assert_eq!(l.counters.forwarded, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locator_mode_forwards_only_what_no_local_queue_took() {
    let p = pair("locator", None, bare_node("up").await).await;
    bound_queue(&p.uch, "upq", "fed", "#").await;
    bound_queue(&p.dch, "downq", "fed", "local.#").await;
    for key in ["local.1", "remote.1", "local.2", "remote.2"] {
        publish_confirmed(&p.dch, "fed", key, key.as_bytes()).await;
    }
    wait_depth(&p.up, "upq", 2).await;
    eventually("forwards confirmed", || {
        links(&p.down)[0].counters.forwarded == 2
    })
    .await;
    let (seen, _) = drain(&p.uch, "upq").await;
    assert_eq!(bodies(&seen), ["remote.1x1", "remote.2x1"]);
    let (seen, _) = drain(&p.dch, "downq").await;
    assert_eq!(bodies(&seen), ["local.1x1", "local.2x1"]);

    // Unroutable here and upstream: the upstream's return reaches the publisher.
    p.uch
        .queue_unbind("upq", "fed", "#", FieldTable::default())
        .await
        .unwrap();
    let (_c, plain) = channel(&p.down).await;
    assert_eq!(
        returned(&plain, "fed", "nowhere").await,
        (312, b"nowhere".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_mode_sends_client_publishes_to_the_root_and_back() {
    let p = pair("fanout", None, bare_node("up").await).await;
    bound_queue(&p.uch, "upq", "fed", "#").await;
    bound_queue(&p.dch, "downq", "fed", "#").await;
    eventually("the binding is mirrored", || bindings_of(&p.up, "fed") == 2).await;
    publish_confirmed(&p.dch, "fed", "k", b"from-down").await;
    publish_confirmed(&p.uch, "fed", "k", b"from-up").await;
    wait_depth(&p.up, "upq", 2).await;
    wait_depth(&p.down, "downq", 2).await;
    eventually("settled", || {
        let c = &links(&p.down)[0].counters;
        c.received == 2 && c.acked == 2 && c.forwarded == 1
    })
    .await;
    let (seen, headers) = drain(&p.dch, "downq").await;
    // Once each: the local publish was not routed here, only brought back down.
    assert_eq!(bodies(&seen), ["from-downx1", "from-upx1"]);
    assert_eq!(received_from(&headers), ["up"]);
    let (seen, _) = drain(&p.uch, "upq").await;
    assert_eq!(bodies(&seen), ["from-downx1", "from-upx1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_mode_mirrors_exclusive_bindings_and_refuses_a_mix() {
    let p = pair("service", None, bare_node("up").await).await;
    bound_queue(&p.uch, "upq", "fed", "up.#").await;
    // An exclusive queue (the service) and a shared one.
    p.dch
        .queue_declare(
            "svc",
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    p.dch
        .queue_bind(
            "svc",
            "fed",
            "svc.#",
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    bound_queue(&p.dch, "shared", "fed", "shared.#").await;
    eventually("only the exclusive binding is mirrored", || {
        bindings_of(&p.up, "fed") == 2
    })
    .await;
    for key in ["svc.1", "shared.1"] {
        publish_confirmed(&p.uch, "fed", key, key.as_bytes()).await;
    }
    wait_depth(&p.down, "svc", 1).await;
    // Locator half: what no local queue takes goes up; what one takes does not.
    for key in ["up.1", "shared.2"] {
        publish_confirmed(&p.dch, "fed", key, key.as_bytes()).await;
    }
    wait_depth(&p.up, "upq", 1).await;
    eventually("settled", || {
        let c = &links(&p.down)[0].counters;
        c.forwarded == 1 && c.received == 1 && c.acked == 1
    })
    .await;
    let (seen, _) = drain(&p.uch, "upq").await;
    assert_eq!(bodies(&seen), ["up.1x1"]);
    let (seen, _) = drain(&p.dch, "shared").await;
    assert_eq!(bodies(&seen), ["shared.2x1"], "shared.1 stayed upstream");
    let (seen, _) = drain(&p.dch, "svc").await;
    assert_eq!(bodies(&seen), ["svc.1x1"]);

    // A shared queue on the service's key: OpenAMQ's 530.
    let conn = connect(&p.down).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare("mix", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let err = ch
        .queue_bind(
            "mix",
            "fed",
            "svc.#",
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(530), "{err}");
    assert!(
        err.to_string()
            .contains("Invalid bind mix for service federation"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_forwarding_backlog_holds_the_publisher_back_and_drops_nothing() {
    const N: usize = 8_000;
    let up = bare_node("up").await;
    let proxy = FaultProxy::start(up.local_addr()).await;
    let p = pair("publisher", Some(proxy.url("guest", "guest", "/")), up).await;
    bound_queue(&p.uch, "upq", "fed", "#").await;
    bound_queue(&p.dch, "downq", "fed", "#").await;
    proxy.set_refuse(true);
    proxy.cut();
    eventually("the link notices", || {
        links(&p.down)[0].state != LinkState::Running
    })
    .await;
    let (_c, plain) = channel(&p.down).await;
    let publishing = tokio::spawn(async move {
        let body = vec![b'x'; 2048];
        for i in 0..N {
            let mut b = body.clone();
            b[..8].copy_from_slice(&(i as u64).to_be_bytes());
            plain
                .basic_publish(
                    "fed",
                    "k",
                    Default::default(),
                    &b,
                    BasicProperties::default(),
                )
                .await
                .unwrap();
        }
    });
    // The backlog fills and the publisher is held back: its messages stop arriving.
    eventually("the publisher is held back", || {
        links(&p.down)[0].counters.held_back > 0
    })
    .await;
    assert!(
        depth(&p.down, "downq") < N,
        "the publisher was not held back"
    );
    assert!(!publishing.is_finished());
    proxy.set_refuse(false);
    publishing.await.unwrap();
    wait_depth(&p.up, "upq", N).await;
    wait_depth(&p.down, "downq", N).await;
    eventually("all forwarded", || {
        links(&p.down)[0].counters.forwarded == N as u64
    })
    .await;
    assert_eq!(depth(&p.up, "upq"), N, "nothing dropped, nothing twice");
    eventually("running again", || links_run(&p.down, 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_return_whose_publisher_has_gone_is_counted() {
    let up = bare_node("up").await;
    let proxy = FaultProxy::start(up.local_addr()).await;
    let p = pair("locator", Some(proxy.url("guest", "guest", "/")), up).await;
    // The link is down while the message is published and its publisher leaves.
    proxy.set_refuse(true);
    proxy.cut();
    eventually("the link notices", || {
        links(&p.down)[0].state != LinkState::Running
    })
    .await;
    let (conn, plain) = channel(&p.down).await;
    plain
        .basic_publish(
            "fed",
            "nowhere",
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"orphan",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    // A round trip on the same connection: the publish has been handled.
    plain
        .queue_declare("", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    conn.close(200, "bye").await.unwrap();
    proxy.set_refuse(false);
    eventually("returned upstream, publisher gone", || {
        let c = &links(&p.down)[0].counters;
        c.returned == 1 && c.returns_lost == 1
    })
    .await;
}

/// OpenAMQ's fanout tree: each level sends its clients' publishes up unrouted, the
/// root routes them, and they come down to every level once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fanout_tree_delivers_at_every_level_once() {
    let nodes = [
        bare_node("root").await,
        bare_node("mid").await,
        bare_node("leaf").await,
    ];
    let mut channels = Vec::new();
    for n in &nodes {
        let (c, ch) = channel(n).await;
        declare_topic(&ch, "fed").await;
        bound_queue(&ch, "q", "fed", "#").await;
        ch.confirm_select(Default::default()).await.unwrap();
        channels.push((c, ch));
    }
    for (down, up) in [(1, 0), (2, 1)] {
        federate_with(
            &nodes[down],
            "up",
            &nodes[up].url("guest", "guest"),
            "^fed$",
            json!({"fedamq-mode": "fanout", "max-hops": 2}),
        );
    }
    eventually("links run", || {
        links_run(&nodes[1], 1) && links_run(&nodes[2], 1)
    })
    .await;
    // The root: its queue, mid's and leaf's (through mid); mid: its queue and leaf's.
    eventually("bindings mirrored", || {
        bindings_of(&nodes[0], "fed") == 3 && bindings_of(&nodes[1], "fed") == 2
    })
    .await;
    for (i, (_, ch)) in channels.iter().enumerate() {
        publish_confirmed(ch, "fed", "k", format!("from{i}").as_bytes()).await;
    }
    for n in &nodes {
        wait_depth(n, "q", 3).await;
    }
    eventually("settled", || {
        nodes.iter().all(|n| {
            links_settled(n)
                && root(n)
                    .queues()
                    .iter()
                    .filter(|q| q.name().as_bytes().starts_with(b"federation: "))
                    .all(|q| q.message_count() == 0 && q.unacked_count() == 0)
        })
    })
    .await;
    for (i, (_, ch)) in channels.iter().enumerate() {
        let (seen, _) = drain(ch, "q").await;
        assert_eq!(
            bodies(&seen),
            ["from0x1", "from1x1", "from2x1"],
            "level {i}"
        );
    }
}
