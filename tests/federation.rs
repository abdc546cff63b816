//! Federated exchanges between in-process brokers (port 0), in subscriber mode
//! (RabbitMQ's behaviour): messages published upstream reach downstream queues bound
//! to the federated exchange, bindings made and removed downstream appear and
//! disappear upstream, a cut link loses nothing, and a symmetric pair delivers each
//! message once. With the private RabbitMQ node (FEDAMQ_TEST_RABBITMQ_URL), RabbitMQ is
//! the upstream of fedamq.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use fedamq::broker::policy::PolicyKind;
use fedamq::federation::LinkState;
use fedamq::protocol::ShortString;
use lapin::options::ConfirmSelectOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;
use support::broker::channel;
use support::fault_proxy::FaultProxy;
use support::federation::*;
use support::management::Http;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_bindings_flow_through_a_link() {
    let up = node("up").await;
    let down = node("down").await;
    let (_dc, dch) = channel(&down).await;
    let (_uc, uch) = channel(&up).await;
    declare_topic(&dch, "fed").await;
    federate(&down, "up", &up.url("guest", "guest"), "^fed$");
    bound_queue(&dch, "local", "fed", "a.*").await;

    // The binding is mirrored: upstream exchange → internal exchange → upstream queue.
    eventually("the binding reaches the upstream", || {
        bindings_of(&up, "fed") == 1
    })
    .await;
    eventually("the link runs", || {
        links(&down)
            .first()
            .is_some_and(|l| l.state == LinkState::Running)
    })
    .await;
    let q = root(&up)
        .queue(&ShortString::from_static("federation: fed -> down"))
        .expect("RabbitMQ's upstream queue name");
    assert!(q.spec.durable, "the upstream queue is durable");

    uch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for key in ["a.b", "x.y", "a.c"] {
        publish_confirmed(&uch, "fed", key, key.as_bytes()).await;
    }
    wait_depth(&down, "local", 2).await;
    let (seen, headers) = drain(&dch, "local").await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.contains_key(&b"a.b"[..]) && seen.contains_key(&b"a.c"[..]));
    let headers = headers.unwrap();
    let Some(AMQPValue::FieldArray(hops)) = headers.inner().get("x-received-from") else {
        panic!("no x-received-from in {headers:?}");
    };
    let Some(AMQPValue::FieldTable(hop)) = hops.as_slice().first() else {
        panic!("{hops:?}")
    };
    let field = |k: &str| hop.inner().get(k).cloned();
    assert_eq!(
        field("cluster-name"),
        Some(AMQPValue::LongString("up".into()))
    );
    assert_eq!(field("exchange"), Some(AMQPValue::LongString("fed".into())));
    assert_eq!(field("redelivered"), Some(AMQPValue::Boolean(false)));
    let uri = format!("{:?}", field("uri"));
    assert!(!uri.contains("guest"), "credentials in {uri}");

    // Unbinding downstream removes the mirrored binding upstream.
    dch.queue_unbind("local", "fed", "a.*", FieldTable::default())
        .await
        .unwrap();
    eventually("the binding leaves the upstream", || {
        bindings_of(&up, "fed") == 0
    })
    .await;

    let l = &links(&down)[0];
    assert_eq!((l.exchange.as_str(), l.upstream.as_str()), ("fed", "up"));
    // RabbitMQ's fields in the API, and the counters.
    let api = Http::of(&down).get("/api/federation-links/%2f").await;
    assert_eq!(api.status, 200);
    let item = &api.body[0];
    for (field, value) in [
        ("type", json!("exchange")),
        ("exchange", json!("fed")),
        ("upstream_exchange", json!("fed")),
        ("upstream", json!("up")),
        ("vhost", json!("/")),
        ("status", json!("running")),
        ("messages_received", json!(2)),
        ("bindings", json!(0)),
    ] {
        assert_eq!(item[field], value, "{field} in {item}");
    }
    for field in ["node", "id", "uri", "timestamp", "local_connection"] {
        assert!(item[field].is_string(), "{field} in {item}");
    }
    assert_eq!(l.counters.received, 2);
    assert_eq!(l.counters.acked, 2);

    // Removing the policy stops the link and deletes its upstream queue.
    root(&down)
        .clear_policy(PolicyKind::User, "fed-up")
        .unwrap();
    eventually("the link goes", || links(&down).is_empty()).await;
    let upstream_queue = ShortString::from_static("federation: fed -> down");
    eventually("the upstream queue is deleted", || {
        root(&up).queue(&upstream_queue).is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_loses_nothing_routed_while_it_was_down() {
    let up = node("up").await;
    let down = node("down").await;
    let proxy = FaultProxy::start(up.local_addr()).await;
    let (_dc, dch) = channel(&down).await;
    let (_uc, uch) = channel(&up).await;
    declare_topic(&dch, "fed").await;
    bound_queue(&dch, "local", "fed", "#").await;
    federate(&down, "up", &proxy.url("guest", "guest", "/"), "^fed$");
    eventually("the binding reaches the upstream", || {
        bindings_of(&up, "fed") == 1
    })
    .await;
    eventually("the link runs", || {
        links(&down)
            .first()
            .is_some_and(|l| l.state == LinkState::Running)
    })
    .await;
    uch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    publish_confirmed(&uch, "fed", "k", b"before").await;
    wait_depth(&down, "local", 1).await;

    // Down: what the upstream routes meanwhile waits in the upstream queue.
    proxy.set_refuse(true);
    proxy.cut();
    eventually("the link notices", || {
        links(&down)
            .first()
            .is_some_and(|l| l.state != LinkState::Running)
    })
    .await;
    for i in 0..100 {
        publish_confirmed(&uch, "fed", "k", format!("m{i}").as_bytes()).await;
    }
    proxy.set_refuse(false);
    wait_depth(&down, "local", 101).await;
    let (seen, _) = drain(&dch, "local").await;
    assert!(seen.contains_key(&b"before"[..]));
    for i in 0..100 {
        assert!(seen.contains_key(format!("m{i}").as_bytes()), "m{i} lost");
    }
    eventually("the link runs again", || {
        links(&down)
            .first()
            .is_some_and(|l| l.state == LinkState::Running && l.counters.connects >= 2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symmetric_pair_delivers_each_message_once() {
    let a = node("a").await;
    let b = node("b").await;
    let (_ac, ach) = channel(&a).await;
    let (_bc, bch) = channel(&b).await;
    for ch in [&ach, &bch] {
        declare_topic(ch, "fed").await;
        bound_queue(ch, "q", "fed", "#").await;
    }
    federate(&a, "b", &b.url("guest", "guest"), "^fed$");
    federate(&b, "a", &a.url("guest", "guest"), "^fed$");
    // Each side: its own queue, and the other's internal exchange (one binding; the
    // mirrored binding that came from the other side does not go back).
    eventually("bindings mirrored both ways", || {
        bindings_of(&a, "fed") == 2 && bindings_of(&b, "fed") == 2
    })
    .await;
    eventually("both links run", || {
        [&a, &b].iter().all(|n| {
            links(n)
                .first()
                .is_some_and(|l| l.state == LinkState::Running)
        })
    })
    .await;
    for ch in [&ach, &bch] {
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
    }
    for i in 0..10 {
        publish_confirmed(&ach, "fed", "k", format!("a{i}").as_bytes()).await;
        publish_confirmed(&bch, "fed", "k", format!("b{i}").as_bytes()).await;
    }
    wait_depth(&a, "q", 20).await;
    wait_depth(&b, "q", 20).await;
    // Everything taken from the upstream queues has been settled, so no copy is still
    // on its way.
    for n in [&a, &b] {
        eventually("links settled", || {
            let l = &links(n)[0];
            l.counters.received == 10 && l.counters.acked + l.counters.dropped == 10
        })
        .await;
    }
    for (ch, name) in [(&ach, "a"), (&bch, "b")] {
        let (seen, _) = drain(ch, "q").await;
        assert_eq!(seen.len(), 20, "{name}: {seen:?}");
        assert!(
            seen.values().all(|n| *n == 1),
            "{name}: duplicates {seen:?}"
        );
    }
}

/// RabbitMQ as the upstream of a fedamq federated exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_as_upstream() {
    if !support::rabbitmq::available("rabbitmq_as_upstream") {
        return;
    }
    let down = node("fedamq-down").await;
    let (_dc, dch) = channel(&down).await;
    let exchange = format!("fed-rmq-{}", rand_suffix());
    declare_topic(&dch, &exchange).await;
    bound_queue(&dch, "local", &exchange, "a.#").await;
    federate(
        &down,
        "rmq",
        &support::rabbitmq::url(),
        &format!("^{exchange}$"),
    );
    eventually("the link runs", || {
        links(&down)
            .first()
            .is_some_and(|l| l.state == LinkState::Running)
    })
    .await;
    // RabbitMQ has no tunnels: the link has no upstream view, and says why.
    eventually("the upstream view is unsupported", || {
        links(&down).first().is_some_and(|l| {
            l.upstream_view.json() == json!({"state": "unavailable", "reason": "unsupported"})
        })
    })
    .await;
    let rmq = lapin::Connection::connect(&support::rabbitmq::url(), Default::default())
        .await
        .unwrap();
    let rch = rmq.create_channel().await.unwrap();
    rch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for key in ["a.1", "b.1", "a.2"] {
        publish_confirmed(&rch, &exchange, key, key.as_bytes()).await;
    }
    wait_depth(&down, "local", 2).await;
    let (seen, headers) = drain(&dch, "local").await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    let headers = headers.unwrap();
    assert!(headers.inner().contains_key("x-received-from"));
    // Clean up on RabbitMQ: removing the policy deletes the upstream queue there.
    root(&down)
        .clear_policy(PolicyKind::User, "fed-rmq")
        .unwrap();
    eventually("the link goes", || links(&down).is_empty()).await;
    let _ = rch.exchange_delete(&exchange, Default::default()).await;
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// RabbitMQ downstream of fedamq, with its own federation plugin: fedamq takes its
/// upstream queue, its `x-federation-upstream` exchange and its exchange-to-exchange
/// bindings, and what is published on fedamq reaches the queue bound on RabbitMQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_downstream_of_fedamq() {
    if !support::rabbitmq::available("rabbitmq_downstream_of_fedamq") {
        return;
    }
    let mgmt = match std::env::var("FEDAMQ_TEST_RABBITMQ_MANAGEMENT_URL") {
        Ok(u) => u,
        Err(_) => return eprintln!("rabbitmq_downstream_of_fedamq: no management URL"),
    };
    let up = node("fedamq-up").await;
    let exchange = format!("fed-down-{}", rand_suffix());
    let rmq = Http::new(
        &mgmt,
        &support::rabbitmq::user(),
        &support::rabbitmq::password(),
    );
    let vhost = support::rabbitmq::vhost().replace('/', "%2f");
    let name = format!("fedamq-{}", rand_suffix());
    let r = rmq
        .put(
            &format!("/api/parameters/federation-upstream/{vhost}/{name}"),
            &json!({"value": {"uri": up.url("guest", "guest"), "reconnect-delay": 1}}).to_string(),
        )
        .await;
    if r.status == 400 {
        // The node runs without rabbitmq_federation (FEDAMQ_TEST_RABBITMQ_FEDERATION=0).
        return eprintln!("rabbitmq_downstream_of_fedamq: {}", r.body);
    }
    assert!(r.status < 300, "{r:?}");
    let r = rmq
        .put(
            &format!("/api/policies/{vhost}/{name}"),
            &json!({"pattern": format!("^{exchange}$"), "apply-to": "exchanges",
                    "definition": {"federation-upstream": name}})
            .to_string(),
        )
        .await;
    assert!(r.status < 300, "{r:?}");
    let conn = lapin::Connection::connect(&support::rabbitmq::url(), Default::default())
        .await
        .unwrap();
    let rch = conn.create_channel().await.unwrap();
    declare_topic(&rch, &exchange).await;
    let queue = format!("{exchange}-q");
    bound_queue(&rch, &queue, &exchange, "a.#").await;
    // RabbitMQ's link declared the exchange here and mirrored its binding.
    eventually("RabbitMQ's binding reaches fedamq", || {
        bindings_of(&up, &exchange) == 1
    })
    .await;
    let internal = root(&up)
        .exchanges()
        .into_iter()
        .find(|x| x.spec.kind == fedamq::broker::routing::ExchangeKind::FederationUpstream);
    assert!(internal.is_some(), "no x-federation-upstream exchange");
    let (_uc, uch) = channel(&up).await;
    uch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for key in ["a.1", "b.1", "a.2"] {
        publish_confirmed(&uch, &exchange, key, key.as_bytes()).await;
    }
    let give_up = tokio::time::Instant::now() + PATIENCE;
    let mut seen = HashMap::new();
    while seen.len() < 2 {
        assert!(tokio::time::Instant::now() < give_up, "got only {seen:?}");
        let (more, headers) = drain(&rch, &queue).await;
        if let Some(h) = headers {
            assert!(h.inner().contains_key("x-received-from"), "{h:?}");
        }
        seen.extend(more);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(!seen.contains_key(&b"b.1"[..]));
    rmq.delete(&format!("/api/policies/{vhost}/{name}")).await;
    rmq.delete(&format!(
        "/api/parameters/federation-upstream/{vhost}/{name}"
    ))
    .await;
    let _ = rch.queue_delete(&queue, Default::default()).await;
    let _ = rch.exchange_delete(&exchange, Default::default()).await;
}

/// RabbitMQ as the upstream of a fedamq exchange in publisher mode (`fedamq-mode`):
/// local publishes reach RabbitMQ's queue, and RabbitMQ's return of an unroutable
/// mandatory publish reaches the fedamq client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_as_upstream_in_publisher_mode() {
    if !support::rabbitmq::available("rabbitmq_as_upstream_in_publisher_mode") {
        return;
    }
    let down = node("fedamq-pub").await;
    let (_dc, dch) = channel(&down).await;
    let exchange = format!("fed-pub-{}", rand_suffix());
    declare_topic(&dch, &exchange).await;
    let rmq = lapin::Connection::connect(&support::rabbitmq::url(), Default::default())
        .await
        .unwrap();
    let rch = rmq.create_channel().await.unwrap();
    declare_topic(&rch, &exchange).await;
    let queue = format!("{exchange}-q");
    bound_queue(&rch, &queue, &exchange, "a.#").await;
    federate_with(
        &down,
        "rmq",
        &support::rabbitmq::url(),
        &format!("^{exchange}$"),
        json!({"fedamq-mode": "publisher"}),
    );
    eventually("the link runs", || links_run(&down, 1)).await;
    dch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    publish_confirmed(&dch, &exchange, "a.1", b"a.1").await;
    eventually("forwarded", || links(&down)[0].counters.forwarded == 1).await;
    let got = rch
        .basic_get(&queue, Default::default())
        .await
        .unwrap()
        .expect("the message on RabbitMQ");
    assert_eq!(got.delivery.data, b"a.1");
    let (_pc, plain) = channel(&down).await;
    assert_eq!(
        returned(&plain, &exchange, "b.1").await,
        (312, b"b.1".to_vec())
    );
    unfederate(&down, "rmq");
    eventually("the link goes", || links(&down).is_empty()).await;
    let _ = rch.queue_delete(&queue, Default::default()).await;
    let _ = rch.exchange_delete(&exchange, Default::default()).await;
}

/// Each link's state and counters are in `/metrics`, labelled by vhost, exchange and
/// upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_status_in_prometheus() {
    let up = bare_node("up").await;
    let down = support::broker::start_with(fedamq::config::Config {
        cluster_name: Some("down".into()),
        ..Default::default()
    })
    .await;
    let (_conns, uch, dch) = fed_on_both(&up, &down).await;
    federate(&down, "up", &up.url("guest", "guest"), "^fed$");
    bound_queue(&dch, "local", "fed", "#").await;
    eventually("mirrored", || bindings_of(&up, "fed") == 1).await;
    eventually("the link runs", || links_run(&down, 1)).await;
    for key in ["a", "b", "c"] {
        publish_confirmed(&uch, "fed", key, key.as_bytes()).await;
    }
    wait_depth(&down, "local", 3).await;
    eventually("settled", || links_settled(&down)).await;
    let addr = down
        .prometheus_addr()
        .expect("the Prometheus endpoint is on");
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let labels = r#"vhost="/",exchange="fed",upstream="up""#;
    for (series, value) in [
        (
            format!("fedamq_federation_link_state{{{labels},state=\"running\"}}"),
            "1",
        ),
        (
            format!("fedamq_federation_link_state{{{labels},state=\"blocked\"}}"),
            "0",
        ),
        (
            format!("fedamq_federation_link_messages_received_total{{{labels}}}"),
            "3",
        ),
        (
            format!("fedamq_federation_link_messages_acked_total{{{labels}}}"),
            "3",
        ),
        (
            format!("fedamq_federation_link_messages_in_flight{{{labels}}}"),
            "0",
        ),
        (format!("fedamq_federation_link_bindings{{{labels}}}"), "1"),
    ] {
        let line = format!("{series} {value}");
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }
    assert!(text.contains("# TYPE fedamq_federation_link_messages_received_total counter"));
}

/// Upstreams, upstream sets and policies in the TOML file (`[[federation_upstream]]`,
/// `[[federation_upstream_set]]`, `[[policy]]`) federate an exchange with no API call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_federates_an_exchange() {
    let up = node("up").await;
    let text = format!(
        r#"
        cluster_name = "down"
        [prometheus]
        port = "off"
        [[federation_upstream]]
        name = "up"
        uri = "{uri}"
        reconnect-delay = 0.2
        [[federation_upstream_set]]
        name = "ups"
        upstreams = [{{ upstream = "up" }}]
        [[policy]]
        name = "fed"
        pattern = "^fed$"
        apply-to = "exchanges"
        definition = {{ federation-upstream-set = "ups" }}
        "#,
        uri = up.url("guest", "guest")
    );
    let mut config = fedamq::config::Config::default();
    fedamq::config::apply_file(&mut config, std::path::Path::new("down.toml"), &text).unwrap();
    let down = support::broker::start_with(config).await;
    let (_dc, dch) = channel(&down).await;
    let (_uc, uch) = channel(&up).await;
    declare_topic(&dch, "fed").await;
    bound_queue(&dch, "local", "fed", "a.*").await;
    eventually("the binding reaches the upstream", || {
        bindings_of(&up, "fed") == 1
    })
    .await;
    uch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    publish_confirmed(&uch, "fed", "a.b", b"through the file's link").await;
    wait_depth(&down, "local", 1).await;
    let (seen, _) = drain(&dch, "local").await;
    assert!(
        seen.contains_key(&b"through the file's link"[..]),
        "{seen:?}"
    );
    let link = links(&down);
    assert_eq!(link.len(), 1, "one link, from the file's set: {link:?}");
}

/// The upstream's view: the downstream asks its fedamq upstream (a `broker` tunnel, the
/// upstream user has the `peering` tag) and shows what it answers in
/// `/api/federation-links`: the link's connection, consuming from its upstream queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_status_shows_what_the_upstream_sees() {
    let up = node("up").await;
    let down = node("down").await;
    let users = up.broker().users();
    users
        .add_user(
            "fed",
            fedamq::auth::password::PasswordHash::new("fed"),
            vec![fedamq::tunnel::PEERING_TAG.to_string()],
        )
        .unwrap();
    users.set_permissions("fed", "/", ".*", ".*", ".*").unwrap();
    let (_dc, dch) = channel(&down).await;
    declare_topic(&dch, "fed").await;
    federate(&down, "up", &up.url("fed", "fed"), "^fed$");
    bound_queue(&dch, "local", "fed", "a.*").await;
    eventually("the link runs", || links_run(&down, 1)).await;
    let api = Http::of(&down);
    let give_up = tokio::time::Instant::now() + PATIENCE;
    let view = loop {
        let item = api.get("/api/federation-links/%2f").await.body[0].clone();
        let view = item["upstream_view"].clone();
        let consuming = view["links"]["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["queues"].as_array().cloned().unwrap_or_default())
            .any(|q| q["name"] == "federation: fed -> down" && q["consumers"] == 1);
        if view["state"] == "answered" && consuming {
            break view;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "never answered: {item}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(view["identifier"], json!(up.identifier()), "{view}");
    let link = view["links"]["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| !c["queues"].as_array().unwrap().is_empty())
        .unwrap()
        .clone();
    assert_eq!(link["user"], "fed", "{view}");
    assert_eq!(link["vhost"], "/", "{view}");
    assert!(link["channels"].as_i64().unwrap() >= 1, "{view}");
    assert!(
        link["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{view}"
    );
}

/// Without the `peering` tag the upstream refuses the question, and the link says so
/// (and runs all the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_view_says_why_it_is_missing() {
    let up = node("up").await;
    let down = node("down").await;
    let (_dc, dch) = channel(&down).await;
    declare_topic(&dch, "fed").await;
    federate(&down, "up", &up.url("guest", "guest"), "^fed$");
    eventually("the link runs and the view is refused", || {
        links(&down).first().is_some_and(|l| {
            let v = l.upstream_view.json();
            l.state == LinkState::Running
                && v["state"] == "unavailable"
                && v["reason"].as_str().is_some_and(|r| r.contains("403"))
        })
    })
    .await;
}
