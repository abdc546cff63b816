//! Tunnels between two in-process brokers (and a RabbitMQ remote when the private node
//! is there): the greeting service both ways, exactly once and in order across forced
//! cuts (through the fault proxy), negotiation, and who may open a tunnel.

mod support;

use std::time::Duration;

use fedamq::BrokerHandle;
use fedamq::auth::password::PasswordHash;
use fedamq::peering::{Backoff, Remote};
use fedamq::protocol::generated::methods::{GreetingHelloOk, Method, TunnelOpen};
use fedamq::protocol::generated::services::{GREETING, Greeting};
use fedamq::protocol::{FieldTable, FieldValue, ShortString};
use fedamq::tunnel::greeting::{Forward, hello};
use fedamq::tunnel::{
    OpenError, PEERING_TAG, Tunnel, TunnelConfig, TunnelState, TunnelStatus, Tunnels,
};
use support::fault_proxy::FaultProxy;
use support::raw::Client;
use support::{broker, rabbitmq};
use tokio::sync::mpsc;

/// Guards against a hang; no assertion is about time.
const PATIENCE: Duration = Duration::from_secs(60);

/// Adds `name` (password `name`) with `tags` and full permissions on "/".
fn add_user(b: &BrokerHandle, name: &str, tags: &[&str]) {
    let users = b.broker().users();
    users
        .add_user(
            name,
            PasswordHash::new(name),
            tags.iter().map(|t| t.to_string()).collect(),
        )
        .unwrap();
    users.set_permissions(name, "/", ".*", ".*", ".*").unwrap();
}

fn config(url: &str) -> TunnelConfig {
    let mut c = TunnelConfig::new(Remote::from_uri(url).unwrap());
    c.peering.reconnect = Some(Backoff {
        min: Duration::from_millis(5),
        max: Duration::from_millis(50),
    });
    c
}

/// Opens a greeting tunnel from `local`; what arrives goes to the receiver.
fn open_greeting(
    local: &BrokerHandle,
    config: TunnelConfig,
) -> (Tunnel, mpsc::UnboundedReceiver<Method>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let t = Tunnels::of(local.broker())
        .open(config, &GREETING, |_| Box::new(Greeting(Forward(tx))))
        .expect("the tunnel opens");
    (t, rx)
}

async fn wait_for(t: &Tunnel, what: impl Fn(&TunnelStatus) -> bool) -> TunnelStatus {
    let mut w = t.watch_status();
    tokio::time::timeout(PATIENCE, async {
        loop {
            let s = t.status();
            if what(&s) {
                return s;
            }
            w.changed().await.expect("status board");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("status never came; last {:?}", t.status()))
}

fn hello_ok(m: Method) -> GreetingHelloOk {
    match m {
        Method::GreetingHelloOk(ok) => ok,
        other => panic!("expected greeting.hello-ok, got {}", other.name()),
    }
}

#[tokio::test]
async fn greeting_methods_flow_both_ways() {
    let a = broker::start().await;
    let b = broker::start().await;
    add_user(&b, "link", &[PEERING_TAG]);
    let (t, mut rx) = open_greeting(&a, config(&b.url("link", "link")));
    wait_for(&t, |s| s.state == TunnelState::Open).await;

    t.send(hello(7, "hello from a")).await.unwrap();
    let ok = hello_ok(rx.recv().await.unwrap());
    assert_eq!(ok.serial, 7);
    assert_eq!(&ok.text[..], b"hello from a");
    assert_eq!(ok.from, b.identifier(), "answered by the remote broker");

    let s = t.status();
    assert_eq!((s.counters.sent, s.counters.received), (1, 1));
    assert_eq!(s.service, "greeting");
    let states: Vec<TunnelState> = t.transitions().into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        states,
        [
            TunnelState::Inactive,
            TunnelState::Opening,
            TunnelState::Open
        ]
    );

    // One tunnel per (remote, service).
    let again = Tunnels::of(a.broker()).open(config(&b.url("link", "link")), &GREETING, |_| {
        Box::new(Greeting(Forward(mpsc::unbounded_channel().0)))
    });
    assert!(
        matches!(again, Err(OpenError::AlreadyOpen { .. })),
        "{again:?}"
    );

    t.close().await;
    assert_eq!(t.status().state, TunnelState::Closed);
}

#[tokio::test]
async fn methods_arrive_exactly_once_and_in_order_across_cuts() {
    across_cuts(20_000, 20).await;
}

/// The size: 100,000 methods each way across 200 cuts. A soak, not for every
/// run: `cargo test --release --test tunnels -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn soak_100_000_each_way_across_200_cuts() {
    across_cuts(100_000, 200).await;
}

