//! The private RabbitMQ the peering tests use (started by tests/run and .ci/run through
//! tests/rabbitmq/start.sh; its URL in FEDAMQ_TEST_RABBITMQ_URL) is reachable with its
//! fedamq-test user on both vhosts, and the fault proxy carries AMQP to it.

mod support;

use std::time::Duration;

use lapin::options::*;
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use support::fault_proxy::FaultProxy;
use support::rabbitmq;

const WAIT: Duration = Duration::from_secs(10);

async fn connect(url: &str) -> Connection {
    tokio::time::timeout(
        WAIT,
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .expect("connected within 10 s")
    .unwrap_or_else(|e| panic!("lapin connects to {url}: {e}"))
}

/// A fresh server-named, exclusive queue: tests may share the node.
async fn temp_queue(ch: &Channel) -> String {
    ch.queue_declare(
        "",
        QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("queue.declare")
    .name()
    .as_str()
    .to_string()
}

/// Publishes `body` to `queue` with a confirm, then gets it back.
async fn publish_and_get(ch: &Channel, queue: &str, body: &[u8]) {
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let confirm = ch
        .basic_publish(
            "",
            queue,
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_message_id("smoke-1".into()),
        )
        .await
        .expect("basic.publish")
        .await
        .expect("confirm");
    assert!(
        matches!(confirm, Confirmation::Ack(None)),
        "expected a plain ack, got {confirm:?}"
    );
    let got = ch
        .basic_get(queue, BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .expect("the message is in the queue");
    assert_eq!(got.delivery.data, body);
    assert_eq!(got.delivery.routing_key.as_str(), queue);
    assert_eq!(
        got.delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("smoke-1")
    );
    assert_eq!(got.message_count, 0);
    assert!(
        ch.basic_get(queue, BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
            .is_none(),
        "the queue is empty after the get"
    );
}

#[test]
fn url_has_the_fedamq_test_user_and_vhost() {
    let parts = rabbitmq::parts();
    assert_eq!(parts.user, "fedamq-test");
    assert!(!parts.password.is_empty());
    assert_eq!(parts.vhost, "/");
    assert!(rabbitmq::url().ends_with("/%2f"));
    assert!(rabbitmq::addr().ip().is_loopback());
    assert_eq!(rabbitmq::addr().port(), parts.port);
    assert_eq!(
        rabbitmq::parse(&rabbitmq::url_for_vhost(rabbitmq::SECOND_VHOST)).vhost,
        "fedamq-test"
    );
}

#[tokio::test]
async fn publish_and_get_one_message() {
    let conn = connect(&rabbitmq::url()).await;
    assert!(conn.status().connected());
    assert_eq!(conn.status().username(), "fedamq-test");
    assert_eq!(conn.status().vhost(), "/");
    let ch = conn.create_channel().await.expect("channel");
    let q = temp_queue(&ch).await;
    publish_and_get(&ch, &q, b"hello rabbit").await;
    conn.close(200, "done").await.expect("connection.close");
}

#[tokio::test]
async fn second_vhost_is_usable() {
    let conn = connect(&rabbitmq::url_for_vhost(rabbitmq::SECOND_VHOST)).await;
    let ch = conn.create_channel().await.expect("channel");
    let q = temp_queue(&ch).await;
    publish_and_get(&ch, &q, b"on fedamq-test").await;
    conn.close(200, "done").await.expect("connection.close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_proxy_carries_amqp_and_cut_breaks_it() {
    let proxy = FaultProxy::start(rabbitmq::addr()).await;
    let url = proxy.url(&rabbitmq::user(), &rabbitmq::password(), &rabbitmq::vhost());
    let conn = connect(&url).await;
    assert_eq!(proxy.connections_accepted(), 1);
    assert_eq!(proxy.live_connections(), 1);
    let ch = conn.create_channel().await.expect("channel");
    let q = temp_queue(&ch).await;
    publish_and_get(&ch, &q, b"through the proxy").await;

    // A cut breaks the AMQP connection: the next operation fails instead of hanging.
    proxy.cut();
    let after = tokio::time::timeout(
        WAIT,
        ch.queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("an answer (an error) within 10 s of the cut");
    assert!(after.is_err(), "queue.declare succeeded after the cut");
    assert!(proxy.wait_live(0, WAIT).await);

    // The link is back for a new connection.
    let conn = connect(&url).await;
    let ch = conn.create_channel().await.expect("channel");
    let q = temp_queue(&ch).await;
    publish_and_get(&ch, &q, b"after the cut").await;
    assert_eq!(proxy.connections_accepted(), 2);
    conn.close(200, "done").await.expect("connection.close");
}
