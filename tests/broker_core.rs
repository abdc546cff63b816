//! The broker core seen from a broker object while real clients (lapin) change things:
//! binding-state subscriptions fed by client declares, binds and closes; the registry
//! of connections; vhosts added and removed at run time; an internal publisher whose
//! messages a client consumes.

mod support;

use std::time::Duration;

use bytes::Bytes;
use fedamq::broker::topology::{BindingNotice, DEFAULT_CAPACITY};
use fedamq::protocol::ShortString;
use fedamq::protocol::generated::properties::BasicProperties;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use support::broker;

fn ss(s: &str) -> ShortString {
    ShortString::try_from(s).unwrap()
}

/// The next binding notice, within a few seconds.
async fn notice(sub: &mut fedamq::broker::topology::BindingSubscription) -> BindingNotice {
    tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("a notice comes")
        .expect("the vhost is there")
}

fn created(n: &BindingNotice) -> Option<(String, bool)> {
    match n {
        BindingNotice::Created { binding, .. } => {
            Some((binding.routing_key.to_string(), binding.exclusive))
        }
        _ => None,
    }
}

fn destroyed(n: &BindingNotice) -> Option<String> {
    match n {
        BindingNotice::Destroyed { binding, .. } => Some(binding.routing_key.to_string()),
        _ => None,
    }
}

#[tokio::test]
async fn a_subscriber_follows_bindings_that_clients_make_and_lose() {
    let b = broker::start().await;
    let vhost = b.broker().vhost("/").unwrap();
    let (_snapshot, mut sub) = vhost.subscribe_bindings(Some(ss("amq.topic")), DEFAULT_CAPACITY);

    let (conn, ch) = broker::channel(&b).await;
    let q = ch
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.queue_bind(
        q.name().as_str(),
        "amq.topic",
        "a.*",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    assert_eq!(created(&notice(&mut sub).await), Some(("a.*".into(), true)));

    // A second queue with the same key changes nothing distinct...
    let (conn2, ch2) = broker::channel(&b).await;
    ch2.queue_declare(
        "shared",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for key in ["a.*", "b.#"] {
        ch2.queue_bind(
            "shared",
            "amq.topic",
            key,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        created(&notice(&mut sub).await),
        Some(("b.#".into(), false))
    );

    // ...until the exclusive queue's owner closes and the key still has `shared`.
    conn.close(200, "bye").await.unwrap();
    ch2.queue_unbind("shared", "amq.topic", "a.*", FieldTable::default())
        .await
        .unwrap();
    assert_eq!(destroyed(&notice(&mut sub).await), Some("a.*".into()));
    ch2.queue_delete("shared", QueueDeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(destroyed(&notice(&mut sub).await), Some("b.#".into()));
    conn2.close(200, "bye").await.unwrap();
    b.shutdown().await;
}

#[tokio::test]
async fn connections_are_listed_and_closed_with_a_reason() {
    let b = broker::start().await;
    let (conn, _ch) = broker::channel(&b).await;
    let registry = b.broker().connections().clone();
    let listed = registry.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].user, "guest");
    assert_eq!(listed[0].vhost, "/");
    assert!(listed[0].peer.is_some_and(|p| p.ip().is_loopback()));

    let mut events = Box::pin(conn.events_listener());
    assert!(registry.close(listed[0].id, "Closed via management plugin"));
    let closed = broker::closed_by_broker(&mut events).await;
    assert_eq!(broker::reply_code(&closed), Some(320), "{closed}");
    assert!(
        closed.to_string().contains("Closed via management plugin"),
        "{closed}"
    );
    // Unlisted once gone.
    for _ in 0..100 {
        if registry.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(registry.is_empty());
    assert!(!registry.close(listed[0].id, "again"));
    b.shutdown().await;
}

#[tokio::test]
async fn vhosts_come_and_go_at_run_time() {
    let b = broker::start().await;
    let core = b.broker().clone();
    let url = |vhost: &str| format!("amqp://guest:guest@{}/{vhost}", b.local_addr());
    let refused = lapin::Connection::connect(&url("site-b"), Default::default()).await;
    assert!(refused.is_err(), "no such vhost yet");

    core.add_vhost("site-b").unwrap();
    core.users()
        .set_permissions("guest", "site-b", ".*", ".*", ".*")
        .unwrap();
    let conn = lapin::Connection::connect(&url("site-b"), Default::default())
        .await
        .expect("the new vhost admits guest");
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare("q", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    assert_eq!(core.vhost("site-b").unwrap().queue_count(), 1);

    let mut events = Box::pin(conn.events_listener());
    assert!(core.delete_vhost("site-b"));
    let closed = broker::closed_by_broker(&mut events).await;
    assert_eq!(broker::reply_code(&closed), Some(320), "{closed}");
    assert!(core.vhost("site-b").is_none());
    assert!(!core.delete_vhost("site-b"));
    // Its permissions went with it: a vhost of the same name starts without them.
    core.add_vhost("site-b").unwrap();
    let again = lapin::Connection::connect(&url("site-b"), Default::default()).await;
    assert!(again.is_err(), "guest has no permissions on the new site-b");
    b.shutdown().await;
}

#[tokio::test]
async fn a_client_consumes_what_a_broker_object_published() {
    let b = broker::start().await;
    let (_conn, ch) = broker::channel(&b).await;
    ch.queue_declare(
        "inbox",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut publisher = b.broker().internal_publisher("/").unwrap();
    publisher
        .publish(
            &ss(""),
            ss("inbox"),
            &BasicProperties {
                message_id: Some(ss("from-inside")),
                ..Default::default()
            },
            Bytes::from_static(b"hello"),
            false,
        )
        .unwrap()
        .await;
    let mut consumer = ch
        .basic_consume(
            "inbox",
            "c",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("delivered")
        .unwrap()
        .unwrap();
    assert_eq!(&d.data[..], b"hello");
    assert_eq!(
        d.properties.message_id().as_ref().map(|s| s.as_str()),
        Some("from-inside")
    );
    d.ack(BasicAckOptions::default()).await.unwrap();
    b.shutdown().await;
}