/// `n` hellos go out while the proxy cuts the link every `n / cuts` hello-oks; every
/// hello-ok (one per hello the remote's service got) must come back once, in order.
async fn across_cuts(n: u64, cuts: u64) {
    let a = broker::start().await;
    let b = broker::start().await;
    add_user(&b, "link", &[PEERING_TAG]);
    let proxy = FaultProxy::start(b.local_addr()).await;
    let mut c = config(&proxy.url("link", "link", "/"));
    c.window = 64;
    let (t, mut rx) = open_greeting(&a, c);
    wait_for(&t, |s| s.state == TunnelState::Open).await;

    let sender = t.sender();
    let sending = tokio::spawn(async move {
        for serial in 1..=n {
            sender.send(hello(serial, "x")).await.unwrap();
        }
    });
    let mut next = 1;
    tokio::time::timeout(PATIENCE * 4, async {
        while next <= n {
            let ok = hello_ok(rx.recv().await.expect("the tunnel lives"));
            assert_eq!(ok.serial, next, "out of order or twice");
            if next % (n / cuts) == 0 {
                proxy.cut();
            }
            next += 1;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("stuck at {next}; {:?}", t.status()));
    sending.await.unwrap();
    // Nothing more comes: no duplicate after the last.
    t.close().await;
    assert!(rx.try_recv().is_err());

    let s = t.status();
    assert_eq!((s.counters.sent, s.counters.received), (n, n));
    eprintln!(
        "{n} each way across {cuts} cuts: {} connections, {} re-sent",
        proxy.connections_accepted(),
        s.counters.resent
    );
    let states: Vec<TunnelState> = t.transitions().into_iter().map(|(s, _)| s).collect();
    let retries = states
        .iter()
        .filter(|s| **s == TunnelState::Retrying)
        .count();
    assert!(retries >= 1, "the cuts show as retrying: {states:?}");
    // After each retry it opened again, in order.
    for w in states.windows(2) {
        if w[0] == TunnelState::Retrying {
            assert_eq!(w[1], TunnelState::Opening, "{states:?}");
        }
    }
    assert!(
        proxy.connections_accepted() > 1,
        "the proxy cut the link at least once"
    );
}

#[tokio::test]
async fn a_user_without_the_peering_tag_is_refused() {
    let a = broker::start().await;
    let b = broker::start().await;
    // guest has no tags.
    let (t, _rx) = open_greeting(&a, config(&b.url("guest", "guest")));
    let s = wait_for(&t, |s| matches!(s.state, TunnelState::Failed(_))).await;
    assert!(s.why.contains("403"), "{s:?}");
    assert!(s.why.contains("peering"), "{s:?}");
}

#[tokio::test]
async fn an_unknown_service_version_is_refused() {
    static OTHER: fedamq::protocol::generated::services::ServiceInfo =
        fedamq::protocol::generated::services::ServiceInfo {
            version: 99,
            ..GREETING
        };
    let a = broker::start().await;
    let b = broker::start().await;
    add_user(&b, "link", &[PEERING_TAG]);
    let (tx, _rx) = mpsc::unbounded_channel();
    let t = Tunnels::of(a.broker())
        .open(config(&b.url("link", "link")), &OTHER, |_| {
            Box::new(Greeting(Forward(tx)))
        })
        .unwrap();
    let s = wait_for(&t, |s| matches!(s.state, TunnelState::Failed(_))).await;
    assert!(s.why.contains("406"), "{s:?}");
}

/// An ordinary client (no `tunnels` capability) sending a tunnel method gets what it
/// gets for a class that does not exist, and nothing else.
#[tokio::test]
async fn an_ordinary_client_sending_a_tunnel_method_gets_the_unknown_class_error() {
    let b = broker::start().await;
    let mut c = Client::with_channel(b.local_addr()).await;
    c.send(
        1,
        TunnelOpen {
            service: ShortString::from_static("greeting"),
            version: 1,
            received: 0,
            window: 16,
            opener: ShortString::from_static("me"),
        },
    )
    .await;
    let close = c.expect_method().await;
    assert_eq!(close.0, 0, "a connection error");
    assert_eq!(close.class_method(), (10, 50));
    let Method::ConnectionClose(close) = close.1 else {
        unreachable!()
    };
    c.wait_closed().await;

    // The same as a class that really does not exist (999, method 10).
    let mut d = Client::with_channel(b.local_addr()).await;
    let mut frame = bytes::BytesMut::new();
    fedamq::protocol::frame::encode_frame_with(&mut frame, 1, 1, |buf| {
        buf.extend_from_slice(&[0x03, 0xE7, 0x00, 0x0A]);
    });
    d.send_raw(&frame).await;
    let Method::ConnectionClose(other) = d.expect_method().await.1 else {
        panic!("connection.close expected")
    };
    assert_eq!(close.reply_code, 503);
    assert_eq!(close.reply_code, other.reply_code);
    assert_eq!(
        (close.class_id, close.method_id),
        (other.class_id, other.method_id)
    );
    assert_eq!(
        close.reply_text.to_string().replace("110", "999"),
        other.reply_text.to_string(),
        "the same words for both"
    );
}

/// The tunnels capability is in connection.start.
#[tokio::test]
async fn the_broker_announces_tunnels() {
    let b = broker::start().await;
    let stream = tokio::net::TcpStream::connect(b.local_addr())
        .await
        .unwrap();
    let conn = fedamq::client::Connection::open(
        stream,
        &fedamq::client::ConnectOptions::new("guest", "guest", "/"),
    )
    .await
    .unwrap();
    let Some(FieldValue::Table(caps)) = conn.server_properties.get("capabilities") else {
        panic!("no capabilities");
    };
    assert!(matches!(caps.get("tunnels"), Some(FieldValue::Bool(true))));
    let _ = FieldTable::new();
}

#[tokio::test]
async fn a_rabbitmq_remote_is_unsupported() {
    if !rabbitmq::available("a_rabbitmq_remote_is_unsupported") {
        return;
    }
    let a = broker::start().await;
    let (t, _rx) = open_greeting(&a, config(&rabbitmq::url()));
    let s = wait_for(&t, |s| matches!(s.state, TunnelState::Failed(_))).await;
    assert_eq!(s.state, TunnelState::Failed("unsupported".into()), "{s:?}");
    assert_eq!(s.counters.sent, 0);
    // Nothing was opened: the tunnel went from inactive to failed.
    let states: Vec<TunnelState> = t.transitions().into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        states,
        [
            TunnelState::Inactive,
            TunnelState::Failed("unsupported".into())
        ]
    );
}

/// The `broker` service: a remote fedamq says who it is.
#[tokio::test]
async fn the_broker_service_tells_who_the_remote_is() {
    use fedamq::protocol::generated::methods::BrokerIdentify;
    use fedamq::protocol::generated::services::{BROKER, Broker};
    use fedamq::tunnel::identity::Answers;
    let a = broker::start().await;
    let b = broker::start().await;
    add_user(&b, "link", &[PEERING_TAG]);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let t = Tunnels::of(a.broker())
        .open(config(&b.url("link", "link")), &BROKER, |_| {
            Box::new(Broker(Answers(tx)))
        })
        .unwrap();
    t.send(BrokerIdentify { serial: 3 }).await.unwrap();
    let ok = rx.recv().await.unwrap();
    assert_eq!(ok.serial, 3);
    assert_eq!(ok.identifier, b.identifier());
    assert_eq!(ok.product, "fedamq");
    assert_eq!(ok.version, env!("CARGO_PKG_VERSION"));
    // `links`: the asker's connections here, this tunnel's own among them.
    let connections = ok.links.get("connections").and_then(|c| c.as_array());
    let users: Vec<_> = connections
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.as_table()?.get("user")?.as_str().map(str::to_owned))
        .collect();
    assert_eq!(users, ["link"], "{:?}", ok.links);
    // A method of another service is refused at the sender.
    assert!(t.send(hello(1, "wrong class")).await.is_err());
}

