//! Users, vhosts and permissions from the configuration file, applied as RabbitMQ does:
//! refusals are 403 channel errors; a vhost without permissions is 530.

mod support;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use support::broker;

const CONFIG: &str = r#"
vhosts = ["/", "staging"]

[[user]]
name = "app"
password = "s3cret"

[[user]]
name = "reader"
password = "r"

[[permission]]
user = "app"
vhost = "/"
configure = "^app\\."
write = "^(app\\.|amq\\.default$)"
read = "^app\\."

[[permission]]
user = "reader"
vhost = "/"
configure = ""
write = ""
read = ".*"
"#;

async fn start() -> fedamq::BrokerHandle {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fedamq.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let cli = <fedamq::config::Cli as clap::Parser>::parse_from([
        "fedamq",
        "--config",
        path.to_str().unwrap(),
    ]);
    let config = fedamq::config::load(&cli).expect("the test config loads");
    broker::start_with(config).await
}

async fn login(
    b: &fedamq::BrokerHandle,
    user: &str,
    pass: &str,
    vhost: &str,
) -> Result<Connection, lapin::Error> {
    let url = format!("amqp://{user}:{pass}@{}/{vhost}", b.local_addr());
    Connection::connect(&url, ConnectionProperties::default()).await
}

#[tokio::test]
async fn guest_is_gone_when_the_file_defines_users() {
    let b = start().await;
    let err = login(&b, "guest", "guest", "%2f").await.unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(403), "{err}");
    b.shutdown().await;
}

#[tokio::test]
async fn a_vhost_without_permissions_is_530() {
    let b = start().await;
    let err = login(&b, "app", "s3cret", "staging").await.unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(530), "{err}");
    b.shutdown().await;
}

#[tokio::test]
async fn configure_write_and_read_are_checked_per_resource() {
    let b = start().await;
    let c = login(&b, "app", "s3cret", "%2f").await.unwrap();
    let ch = c.create_channel().await.unwrap();
    ch.queue_declare(
        "app.jobs",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    // Write on the default exchange is allowed, read on app.* too.
    ch.basic_publish(
        "",
        "app.jobs",
        BasicPublishOptions::default(),
        b"j",
        BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let m = ch
        .basic_get("app.jobs", BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.data, b"j");

    // Configure outside ^app\. is refused: 403 on the channel, the connection survives.
    let err = ch
        .queue_declare(
            "other",
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(403), "{err}");
    let ch = c.create_channel().await.unwrap();
    let err = ch
        .exchange_declare(
            "other.x",
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(403), "{err}");

    // Binding app.jobs to amq.fanout needs read on amq.fanout: refused.
    let ch = c.create_channel().await.unwrap();
    let err = ch
        .queue_bind(
            "app.jobs",
            "amq.fanout",
            "",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(403), "{err}");

    // Publishing to amq.fanout needs write there: refused.
    let ch = c.create_channel().await.unwrap();
    // In confirm mode the publish itself reports the channel error (no race with
    // the next command).
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let err = ch
        .basic_publish(
            "amq.fanout",
            "",
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(403), "{err}");
    b.shutdown().await;
}

#[tokio::test]
async fn a_read_only_user_can_consume_but_not_declare() {
    let b = start().await;
    let app = login(&b, "app", "s3cret", "%2f").await.unwrap();
    app.create_channel()
        .await
        .unwrap()
        .queue_declare(
            "app.feed",
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let c = login(&b, "reader", "r", "%2f").await.unwrap();
    let ch = c.create_channel().await.unwrap();
    ch.basic_consume(
        "app.feed",
        "",
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let err = ch
        .queue_declare(
            "mine",
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(403), "{err}");
    b.shutdown().await;
}

/// Permissions changed at run time apply at once, even to a publisher whose last check
/// the broker remembers.
#[tokio::test]
async fn a_revoked_write_permission_applies_to_the_next_publish() {
    let b = start().await;
    let app = login(&b, "app", "s3cret", "%2f").await.unwrap();
    let ch = app.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.queue_declare(
        "app.out",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let publish = |ch: lapin::Channel| async move {
        ch.basic_publish(
            "",
            "app.out",
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        )
        .await?
        .await
    };
    publish(ch.clone()).await.expect("allowed before");
    b.broker()
        .users()
        .set_permissions("app", "/", "^app\\.", "^app\\.", "^app\\.")
        .unwrap();
    let err = publish(ch.clone()).await.unwrap_err();
    assert_eq!(broker::reply_code(&err), Some(403), "{err}");
    assert!(
        err.to_string()
            .contains("write access to exchange 'amq.default'"),
        "{err}"
    );
    b.shutdown().await;
}
