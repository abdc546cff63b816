//! Definitions import and export in RabbitMQ's JSON: a round trip through fedamq, all or
//! nothing on a bad file (malformed, wrong types, an entry refused late in the file),
//! changes seen by binding subscribers, and both directions with a real RabbitMQ 3.10
//! (its users log in here with lapin; fedamq's export imports there with rabbitmqctl).

mod support;

use std::time::Duration;

use fedamq::broker::policy::PolicyKind;
use fedamq::broker::topology::{BindingNotice, DEFAULT_CAPACITY};
use fedamq::config::Config;
use fedamq::management::definitions::{self, Definitions, DefinitionsError};
use lapin::options::*;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{Value, json};
use support::{broker, rabbitmq};

/// A file exercising every section, in RabbitMQ 3.10's shape.
fn sample() -> Value {
    json!({
        "rabbit_version": "3.10.8",
        "rabbitmq_version": "3.10.8",
        "users": [
            // "test12" with the salt of RabbitMQ's docs example.
            {"name": "alice", "password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR",
             "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"], "limits": {}},
            // Before 3.10, tags were one comma-separated string.
            {"name": "bob", "password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR",
             "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": "monitoring,management"}
        ],
        "vhosts": [{"name": "prod", "limits": [], "metadata": {"description": "", "tags": []}}],
        "permissions": [
            {"user": "alice", "vhost": "prod", "configure": ".*", "write": ".*", "read": ".*"},
            {"user": "bob", "vhost": "prod", "configure": "", "write": "", "read": "^orders"}
        ],
        "topic_permissions": [],
        "parameters": [
            {"value": {"uri": "amqp://upstream"}, "vhost": "prod", "component": "federation-upstream", "name": "up"},
            {"value": {"apply-to": "queues", "definition": [["max-length", 100]], "pattern": ".*", "priority": 0},
             "vhost": "prod", "component": "operator_policy", "name": "cap"}
        ],
        "global_parameters": [{"name": "cluster_name", "value": "test"}],
        "policies": [
            {"vhost": "prod", "name": "ttl", "pattern": "^orders", "apply-to": "queues",
             "definition": {"message-ttl": 60000, "max-length": 3}, "priority": 1}
        ],
        "queues": [
            {"name": "orders", "vhost": "prod", "durable": true, "auto_delete": false,
             "arguments": {"x-max-priority": 5}},
            {"name": "audit", "vhost": "prod", "durable": true, "auto_delete": false, "arguments": {}}
        ],
        "exchanges": [
            {"name": "events", "vhost": "prod", "type": "topic", "durable": true,
             "auto_delete": false, "internal": false, "arguments": {}},
            {"name": "all", "vhost": "prod", "type": "fanout", "durable": true,
             "auto_delete": false, "internal": false, "arguments": {}}
        ],
        "bindings": [
            {"source": "events", "vhost": "prod", "destination": "orders", "destination_type": "queue",
             "routing_key": "order.*", "arguments": {}},
            {"source": "events", "vhost": "prod", "destination": "all", "destination_type": "exchange",
             "routing_key": "#", "arguments": {}},
            {"source": "all", "vhost": "prod", "destination": "audit", "destination_type": "queue",
             "routing_key": "", "arguments": {}}
        ]
    })
}

fn parse(v: &Value) -> Result<Definitions, DefinitionsError> {
    definitions::parse(v.to_string().as_bytes())
}