/// `/api/tunnels`: the opener lists its tunnel as outgoing, the remote as incoming.
#[tokio::test]
async fn the_api_lists_tunnels_on_both_sides() {
    use support::management::Http;
    let a = broker::start().await;
    let b = broker::start().await;
    add_user(&b, "link", &[PEERING_TAG]);
    let (t, mut rx) = open_greeting(&a, config(&b.url("link", "link")));
    t.send(hello(1, "hi")).await.unwrap();
    rx.recv().await.unwrap();

    let out = Http::of(&a).get("/api/tunnels").await;
    assert_eq!(out.status, 200, "{out:?}");
    let list = out.body.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["direction"], "outgoing");
    assert_eq!(list[0]["service"], "greeting");
    assert_eq!(list[0]["state"], "open");
    assert_eq!(list[0]["counters"]["sent"], 1);
    assert_eq!(list[0]["counters"]["received"], 1);

    let inc = Http::of(&b).get("/api/tunnels").await;
    let list = inc.body.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["direction"], "incoming");
    assert_eq!(list[0]["opener"], a.identifier());
    assert_eq!(list[0]["state"], "open");
    assert_eq!(list[0]["counters"]["received"], 1);

    // Node-wide: not for a user without monitoring.
    let plain = Http::of(&b)
        .as_user(Some(("link", "link")))
        .get("/api/tunnels")
        .await;
    assert_eq!(plain.status, 401, "{plain:?}");
}

