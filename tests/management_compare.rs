//! The same management API requests against fedamq and the private RabbitMQ 3.10
//! (`tests/rabbitmq/start.sh`, which enables rabbitmq_management and exports
//! `FEDAMQ_TEST_RABBITMQ_MANAGEMENT_URL`): status codes, error bodies and the key fields
//! of each answer must agree. Skipped when `FEDAMQ_TEST_RABBITMQ_URL` is not set.

mod support;

use fedamq::auth::PasswordHash;
use fedamq::config::{Config, PermissionConfig, UserConfig};
use serde_json::{Value, json};
use support::management::{self, Http, Reply};
use support::{broker, rabbitmq};

/// Who makes a request.
#[derive(Debug, Clone, Copy)]
enum Who {
    Admin,
    /// Tagged management, permissions on `/`.
    Management,
    /// Tagged monitoring, no permissions.
    Monitoring,
    /// Tagged policymaker, permissions on `/`.
    Policymaker,
    /// No tags.
    Untagged,
    NoCredentials,
    WrongPassword,
}

/// What of the answer is compared besides the status.
#[derive(Debug, Clone, Copy)]
enum Check {
    Status,
    /// The whole body.
    Body,
    /// These fields of the body.
    Fields(&'static [&'static str]),
    /// These fields of each item of a list body.
    Items(&'static [&'static str]),
    /// The `Location` header.
    Location,
    /// fedamq answers better than RabbitMQ here (why): only fedamq's status is checked.
    Differs(&'static str),
}

struct Step {
    who: Who,
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    status: u16,
    check: Check,
}

const fn step(
    who: Who,
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    status: u16,
    check: Check,
) -> Step {
    Step {
        who,
        method,
        path,
        body,
        status,
        check,
    }
}

use Check::*;
use Who::*;

const BINDING: &[&str] = &[
    "source",
    "vhost",
    "destination",
    "destination_type",
    "routing_key",
    "arguments",
    "properties_key",
];
/// RabbitMQ fills in counts (`messages`, `consumers`, `state`) from statistics it
/// collects every few seconds, so a queue's counts are not compared.
const QUEUE: &[&str] = &[
    "name",
    "vhost",
    "durable",
    "auto_delete",
    "exclusive",
    "arguments",
    "type",
];
const EXCHANGE: &[&str] = &[
    "name",
    "vhost",
    "type",
    "durable",
    "auto_delete",
    "internal",
    "arguments",
];
const MESSAGE: &[&str] = &[
    "payload",
    "payload_encoding",
    "payload_bytes",
    "routing_key",
    "exchange",
    "redelivered",
    "message_count",
    "properties",
];
const FULL: &str = r#"{"configure":".*","write":".*","read":".*"}"#;