/// The export without the fields that name the exporting product.
fn state(b: &fedamq::BrokerHandle) -> Value {
    let mut v = serde_json::to_value(definitions::export(b.broker())).unwrap();
    for k in [
        "product_version",
        "product_name",
        "rabbit_version",
        "rabbitmq_version",
    ] {
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

async fn login(b: &fedamq::BrokerHandle, user: &str, password: &str, vhost: &str) -> Connection {
    let url = format!("amqp://{user}:{password}@{}/{vhost}", b.local_addr());
    Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("{user} logs in to {vhost}: {e}"))
}

#[tokio::test]
async fn a_file_imports_and_exports_back_the_same() {
    let b = broker::start().await;
    let report = definitions::import(b.broker(), &parse(&sample()).unwrap()).unwrap();
    assert!(report.warnings.is_empty());

    // Users log in with their passwords, and permissions hold.
    let conn = login(&b, "alice", "test12", "prod").await;
    let ch = conn.create_channel().await.unwrap();
    // The binding chain routes: events -> all -> audit, events -> orders.
    ch.basic_publish(
        "events",
        "order.new",
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    for q in ["orders", "audit"] {
        let m = ch
            .basic_get(q, BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        assert!(m.is_some(), "{q} got the message");
    }
    assert_eq!(
        b.broker().users().user_tags("bob"),
        ["monitoring", "management"]
    );
    let vhost = b.broker().vhost("prod").unwrap();
    let orders = vhost.queue(&"orders".try_into().unwrap()).unwrap();
    assert_eq!(orders.policy().policy_name(), Some("ttl"));
    assert_eq!(orders.policy().operator_policy_name(), Some("cap"));
    assert_eq!(orders.settings().max_length, Some(3));
    assert!(vhost.parameter("federation-upstream", "up").is_some());
    conn.close(200, "bye").await.unwrap();

    // Export, import into a fresh broker, export again: the same.
    let exported = definitions::export(b.broker());
    let text = serde_json::to_string(&exported).unwrap();
    let b2 = broker::start().await;
    definitions::import(b2.broker(), &definitions::parse(text.as_bytes()).unwrap()).unwrap();
    assert_eq!(state(&b), state(&b2));
    let conn = login(&b2, "bob", "test12", "prod").await;
    conn.close(200, "bye").await.unwrap();

    // Importing the same file again changes nothing.
    definitions::import(b2.broker(), &definitions::parse(text.as_bytes()).unwrap()).unwrap();
    assert_eq!(state(&b), state(&b2));
    b.shutdown().await;
    b2.shutdown().await;
}

#[tokio::test]
async fn one_vhost_exports_and_imports_into_another() {
    let b = broker::start().await;
    definitions::import(b.broker(), &parse(&sample()).unwrap()).unwrap();
    let one = definitions::export_vhost(b.broker(), "prod").unwrap();
    let v = serde_json::to_value(&one).unwrap();
    assert!(v.get("users").is_none() && v["queues"][0].get("vhost").is_none());
    b.broker().add_vhost("copy").unwrap();
    let defs = definitions::parse(v.to_string().as_bytes()).unwrap();
    definitions::import_vhost(b.broker(), "copy", &defs).unwrap();
    let copy =
        serde_json::to_value(definitions::export_vhost(b.broker(), "copy").unwrap()).unwrap();
    assert_eq!(copy, v);
    let e = definitions::import_vhost(b.broker(), "nowhere", &defs).unwrap_err();
    assert_eq!(e.status(), 404);
    assert!(definitions::export_vhost(b.broker(), "nowhere").is_none());
    b.shutdown().await;
}

#[tokio::test]
async fn malformed_files_name_the_field_and_change_nothing() {
    let b = broker::start().await;
    let before = state(&b);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"users": [{"name": "x", "tags": 5}]}),
            "users[0].tags",
        ),
        (
            json!({"queues": [{"name": "q", "vhost": "/", "durable": "yes"}]}),
            "queues[0].durable",
        ),
        (
            json!({"policies": [{"name": "p", "vhost": "/", "pattern": ".*", "definition": {}, "priority": "high"}]}),
            "policies[0].priority",
        ),
        (
            json!({"bindings": [{"vhost": "/", "destination": "q", "destination_type": "queue"}]}),
            "missing field `source`",
        ),
        (json!({"exchanges": "none"}), "exchanges"),
    ];
    for (file, field) in cases {
        let e = parse(&file).unwrap_err();
        assert!(matches!(e, DefinitionsError::Malformed(_)), "{e:?}");
        assert_eq!(e.status(), 400);
        assert!(e.reason().contains(field), "{field} not in {}", e.reason());
    }
    let e = definitions::parse(b"{\"users\": [").unwrap_err();
    assert_eq!(e.status(), 400);
    assert_eq!(state(&b), before);
    b.shutdown().await;
}

/// Spoils one entry of the sample file.
type Breakage = fn(&mut Value);

#[tokio::test]
async fn a_file_that_fails_part_way_changes_nothing() {
    let b = broker::start().await;
    let before = state(&b);
    // Each of these is refused by an entry late in the file, after users, vhosts,
    // policies, exchanges and queues that would otherwise have been made.
    let broken: Vec<(Breakage, &str)> = vec![
        (
            |v| v["bindings"][2]["source"] = json!("missing"),
            "no exchange 'missing'",
        ),
        (
            |v| v["queues"][1]["arguments"] = json!({"x-max-length": -1}),
            "x-max-length",
        ),
        (
            |v| v["policies"][0]["definition"] = json!({"message-ttl": "soon"}),
            "not a valid message TTL",
        ),
        (
            |v| v["users"][1]["password_hash"] = json!("not base64!"),
            "password_hash",
        ),
        (
            |v| v["exchanges"][1]["type"] = json!("x-delayed-message"),
            "invalid exchange type",
        ),
        (
            |v| v["permissions"][1]["read"] = json!("("),
            "not a valid regular expression",
        ),
        (
            |v| v["parameters"][0]["component"] = json!("shovel"),
            "component shovel not found",
        ),
        (
            |v| v["bindings"][0]["destination_type"] = json!("queues"),
            "destination_type",
        ),
    ];
    for (breakit, text) in broken {
        let mut file = sample();
        breakit(&mut file);
        let e = definitions::import(b.broker(), &parse(&file).unwrap()).unwrap_err();
        assert_eq!(e.status(), 400, "{e}");
        assert!(e.reason().contains(text), "{text} not in {}", e.reason());
        assert_eq!(state(&b), before, "{text}: the broker changed");
        assert!(b.broker().vhost("prod").is_none());
        assert!(b.broker().users().user("alice").is_none());
    }
    b.shutdown().await;
}

