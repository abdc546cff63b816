//! Debian's `rabbitmqadmin` (shipped in the rabbitmq-server package, or named by
//! `FEDAMQ_RABBITMQADMIN`) against fedamq's management API: declare, list, publish,
//! get, close and delete, policies, export and import, as a user of RabbitMQ would run them. CI installs
//! rabbitmq-server (tests/rabbitmq/install.sh), so this runs there with `cargo test`.

mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::broker;

fn rabbitmqadmin() -> PathBuf {
    if let Ok(p) = std::env::var("FEDAMQ_RABBITMQADMIN") {
        return p.into();
    }
    let debian = PathBuf::from("/usr/bin/rabbitmqadmin");
    assert!(
        debian.exists(),
        "rabbitmqadmin not found: install Debian's rabbitmq-server \
         (tests/rabbitmq/install.sh) or set FEDAMQ_RABBITMQADMIN"
    );
    debian
}

struct Admin {
    port: u16,
}

impl Admin {
    /// Runs rabbitmqadmin with `args`; returns stdout, failing on a non-zero exit.
    async fn run(&self, args: &[&str]) -> String {
        let (ok, out) = self.try_run(args).await;
        assert!(ok, "rabbitmqadmin {args:?} failed: {out}");
        out
    }

    async fn try_run(&self, args: &[&str]) -> (bool, String) {
        let port = self.port.to_string();
        let out = tokio::process::Command::new(rabbitmqadmin())
            .args(["-H", "127.0.0.1", "-P", &port, "-u", "guest", "-p", "guest"])
            .args(args)
            .output()
            .await
            .expect("rabbitmqadmin runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `list <what>` as JSON.
    async fn list(&self, what: &str) -> Vec<Value> {
        let out = self.run(&["-f", "raw_json", "list", what]).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

fn names(items: &[Value]) -> Vec<&str> {
    items.iter().filter_map(|i| i["name"].as_str()).collect()
}

#[tokio::test]
async fn rabbitmqadmin_declares_lists_publishes_gets_and_deletes() {
    let b = broker::start().await;
    let admin = Admin {
        port: b.management_addr().unwrap().port(),
    };
    admin
        .run(&["declare", "queue", "name=q1", "durable=false"])
        .await;
    admin
        .run(&["declare", "exchange", "name=ex1", "type=topic"])
        .await;
    admin
        .run(&[
            "declare",
            "binding",
            "source=ex1",
            "destination=q1",
            "routing_key=a.#",
        ])
        .await;
    assert!(names(&admin.list("queues").await).contains(&"q1"));
    assert!(names(&admin.list("exchanges").await).contains(&"ex1"));
    let bindings = admin.list("bindings").await;
    let bound = bindings
        .iter()
        .find(|b| b["source"] == "ex1")
        .expect("the binding is listed");
    assert_eq!(bound["routing_key"], "a.#");

    let out = admin
        .run(&[
            "publish",
            "exchange=ex1",
            "routing_key=a.b",
            "payload=hello",
        ])
        .await;
    assert!(out.contains("Message published"), "{out}");
    let out = admin
        .run(&["publish", "exchange=ex1", "routing_key=zz", "payload=lost"])
        .await;
    assert!(out.contains("NOT routed"), "{out}");
    admin
        .run(&["publish", "routing_key=q1", "payload=direct"])
        .await;
    let out = admin
        .run(&[
            "-f",
            "raw_json",
            "get",
            "queue=q1",
            "count=5",
            "ackmode=ack_requeue_false",
        ])
        .await;
    let got: Vec<Value> = serde_json::from_str(&out).unwrap();
    let payloads: Vec<&str> = got.iter().map(|m| m["payload"].as_str().unwrap()).collect();
    assert_eq!(payloads, ["hello", "direct"]);
    let queues = admin.list("queues").await;
    assert_eq!(queues[0]["messages"], 0);

    // A connection, listed and closed.
    let conn = broker::connect(&b).await;
    let connections = admin.list("connections").await;
    let name = connections[0]["name"].as_str().unwrap().to_string();
    admin
        .run(&["close", "connection", &format!("name={name}")])
        .await;
    drop(conn);

    // Users, vhosts, permissions.
    admin.run(&["declare", "vhost", "name=v2"]).await;
    admin
        .run(&[
            "declare",
            "user",
            "name=u1",
            "password=pw",
            "tags=management",
        ])
        .await;
    admin
        .run(&[
            "declare",
            "permission",
            "vhost=v2",
            "user=u1",
            "configure=.*",
            "write=.*",
            "read=.*",
        ])
        .await;
    assert!(names(&admin.list("users").await).contains(&"u1"));
    assert!(names(&admin.list("vhosts").await).contains(&"v2"));
    assert_eq!(admin.list("permissions").await.len(), 2);

    // Deleting, the binding by its properties_key.
    let key = bound["properties_key"].as_str().unwrap().to_string();
    admin
        .run(&[
            "delete",
            "binding",
            "source=ex1",
            "destination=q1",
            "destination_type=queue",
            &format!("properties_key={key}"),
        ])
        .await;
    assert!(
        !admin
            .list("bindings")
            .await
            .iter()
            .any(|b| b["source"] == "ex1")
    );
    admin.run(&["purge", "queue", "name=q1"]).await;
    admin.run(&["delete", "queue", "name=q1"]).await;
    admin.run(&["delete", "exchange", "name=ex1"]).await;
    admin.run(&["delete", "user", "name=u1"]).await;
    admin.run(&["delete", "vhost", "name=v2"]).await;
    assert!(!names(&admin.list("queues").await).contains(&"q1"));
    let (ok, out) = admin.try_run(&["delete", "queue", "name=q1"]).await;
    assert!(!ok && out.contains("Not found"), "{out}");
    let out = admin.run(&["show", "overview"]).await;
    assert!(out.contains("3.10.8"), "{out}");
    b.shutdown().await;
}

#[tokio::test]
async fn rabbitmqadmin_declares_policies_and_exports_and_imports_definitions() {
    let b = broker::start().await;
    let admin = Admin {
        port: b.management_addr().unwrap().port(),
    };
    admin
        .run(&[
            "declare",
            "policy",
            "name=lim",
            "pattern=^lim",
            r#"definition={"max-length":2}"#,
            "apply-to=queues",
            "priority=3",
        ])
        .await;
    admin
        .run(&[
            "declare",
            "operator_policy",
            "name=cap",
            "pattern=.*",
            r#"definition={"max-length-bytes":1000}"#,
        ])
        .await;
    let policies = admin.list("policies").await;
    assert_eq!(names(&policies), ["lim"]);
    assert_eq!(policies[0]["priority"], 3);
    assert_eq!(names(&admin.list("operator_policies").await), ["cap"]);
    admin.run(&["declare", "queue", "name=lim-q"]).await;
    admin
        .run(&["declare", "exchange", "name=ex", "type=fanout"])
        .await;
    admin
        .run(&["declare", "binding", "source=ex", "destination=lim-q"])
        .await;
    let queue = admin.list("queues").await;
    assert_eq!(queue[0]["policy"], "lim");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("defs.json");
    let file = file.to_str().unwrap();
    let out = admin.run(&["export", file]).await;
    assert!(out.contains("Exported definitions"), "{out}");
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(names(exported["policies"].as_array().unwrap()), ["lim"]);

    // Into a fresh broker.
    let other = broker::start().await;
    let admin2 = Admin {
        port: other.management_addr().unwrap().port(),
    };
    let out = admin2.run(&["import", file]).await;
    assert!(out.contains("Uploaded definitions"), "{out}");
    assert_eq!(names(&admin2.list("policies").await), ["lim"]);
    assert!(names(&admin2.list("queues").await).contains(&"lim-q"));
    assert!(
        admin2
            .list("bindings")
            .await
            .iter()
            .any(|b| b["source"] == "ex" && b["destination"] == "lim-q")
    );
    admin2.run(&["delete", "policy", "name=lim"]).await;
    assert!(admin2.list("policies").await.is_empty());
    let (ok, out) = admin2.try_run(&["delete", "policy", "name=lim"]).await;
    assert!(!ok && out.contains("Not found"), "{out}");
    other.shutdown().await;
    b.shutdown().await;
}