/// `{s}` in paths is this run's suffix, so that reruns against one RabbitMQ node do
/// not collide.
#[rustfmt::skip]
const STEPS: &[Step] = &[
    // Users for the tag checks.
    step(Admin, "PUT", "/api/users/cmp-mgmt-{s}", Some(r#"{"password":"pw","tags":"management"}"#), 201, Status),
    step(Admin, "PUT", "/api/permissions/%2F/cmp-mgmt-{s}", Some(FULL), 201, Status),
    step(Admin, "PUT", "/api/users/cmp-mon-{s}", Some(r#"{"password":"pw","tags":["monitoring"]}"#), 201, Status),
    step(Admin, "PUT", "/api/users/cmp-none-{s}", Some(r#"{"password":"pw","tags":""}"#), 201, Status),
    step(Admin, "PUT", "/api/users/cmp-none-{s}", Some(r#"{"password":"pw","tags":""}"#), 204, Status),
    step(Admin, "GET", "/api/users/cmp-mon-{s}", None, 200, Fields(&["name", "tags", "hashing_algorithm", "limits"])),
    step(Admin, "PUT", "/api/users/cmp-nopw-{s}", Some(r#"{"tags":"monitoring,management"}"#), 201, Status),
    // Without a password RabbitMQ stores a hash nobody knows the password of; fedamq
    // shows "" (a locked account).
    step(Admin, "GET", "/api/users/cmp-nopw-{s}", None, 200, Fields(&["name", "hashing_algorithm", "tags", "limits"])),
    step(Admin, "PUT", "/api/users/cmp-nopw-{s}", Some(r#"{"tags":7}"#), 400, Differs("RabbitMQ 3.10 answers 500")),
    step(Admin, "DELETE", "/api/users/cmp-nopw-{s}", None, 204, Status),
    // Authentication and tags.
    step(NoCredentials, "GET", "/api/overview", None, 401, Body),
    step(WrongPassword, "GET", "/api/overview", None, 401, Body),
    step(Untagged, "GET", "/api/whoami", None, 401, Body),
    step(Management, "GET", "/api/users", None, 401, Body),
    step(Monitoring, "GET", "/api/users", None, 401, Body),
    step(Management, "GET", "/api/whoami", None, 200, Body),
    step(Management, "GET", "/api/queues/fedamq-test", None, 401, Body),
    step(Monitoring, "PUT", "/api/queues/%2F/cmp-mon-{s}", Some("{}"), 401, Body),
    step(Management, "PUT", "/api/vhosts/cmp-v-{s}", None, 401, Body),
    step(Management, "GET", "/api/nodes", None, 401, Body),
    step(Monitoring, "GET", "/api/nodes", None, 200, Status),
    // Queues.
    step(Admin, "PUT", "/api/queues/%2F/cmp-q-{s}", Some("{}"), 201, Status),
    step(Admin, "PUT", "/api/queues/%2F/cmp-q-{s}", Some("{}"), 204, Status),
    step(Admin, "PUT", "/api/queues/%2F/cmp-q-{s}", Some(r#"{"durable":"x"}"#), 400, Body),
    step(Admin, "PUT", "/api/queues/%2F/cmp-q-{s}", Some("{bad"), 400, Body),
    step(Admin, "PUT", "/api/queues/%2F/cmp-q-{s}", Some(r#"{"arguments":{"x-max-length":5}}"#), 400, Fields(&["error"])),
    step(Admin, "PUT", "/api/queues/cmp-nope-{s}/q", Some("{}"), 404, Body),
    step(Admin, "GET", "/api/queues/cmp-nope-{s}", None, 404, Body),
    step(Admin, "GET", "/api/queues/%2F/cmp-nope-{s}", None, 404, Body),
    step(Admin, "DELETE", "/api/queues/%2F/cmp-nope-{s}", None, 404, Body),
    step(Admin, "PUT", "/api/queues/%2F/amq.cmp-{s}", Some("{}"), 401, Body),
    step(Admin, "GET", "/api/queues/%2F/cmp-q-{s}", None, 200, Fields(QUEUE)),
    step(Management, "GET", "/api/queues/%2F/cmp-q-{s}", None, 200, Fields(QUEUE)),
    // Exchanges.
    step(Admin, "PUT", "/api/exchanges/%2F/cmp-x-{s}", Some(r#"{"type":"topic"}"#), 201, Status),
    step(Admin, "PUT", "/api/exchanges/%2F/cmp-x-{s}", Some(r#"{"type":"topic"}"#), 204, Status),
    step(Admin, "PUT", "/api/exchanges/%2F/cmp-x-{s}", Some(r#"{"type":"direct"}"#), 400, Body),
    // RabbitMQ says "invalid" or "unknown exchange type" depending on whether its node
    // has seen the atom before.
    step(Admin, "PUT", "/api/exchanges/%2F/cmp-x2-{s}", Some(r#"{"type":"bogus"}"#), 400, Differs("RabbitMQ's text depends on the node's history")),
    step(Admin, "PUT", "/api/exchanges/%2F/cmp-x2-{s}", Some(r#"{"internal":"no"}"#), 400, Body),
    step(Admin, "PUT", "/api/exchanges/%2F/amq.cmp-{s}", Some("{}"), 401, Body),
    step(Admin, "PUT", "/api/exchanges/cmp-nope-{s}/x", Some("{}"), 404, Body),
    step(Admin, "GET", "/api/exchanges/%2F/cmp-x-{s}", None, 200, Fields(EXCHANGE)),
    step(Admin, "GET", "/api/exchanges/%2F/amq.default", None, 200, Fields(EXCHANGE)),
    step(Admin, "GET", "/api/exchanges/%2F/cmp-nope-{s}", None, 404, Body),
    step(Admin, "GET", "/api/exchanges/%2F?columns=name,type&name=cmp-x-{s}&page=1", None, 200, Fields(&["filtered_count", "item_count", "items", "page", "page_count", "page_size"])),
    step(Admin, "GET", "/api/exchanges/%2F?columns=name&name=cmp-x-{s}", None, 200, Status),
    // Bindings; the Location header is relative to the request's path, so `%2f` and
    // `%2F` give different ones.
    step(Admin, "POST", "/api/bindings/%2F/e/cmp-x-{s}/q/cmp-q-{s}", Some(r#"{"routing_key":"a.#"}"#), 201, Location),
    step(Admin, "POST", "/api/bindings/%2f/e/amq.fanout/q/cmp-q-{s}", Some(r#"{"routing_key":""}"#), 201, Location),
    step(Admin, "POST", "/api/bindings/%2F/e/amq.direct/e/cmp-x-{s}", Some(r#"{"routing_key":"k"}"#), 201, Location),
    step(Admin, "POST", "/api/bindings/%2F/e/cmp-x-{s}/q/cmp-nope-{s}", Some("{}"), 404, Fields(&["error"])),
    step(Admin, "POST", "/api/bindings/%2F/e/cmp-x-{s}/q/cmp-q-{s}", Some("{bad"), 400, Differs("RabbitMQ 3.10 answers 500 with no body")),
    step(Admin, "GET", "/api/bindings/%2F/e/cmp-x-{s}/q/cmp-q-{s}", None, 200, Items(BINDING)),
    step(Admin, "GET", "/api/bindings/%2F/e/amq.direct/e/cmp-x-{s}", None, 200, Items(BINDING)),
    step(Admin, "GET", "/api/queues/%2F/cmp-q-{s}/bindings", None, 200, Items(BINDING)),
    step(Admin, "GET", "/api/exchanges/%2F/cmp-x-{s}/bindings/source", None, 200, Items(BINDING)),
    step(Admin, "GET", "/api/exchanges/%2F/cmp-x-{s}/bindings/destination", None, 200, Items(BINDING)),
    step(Admin, "GET", "/api/bindings/%2F/e/cmp-x-{s}/q/cmp-q-{s}/a.%2523", None, 200, Fields(BINDING)),
    // Publish and get.
    step(Admin, "POST", "/api/exchanges/%2F/cmp-x-{s}/publish", Some(r#"{"routing_key":"a.b","payload":"hello","payload_encoding":"string","properties":{"headers":{"h":1},"content_type":"text/plain"}}"#), 200, Body),
    step(Admin, "POST", "/api/exchanges/%2F/cmp-x-{s}/publish", Some(r#"{"routing_key":"zz","payload":"hello","payload_encoding":"string","properties":{}}"#), 200, Body),
    step(Admin, "POST", "/api/exchanges/%2F/amq.default/publish", Some(r#"{"routing_key":"cmp-q-{s}","payload":"aGk=","payload_encoding":"base64","properties":{"delivery_mode":2}}"#), 200, Body),
    step(Admin, "POST", "/api/exchanges/%2F/cmp-x-{s}/publish", Some(r#"{"routing_key":"a.b"}"#), 400, Body),
    step(Admin, "POST", "/api/queues/%2F/cmp-q-{s}/get", Some(r#"{"count":5,"ackmode":"ack_requeue_true","encoding":"auto"}"#), 200, Items(MESSAGE)),
    step(Admin, "POST", "/api/queues/%2F/cmp-q-{s}/get", Some(r#"{"count":1,"ackmode":"ack_requeue_false","encoding":"base64"}"#), 200, Items(MESSAGE)),
    step(Admin, "POST", "/api/queues/%2F/cmp-q-{s}/get", Some(r#"{"count":1}"#), 400, Body),
    step(Admin, "DELETE", "/api/queues/%2F/cmp-q-{s}/contents", None, 204, Status),
    step(Admin, "GET", "/api/queues/%2F?page=1&page_size=1&name=cmp-q-{s}&columns=name", None, 200, Fields(&["filtered_count", "item_count", "items", "page", "page_count", "page_size"])),
    // The default exchange and the builtins.
    step(Admin, "PUT", "/api/exchanges/%2F/amq.default", Some(r#"{"type":"direct"}"#), 401, Body),
    step(Admin, "PUT", "/api/exchanges/%2F/amq.direct", Some(r#"{"type":"direct","durable":true}"#), 204, Status),
    step(Admin, "POST", "/api/bindings/%2F/e/amq.default/q/cmp-q-{s}", Some(r#"{"routing_key":"x"}"#), 401, Body),
    step(Admin, "DELETE", "/api/bindings/%2F/e/amq.default/q/cmp-q-{s}/cmp-q-{s}", None, 401, Body),
    step(Admin, "PUT", "/api/queues/%2F/", Some("{}"), 405, Status),
    step(Admin, "POST", "/api/queues/%2F/cmp-nope-{s}/get", Some(r#"{"count":1,"ackmode":"ack_requeue_true","encoding":"auto"}"#), 404, Body),
    step(Admin, "PUT", "/api/exchanges/%2F/cmp-unused-{s}", Some("{}"), 201, Status),
    step(Admin, "DELETE", "/api/exchanges/%2F/cmp-unused-{s}?if-unused=true", None, 204, Status),
    // Deleting bindings by properties_key.
    step(Admin, "DELETE", "/api/bindings/%2F/e/cmp-x-{s}/q/cmp-q-{s}/a.%2523", None, 204, Status),
    step(Admin, "DELETE", "/api/bindings/%2F/e/cmp-x-{s}/q/cmp-q-{s}/a.%2523", None, 404, Body),
    step(Admin, "DELETE", "/api/bindings/%2F/e/amq.fanout/q/cmp-q-{s}/~", None, 204, Status),
    step(Admin, "DELETE", "/api/bindings/%2F/e/amq.direct/e/cmp-x-{s}/k", None, 204, Status),
    // Permissions and vhosts.
    step(Admin, "PUT", "/api/permissions/%2F/cmp-mon-{s}", Some(r#"{"configure":".*"}"#), 400, Body),
    step(Admin, "PUT", "/api/permissions/%2F/cmp-nobody-{s}", Some(FULL), 400, Body),
    step(Admin, "PUT", "/api/permissions/cmp-nope-{s}/cmp-mon-{s}", Some(FULL), 400, Body),
    step(Admin, "GET", "/api/permissions/%2F/cmp-mgmt-{s}", None, 200, Body),
    step(Admin, "GET", "/api/users/cmp-mgmt-{s}/permissions", None, 200, Body),
    step(Admin, "DELETE", "/api/permissions/%2F/cmp-mgmt-{s}", None, 204, Status),
    step(Admin, "DELETE", "/api/permissions/%2F/cmp-mgmt-{s}", None, 404, Body),
    step(Admin, "PUT", "/api/vhosts/cmp-v-{s}", None, 201, Status),
    step(Admin, "PUT", "/api/vhosts/cmp-v-{s}", Some("{}"), 204, Status),
    step(Admin, "GET", "/api/vhosts/cmp-v-{s}", None, 200, Fields(&["name", "tracing"])),
    step(Admin, "DELETE", "/api/vhosts/cmp-v-{s}", None, 204, Status),
    step(Admin, "DELETE", "/api/vhosts/cmp-v-{s}", None, 404, Body),
    step(Admin, "GET", "/api/vhosts/cmp-v-{s}", None, 404, Body),
    // The node.
    step(Admin, "GET", "/api/overview", None, 200, Fields(&["rabbitmq_version", "management_version", "rates_mode", "exchange_types"])),
    step(Admin, "GET", "/api/whoami", None, 200, Body),
    step(Admin, "GET", "/api/vhosts/%2F", None, 200, Fields(&["name", "description", "tags", "metadata", "tracing", "default_queue_type"])),
    step(Admin, "GET", "/api/aliveness-test/%2F", None, 200, Body),
    step(Admin, "GET", "/api/aliveness-test/cmp-nope-{s}", None, 404, Body),
    step(Admin, "GET", "/api/health/checks/alarms", None, 200, Body),
    step(Admin, "GET", "/api/health/checks/local-alarms", None, 200, Body),
    step(Admin, "GET", "/api/health/checks/virtual-hosts", None, 200, Body),
    step(Admin, "GET", "/api/health/checks/protocol-listener/amqp", None, 200, Body),
    step(Admin, "GET", "/api/health/checks/port-listener/1", None, 503, Fields(&["status", "reason", "missing"])),
    step(Admin, "GET", "/api/nope", None, 404, Body),
    step(Admin, "POST", "/api/overview", Some("{}"), 405, Status),
    step(Admin, "GET", "/api/connections/cmp-nope-{s}", None, 404, Body),
    // Builtins cannot go.
    step(Admin, "DELETE", "/api/exchanges/%2F/amq.direct", None, 401, Body),
    // Policies, operator policies, parameters, global parameters, definitions.
    step(Admin, "PUT", "/api/users/cmp-pol-{s}", Some(r#"{"password":"pw","tags":"policymaker"}"#), 201, Status),
    step(Admin, "PUT", "/api/permissions/%2F/cmp-pol-{s}", Some(FULL), 201, Status),
    step(Policymaker, "PUT", "/api/policies/%2F/cmp-p-{s}", Some(r#"{"pattern":"^cmp-{s}","definition":{"max-length":3},"apply-to":"queues"}"#), 201, Status),
    step(Policymaker, "PUT", "/api/policies/%2F/cmp-p-{s}", Some(r#"{"pattern":"^cmp-{s}","definition":{"max-length":4},"priority":1}"#), 204, Status),
    step(Management, "GET", "/api/policies/%2F/cmp-p-{s}", None, 401, Body),
    step(Policymaker, "GET", "/api/policies/%2F/cmp-p-{s}", None, 200, Body),
    // The management user lost its permissions on / above.
    step(Management, "GET", "/api/policies/%2F", None, 401, Body),
    step(Management, "PUT", "/api/policies/%2F/cmp-p-{s}", Some(r#"{"pattern":"x","definition":{"max-length":1}}"#), 401, Body),
    step(Policymaker, "PUT", "/api/policies/fedamq-test/cmp-p-{s}", Some(r#"{"pattern":"x","definition":{"max-length":1}}"#), 401, Body),
    step(Policymaker, "GET", "/api/policies/fedamq-test", None, 401, Body),
    step(Admin, "PUT", "/api/policies/cmp-nope-{s}/p", Some(r#"{"pattern":"x","definition":{"max-length":1}}"#), 404, Body),
    step(Admin, "GET", "/api/policies/cmp-nope-{s}", None, 404, Body),
    step(Admin, "PUT", "/api/policies/%2F/cmp-bad-{s}", Some("xx"), 400, Body),
    step(Admin, "PUT", "/api/policies/%2F/cmp-bad-{s}", Some(r#"{"definition":{"max-length":1}}"#), 400, Body),
    step(Admin, "PUT", "/api/policies/%2F/cmp-bad-{s}", Some(r#"{"pattern":"x","definition":{"max-length":"x"}}"#), 400, Differs("RabbitMQ HTML-escapes the Erlang term in its text")),
    step(Admin, "GET", "/api/policies/%2F/cmp-nope-{s}", None, 404, Body),
    step(Policymaker, "PUT", "/api/operator-policies/%2F/cmp-o-{s}", Some(r#"{"pattern":"x","definition":{"max-length":1}}"#), 401, Body),
    step(Admin, "PUT", "/api/operator-policies/%2F/cmp-o-{s}", Some(r#"{"pattern":"^cmp-{s}","definition":{"max-length":1},"apply-to":"queues"}"#), 201, Status),
    step(Admin, "GET", "/api/operator-policies/%2F/cmp-o-{s}", None, 200, Body),
    step(Policymaker, "GET", "/api/operator-policies/%2F/cmp-o-{s}", None, 401, Body),
    step(Admin, "DELETE", "/api/operator-policies/%2F/cmp-o-{s}", None, 204, Status),
    step(Admin, "DELETE", "/api/operator-policies/%2F/cmp-o-{s}", None, 404, Body),
    step(Policymaker, "DELETE", "/api/policies/%2F/cmp-p-{s}", None, 204, Status),
    step(Policymaker, "DELETE", "/api/policies/%2F/cmp-p-{s}", None, 404, Body),
    step(Management, "GET", "/api/parameters", None, 401, Body),
    step(Policymaker, "GET", "/api/parameters/federation-upstream/fedamq-test", None, 401, Body),
    step(Admin, "GET", "/api/parameters/federation-upstream/cmp-nope-{s}", None, 404, Body),
    step(Admin, "GET", "/api/parameters/federation-upstream/%2F/cmp-nope-{s}", None, 404, Body),
    step(Admin, "PUT", "/api/parameters/federation-upstream/cmp-nope-{s}/u", Some(r#"{"value":{"uri":"amqp://h"}}"#), 404, Body),
    step(Admin, "PUT", "/api/parameters/federation-upstream/%2F/u", Some("xx"), 400, Body),
    step(Management, "GET", "/api/global-parameters", None, 401, Body),
    step(Policymaker, "PUT", "/api/global-parameters/cmp-g-{s}", Some(r#"{"value":"v"}"#), 201, Status),
    step(Policymaker, "PUT", "/api/global-parameters/cmp-g-{s}", Some(r#"{"value":"w"}"#), 204, Status),
    step(Admin, "GET", "/api/global-parameters/cmp-g-{s}", None, 200, Body),
    step(Admin, "DELETE", "/api/global-parameters/cmp-g-{s}", None, 204, Status),
    step(Admin, "GET", "/api/global-parameters/cmp-g-{s}", None, 404, Body),
    step(Policymaker, "GET", "/api/definitions", None, 401, Body),
    step(Monitoring, "GET", "/api/definitions/%2F", None, 401, Body),
    step(Admin, "GET", "/api/definitions", None, 200, Fields(&["rabbit_version"])),
    step(Admin, "GET", "/api/definitions/cmp-nope-{s}", None, 400, Body),
    step(Admin, "POST", "/api/definitions", Some(r#"{"queues":[{"name":"cmp-dq-{s}","vhost":"/","durable":false,"auto_delete":false,"arguments":{}}]}"#), 204, Status),
    step(Admin, "GET", "/api/queues/%2F/cmp-dq-{s}", None, 200, Fields(&["name", "durable"])),
    // Into the second vhost: RabbitMQ's per-vhost import resets the vhost's description,
    // which the table reads for "/".
    step(Admin, "POST", "/api/definitions/fedamq-test", Some(r#"{"exchanges":[{"name":"cmp-dx-{s}","type":"fanout","durable":false,"auto_delete":false,"internal":false,"arguments":{}}]}"#), 204, Status),
    step(Admin, "GET", "/api/exchanges/fedamq-test/cmp-dx-{s}", None, 200, Fields(&["name", "type"])),
    step(Admin, "POST", "/api/definitions", Some("nope"), 400, Body),
    step(Admin, "POST", "/api/definitions/cmp-nope-{s}", Some("{}"), 404, Body),
    step(Policymaker, "POST", "/api/definitions", Some("{}"), 401, Body),
    step(Admin, "DELETE", "/api/queues/%2F/cmp-dq-{s}", None, 204, Status),
    step(Admin, "DELETE", "/api/exchanges/fedamq-test/cmp-dx-{s}", None, 204, Status),
    step(Admin, "DELETE", "/api/users/cmp-pol-{s}", None, 204, Status),
    // Clean up.
    step(Admin, "DELETE", "/api/queues/%2F/cmp-q-{s}", None, 204, Status),
    step(Admin, "DELETE", "/api/exchanges/%2F/cmp-x-{s}", None, 204, Status),
    step(Admin, "DELETE", "/api/exchanges/%2F/cmp-x-{s}", None, 404, Body),
    step(Admin, "DELETE", "/api/users/cmp-mgmt-{s}", None, 204, Status),
    step(Admin, "DELETE", "/api/users/cmp-mon-{s}", None, 204, Status),
    step(Admin, "DELETE", "/api/users/cmp-none-{s}", None, 204, Status),
    step(Admin, "DELETE", "/api/users/cmp-none-{s}", None, 404, Body),
];

/// What is compared of one answer.
fn summary(step: &Step, reply: &Reply) -> Value {
    let pick = |v: &Value, fields: &[&str]| -> Value {
        let mut out = serde_json::Map::new();
        for f in fields {
            out.insert(f.to_string(), v.get(*f).cloned().unwrap_or(Value::Null));
        }
        Value::Object(out)
    };
    let detail = match step.check {
        Status | Differs(_) => Value::Null,
        Body => reply.body.clone(),
        Fields(fields) => pick(&reply.body, fields),
        Items(fields) => Value::Array(
            reply
                .body
                .as_array()
                .map(|items| items.iter().map(|i| pick(i, fields)).collect())
                .unwrap_or_default(),
        ),
        Location => reply
            .headers
            .get("location")
            .map_or(Value::Null, |l| json!(l.to_str().unwrap_or_default())),
    };
    json!({ "status": reply.status, "detail": detail })
}

fn http_as(base: &Http, who: Who, s: &str) -> Http {
    let mgmt = format!("cmp-mgmt-{s}");
    let mon = format!("cmp-mon-{s}");
    let none = format!("cmp-none-{s}");
    let pol = format!("cmp-pol-{s}");
    match who {
        Admin => base.clone(),
        Management => base.as_user(Some((&mgmt, "pw"))),
        Monitoring => base.as_user(Some((&mon, "pw"))),
        Policymaker => base.as_user(Some((&pol, "pw"))),
        Untagged => base.as_user(Some((&none, "pw"))),
        NoCredentials => base.as_user(None),
        WrongPassword => base.as_user(Some((&base.user.as_ref().unwrap().0, "wrong"))),
    }
}

async fn run(base: &Http, s: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for step in STEPS {
        let path = step.path.replace("{s}", s);
        let body = step.body.map(|b| b.replace("{s}", s));
        let reply = http_as(base, step.who, s)
            .call(step.method, &path, body.as_deref())
            .await;
        out.push(summary(step, &reply));
    }
    out
}

/// The private RabbitMQ's API, and fedamq with the same administrator and vhosts
/// (`None` when no RabbitMQ is set up: the test is skipped).
async fn both() -> Option<(fedamq::BrokerHandle, Http, Http)> {
    if std::env::var(rabbitmq::URL_VAR).is_err() {
        eprintln!(
            "skipped: {} is not set (tests/run sets it)",
            rabbitmq::URL_VAR
        );
        return None;
    }
    let management = std::env::var("FEDAMQ_TEST_RABBITMQ_MANAGEMENT_URL").expect(
        "FEDAMQ_TEST_RABBITMQ_MANAGEMENT_URL is not set: start RabbitMQ with \
         tests/rabbitmq/start.sh, which enables the management plugin",
    );
    let (user, password) = (rabbitmq::user(), rabbitmq::password());
    let rabbit = Http::new(&management, &user, &password);

    let mut config = Config::default();
    config.users.push(UserConfig {
        name: user.clone(),
        password_hash: PasswordHash::new(&password),
        password: Some(password.clone()),
        tags: vec!["administrator".into()],
    });
    config.vhosts.push(rabbitmq::SECOND_VHOST.into());
    for vhost in ["/", rabbitmq::SECOND_VHOST] {
        config.permissions.push(PermissionConfig {
            user: user.clone(),
            vhost: vhost.into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        });
    }
    let b = broker::start_with(config).await;
    let fedamq = Http::new(
        &format!("http://{}", b.management_addr().unwrap()),
        &user,
        &password,
    );
    Some((b, fedamq, rabbit))
}

/// A suffix for this run's names, so that reruns against one RabbitMQ node do not
/// collide.
fn run_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

#[tokio::test]
async fn fedamq_answers_as_rabbitmq_does() {
    let Some((b, fedamq, rabbit)) = both().await else {
        return;
    };
    let s = run_suffix();
    let ours = run(&fedamq, &s).await;
    let theirs = run(&rabbit, &s).await;
    let mut differences = Vec::new();
    for ((step, ours), theirs) in STEPS.iter().zip(&ours).zip(&theirs) {
        let expected = json!(step.status);
        if let Differs(why) = step.check {
            eprintln!(
                "known difference, not compared: {} {} ({why})",
                step.method, step.path
            );
            if ours["status"] != expected {
                differences.push(format!(
                    "{} {}: fedamq answered {}, expected {}",
                    step.method, step.path, ours["status"], step.status
                ));
            }
            continue;
        }
        if ours != theirs || theirs["status"] != expected {
            differences.push(format!(
                "{:?} {} {} (expected {}):\n  fedamq:   {ours}\n  RabbitMQ: {theirs}",
                step.who, step.method, step.path, step.status
            ));
        }
    }
    b.shutdown().await;
    assert!(
        differences.is_empty(),
        "{} of {} requests differ:\n{}",
        differences.len(),
        STEPS.len(),
        differences.join("\n")
    );
}

/// The same client activity on both brokers (a confirming publisher on channel 1, a
/// consumer with a prefetch on channel 2), then what `/api/consumers`,
/// `/api/connections/{name}/channels` and an exchange's `message_stats` say of it.
/// RabbitMQ's statistics arrive every few seconds, so its answer is polled until the
/// counts are in.
async fn channel_activity(api: &Http, amqp_url: &str, s: &str) -> Value {
    use lapin::options::*;
    use lapin::types::FieldTable;
    let conn = lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default())
        .await
        .expect("connects");
    let publisher = conn.create_channel().await.unwrap();
    let consumer_ch = conn.create_channel().await.unwrap();
    let (x, q1, q2, tag) = (
        format!("cmpc-x-{s}"),
        format!("cmpc-q1-{s}"),
        format!("cmpc-q2-{s}"),
        format!("cmpc-tag-{s}"),
    );
    consumer_ch
        .exchange_declare(
            x.as_str(),
            lapin::ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for q in [&q1, &q2] {
        consumer_ch
            .queue_declare(
                q.as_str(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        consumer_ch
            .queue_bind(
                q.as_str(),
                x.as_str(),
                "",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    publisher
        .basic_qos(7, BasicQosOptions { global: true })
        .await
        .unwrap();
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    consumer_ch
        .basic_qos(5, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consumer_ch
        .basic_consume(
            q1.as_str(),
            tag.as_str(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for (exchange, key, mandatory) in [
        (x.as_str(), "", false),
        (x.as_str(), "", false),
        (x.as_str(), "", false),
        ("amq.direct", "cmpc-nowhere", true),
        ("amq.direct", "cmpc-nowhere", false),
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
                lapin::BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    for i in 0..3 {
        let d = futures_lite::StreamExt::next(&mut consumer)
            .await
            .unwrap()
            .unwrap();
        if i < 2 {
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
    }

    // Until the statistics are in (at once for fedamq).
    let mut last = Value::Null;
    for _ in 0..120 {
        let consumers = api.get("/api/consumers").await.body;
        let consumer = consumers
            .as_array()
            .and_then(|all| all.iter().find(|c| c["consumer_tag"] == json!(tag)))
            .cloned();
        if let Some(consumer) = consumer {
            let connection = consumer["channel_details"]["connection_name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let channels = api
                .get(&format!(
                    "/api/connections/{}/channels",
                    management::segment(&connection)
                ))
                .await
                .body;
            let exchange = api.get(&format!("/api/exchanges/%2F/{x}")).await.body;
            last = summarise_activity(&connection, &consumer, &channels, &exchange);
            // RabbitMQ's channel state and its counters arrive in separate events.
            let channels = &last["channels"];
            let ready = channels[0]["message_stats"]["confirm"] == json!(5)
                && channels[0]["fields"]["confirm"] == json!(true)
                && channels[1]["message_stats"]["ack"] == json!(2)
                && channels[1]["fields"]["consumer_count"] == json!(1)
                && channels[1]["fields"]["messages_unacknowledged"] == json!(1)
                && last["exchange"]["publish_out"] == json!(6);
            if ready {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    for q in [&q1, &q2] {
        api.delete(&format!("/api/queues/%2F/{q}")).await;
    }
    api.delete(&format!("/api/exchanges/%2F/{x}")).await;
    let _ = conn.close(200, "bye").await;
    last
}

/// Fields not compared: RabbitMQ's Erlang process figures, and the idle timestamp.
const CHANNEL_KEYS_NOT_SHOWN: &[&str] = &[
    "garbage_collection",
    "reductions",
    "reductions_details",
    "idle_since",
];

fn summarise_activity(
    connection: &str,
    consumer: &Value,
    channels: &Value,
    exchange: &Value,
) -> Value {
    let pick = |v: &Value, fields: &[&str]| -> Value {
        let mut out = serde_json::Map::new();
        for f in fields {
            out.insert(f.to_string(), v.get(*f).cloned().unwrap_or(Value::Null));
        }
        Value::Object(out)
    };
    // A name relative to the connection's, which differs between the brokers.
    let relative =
        |name: &Value| -> Value { json!(name.as_str().and_then(|n| n.strip_prefix(connection))) };
    let mut channels: Vec<Value> = channels.as_array().cloned().unwrap_or_default();
    channels.sort_by_key(|c| c["number"].as_u64());
    let channels: Vec<Value> = channels
        .iter()
        .map(|c| {
            let mut keys: Vec<&str> = c
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            keys.retain(|k| !CHANNEL_KEYS_NOT_SHOWN.contains(k));
            json!({
                "fields": pick(c, &[
                    "number", "user", "vhost", "state", "confirm", "transactional",
                    "prefetch_count", "global_prefetch_count", "consumer_count",
                    "messages_unacknowledged", "messages_uncommitted", "acks_uncommitted",
                ]),
                "name": relative(&c["name"]),
                "connection": c["connection_details"]["name"] == json!(connection),
                "message_stats": pick(&c["message_stats"], &[
                    "publish", "confirm", "return_unroutable", "drop_unroutable",
                    "deliver", "deliver_no_ack", "get", "get_no_ack", "get_empty", "deliver_get",
                    "ack", "redeliver",
                ]),
                "keys": keys,
            })
        })
        .collect();
    let details = &consumer["channel_details"];
    json!({
        "consumer": pick(consumer, &["ack_required", "exclusive", "prefetch_count", "arguments"]),
        "consumer_channel": {
            "number": details["number"],
            "user": details["user"],
            "name": relative(&details["name"]),
            "peer_port": details["peer_port"].is_u64(),
        },
        "channels": channels,
        "exchange": pick(&exchange["message_stats"], &["publish_in", "publish_out"]),
    })
}

#[tokio::test]
async fn channels_consumers_and_message_stats_as_rabbitmq_shows_them() {
    let Some((b, fedamq, rabbit)) = both().await else {
        return;
    };
    let s = run_suffix();
    let ours = channel_activity(
        &fedamq,
        &b.url(&rabbitmq::user(), &rabbitmq::password()),
        &s,
    )
    .await;
    let theirs = channel_activity(&rabbit, &rabbitmq::url(), &s).await;
    b.shutdown().await;
    assert_eq!(ours, theirs, "fedamq:\n{ours:#}\nRabbitMQ:\n{theirs:#}");
}
