//! `fedamqctl` (src/bin/fedamqctl/), the binary, run against an in-process broker
//! (AMQP and management on port 0): each verb group's output and effects, the JSON
//! formatter, and clear messages with non-zero exits for bad usage, an unreachable
//! broker and wrong credentials.

mod support;

use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use serde_json::{Value, json};
use support::broker;
use support::management::Http;

/// What a run printed and how it ended.
#[derive(Debug)]
struct Run {
    code: i32,
    out: String,
    err: String,
}

impl Run {
    /// The lines of stdout after the informational first line.
    fn table(&self) -> Vec<&str> {
        self.out.lines().skip(1).collect()
    }
}

/// Runs fedamqctl with `args`, against `port` unless `args` name one.
async fn ctl_at(port: u16, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_fedamqctl"));
    for var in [
        "FEDAMQCTL_HOST",
        "FEDAMQCTL_PORT",
        "FEDAMQCTL_USER",
        "FEDAMQCTL_PASSWORD",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("FEDAMQCTL_PORT", port.to_string());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().await.expect("fedamqctl runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn ctl(b: &fedamq::BrokerHandle, args: &[&str]) -> Run {
    let r = ctl_at(b.management_addr().unwrap().port(), args, &[]).await;
    assert_eq!(r.code, 0, "fedamqctl {args:?}: {r:?}");
    r
}

#[tokio::test]
async fn list_verbs_print_rabbitmqctls_tables_and_json() {
    let b = broker::start().await;
    let (conn, ch) = broker::channel(&b).await;
    ch.queue_declare("q1", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    ch.queue_bind(
        "q1",
        "amq.topic",
        "a.#",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_publish(
        "",
        "q1",
        BasicPublishOptions::default(),
        b"m",
        Default::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let (_c2, ch2) = broker::channel(&b).await;
    ch2.queue_declare("q2", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let _consumer = ch2
        .basic_consume(
            "q2",
            "ctag",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let r = ctl(&b, &["list_queues"]).await;
    assert_eq!(r.out.lines().next(), Some("Listing queues for vhost / ..."));
    assert_eq!(r.table(), ["name\tmessages", "q1\t1", "q2\t0"]);
    let r = ctl(&b, &["list_queues", "name", "consumers", "-q"]).await;
    assert_eq!(
        r.out.lines().collect::<Vec<_>>(),
        ["name\tconsumers", "q1\t0", "q2\t1"]
    );
    let r = ctl(&b, &["--no-table-headers", "-q", "list_queues", "name"]).await;
    assert_eq!(r.out, "q1\nq2\n");

    let r = ctl(&b, &["list_exchanges"]).await;
    assert_eq!(r.table()[0], "name\ttype");
    assert!(r.table().contains(&"amq.topic\ttopic"), "{}", r.out);
    let r = ctl(&b, &["list_bindings"]).await;
    assert_eq!(
        r.table()[0],
        "source_name\tsource_kind\tdestination_name\tdestination_kind\trouting_key\targuments"
    );
    assert!(
        r.table()
            .contains(&"amq.topic\texchange\tq1\tqueue\ta.#\t{}"),
        "{}",
        r.out
    );

    let r = ctl(&b, &["list_connections"]).await;
    assert_eq!(r.table()[0], "user\tpeer_host\tpeer_port\tstate");
    assert_eq!(r.table().len(), 3, "{}", r.out);
    assert!(r.table()[1].starts_with("guest\t127.0.0.1\t"), "{}", r.out);
    let r = ctl(&b, &["list_channels"]).await;
    assert_eq!(
        r.table()[0],
        "pid\tuser\tconsumer_count\tmessages_unacknowledged"
    );
    // One channel on each connection; the consumer's is the second's.
    let channels: Vec<Vec<&str>> = r.table()[1..]
        .iter()
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(channels.len(), 2, "{}", r.out);
    assert!(
        channels
            .iter()
            .all(|c| c[0].ends_with(" (1)") && c[1] == "guest")
    );
    assert_eq!(
        channels.iter().map(|c| c[2]).collect::<Vec<_>>(),
        ["0", "1"],
        "{}",
        r.out
    );
    let consumer_channel = channels[1][0].to_string();
    let r = ctl(&b, &["list_consumers"]).await;
    let line = r.table()[1].split('\t').collect::<Vec<_>>();
    assert_eq!(
        (line[0], line[1], line[2], line[3]),
        ("q2", consumer_channel.as_str(), "ctag", "true"),
        "{}",
        r.out
    );

    let r = ctl(&b, &["list_users"]).await;
    assert_eq!(r.table(), ["user\ttags", "guest\t[administrator]"]);
    let r = ctl(&b, &["list_vhosts"]).await;
    assert_eq!(r.table(), ["name", "/"]);
    let r = ctl(&b, &["list_permissions"]).await;
    assert_eq!(
        r.table(),
        ["user\tconfigure\twrite\tread", "guest\t.*\t.*\t.*"]
    );

    // The JSON formatter: the same columns, one object per item, no info line.
    let r = ctl(
        &b,
        &["--formatter", "json", "list_queues", "name", "messages"],
    )
    .await;
    let items: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(
        items,
        json!([{"name": "q1", "messages": 1}, {"name": "q2", "messages": 0}])
    );
    drop(conn);
    b.shutdown().await;
}

#[tokio::test]
async fn user_vhost_and_permission_verbs_change_the_broker() {
    let b = broker::start().await;
    let api = Http::of(&b);
    let r = ctl(&b, &["add_user", "alice", "s3cret"]).await;
    assert_eq!(r.out, "Adding user \"alice\" ...\n");
    let again = ctl_at(
        b.management_addr().unwrap().port(),
        &["add_user", "alice", "x"],
        &[],
    )
    .await;
    assert_ne!(again.code, 0);
    assert!(
        again.err.contains("user 'alice' already exists"),
        "{again:?}"
    );
    ctl(&b, &["add_vhost", "v1"]).await;
    ctl(
        &b,
        &["set_permissions", "-p", "v1", "alice", ".*", "^w", "^r"],
    )
    .await;
    let r = ctl(&b, &["list_permissions", "-p", "v1", "-q"]).await;
    assert_eq!(r.out.lines().nth(1), Some("alice\t.*\t^w\t^r"));
    ctl(&b, &["change_password", "alice", "n3w"]).await;
    // A tagless user may not use the API, but its password is checked first.
    let alice = api.as_user(Some(("alice", "n3w"))).get("/api/whoami").await;
    assert_eq!(alice.body["reason"], "Not management user");
    let old = api
        .as_user(Some(("alice", "s3cret")))
        .get("/api/whoami")
        .await;
    assert_eq!(old.body["reason"], "Login failed");
    ctl(&b, &["delete_user", "alice"]).await;
    assert_eq!(api.get("/api/users/alice").await.status, 404);
    ctl(&b, &["delete_vhost", "v1"]).await;
    assert!(b.broker().vhost("v1").is_none());
    let r = ctl_at(
        b.management_addr().unwrap().port(),
        &["delete_vhost", "v1"],
        &[],
    )
    .await;
    assert_eq!(r.code, 69);
    assert!(r.err.contains("vhost 'v1' does not exist"), "{r:?}");
    b.shutdown().await;
}

#[tokio::test]
async fn policy_and_parameter_verbs() {
    let b = broker::start().await;
    let api = Http::of(&b);
    ctl(
        &b,
        &[
            "set_policy",
            "lim",
            "^q",
            r#"{"max-length":1}"#,
            "--priority",
            "2",
            "--apply-to",
            "queues",
        ],
    )
    .await;
    assert_eq!(
        api.get("/api/policies/%2F/lim").await.body,
        json!({"vhost": "/", "name": "lim", "pattern": "^q", "apply-to": "queues",
               "definition": {"max-length": 1}, "priority": 2})
    );
    let r = ctl(&b, &["list_policies"]).await;
    assert_eq!(
        r.table(),
        [
            "vhost\tname\tpattern\tapply-to\tdefinition\tpriority",
            "/\tlim\t^q\tqueues\t{\"max-length\":1}\t2"
        ]
    );
    ctl(&b, &["clear_policy", "lim"]).await;
    assert_eq!(api.get("/api/policies").await.body, json!([]));
    let port = b.management_addr().unwrap().port();
    let r = ctl_at(port, &["clear_policy", "lim"], &[]).await;
    assert_eq!(r.code, 69, "{r:?}");
    let r = ctl_at(
        port,
        &["set_policy", "p", "x", r#"{"max-length":"many"}"#],
        &[],
    )
    .await;
    assert_eq!(r.code, 65, "{r:?}");
    assert!(r.err.contains("Validation failed"), "{r:?}");
    let r = ctl_at(port, &["set_policy", "p", "x", "{nope"], &[]).await;
    assert_eq!(r.code, 64, "{r:?}");

    ctl(
        &b,
        &[
            "set_parameter",
            "federation-upstream",
            "up",
            r#"{"uri":"amqp://h"}"#,
        ],
    )
    .await;
    let r = ctl(&b, &["list_parameters"]).await;
    assert_eq!(
        r.table(),
        [
            "component\tname\tvalue",
            "federation-upstream\tup\t{\"uri\":\"amqp://h\"}"
        ]
    );
    ctl(&b, &["clear_parameter", "federation-upstream", "up"]).await;
    assert_eq!(api.get("/api/parameters").await.body, json!([]));
    b.shutdown().await;
}

#[tokio::test]
async fn definitions_connections_status_and_federation_status() {
    let b = broker::start().await;
    ctl(&b, &["add_vhost", "v9"]).await;
    ctl(
        &b,
        &[
            "set_policy",
            "-p",
            "v9",
            "pol",
            ".*",
            r#"{"expires":60000}"#,
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("defs.json");
    let file = file.to_str().unwrap();
    let r = ctl(&b, &["export_definitions", file]).await;
    assert!(r.out.contains("Exported definitions"), "{}", r.out);
    let r = ctl(&b, &["--formatter", "json", "export_definitions", "-"]).await;
    let defs: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(defs["policies"][0]["name"], "pol");

    let other = broker::start().await;
    ctl(&other, &["import_definitions", file]).await;
    assert!(other.broker().vhost("v9").is_some());
    let r = ctl_at(
        other.management_addr().unwrap().port(),
        &["import_definitions", "/nonexistent/defs.json"],
        &[],
    )
    .await;
    assert_eq!(r.code, 64, "{r:?}");

    let conn = broker::connect(&b).await;
    let mut events = conn.events_listener();
    let r = ctl(&b, &["--formatter", "json", "list_connections", "name"]).await;
    let list: Value = serde_json::from_str(&r.out).unwrap();
    let name = list[0]["name"].as_str().unwrap().to_string();
    ctl(&b, &["close_connection", &name, "go away"]).await;
    let e = broker::closed_by_broker(&mut events).await;
    assert_eq!(broker::reply_code(&e), Some(320));
    assert!(e.to_string().contains("go away"), "{e}");

    let r = ctl(&b, &["status"]).await;
    assert!(r.out.contains("Node: fedamq@localhost"), "{}", r.out);
    assert!(r.out.contains("RabbitMQ version: 3.10.8"), "{}", r.out);
    let amqp = format!("127.0.0.1:{} (amqp)", b.local_addr().port());
    assert!(r.out.contains(&amqp), "{}", r.out);
    let r = ctl(&b, &["federation_status"]).await;
    assert_eq!(r.table().len(), 1, "only the header: {}", r.out);
    let r = ctl(&b, &["--formatter", "json", "federation_status"]).await;
    assert_eq!(r.out.trim(), "[]");
    other.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn bad_usage_unreachable_brokers_and_wrong_credentials_exit_non_zero() {
    let b = broker::start().await;
    let port = b.management_addr().unwrap().port();
    let r = ctl_at(port, &["frobnicate"], &[]).await;
    assert_eq!(r.code, 64);
    assert!(
        r.err.contains("unrecognized subcommand 'frobnicate'"),
        "{r:?}"
    );
    let r = ctl_at(port, &["add_user", "only-a-name"], &[]).await;
    assert_eq!(r.code, 64, "{r:?}");

    // A port nothing listens on: the one of a broker that has stopped.
    let gone = broker::start().await;
    let gone_port = gone.management_addr().unwrap().port();
    gone.shutdown().await;
    let r = ctl_at(gone_port, &["list_queues"], &[]).await;
    assert_eq!(r.code, 69, "{r:?}");
    assert!(
        r.err.contains("could not reach the management API"),
        "{r:?}"
    );

    let r = ctl_at(port, &["--password", "wrong", "list_vhosts"], &[]).await;
    assert_eq!(r.code, 77, "{r:?}");
    assert!(r.err.contains("Login failed"), "{r:?}");
    let r = ctl_at(port, &["list_vhosts"], &[("FEDAMQCTL_USER", "nobody")]).await;
    assert_eq!(r.code, 77, "{r:?}");
    // The port from the environment (ctl_at sets FEDAMQCTL_PORT) works without -P.
    let r = ctl_at(port, &["-q", "list_vhosts"], &[]).await;
    assert_eq!((r.code, r.out.as_str()), (0, "name\n/\n"));
    b.shutdown().await;
}

/// `list_tunnels`: the opener's tunnel as outgoing, the remote's as incoming, with
/// their state and counters.
#[tokio::test]
async fn list_tunnels_shows_both_sides() {
    use fedamq::auth::password::PasswordHash;
    use fedamq::peering::Remote;
    use fedamq::protocol::generated::services::{GREETING, Greeting};
    use fedamq::tunnel::greeting::{Forward, hello};
    use fedamq::tunnel::{PEERING_TAG, TunnelConfig, Tunnels};

    let a = broker::start().await;
    let b = broker::start().await;
    let r = ctl(&a, &["list_tunnels"]).await;
    assert_eq!(r.out.lines().next(), Some("Listing tunnels ..."));
    assert_eq!(
        r.table(),
        ["direction\tservice\tremote\tstate\treason\tsent\treceived\tresent\tlast_error"]
    );
    let users = b.broker().users();
    users
        .add_user("link", PasswordHash::new("link"), vec![PEERING_TAG.into()])
        .unwrap();
    users
        .set_permissions("link", "/", ".*", ".*", ".*")
        .unwrap();
    let remote = Remote::from_uri(&b.url("link", "link")).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let t = Tunnels::of(a.broker())
        .open(TunnelConfig::new(remote), &GREETING, |_| {
            Box::new(Greeting(Forward(tx)))
        })
        .unwrap();
    t.send(hello(1, "ctl")).await.unwrap();
    rx.recv().await.expect("a hello-ok");

    let r = ctl(&a, &["list_tunnels"]).await;
    let remote = t.status().remote;
    assert_eq!(
        r.table()[1..],
        [format!("outgoing\tgreeting\t{remote}\topen\t\t1\t1\t0\t")]
    );
    let r = ctl(
        &b,
        &[
            "--formatter",
            "json",
            "list_tunnels",
            "direction",
            "remote",
            "state",
            "received",
        ],
    )
    .await;
    let list: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(
        list,
        json!([{"direction": "incoming", "remote": a.identifier(), "state": "open", "received": 1}])
    );
    t.close().await;
    let r = ctl(&a, &["list_tunnels", "service", "state"]).await;
    assert_eq!(r.table()[1..], ["greeting\tclosed"]);
    a.shutdown().await;
    b.shutdown().await;
}
