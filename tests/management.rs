//! The management HTTP API of an in-process broker (port 0), called with reqwest: every
//! endpoint group, the error answers (malformed JSON, wrong types, unknown vhost,
//! missing credentials, each user tag's limits), and that changes made through the API
//! reach AMQP clients and binding subscribers. `management_compare.rs` runs the same
//! kind of requests against RabbitMQ.

mod support;

use fedamq::broker::topology::BindingNotice;
use fedamq::config::Config;
use fedamq::protocol::ShortString;
use lapin::BasicProperties;
use lapin::options::{
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use serde_json::{Value, json};
use support::broker;
use support::management::{self, Http};

async fn start() -> (fedamq::BrokerHandle, Http) {
    let b = broker::start().await;
    let http = Http::of(&b);
    (b, http)
}

/// Adds a user with `tags` and, if `vhost` is given, full permissions on it.
async fn add_user(api: &Http, name: &str, tags: &str, vhost: Option<&str>) -> Http {
    let r = api
        .put(
            &format!("/api/users/{name}"),
            &json!({"password": "pw", "tags": tags}).to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    if let Some(v) = vhost {
        let r = api
            .put(
                &format!("/api/permissions/{}/{name}", enc(v)),
                r#"{"configure":".*","write":".*","read":".*"}"#,
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    api.as_user(Some((name, "pw")))
}

fn enc(vhost: &str) -> String {
    vhost.replace('/', "%2F")
}

fn error(reply: &support::management::Reply) -> (&str, &str) {
    (
        reply.body["error"].as_str().unwrap_or_default(),
        reply.body["reason"].as_str().unwrap_or_default(),
    )
}

#[tokio::test]
async fn credentials_and_tags_are_checked_as_rabbitmq_does() {
    let (b, api) = start().await;
    // No credentials: 401, a challenge, no body.
    let r = api.as_user(None).get("/api/overview").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body, Value::Null);
    assert_eq!(
        r.headers["www-authenticate"],
        "Basic realm=\"RabbitMQ Management\""
    );
    // Wrong password, unknown user.
    for (u, p) in [("guest", "nope"), ("nobody", "guest")] {
        let r = api.as_user(Some((u, p))).get("/api/overview").await;
        assert_eq!(r.status, 401);
        assert_eq!(error(&r), ("not_authorized", "Login failed"));
    }
    b.broker().add_vhost("other").unwrap();
    let untagged = add_user(&api, "plain", "", Some("/")).await;
    let management = add_user(&api, "mgmt", "management", Some("/")).await;
    let monitoring = add_user(&api, "mon", "monitoring", None).await;
    let policymaker = add_user(&api, "pol", "policymaker", Some("/")).await;

    // Issue 10 asks 403 for a user without the right tag; RabbitMQ 3.10 answers 401
    // "not_authorised", and fedamq answers as RabbitMQ does (management_compare.rs
    // checks the same requests against RabbitMQ).
    let r = untagged.get("/api/whoami").await;
    assert_eq!(
        (r.status, error(&r)),
        (401, ("not_authorised", "Not management user"))
    );
    for user in [&management, &monitoring, &policymaker] {
        let r = user.get("/api/users").await;
        assert_eq!(
            (r.status, error(&r)),
            (401, ("not_authorised", "Not administrator user"))
        );
        let r = user.put("/api/vhosts/new", "").await;
        assert_eq!(r.status, 401);
    }
    let r = management.get("/api/whoami").await;
    assert_eq!(r.body, json!({"name": "mgmt", "tags": ["management"]}));
    // A vhost the user has no permissions on.
    let r = management.get("/api/queues/other").await;
    assert_eq!(
        (r.status, error(&r)),
        (
            401,
            (
                "not_authorised",
                "User not authorised to access virtual host"
            )
        )
    );
    let r = management.put("/api/queues/other/q", "{}").await;
    assert_eq!(r.status, 401);
    // Monitoring: the node, but not changes.
    assert_eq!(monitoring.get("/api/nodes").await.status, 200);
    assert_eq!(management.get("/api/nodes").await.status, 401);
    // Listings: management sees its own vhosts, monitoring all.
    api.put(
        "/api/permissions/other/guest",
        r#"{"configure":".*","write":".*","read":".*"}"#,
    )
    .await;
    api.put("/api/queues/other/q-other", "{}").await;
    api.put("/api/queues/%2F/q-root", "{}").await;
    let names = |r: &support::management::Reply| -> Vec<String> {
        r.body
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&management.get("/api/queues").await), ["q-root"]);
    assert_eq!(
        names(&monitoring.get("/api/queues").await),
        ["q-root", "q-other"]
    );
    assert_eq!(names(&management.get("/api/vhosts").await), ["/"]);
    // A management user may declare in its vhost, within its AMQP permissions.
    assert_eq!(
        management.put("/api/queues/%2F/mine", "{}").await.status,
        201
    );
    let limited = add_user(&api, "limited", "management", None).await;
    api.put(
        "/api/permissions/%2F/limited",
        r#"{"configure":"^lim\\.","write":"","read":""}"#,
    )
    .await;
    assert_eq!(limited.put("/api/queues/%2F/lim.q", "{}").await.status, 201);
    let r = limited.put("/api/queues/%2F/other.q", "{}").await;
    assert_eq!(
        (r.status, error(&r)),
        (401, ("not_authorised", "Access refused."))
    );
    b.shutdown().await;
}

#[tokio::test]
async fn overview_nodes_whoami_aliveness_and_health_checks() {
    let (b, api) = start().await;
    let r = api.get("/api/overview").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["rabbitmq_version"], "3.10.8");
    assert_eq!(r.body["object_totals"]["queues"], 0);
    assert_eq!(r.body["object_totals"]["exchanges"], 6);
    assert_eq!(r.body["listeners"][0]["port"], json!(b.local_addr().port()));
    assert!(r.body["message_stats"]["publish_details"]["rate"].is_number());
    let r = api.get("/api/nodes").await;
    let node = r.body[0]["name"].as_str().unwrap().to_string();
    assert_eq!(api.get(&format!("/api/nodes/{node}")).await.status, 200);
    assert_eq!(api.get("/api/nodes/nope@nowhere").await.status, 404);
    assert_eq!(
        api.get("/api/whoami").await.body,
        json!({"name": "guest", "tags": ["administrator"]})
    );
    let r = api.get("/api/aliveness-test/%2F").await;
    assert_eq!((r.status, &r.body), (200, &json!({"status": "ok"})));
    let r = api.get("/api/aliveness-test/nope").await;
    assert_eq!(
        (r.status, error(&r)),
        (404, ("Object Not Found", "Not Found"))
    );
    for path in [
        "/api/health/checks/alarms",
        "/api/health/checks/local-alarms",
        "/api/health/checks/virtual-hosts",
        "/api/health/checks/protocol-listener/amqp",
    ] {
        let r = api.get(path).await;
        assert_eq!(
            (r.status, r.body["status"].as_str()),
            (200, Some("ok")),
            "{path}"
        );
    }
    let port = b.local_addr().port();
    let r = api
        .get(&format!("/api/health/checks/port-listener/{port}"))
        .await;
    assert_eq!(r.status, 200);
    let r = api.get("/api/health/checks/port-listener/1").await;
    assert_eq!((r.status, r.body["status"].as_str()), (503, Some("failed")));
    // The memory alarm fails the alarms check.
    b.broker().set_alarm(true);
    let r = api.get("/api/health/checks/alarms").await;
    assert_eq!(r.status, 503);
    b.broker().set_alarm(false);
    // Unknown paths and methods.
    let r = api.get("/api/nope").await;
    assert_eq!(
        (r.status, error(&r)),
        (404, ("Object Not Found", "Not Found"))
    );
    assert_eq!(api.post("/api/overview", "{}").await.status, 405);
    b.shutdown().await;
}

#[tokio::test]
async fn vhosts_users_and_permissions() {
    let (b, api) = start().await;
    assert_eq!(api.put("/api/vhosts/v2", "").await.status, 201);
    assert_eq!(api.put("/api/vhosts/v2", "{}").await.status, 204);
    assert!(b.broker().vhost("v2").is_some());
    let r = api.get("/api/vhosts/v2").await;
    assert_eq!((r.status, r.body["name"].as_str()), (200, Some("v2")));
    assert_eq!(r.body["message_stats"]["publish"], 0);
    let r = api.put("/api/vhosts/v3", r#"{"description": 5}"#).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        api.put("/api/vhosts/v3", "{nope").await.body["reason"],
        "not_json"
    );

    // A user made through the API logs in over AMQP.
    let r = api
        .put(
            "/api/users/alice",
            r#"{"password":"secret","tags":"management,monitoring"}"#,
        )
        .await;
    assert_eq!(r.status, 201);
    let r = api.get("/api/users/alice").await;
    assert_eq!(r.body["tags"], json!(["management", "monitoring"]));
    assert_eq!(
        r.body["hashing_algorithm"],
        "rabbit_password_hashing_sha256"
    );
    let r = api
        .put(
            "/api/permissions/v2/alice",
            r#"{"configure":".*","write":".*","read":".*"}"#,
        )
        .await;
    assert_eq!(r.status, 201);
    let conn = lapin::Connection::connect(
        &format!("amqp://alice:secret@{}/v2", b.local_addr()),
        lapin::ConnectionProperties::default(),
    )
    .await
    .expect("alice logs in to v2");
    conn.close(200, "bye").await.unwrap();
    let r = api.get("/api/permissions/v2/alice").await;
    assert_eq!(
        r.body,
        json!({"user":"alice","vhost":"v2","configure":".*","write":".*","read":".*"})
    );
    assert_eq!(
        api.get("/api/users/alice/permissions")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        api.get("/api/vhosts/v2/permissions")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Re-setting is 204; the password can change and tags be a list.
    let r = api
        .put(
            "/api/permissions/v2/alice",
            r#"{"configure":"","write":".*","read":".*"}"#,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = api
        .put(
            "/api/users/alice",
            r#"{"password":"new","tags":["administrator"]}"#,
        )
        .await;
    assert_eq!(r.status, 204);
    let alice = api.as_user(Some(("alice", "new")));
    assert_eq!(alice.get("/api/users").await.status, 200);
    // Errors.
    let r = api
        .put("/api/permissions/v2/alice", r#"{"configure":".*"}"#)
        .await;
    assert_eq!(
        (r.status, error(&r)),
        (
            400,
            ("bad_request", "[{key_missing,write},{key_missing,read}]")
        )
    );
    let r = api
        .put(
            "/api/permissions/v2/alice",
            r#"{"configure":"(","write":"","read":""}"#,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["reason"][0], "invalid_regexp");
    for path in ["/api/permissions/v2/nobody", "/api/permissions/nope/alice"] {
        let r = api
            .put(path, r#"{"configure":"","write":"","read":""}"#)
            .await;
        assert_eq!(
            (r.status, error(&r)),
            (400, ("bad_request", "vhost_or_user_not_found"))
        );
    }
    let r = api.put("/api/users/bob", r#"{"tags": 7}"#).await;
    assert_eq!(r.status, 400);
    assert_eq!(api.get("/api/users/nobody").await.status, 404);
    // Deleting.
    assert_eq!(api.delete("/api/permissions/v2/alice").await.status, 204);
    assert_eq!(api.delete("/api/permissions/v2/alice").await.status, 404);
    assert_eq!(api.delete("/api/users/alice").await.status, 204);
    assert_eq!(api.delete("/api/users/alice").await.status, 404);
    assert_eq!(api.delete("/api/vhosts/v2").await.status, 204);
    assert_eq!(api.delete("/api/vhosts/v2").await.status, 404);
    assert!(b.broker().vhost("v2").is_none());
    b.shutdown().await;
}

#[tokio::test]
async fn queues_declare_list_get_purge_and_delete() {
    let (b, api) = start().await;
    let r = api
        .put(
            "/api/queues/%2F/q1",
            r#"{"durable":true,"arguments":{"x-max-length":10}}"#,
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        api.put(
            "/api/queues/%2F/q1",
            r#"{"durable":true,"arguments":{"x-max-length":10}}"#
        )
        .await
        .status,
        204
    );
    // Different arguments: RabbitMQ's inequivalent-arg text, as a 400.
    let r = api.put("/api/queues/%2F/q1", "{}").await;
    assert_eq!(r.status, 400);
    assert!(error(&r).1.starts_with("inequivalent arg"), "{:?}", r.body);
    // A lapin client sees it (passive declare).
    let (_c, ch) = broker::channel(&b).await;
    ch.queue_declare(
        "q1",
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("the queue exists for AMQP clients");
    for i in 0..3 {
        ch.basic_publish(
            "",
            "q1",
            BasicPublishOptions::default(),
            format!("m{i}").as_bytes(),
            BasicProperties::default().with_content_type("text/plain".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let r = api.get("/api/queues/%2F/q1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["messages"], 3);
    assert_eq!(r.body["durable"], true);
    assert_eq!(r.body["arguments"], json!({"x-max-length": 10}));
    assert_eq!(r.body["message_stats"]["publish"], 3);
    assert!(r.body["message_stats"]["publish_details"]["rate"].is_number());
    assert_eq!(r.body["consumer_details"], json!([]));

    // Get, requeueing: the same messages stay, and come back redelivered.
    let get = r#"{"count":2,"ackmode":"ack_requeue_true","encoding":"auto"}"#;
    let r = api.post("/api/queues/%2F/q1/get", get).await;
    assert_eq!(r.status, 200);
    let got = r.body.as_array().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["payload"], "m0");
    assert_eq!(got[0]["payload_encoding"], "string");
    assert_eq!(got[0]["properties"]["content_type"], "text/plain");
    assert_eq!(got[0]["message_count"], 2);
    assert_eq!(got[0]["redelivered"], false);
    let r = api.post("/api/queues/%2F/q1/get", get).await;
    assert_eq!(r.body[0]["redelivered"], true);
    // Acked: gone.
    let r = api
        .post(
            "/api/queues/%2F/q1/get",
            r#"{"count":1,"ackmode":"ack_requeue_false","encoding":"base64","truncate":1}"#,
        )
        .await;
    assert_eq!(r.body[0]["payload"], "bQ==", "m, truncated, in base64");
    assert_eq!(r.body[0]["payload_bytes"], 2);
    let r = api.get("/api/queues/%2F/q1").await;
    assert_eq!(r.body["messages"], 2, "{:#}", r.body);
    let r = api.get("/api/queues/%2F/q1").await;
    assert_eq!(r.body["message_stats"]["get"], 5);
    assert_eq!(r.body["message_stats"]["ack"], 1);
    // m0 came back twice, m1 once.
    assert_eq!(r.body["message_stats"]["redeliver"], 3);
    // Get errors.
    let r = api.post("/api/queues/%2F/q1/get", r#"{"count":1}"#).await;
    assert_eq!(
        (r.status, error(&r)),
        (
            400,
            (
                "bad_request",
                "[{key_missing,ackmode},{key_missing,encoding}]"
            )
        )
    );
    let r = api
        .post(
            "/api/queues/%2F/q1/get",
            r#"{"count":"x","ackmode":"ack_requeue_true","encoding":"auto"}"#,
        )
        .await;
    assert_eq!(r.status, 400);
    // Purge.
    assert_eq!(api.delete("/api/queues/%2F/q1/contents").await.status, 204);
    assert_eq!(api.get("/api/queues/%2F/q1").await.body["messages"], 0);
    // Lists, per vhost and all.
    api.put("/api/queues/%2F/q2", "{}").await;
    let r = api.get("/api/queues/%2F").await;
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    assert_eq!(
        api.get("/api/queues").await.body.as_array().unwrap().len(),
        2
    );
    // Errors: malformed JSON, wrong types, unknown vhost, unknown queue, reserved name.
    let r = api.put("/api/queues/%2F/q3", "{bad").await;
    assert_eq!((r.status, error(&r)), (400, ("bad_request", "not_json")));
    let r = api.put("/api/queues/%2F/q3", "[1]").await;
    assert_eq!((r.status, error(&r)), (400, ("bad_request", "not_json")));
    let r = api.put("/api/queues/%2F/q3", r#"{"durable":"yes"}"#).await;
    assert_eq!(
        (r.status, &r.body["reason"]),
        (400, &json!(["not_boolean", "yes"]))
    );
    let r = api.put("/api/queues/%2F/q3", r#"{"arguments":[1]}"#).await;
    assert_eq!(r.status, 400);
    let r = api
        .put(
            "/api/queues/%2F/q3",
            r#"{"arguments":{"x-max-length":"ten"}}"#,
        )
        .await;
    assert_eq!(
        r.status, 400,
        "a bad x- argument is the core's 406 as a 400"
    );
    let r = api.put("/api/queues/nope/q3", "{}").await;
    assert_eq!(
        (r.status, error(&r)),
        (404, ("not_found", "vhost_not_found"))
    );
    let r = api.get("/api/queues/nope/q3").await;
    assert_eq!(
        (r.status, error(&r)),
        (404, ("Object Not Found", "Not Found"))
    );
    assert_eq!(api.get("/api/queues/%2F/q3").await.status, 404);
    assert_eq!(api.delete("/api/queues/%2F/q3").await.status, 404);
    let r = api.put("/api/queues/%2F/amq.q", "{}").await;
    assert_eq!(
        (r.status, error(&r)),
        (401, ("not_authorised", "Access refused."))
    );
    // Delete, if-empty refused while it holds a message.
    api.post(
        "/api/exchanges/%2F/amq.default/publish",
        r#"{"routing_key":"q2","payload":"x","payload_encoding":"string","properties":{}}"#,
    )
    .await;
    let r = api.delete("/api/queues/%2F/q2?if-empty=true").await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(api.delete("/api/queues/%2F/q2").await.status, 204);
    assert!(
        b.broker()
            .vhost("/")
            .unwrap()
            .queue(&ShortString::from_static("q2"))
            .is_none()
    );
    b.shutdown().await;
}

#[tokio::test]
async fn exchanges_declare_publish_and_delete() {
    let (b, api) = start().await;
    let r = api
        .put("/api/exchanges/%2F/ex1", r#"{"type":"topic"}"#)
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        api.put("/api/exchanges/%2F/ex1", r#"{"type":"topic"}"#)
            .await
            .status,
        204
    );
    let r = api
        .put("/api/exchanges/%2F/ex1", r#"{"type":"direct"}"#)
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        error(&r).1,
        "inequivalent arg 'type' for exchange 'ex1' in vhost '/': received 'direct' but current is 'topic'"
    );
    let r = api
        .put("/api/exchanges/%2F/ex2", r#"{"type":"bogus"}"#)
        .await;
    assert_eq!(
        (r.status, error(&r)),
        (400, ("bad_request", "invalid exchange type 'bogus'"))
    );
    let r = api.put("/api/exchanges/%2F/amq.foo", "{}").await;
    assert_eq!(
        (r.status, error(&r)),
        (401, ("not_authorised", "Access refused."))
    );
    let r = api.put("/api/exchanges/%2F/ex2", r#"{"durable":1}"#).await;
    assert_eq!(
        (r.status, &r.body["reason"]),
        (400, &json!(["not_boolean", "1"]))
    );
    let r = api.get("/api/exchanges/%2F/ex1").await;
    assert_eq!(r.body["type"], "topic");
    assert_eq!(r.body["durable"], false, "RabbitMQ's default");
    let r = api.get("/api/exchanges/%2F/amq.default").await;
    assert_eq!((r.status, r.body["name"].as_str()), (200, Some("")));
    assert_eq!(
        api.get("/api/exchanges/%2F")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        7
    );
    assert_eq!(api.get("/api/exchanges/%2F/nope").await.status, 404);

    // Publish: routed or not.
    api.put("/api/queues/%2F/tq", "{}").await;
    api.post("/api/bindings/%2F/e/ex1/q/tq", r#"{"routing_key":"a.*"}"#)
        .await;
    let publish = |key: &str| {
        json!({"routing_key": key, "payload": "aGk=", "payload_encoding": "base64",
               "properties": {"delivery_mode": 2, "headers": {"h": "v"}, "priority": 3}})
        .to_string()
    };
    let r = api
        .post("/api/exchanges/%2F/ex1/publish", &publish("a.b"))
        .await;
    assert_eq!((r.status, &r.body), (200, &json!({"routed": true})));
    let r = api
        .post("/api/exchanges/%2F/ex1/publish", &publish("zz"))
        .await;
    assert_eq!(r.body, json!({"routed": false}));
    let r = api
        .post(
            "/api/queues/%2F/tq/get",
            r#"{"count":5,"ackmode":"ack_requeue_false","encoding":"auto"}"#,
        )
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(r.body[0]["payload"], "hi");
    assert_eq!(r.body[0]["exchange"], "ex1");
    assert_eq!(
        r.body[0]["properties"],
        json!({"delivery_mode": 2, "headers": {"h": "v"}, "priority": 3})
    );
    let r = api
        .post("/api/exchanges/%2F/ex1/publish", r#"{"routing_key":"k"}"#)
        .await;
    assert_eq!(
        error(&r),
        (
            "bad_request",
            "[{key_missing,properties},\n {key_missing,payload},\n {key_missing,payload_encoding}]"
        )
    );
    let r = api
        .post("/api/exchanges/%2F/nope/publish", &publish("k"))
        .await;
    assert_eq!(r.status, 404);

    // Delete: if-unused refused while bound; the builtins refused.
    let r = api.delete("/api/exchanges/%2F/ex1?if-unused=true").await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(api.delete("/api/exchanges/%2F/ex1").await.status, 204);
    assert_eq!(api.delete("/api/exchanges/%2F/ex1").await.status, 404);
    for builtin in ["amq.default", "amq.direct"] {
        let r = api.delete(&format!("/api/exchanges/%2F/{builtin}")).await;
        assert_eq!(
            (r.status, error(&r)),
            (401, ("not_authorised", "Access refused."))
        );
    }
    assert_eq!(api.get("/api/exchanges/%2F/amq.direct").await.status, 200);
    b.shutdown().await;
}

#[tokio::test]
async fn bindings_in_every_form_reach_binding_subscribers() {
    let (b, api) = start().await;
    let vhost = b.broker().vhost("/").unwrap();
    let (_, mut sub) = vhost.subscribe_bindings(None, 64);
    api.put("/api/exchanges/%2F/src", r#"{"type":"direct"}"#)
        .await;
    api.put("/api/exchanges/%2F/dst", r#"{"type":"fanout"}"#)
        .await;
    api.put("/api/queues/%2F/q", "{}").await;

    let r = api
        .post(
            "/api/bindings/%2F/e/src/q/q",
            r#"{"routing_key":"k#1","arguments":{"x":1}}"#,
        )
        .await;
    assert_eq!(r.status, 201);
    let location = r.headers["location"].to_str().unwrap().to_string();
    // Relative to the request's path, as RabbitMQ writes it; the key quoted again.
    assert!(location.starts_with("q/k%25231~"), "{location}");
    match sub.try_recv() {
        Some(Some(BindingNotice::Created { binding, .. })) => {
            assert_eq!(binding.routing_key.as_str(), Some("k#1"));
        }
        other => panic!("no Created notice: {other:?}"),
    }
    // A path spelt differently (`%2f`) gets a path up to where they part.
    let r = api
        .post("/api/bindings/%2f/e/src/q/q", r#"{"routing_key":"k2"}"#)
        .await;
    assert_eq!(r.headers["location"], "../../../../%2F/e/src/q/q/k2");
    let r = api.delete("/api/bindings/%2F/e/src/q/q/k2").await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert!(matches!(
        sub.try_recv(),
        Some(Some(BindingNotice::Created { .. }))
    ));
    let n = sub.try_recv();
    assert!(
        matches!(n, Some(Some(BindingNotice::Destroyed { .. }))),
        "{n:?}"
    );
    let r = api
        .post("/api/bindings/%2F/e/src/e/dst", r#"{"routing_key":""}"#)
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.headers["location"], "dst/~");

    // Listed in every form; the queue's default binding too.
    let r = api.get("/api/bindings/%2F/e/src/q/q").await;
    let listed = r.body.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["arguments"], json!({"x": 1}));
    assert_eq!(listed[0]["destination_type"], "queue");
    let key = listed[0]["properties_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("k%231~"), "{key}");
    assert_eq!(
        api.get("/api/bindings/%2F/e/src/e/dst")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        api.get("/api/bindings/%2F")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        api.get("/api/bindings")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let r = api.get("/api/queues/%2F/q/bindings").await;
    let sources: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["", "src"]);
    assert_eq!(
        api.get("/api/exchanges/%2F/src/bindings/source")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        api.get("/api/exchanges/%2F/dst/bindings/destination")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let path = format!("/api/bindings/%2F/e/src/q/q/{}", key.replace('%', "%25"));
    assert_eq!(api.get(&path).await.status, 200);

    // Errors: unknown queue or exchange, bad body.
    let r = api.post("/api/bindings/%2F/e/src/q/nope", "{}").await;
    assert_eq!(
        (r.status, error(&r)),
        (404, ("not_found", "no queue 'nope' in vhost '/'"))
    );
    assert_eq!(
        api.post("/api/bindings/%2F/e/nope/q/q", "{}").await.status,
        404
    );
    assert_eq!(
        api.post("/api/bindings/%2F/e/src/q/q", "{x").await.status,
        400
    );
    assert_eq!(
        api.post("/api/bindings/%2F/e/src/q/q", r#"{"routing_key":5}"#)
            .await
            .status,
        400
    );
    assert_eq!(
        api.post("/api/bindings/nope/e/src/q/q", "{}").await.status,
        404
    );
    assert_eq!(api.get("/api/bindings/%2F/e/src/x/q").await.status, 404);

    // Delete by properties_key (quoted once more, as rabbitmqadmin sends it).
    assert_eq!(api.delete(&path).await.status, 204);
    match sub.try_recv() {
        Some(Some(BindingNotice::Created { .. })) => {}
        other => panic!("the exchange binding's notice first: {other:?}"),
    }
    match sub.try_recv() {
        Some(Some(BindingNotice::Destroyed { binding, .. })) => {
            assert_eq!(binding.routing_key.as_str(), Some("k#1"));
        }
        other => panic!("no Destroyed notice: {other:?}"),
    }
    assert_eq!(api.delete(&path).await.status, 404);
    assert_eq!(
        api.delete("/api/bindings/%2F/e/src/e/dst/~").await.status,
        204
    );
    assert_eq!(
        api.get("/api/bindings/%2F")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    b.shutdown().await;
}

#[tokio::test]
async fn connections_are_listed_and_closed_with_the_given_reason() {
    let (b, api) = start().await;
    let conn = broker::connect(&b).await;
    let mut events = Box::pin(conn.events_listener());
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare("cq", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    // Kept: dropping lapin's consumer cancels it.
    let mut consumer = ch
        .basic_consume(
            "cq",
            "ctag",
            lapin::options::BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let r = api.get("/api/connections").await;
    let list = r.body.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["user"], "guest");
    assert_eq!(list[0]["vhost"], "/");
    assert_eq!(list[0]["port"], json!(b.local_addr().port()));
    let name = list[0]["name"].as_str().unwrap().to_string();
    assert!(name.ends_with(&format!(" -> {}", b.local_addr())), "{name}");
    let path = format!(
        "/api/connections/{}",
        name.replace(' ', "%20").replace('>', "%3E")
    );
    assert_eq!(api.get(&path).await.body["name"], json!(name));
    assert_eq!(api.get("/api/connections/nope").await.status, 404);
    // Consumers.
    let r = api.get("/api/consumers").await;
    assert_eq!(r.body[0]["consumer_tag"], "ctag");
    assert_eq!(r.body[0]["queue"], json!({"name": "cq", "vhost": "/"}));
    assert_eq!(
        api.get("/api/consumers/%2F")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(api.get("/api/queues/%2F/cq").await.body["consumers"], 1);
    // Deliveries and acks are counted.
    for _ in 0..2 {
        let r = api
            .post(
                "/api/exchanges/%2F/amq.default/publish",
                r#"{"routing_key":"cq","payload":"x","payload_encoding":"string","properties":{}}"#,
            )
            .await;
        assert_eq!(r.body["routed"], true);
    }
    for _ in 0..2 {
        let delivery = futures_lite::StreamExt::next(&mut consumer)
            .await
            .unwrap()
            .unwrap();
        delivery
            .ack(lapin::options::BasicAckOptions::default())
            .await
            .unwrap();
    }
    // A synchronous round trip on the channel: the acks before it are handled.
    ch.queue_declare(
        "cq",
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let stats = &api.get("/api/queues/%2F/cq").await.body["message_stats"];
    assert_eq!(
        (
            &stats["publish"],
            &stats["deliver"],
            &stats["deliver_get"],
            &stats["ack"]
        ),
        (&json!(2), &json!(2), &json!(2), &json!(2)),
        "{stats:#}"
    );
    let overview = api.get("/api/overview").await.body;
    assert_eq!(overview["message_stats"]["ack"], 2);
    assert_eq!(api.get("/api/channels").await.status, 200);
    // A management user sees only their own connections.
    let other = add_user(&api, "other", "management", Some("/")).await;
    assert_eq!(other.get("/api/connections").await.body, json!([]));
    assert_eq!(other.delete(&path).await.status, 404);

    let r = api
        .call_with("DELETE", &path, None, &[("X-Reason", "go away")])
        .await;
    assert_eq!(r.status, 204);
    let e = broker::closed_by_broker(&mut events).await;
    assert_eq!(broker::reply_code(&e), Some(320));
    assert!(e.to_string().contains("go away"), "{e}");
    b.shutdown().await;
}

/// Sorted by `number`.
fn by_number(list: &Value) -> Vec<Value> {
    let mut items = list.as_array().cloned().unwrap_or_default();
    items.sort_by_key(|c| c["number"].as_u64());
    items
}

#[tokio::test]
async fn channels_and_consumers_show_their_state_and_counters() {
    let (b, api) = start().await;
    let conn = broker::connect(&b).await;
    // Channel 1 publishes with confirms; channel 2 consumes.
    let publisher = conn.create_channel().await.unwrap();
    let consumer_ch = conn.create_channel().await.unwrap();
    publisher
        .basic_qos(7, BasicQosOptions { global: true })
        .await
        .unwrap();
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    consumer_ch
        .queue_declare("chq", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    consumer_ch
        .basic_qos(5, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consumer_ch
        .basic_consume(
            "chq",
            "chtag",
            lapin::options::BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    // Two routed, one returned (mandatory), one dropped; all four confirmed.
    for (exchange, key, mandatory) in [
        ("", "chq", false),
        ("", "chq", false),
        ("amq.direct", "nowhere", true),
        ("amq.direct", "nowhere", false),
    ] {
        publisher
            .basic_publish(
                exchange,
                key,
                BasicPublishOptions {
                    mandatory,
                    ..Default::default()
                },
                b"m",
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // Two delivered, one acked.
    let first = futures_lite::StreamExt::next(&mut consumer)
        .await
        .unwrap()
        .unwrap();
    futures_lite::StreamExt::next(&mut consumer)
        .await
        .unwrap()
        .unwrap();
    first
        .ack(lapin::options::BasicAckOptions::default())
        .await
        .unwrap();
    // A synchronous round trip on the channel: the ack before it is handled.
    consumer_ch
        .queue_declare(
            "chq",
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();

    let connection = api.get("/api/connections").await.body[0].clone();
    let conn_name = connection["name"].as_str().unwrap().to_string();
    assert_eq!(connection["channels"], 2);
    let channels = by_number(&api.get("/api/channels").await.body);
    assert_eq!(channels.len(), 2, "{channels:#?}");
    let (p, c) = (&channels[0], &channels[1]);
    assert_eq!(p["name"], json!(format!("{conn_name} (1)")));
    assert_eq!(
        (&p["number"], &p["user"], &p["vhost"], &p["state"]),
        (&json!(1), &json!("guest"), &json!("/"), &json!("running"))
    );
    assert_eq!(p["connection_details"]["name"], json!(conn_name));
    assert_eq!(
        (
            &p["confirm"],
            &p["transactional"],
            &p["global_prefetch_count"],
            &p["prefetch_count"],
            &p["consumer_count"],
        ),
        (&json!(true), &json!(false), &json!(7), &json!(0), &json!(0))
    );
    let stats = &p["message_stats"];
    assert_eq!(
        (
            &stats["publish"],
            &stats["confirm"],
            &stats["return_unroutable"],
            &stats["drop_unroutable"],
        ),
        (&json!(4), &json!(4), &json!(1), &json!(1)),
        "{stats:#}"
    );
    assert!(stats["publish_details"]["rate"].is_number());
    assert!(stats.get("deliver").is_none(), "only counters that moved");
    assert_eq!(
        (
            &c["prefetch_count"],
            &c["consumer_count"],
            &c["messages_unacknowledged"],
            &c["confirm"],
        ),
        (&json!(5), &json!(1), &json!(1), &json!(false))
    );
    let stats = &c["message_stats"];
    assert_eq!(
        (&stats["deliver"], &stats["deliver_get"], &stats["ack"]),
        (&json!(2), &json!(2), &json!(1)),
        "{stats:#}"
    );

    // The same channels by connection and by vhost; one by name, with its consumers.
    let of_connection = api
        .get(&format!(
            "/api/connections/{}/channels",
            management::segment(&conn_name)
        ))
        .await;
    assert_eq!(by_number(&of_connection.body), channels);
    assert_eq!(
        by_number(&api.get("/api/vhosts/%2F/channels").await.body).len(),
        2
    );
    assert_eq!(
        api.get("/api/vhosts/fedamq-nope/channels").await.status,
        404
    );
    let one = api
        .get(&format!(
            "/api/channels/{}",
            management::segment(&format!("{conn_name} (2)"))
        ))
        .await;
    assert_eq!(one.status, 200, "{:?}", one.body);
    assert_eq!(one.body["consumer_details"][0]["consumer_tag"], "chtag");
    for missing in [
        format!("{conn_name} (9)"),
        "nope (1)".to_string(),
        "nope".to_string(),
    ] {
        let r = api
            .get(&format!("/api/channels/{}", management::segment(&missing)))
            .await;
        assert_eq!(r.status, 404, "{missing}");
    }

    // A consumer names its channel as RabbitMQ does.
    let consumers = api.get("/api/consumers").await.body;
    let details = &consumers[0]["channel_details"];
    assert_eq!(
        (
            &details["name"],
            &details["number"],
            &details["connection_name"],
            &details["user"],
        ),
        (
            &json!(format!("{conn_name} (2)")),
            &json!(2),
            &json!(conn_name),
            &json!("guest")
        )
    );
    assert_eq!(details["peer_port"], connection["peer_port"]);

    // The overview counts channels and sums what publishers did.
    let overview = api.get("/api/overview").await.body;
    assert_eq!(overview["object_totals"]["channels"], 2);
    let stats = &overview["message_stats"];
    assert_eq!(
        (
            &stats["publish"],
            &stats["confirm"],
            &stats["return_unroutable"],
            &stats["drop_unroutable"],
            &stats["deliver_get"],
        ),
        (&json!(4), &json!(4), &json!(1), &json!(1), &json!(2)),
        "{stats:#}"
    );

    // Another user's channels are not shown to a management user.
    let other = add_user(&api, "chother", "management", Some("/")).await;
    assert_eq!(other.get("/api/channels").await.body, json!([]));

    // A closed channel is gone from the list.
    publisher.close(200, "bye").await.unwrap();
    let channels = by_number(&api.get("/api/channels").await.body);
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0]["number"], 2);
    assert_eq!(
        api.get("/api/overview").await.body["object_totals"]["channels"],
        1
    );
    b.shutdown().await;
}

#[tokio::test]
async fn exchanges_count_messages_in_and_out() {
    let (b, api) = start().await;
    api.put("/api/exchanges/%2F/fan", r#"{"type":"fanout"}"#)
        .await;
    api.put("/api/exchanges/%2F/outer", r#"{"type":"fanout"}"#)
        .await;
    api.put("/api/exchanges/%2F/idle", r#"{"type":"fanout"}"#)
        .await;
    for q in ["xq1", "xq2"] {
        api.put(&format!("/api/queues/%2F/{q}"), "{}").await;
        api.post(&format!("/api/bindings/%2F/e/fan/q/{q}"), "{}")
            .await;
    }
    api.post("/api/bindings/%2F/e/outer/e/fan", "{}").await;
    let (_conn, ch) = broker::channel(&b).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for exchange in ["fan", "fan", "fan", "outer", "idle"] {
        ch.basic_publish(
            exchange,
            "",
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let stats = |name: &'static str| {
        let api = api.clone();
        async move {
            api.get(&format!("/api/exchanges/%2F/{name}"))
                .await
                .body
                .get("message_stats")
                .cloned()
        }
    };
    // Each queue reached counts once in publish_out; a message that went on through
    // an exchange-to-exchange binding counts for the exchange it was published to.
    let fan = stats("fan").await.unwrap();
    assert_eq!(
        (&fan["publish_in"], &fan["publish_out"]),
        (&json!(3), &json!(6)),
        "{fan:#}"
    );
    assert!(fan["publish_in_details"]["rate"].is_number());
    let outer = stats("outer").await.unwrap();
    assert_eq!(
        (&outer["publish_in"], &outer["publish_out"]),
        (&json!(1), &json!(2))
    );
    let idle = stats("idle").await.unwrap();
    assert_eq!(idle["publish_in"], 1);
    assert!(idle.get("publish_out").is_none(), "{idle:#}");
    assert_eq!(
        stats("amq.topic").await,
        None,
        "no publishes, no message_stats"
    );
    // The list shows them too.
    let list = api.get("/api/exchanges/%2F").await.body;
    let fan = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "fan")
        .unwrap();
    assert_eq!(fan["message_stats"]["publish_in"], 3);
    b.shutdown().await;
}

#[tokio::test]
async fn paging_sorting_filtering_and_columns() {
    let (b, api) = start().await;
    for name in ["b-q", "a-q", "c-q", "other"] {
        api.put(&format!("/api/queues/%2F/{name}"), "{}").await;
    }
    let r = api.get("/api/queues?page=1&page_size=2").await;
    assert_eq!(r.body["total_count"], 4);
    assert_eq!(r.body["filtered_count"], 4);
    assert_eq!(r.body["item_count"], 2);
    assert_eq!(r.body["page_count"], 2);
    assert_eq!(r.body["items"][0]["name"], "a-q");
    let r = api.get("/api/queues?page=2&page_size=2&name=-q").await;
    assert_eq!(r.body["filtered_count"], 3);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    let r = api
        .get("/api/queues?page=1&name=%5E%5Bab%5D&use_regex=true&columns=name")
        .await;
    assert_eq!(r.body["items"], json!([{"name": "a-q"}, {"name": "b-q"}]));
    // Without paging the name filter is ignored, as in RabbitMQ.
    let r = api.get("/api/queues?name=a-q&columns=name").await;
    assert_eq!(r.body.as_array().unwrap().len(), 4);
    let r = api
        .get("/api/queues?sort=name&sort_reverse=true&columns=name,vhost")
        .await;
    assert_eq!(r.body[0], json!({"name": "other", "vhost": "/"}));
    let r = api
        .get("/api/queues?page=1&columns=name,message_stats.publish&name=a-q")
        .await;
    assert_eq!(
        r.body["items"],
        json!([{"name": "a-q", "message_stats": {"publish": 0}}])
    );
    assert_eq!(api.get("/api/queues?page=9").await.status, 400);
    assert_eq!(
        api.get("/api/queues?page=1&page_size=501").await.status,
        400
    );
    assert_eq!(api.get("/api/queues?page=x").await.status, 400);
    assert_eq!(
        api.get("/api/queues?page=1&name=(&use_regex=true")
            .await
            .status,
        400
    );
    b.shutdown().await;
}

#[tokio::test]
async fn the_api_can_be_turned_off() {
    let mut config = Config::default();
    config.management.port = None;
    let b = broker::start_with(config).await;
    assert_eq!(b.management_addr(), None);
    b.shutdown().await;
}

#[tokio::test]
async fn bad_paths_and_oversized_bodies_get_json_errors() {
    let (b, api) = start().await;
    // A path segment that is not UTF-8.
    let r = api.get("/api/queues/%FF/q").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "bad_request", "{:?}", r.body);
    // Over the body limit (RabbitMQ's default 10 MiB).
    let big = format!(
        r#"{{"routing_key":"k","payload":"{}","payload_encoding":"string","properties":{{}}}}"#,
        "x".repeat(11 * 1024 * 1024)
    );
    let r = api
        .post("/api/exchanges/%2F/amq.direct/publish", &big)
        .await;
    assert_eq!(r.status, 413);
    assert!(r.body["error"].is_string(), "{:?}", r.body);
    // Names longer than AMQP allows.
    let long = "n".repeat(256);
    let r = api.put(&format!("/api/queues/%2F/{long}"), "{}").await;
    assert_eq!(r.status, 400);
    // The broker still serves.
    assert_eq!(api.get("/api/overview").await.status, 200);
    b.shutdown().await;
}

#[tokio::test]
async fn a_user_put_with_a_rabbitmq_password_hash_logs_in() {
    let (b, api) = start().await;
    // What RabbitMQ 3.10.8's GET /api/users showed for a user whose password is "pw".
    let r = api
        .put(
            "/api/users/imported",
            r#"{"password_hash":"iragaAtm02dulftyVg1idIIXc9cl4h4MbW4uA8wlY1Vfbzg4",
                "hashing_algorithm":"rabbit_password_hashing_sha256","tags":"management"}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let imported = api.as_user(Some(("imported", "pw")));
    assert_eq!(imported.get("/api/whoami").await.status, 200);
    let r = api.get("/api/users/imported").await;
    assert_eq!(
        r.body["password_hash"],
        "iragaAtm02dulftyVg1idIIXc9cl4h4MbW4uA8wlY1Vfbzg4"
    );
    let r = api
        .put(
            "/api/users/bad",
            r#"{"password_hash":"not base64!","tags":""}"#,
        )
        .await;
    assert_eq!(r.status, 400);
    let r = api
        .put(
            "/api/users/bad",
            r#"{"password_hash":"","hashing_algorithm":"rabbit_password_hashing_md5"}"#,
        )
        .await;
    assert_eq!(r.status, 400);
    // A user without a password cannot log in.
    api.put("/api/users/locked", r#"{"tags":"administrator"}"#)
        .await;
    let r = api.as_user(Some(("locked", ""))).get("/api/whoami").await;
    assert_eq!(r.status, 401);
    b.shutdown().await;
}