#[tokio::test]
async fn bindings_from_an_import_reach_binding_subscribers() {
    let b = broker::start().await;
    let vhost = b.broker().vhost("/").unwrap();
    let (_, mut sub) =
        vhost.subscribe_bindings(Some("amq.topic".try_into().unwrap()), DEFAULT_CAPACITY);
    let file = json!({
        "queues": [{"name": "q", "vhost": "/", "durable": true, "auto_delete": false, "arguments": {}}],
        "bindings": [{"source": "amq.topic", "vhost": "/", "destination": "q", "destination_type": "queue",
                      "routing_key": "a.#", "arguments": {}}]
    });
    definitions::import(b.broker(), &parse(&file).unwrap()).unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap()
        .unwrap();
    match n {
        BindingNotice::Created { binding, .. } => assert_eq!(binding.routing_key, "a.#"),
        other => panic!("expected a created binding, got {other:?}"),
    }
    b.shutdown().await;
}

/// Creates objects on the private RabbitMQ with rabbitmqctl in a vhost of their own,
/// exports its definitions, imports them here: every user logs in with the password set
/// there, and the objects behave.
#[tokio::test]
async fn rabbitmq_export_imports_and_its_users_log_in() {
    if !rabbitmq::available("rabbitmq_export_imports_and_its_users_log_in") {
        return;
    }
    let ctl = |args: &[&str]| rabbitmq::rabbitmqctl(args);
    let vh = "defs-from-rabbit";
    let _ = rabbitmq::try_rabbitmqctl(&["delete_vhost", vh]);
    ctl(&["add_vhost", vh]);
    for (user, pw, tags) in [
        ("defs-admin", "admin-pw", &["administrator"][..]),
        ("defs-mon", "mon-pw", &["monitoring", "policymaker"][..]),
        ("defs-plain", "plain-pw", &[][..]),
    ] {
        let _ = rabbitmq::try_rabbitmqctl(&["delete_user", user]);
        ctl(&["add_user", user, pw]);
        let mut args = vec!["set_user_tags", user];
        args.extend(tags);
        ctl(&args);
        ctl(&["set_permissions", "-p", vh, user, ".*", ".*", ".*"]);
    }
    ctl(&[
        "set_policy",
        "-p",
        vh,
        "--priority",
        "2",
        "--apply-to",
        "queues",
        "lim",
        "^lim\\.",
        r#"{"max-length":2,"overflow":"reject-publish"}"#,
    ]);
    ctl(&[
        "set_operator_policy",
        "-p",
        vh,
        "--apply-to",
        "queues",
        "op",
        ".*",
        r#"{"message-ttl":600000}"#,
    ]);
    // Queues, an exchange and a binding, declared there by a client.
    let test_user = rabbitmq::user();
    ctl(&["set_permissions", "-p", vh, &test_user, ".*", ".*", ".*"]);
    let conn = Connection::connect(
        &rabbitmq::url_for_vhost(vh),
        ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("lim.q", durable, Default::default())
        .await
        .unwrap();
    let mut prio = lapin::types::FieldTable::default();
    prio.insert("x-max-priority".into(), lapin::types::AMQPValue::LongInt(3));
    ch.queue_declare("plain", durable, prio).await.unwrap();
    let ex = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare("ev", lapin::ExchangeKind::Topic, ex, Default::default())
        .await
        .unwrap();
    ch.queue_bind("lim.q", "ev", "k.#", Default::default(), Default::default())
        .await
        .unwrap();
    conn.close(200, "bye").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rabbit.json");
    ctl(&["export_definitions", file.to_str().unwrap()]);
    let text = std::fs::read(&file).unwrap();

    let b = broker::start_with(Config::default()).await;
    let defs = definitions::parse(&text).unwrap();
    definitions::import(b.broker(), &defs).expect("RabbitMQ's export imports");
    for (user, pw) in [
        ("defs-admin", "admin-pw"),
        ("defs-mon", "mon-pw"),
        ("defs-plain", "plain-pw"),
    ] {
        let conn = login(&b, user, pw, vh).await;
        conn.close(200, "bye").await.unwrap();
    }
    assert_eq!(
        b.broker().users().user_tags("defs-mon"),
        ["monitoring", "policymaker"]
    );
    let v = b.broker().vhost(vh).unwrap();
    let q = v
        .queue(&"lim.q".try_into().unwrap())
        .expect("queue imported");
    assert_eq!(q.policy().policy_name(), Some("lim"));
    assert_eq!(q.policy().operator_policy_name(), Some("op"));
    assert_eq!(q.settings().max_length, Some(2));
    assert_eq!(q.settings().message_ttl, Some(600_000));
    assert!(v.policy(PolicyKind::Operator, "op").is_some());
    // The binding routes; the policy's reject-publish refuses the third.
    let conn = login(&b, "defs-plain", "plain-pw", vh).await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut acks = Vec::new();
    for _ in 0..3 {
        let c = ch
            .basic_publish(
                "ev",
                "k.x",
                BasicPublishOptions::default(),
                b"m",
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        acks.push(c.is_ack());
    }
    assert_eq!(acks, [true, true, false]);
    conn.close(200, "bye").await.unwrap();
    b.shutdown().await;
    for user in ["defs-admin", "defs-mon", "defs-plain"] {
        ctl(&["delete_user", user]);
    }
    ctl(&["delete_vhost", vh]);
}

/// fedamq's export imports into RabbitMQ, and the objects appear there.
#[tokio::test]
async fn fedamq_export_imports_into_rabbitmq() {
    if !rabbitmq::available("fedamq_export_imports_into_rabbitmq") {
        return;
    }
    let ctl = |args: &[&str]| rabbitmq::rabbitmqctl(args);
    let b = broker::start().await;
    // The sample without the federation upstream: the private node has no federation plugin.
    let mut file = sample();
    let vh = "defs-from-fedamq";
    let _ = rabbitmq::try_rabbitmqctl(&["delete_vhost", vh]);
    let text = file
        .to_string()
        .replace("\"prod\"", &format!("\"{vh}\""))
        .replace("\"alice\"", "\"defs-alice\"")
        .replace("\"bob\"", "\"defs-bob\"");
    file = serde_json::from_str(&text).unwrap();
    file["parameters"].as_array_mut().unwrap().remove(0);
    definitions::import(b.broker(), &parse(&file).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fedamq.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&definitions::export(b.broker())).unwrap(),
    )
    .unwrap();
    b.shutdown().await;

    ctl(&["import_definitions", path.to_str().unwrap()]);
    let queues = ctl(&["list_queues", "-p", vh, "name", "policy", "arguments"]);
    assert!(
        queues.contains("orders") && queues.contains("audit"),
        "{queues}"
    );
    assert!(
        queues
            .lines()
            .any(|l| l.starts_with("orders") && l.contains("ttl") && l.contains("x-max-priority")),
        "{queues}"
    );
    let exchanges = ctl(&["list_exchanges", "-p", vh, "name", "type"]);
    assert!(
        exchanges.contains("events\ttopic") && exchanges.contains("all\tfanout"),
        "{exchanges}"
    );
    let bindings = ctl(&[
        "list_bindings",
        "-p",
        vh,
        "source_name",
        "destination_name",
        "routing_key",
    ]);
    assert!(bindings.contains("events\torders\torder.*"), "{bindings}");
    assert!(bindings.contains("events\tall\t#"), "{bindings}");
    let users = ctl(&["list_users"]);
    assert!(
        users.contains("defs-alice") && users.contains("defs-bob"),
        "{users}"
    );
    // The password hash works there too.
    ctl(&["authenticate_user", "defs-alice", "test12"]);
    let policies = ctl(&["list_policies", "-p", vh]);
    assert!(policies.contains("ttl"), "{policies}");
    let ops = ctl(&["list_operator_policies", "-p", vh]);
    assert!(ops.contains("cap"), "{ops}");
    for user in ["defs-alice", "defs-bob"] {
        ctl(&["delete_user", user]);
    }
    ctl(&["delete_vhost", vh]);
}

#[tokio::test]
async fn load_definitions_imports_at_start_up_and_a_bad_file_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(&good, sample().to_string()).unwrap();
    let config = Config {
        load_definitions: Some(good),
        ..Config::default()
    };
    let b = broker::start_with(config).await;
    assert!(b.broker().vhost("prod").is_some());
    let conn = login(&b, "alice", "test12", "prod").await;
    conn.close(200, "bye").await.unwrap();
    b.shutdown().await;

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"queues": [{"name": 1}]}"#).unwrap();
    let mut config = Config {
        load_definitions: Some(bad),
        ..Config::default()
    };
    config.port = 0;
    config.management.port = Some(0);
    config.prometheus.port = Some(0);
    let e = match fedamq::Server::start(config).await {
        Ok(_) => panic!("a bad definitions file must stop start-up"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("bad.json") && e.contains("queues[0].name"),
        "{e}"
    );
}
