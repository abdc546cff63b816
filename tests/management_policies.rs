//! The management API's policy, operator-policy, parameter, global-parameter,
//! definitions and federation-links routes on an in-process broker (port 0): each
//! route, the error answers, the user tags' limits, and that changes take effect for
//! AMQP clients. `management_compare.rs` runs the same kind of requests against
//! RabbitMQ.

mod support;

use serde_json::{Value, json};
use support::broker;
use support::management::{Http, Reply};

async fn start() -> (fedamq::BrokerHandle, Http) {
    let b = broker::start().await;
    let http = Http::of(&b);
    (b, http)
}

/// Adds a user with `tags` and full permissions on `vhost` (if given).
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
                &format!("/api/permissions/{}/{name}", v.replace('/', "%2F")),
                r#"{"configure":".*","write":".*","read":".*"}"#,
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    api.as_user(Some((name, "pw")))
}

fn error(r: &Reply) -> (u16, &str, &str) {
    (
        r.status,
        r.body["error"].as_str().unwrap_or_default(),
        r.body["reason"].as_str().unwrap_or_default(),
    )
}

const POLICY: &str = r#"{"pattern":"^lim","definition":{"max-length":2},"apply-to":"queues"}"#;

#[tokio::test]
async fn policies_and_operator_policies_routes() {
    let (b, api) = start().await;
    for prefix in ["/api/policies", "/api/operator-policies"] {
        let one = format!("{prefix}/%2F/p");
        assert_eq!(api.put(&one, POLICY).await.status, 201);
        assert_eq!(api.put(&one, POLICY).await.status, 204);
        let r = api.get(&one).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            json!({"vhost": "/", "name": "p", "pattern": "^lim", "apply-to": "queues",
                   "definition": {"max-length": 2}, "priority": 0})
        );
        for list in [prefix.to_string(), format!("{prefix}/%2F")] {
            let r = api.get(&list).await;
            assert_eq!((r.status, r.body.as_array().map(Vec::len)), (200, Some(1)));
        }
        assert_eq!(api.get(&format!("{prefix}/nope")).await.status, 404);
        assert_eq!(
            error(&api.get(&format!("{prefix}/%2F/none")).await),
            (404, "Object Not Found", "Not Found")
        );
        assert_eq!(
            error(&api.put(&format!("{prefix}/nope/p"), POLICY).await),
            (404, "not_found", "vhost_not_found")
        );
        assert_eq!(
            error(&api.put(&one, "not json").await),
            (400, "bad_request", "not_json")
        );
        assert_eq!(
            error(&api.put(&one, r#"{"definition":{}}"#).await),
            (400, "bad_request", "[{key_missing,pattern}]")
        );
        let r = api
            .put(&one, r#"{"pattern":"x","definition":{"max-length":"x"}}"#)
            .await;
        assert_eq!(r.status, 400);
        assert!(error(&r).2.starts_with("Validation failed"), "{:?}", r.body);
        assert_eq!(api.delete(&one).await.status, 204);
        assert_eq!(api.delete(&one).await.status, 404);
    }
    b.shutdown().await;
}

#[tokio::test]
async fn a_policy_put_over_http_limits_a_queue_an_amqp_client_declared() {
    let (b, api) = start().await;
    let (_conn, ch) = broker::channel(&b).await;
    ch.queue_declare(
        "limited",
        Default::default(),
        lapin::types::FieldTable::default(),
    )
    .await
    .unwrap();
    assert_eq!(api.put("/api/policies/%2F/lim", POLICY).await.status, 201);
    for i in 0..5u8 {
        ch.basic_publish("", "limited", Default::default(), &[i], Default::default())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let r = api.get("/api/queues/%2F/limited").await;
    assert_eq!(r.body["messages"], 2, "{:?}", r.body);
    assert_eq!(r.body["policy"], "lim", "{:?}", r.body);
    b.shutdown().await;
}

#[tokio::test]
async fn tags_decide_who_manages_policies_and_parameters() {
    let (b, api) = start().await;
    b.broker().add_vhost("other").unwrap();
    let management = add_user(&api, "mgmt", "management", Some("/")).await;
    let policymaker = add_user(&api, "pol", "policymaker", Some("/")).await;
    let monitoring = add_user(&api, "mon", "monitoring", None).await;
    assert_eq!(api.put("/api/policies/other/o", POLICY).await.status, 201);
    assert_eq!(
        api.put("/api/operator-policies/%2F/op", POLICY)
            .await
            .status,
        201
    );

    // Policymaker: policies and parameters of its vhosts, global parameters.
    assert_eq!(
        policymaker.put("/api/policies/%2F/p", POLICY).await.status,
        201
    );
    assert_eq!(policymaker.get("/api/policies/%2F/p").await.status, 200);
    let denied = (
        401,
        "not_authorised",
        "User not authorised to access object",
    );
    assert_eq!(
        error(&policymaker.put("/api/policies/other/p", POLICY).await),
        denied
    );
    assert_eq!(
        error(&policymaker.get("/api/policies/other").await),
        (
            401,
            "not_authorised",
            "User not authorised to access virtual host"
        )
    );
    // Lists show only the vhosts the user has permissions on.
    let names = |r: Reply| -> Vec<String> {
        r.body
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(policymaker.get("/api/policies").await), ["p"]);
    assert_eq!(names(api.get("/api/policies").await).len(), 2);
    let upstream = r#"{"value":{"uri":"amqp://localhost"}}"#;
    let r = policymaker
        .put("/api/parameters/federation-upstream/%2F/up", upstream)
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        error(
            &policymaker
                .put("/api/parameters/federation-upstream/other/up", upstream)
                .await
        ),
        denied
    );
    assert_eq!(
        policymaker
            .put("/api/global-parameters/g", r#"{"value":1}"#)
            .await
            .status,
        201
    );
    // Operator policies and definitions are the administrator's.
    let not_admin = (401, "not_authorised", "Not administrator user");
    assert_eq!(
        error(&policymaker.get("/api/operator-policies/%2F/op").await),
        not_admin
    );
    assert_eq!(
        error(
            &policymaker
                .put("/api/operator-policies/%2F/x", POLICY)
                .await
        ),
        not_admin
    );
    assert_eq!(error(&policymaker.get("/api/definitions").await), not_admin);
    assert_eq!(
        error(&monitoring.get("/api/definitions/%2F").await),
        not_admin
    );
    assert_eq!(
        error(&policymaker.post("/api/definitions", "{}").await),
        not_admin
    );

    // Management and monitoring: list policies of their vhosts, nothing else.
    assert_eq!(names(management.get("/api/policies").await), ["p"]);
    assert_eq!(
        names(management.get("/api/operator-policies").await),
        ["op"]
    );
    assert_eq!(
        names(monitoring.get("/api/policies").await),
        Vec::<String>::new()
    );
    for who in [&management, &monitoring] {
        assert_eq!(error(&who.get("/api/policies/%2F/p").await), denied);
        assert_eq!(error(&who.delete("/api/policies/%2F/p").await), denied);
        assert_eq!(error(&who.get("/api/parameters").await), denied);
        assert_eq!(error(&who.get("/api/global-parameters").await), denied);
    }
    assert_eq!(policymaker.delete("/api/policies/%2F/p").await.status, 204);
    b.shutdown().await;
}

#[tokio::test]
async fn parameters_and_global_parameters_routes() {
    let (b, api) = start().await;
    let up = "/api/parameters/federation-upstream/%2F/up";
    let body =
        r#"{"vhost":"/","component":"federation-upstream","name":"up","value":{"uri":"amqp://h"}}"#;
    assert_eq!(api.put(up, body).await.status, 201);
    assert_eq!(api.put(up, body).await.status, 204);
    let expected = json!({"vhost": "/", "component": "federation-upstream", "name": "up",
                          "value": {"uri": "amqp://h"}});
    assert_eq!(api.get(up).await.body, expected);
    for list in [
        "/api/parameters",
        "/api/parameters/federation-upstream",
        "/api/parameters/federation-upstream/%2F",
    ] {
        assert_eq!(api.get(list).await.body, json!([expected]), "{list}");
    }
    assert_eq!(
        api.get("/api/parameters/federation-upstream-set")
            .await
            .body,
        json!([])
    );
    assert_eq!(
        api.get("/api/parameters/federation-upstream/nope")
            .await
            .status,
        404
    );
    assert_eq!(
        error(
            &api.put("/api/parameters/federation-upstream/nope/up", body)
                .await
        ),
        (404, "not_found", "vhost_not_found")
    );
    assert_eq!(
        error(&api.put(up, r#"{"name":"up"}"#).await),
        (400, "bad_request", "[{key_missing,value}]")
    );
    let r = api
        .put("/api/parameters/shovel/%2F/s", r#"{"value":{}}"#)
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(api.delete(up).await.status, 204);
    assert_eq!(
        error(&api.delete(up).await),
        (404, "Object Not Found", "Not Found")
    );

    let g = "/api/global-parameters/cluster_name";
    assert_eq!(api.put(g, r#"{"value":"c1"}"#).await.status, 201);
    assert_eq!(api.put(g, r#"{"value":"c2"}"#).await.status, 204);
    assert_eq!(
        api.get(g).await.body,
        json!({"name": "cluster_name", "value": "c2"})
    );
    let all = api.get("/api/global-parameters").await.body;
    assert!(
        all.as_array()
            .unwrap()
            .contains(&json!({"name": "cluster_name", "value": "c2"}))
    );
    assert_eq!(
        error(&api.put(g, "[").await),
        (400, "bad_request", "not_json")
    );
    assert_eq!(api.delete(g).await.status, 204);
    assert_eq!(api.get(g).await.status, 404);
    assert_eq!(api.delete(g).await.status, 404);
    b.shutdown().await;
}

#[tokio::test]
async fn definitions_export_and_import_over_http() {
    let (b, api) = start().await;
    let defs = json!({
        "users": [{"name": "imported", "password_hash": "", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["management"]}],
        "permissions": [{"user": "imported", "vhost": "v1", "configure": ".*", "write": ".*", "read": ".*"},
                        {"user": "guest", "vhost": "v1", "configure": ".*", "write": ".*", "read": ".*"},
                        {"user": "guest", "vhost": "v2", "configure": ".*", "write": ".*", "read": ".*"}],
        "vhosts": [{"name": "v1"}, {"name": "v2"}],
        "policies": [{"vhost": "v1", "name": "p", "pattern": "^q", "apply-to": "queues", "definition": {"max-length": 1}, "priority": 0}],
        "queues": [{"name": "q1", "vhost": "v1", "durable": true, "auto_delete": false, "arguments": {}}],
        "exchanges": [{"name": "x1", "vhost": "v1", "type": "fanout", "durable": true, "auto_delete": false, "internal": false, "arguments": {}}],
        "bindings": [{"source": "x1", "vhost": "v1", "destination": "q1", "destination_type": "queue", "routing_key": "", "arguments": {}}]
    });
    let r = api.post("/api/definitions", &defs.to_string()).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(api.get("/api/queues/v1/q1").await.body["policy"], "p");
    assert_eq!(api.get("/api/users/imported").await.status, 200);

    let all = api.get("/api/definitions").await;
    assert_eq!(all.status, 200);
    assert_eq!(all.body["rabbit_version"], "3.10.8");
    let has = |list: &Value, name: &str| list.as_array().unwrap().iter().any(|o| o["name"] == name);
    assert!(has(&all.body["queues"], "q1") && has(&all.body["vhosts"], "v1"));
    let one = api.get("/api/definitions/v1").await;
    assert_eq!(one.status, 200);
    assert!(has(&one.body["exchanges"], "x1"));
    assert!(one.body.get("users").is_none());
    assert!(one.body["queues"][0].get("vhost").is_none());
    let r = api
        .call_with("GET", "/api/definitions?download=defs.json", None, &[])
        .await;
    assert_eq!(
        r.headers["content-disposition"],
        "attachment; filename=defs.json"
    );

    // RabbitMQ's web page uploads the file as a multipart form.
    let form = |field: &str, content: &str| {
        format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"defs.json\"\r\n\
             Content-Type: application/json\r\n\r\n{content}\r\n--XyZ--\r\n"
        )
    };
    let multipart = [("content-type", "multipart/form-data; boundary=XyZ")];
    let upload = form("file", r#"{"vhosts": [{"name": "from-form"}]}"#);
    let r = api
        .call_with("POST", "/api/definitions", Some(&upload), &multipart)
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert!(b.broker().vhost("from-form").is_some());
    let r = api
        .call_with(
            "POST",
            "/api/definitions",
            Some(&form("other", "{}")),
            &multipart,
        )
        .await;
    assert_eq!(error(&r), (400, "bad_request", "failed_to_parse_json"));

    // The per-vhost file imports into another vhost.
    let r = api.post("/api/definitions/v2", &one.body.to_string()).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(api.get("/api/exchanges/v2/x1").await.status, 200);

    // Errors change nothing.
    assert_eq!(
        error(&api.post("/api/definitions", "nope").await),
        (400, "bad_request", "failed_to_parse_json")
    );
    let r = api.post("/api/definitions", r#"{"users": 7}"#).await;
    assert_eq!((r.status, error(&r).1), (400, "bad_request"));
    assert!(error(&r).2.contains("users"), "{:?}", r.body);
    let half = json!({"queues": [{"name": "fresh", "vhost": "/", "durable": false, "auto_delete": false, "arguments": {}}],
                      "bindings": [{"source": "missing", "vhost": "/", "destination": "fresh", "destination_type": "queue", "routing_key": "", "arguments": {}}]});
    assert_eq!(
        api.post("/api/definitions", &half.to_string()).await.status,
        400
    );
    assert_eq!(api.get("/api/queues/%2F/fresh").await.status, 404);
    assert_eq!(
        error(&api.get("/api/definitions/nope").await),
        (400, "bad_request", "vhost_not_found")
    );
    assert_eq!(
        error(&api.post("/api/definitions/nope", "{}").await),
        (404, "not_found", "vhost_not_found")
    );
    b.shutdown().await;
}

#[tokio::test]
async fn federation_links_are_an_empty_list_until_federation_exists() {
    let (b, api) = start().await;
    assert_eq!(api.get("/api/federation-links").await.body, json!([]));
    assert_eq!(api.get("/api/federation-links/%2F").await.body, json!([]));
    assert_eq!(api.get("/api/federation-links/nope").await.status, 404);
    assert_eq!(
        api.as_user(None).get("/api/federation-links").await.status,
        401
    );
    b.shutdown().await;
}