/// Waits until the transitions so far satisfy `what`.
async fn wait_transitions(t: &Tunnel, what: impl Fn(&[(TunnelState, String)]) -> bool) {
    let mut w = t.watch_status();
    tokio::time::timeout(PATIENCE, async {
        while !what(&t.transitions()) {
            w.changed().await.expect("status board");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("transitions never came: {:?}", t.transitions()))
}

/// Every state change is reported, in order and with its reason: a refusal (no such
/// service yet: 404) is `failed` and asked again slowly until the remote has the
/// service; a cut connection is `retrying` until the tunnel is open again.
#[tokio::test]
async fn status_transitions_are_reported_in_order_with_their_reasons() {
    use fedamq::protocol::generated::services::ServiceInfo;
    use fedamq::tunnel::greeting::Responder;
    static LATER: ServiceInfo = ServiceInfo {
        name: "greeting-later",
        ..GREETING
    };
    let a = broker::start().await;
    let b = broker::start().await;
    add_user(&b, "link", &[PEERING_TAG]);
    let proxy = FaultProxy::start(b.local_addr()).await;
    let mut c = config(&proxy.url("link", "link", "/"));
    c.refused_retry = Backoff {
        min: Duration::from_millis(20),
        max: Duration::from_millis(100),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let t = Tunnels::of(a.broker())
        .open(c, &LATER, |_| Box::new(Greeting(Forward(tx))))
        .unwrap();
    // Refused twice: the tunnel asked again on its own.
    let failed = |s: &TunnelState| matches!(s, TunnelState::Failed(_));
    wait_transitions(&t, |ts| ts.iter().filter(|(s, _)| failed(s)).count() >= 2).await;
    // Refused, yet the tunnel is still trying: a second one is not allowed.
    let again =
        Tunnels::of(a.broker()).open(config(&proxy.url("link", "link", "/")), &LATER, |_| {
            Box::new(Greeting(Forward(mpsc::unbounded_channel().0)))
        });
    assert!(
        matches!(again, Err(OpenError::AlreadyOpen { .. })),
        "{again:?}"
    );

    let from = b.identifier().to_owned();
    Tunnels::of(b.broker()).register(&LATER, move |s| {
        Box::new(Greeting(Responder::new(s, &from)))
    });
    wait_for(&t, |s| s.state == TunnelState::Open).await;
    t.send(hello(1, "after the refusals")).await.unwrap();
    assert_eq!(hello_ok(rx.recv().await.unwrap()).serial, 1);

    let opens =
        |ts: &[(TunnelState, String)]| ts.iter().filter(|(s, _)| *s == TunnelState::Open).count();
    proxy.cut();
    wait_transitions(&t, |ts| opens(ts) == 2).await;
    t.send(hello(2, "after the cut")).await.unwrap();
    assert_eq!(hello_ok(rx.recv().await.unwrap()).serial, 2);
    t.close().await;

    let ts = t.transitions();
    // In order: inactive, then (opening, failed) at least twice, then opening, open,
    // retrying, opening, open, closed.
    let names: Vec<&str> = ts
        .iter()
        .map(|(s, _)| match s {
            TunnelState::Inactive => "inactive",
            TunnelState::Opening => "opening",
            TunnelState::Open => "open",
            TunnelState::Retrying => "retrying",
            TunnelState::Failed(_) => "failed",
            TunnelState::Closed => "closed",
        })
        .collect();
    let refusals = names.iter().filter(|n| **n == "failed").count();
    let mut expected = vec!["inactive"];
    for _ in 0..refusals {
        expected.extend(["opening", "failed"]);
    }
    expected.extend(["opening", "open", "retrying", "opening", "open", "closed"]);
    assert_eq!(names, expected, "{ts:#?}");
    assert!(refusals >= 2, "{ts:#?}");
    // With their reasons.
    for (i, (state, why)) in ts.iter().enumerate() {
        match state {
            TunnelState::Failed(reason) => {
                assert!(reason.contains("404"), "{reason}");
                assert!(reason.contains("greeting-later"), "{reason}");
                assert!(why.starts_with(reason.as_str()), "{why}");
                assert!(why.contains("asking again in"), "{why}");
            }
            TunnelState::Opening if i > 1 && names[i - 1] == "failed" => {
                assert_eq!(why, "asking the remote again after its refusal")
            }
            TunnelState::Opening => assert_eq!(why, "connected; opening the tunnel"),
            TunnelState::Retrying => assert!(why.contains("connection was lost"), "{why}"),
            TunnelState::Open => assert_eq!(why, "open at version 1"),
            TunnelState::Closed => assert_eq!(why, "closed by its owner"),
            TunnelState::Inactive => assert_eq!(why, "created"),
        }
    }
    // The last error stays after the tunnel opened again.
    assert!(
        t.status()
            .last_error
            .is_some_and(|e| e.contains("connection was lost"))
    );
}
