//! The node as a whole: `/api/overview`, `/api/nodes`, `/api/whoami`,
//! `/api/aliveness-test/{vhost}`, `/api/health/checks/…`, `/api/cluster-name`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::{Value, json};

use super::Api;
use super::auth::{Caller, Tag};
use super::error::{ApiError, ApiResult};
use super::stats;
use crate::broker::owner::Owner;
use crate::broker::queue::QueueCounters;
use crate::broker::vhost::QueueDeclare;
use crate::protocol::generated::properties::BasicProperties;
use crate::protocol::{FieldTable, ShortString};

pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/cluster-name", get(cluster_name))
        .route("/api/nodes", get(nodes))
        .route("/api/nodes/{node}", get(node))
        .route(
            "/api/extensions",
            get(|_: Caller| async { Json(json!([])) }),
        )
        .route("/api/whoami", get(whoami))
        .route("/api/aliveness-test/{vhost}", get(aliveness))
        .route("/api/health/checks/alarms", get(alarms))
        .route("/api/health/checks/local-alarms", get(alarms))
        .route("/api/health/checks/virtual-hosts", get(virtual_hosts))
        .route(
            "/api/health/checks/port-listener/{port}",
            get(port_listener),
        )
        .route(
            "/api/health/checks/protocol-listener/{protocol}",
            get(protocol_listener),
        )
        .route(
            "/api/health/checks/node-is-quorum-critical",
            get(|_: Caller| async {
                Json(json!({"status": "ok", "reason": "single node cluster"}))
            }),
        )
        .route(
            "/api/health/checks/node-is-mirror-sync-critical",
            get(|_: Caller| async { Json(json!({"status": "ok"})) }),
        )
}

/// The broker's version, and the RabbitMQ version whose API this one follows (tools
/// check it).
pub(crate) const RABBITMQ_VERSION: &str = "3.10.8";

async fn overview(State(api): State<Arc<Api>>, caller: Caller) -> Json<Value> {
    let broker = &api.broker;
    let (mut queues, mut exchanges, mut consumers) = (0usize, 0usize, 0usize);
    let (mut ready, mut unacked) = (0usize, 0usize);
    let mut counters = QueueCounters::default();
    for name in broker.vhost_names() {
        if !caller.sees_vhost(&name) {
            continue;
        }
        let Some(vhost) = broker.vhost(&name) else {
            continue;
        };
        exchanges += vhost.exchange_count();
        for q in vhost.queues() {
            let s = q.snapshot();
            queues += 1;
            consumers += s.consumers.len();
            ready += s.ready;
            unacked += s.unacked;
            stats::add(&mut counters, &s.counters);
        }
    }
    let open: Vec<_> = broker
        .connections()
        .list()
        .into_iter()
        .filter(|c| caller.sees_all() || c.user == caller.name)
        .collect();
    let connections = open.len();
    let channels: usize = open.iter().map(|c| c.channel_count()).sum();
    let publishes = broker.publish_totals().read();
    let message_stats = api
        .rates
        .stats(
            "overview",
            &stats::overview_counts(&publishes, &counters),
            stats::Shown::All,
        )
        .unwrap_or_default();
    Json(json!({
        "management_version": RABBITMQ_VERSION,
        "rabbitmq_version": RABBITMQ_VERSION,
        "product_name": "fedamq",
        "product_version": env!("CARGO_PKG_VERSION"),
        "rates_mode": "basic",
        "cluster_name": api.broker.cluster_name(),
        "node": api.node(),
        "exchange_types": exchange_types(),
        "message_stats": message_stats,
        "queue_totals": {
            "messages": ready + unacked,
            "messages_details": {"rate": 0.0},
            "messages_ready": ready,
            "messages_ready_details": {"rate": 0.0},
            "messages_unacknowledged": unacked,
            "messages_unacknowledged_details": {"rate": 0.0},
        },
        "object_totals": {
            "channels": channels,
            "connections": connections,
            "consumers": consumers,
            "exchanges": exchanges,
            "queues": queues,
        },
        "listeners": [{
            "node": api.node(),
            "protocol": "amqp",
            "ip_address": api.amqp.ip().to_string(),
            "port": api.amqp.port(),
        }],
        "contexts": [{
            "node": api.node(),
            "description": "RabbitMQ Management",
            "path": "/",
            "ip": api.http.ip().to_string(),
            "port": api.http.port().to_string(),
        }],
        "statistics_db_event_queue": 0,
    }))
}

fn exchange_types() -> Value {
    json!([
        {"name": "direct", "description": "AMQP direct exchange, as per the AMQP specification", "enabled": true},
        {"name": "fanout", "description": "AMQP fanout exchange, as per the AMQP specification", "enabled": true},
        {"name": "headers", "description": "AMQP headers exchange, as per the AMQP specification", "enabled": true},
        {"name": "topic", "description": "AMQP topic exchange, as per the AMQP specification", "enabled": true},
        // Federation's (src/federation/), listed as RabbitMQ lists it with its plugin on.
        {"name": "x-federation-upstream", "description": "Federation upstream helper exchange", "enabled": true, "internal_purpose": "federation"},
    ])
}

async fn cluster_name(State(api): State<Arc<Api>>, _: Caller) -> Json<Value> {
    Json(json!({ "name": api.broker.cluster_name() }))
}

fn node_json(api: &Api) -> Value {
    let broker = &api.broker;
    json!({
        "name": api.node(),
        "type": "disc",
        "running": true,
        "being_drained": false,
        "mem_used": broker.memory().used(),
        "mem_limit": broker.config().memory_high_watermark,
        "mem_alarm": *broker.alarm().borrow(),
        "disk_free_alarm": false,
        "uptime": 0,
        "applications": [],
        "exchange_types": exchange_types(),
    })
}

async fn nodes(State(api): State<Arc<Api>>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(Tag::Monitoring)?;
    Ok(Json(json!([node_json(&api)])))
}

async fn node(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Tag::Monitoring)?;
    if name != api.node() {
        return Err(ApiError::not_found());
    }
    Ok(Json(node_json(&api)))
}

async fn whoami(caller: Caller) -> Json<Value> {
    Json(json!({ "name": caller.name, "tags": caller.tags }))
}

/// Declares `aliveness-test` in the vhost, publishes a message to it and gets it back.
async fn aliveness(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&vhost)?;
    let name = ShortString::from_static("aliveness-test");
    let owner = Owner::object("management");
    let (queue, _) = v.declare_queue(
        QueueDeclare {
            name: name.clone(),
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::new(),
        },
        owner,
    )?;
    let mut publisher = api
        .broker
        .internal_publisher(&vhost)
        .ok_or_else(ApiError::not_found)?;
    let body = Bytes::from_static(b"test_message");
    let _ = publisher
        .publish(
            &ShortString::default(),
            name,
            &BasicProperties::default(),
            body.clone(),
            false,
        )?
        .await;
    match queue.get(true) {
        Some((entry, _)) if entry.message.body() == body => Ok(Json(json!({"status": "ok"}))),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "failed",
            "aliveness test failed",
        )),
    }
}

fn check(ok: bool, failed: Value) -> Response {
    if ok {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(failed)).into_response()
    }
}

async fn alarms(State(api): State<Arc<Api>>, caller: Caller) -> ApiResult<Response> {
    caller.require(Tag::Monitoring)?;
    let alarm = *api.broker.alarm().borrow();
    Ok(check(
        !alarm,
        json!({
            "status": "failed",
            "reason": "resource alarm(s) in effect in the cluster",
            "alarms": [{"node": api.node(), "resource": "memory"}],
        }),
    ))
}

async fn virtual_hosts(State(_): State<Arc<Api>>, caller: Caller) -> ApiResult<Response> {
    caller.require(Tag::Monitoring)?;
    // Vhosts here have no process that could be down.
    Ok(check(true, Value::Null))
}

async fn port_listener(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(port): Path<String>,
) -> ApiResult<Response> {
    caller.require(Tag::Monitoring)?;
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid port: {port}")))?;
    let ports = [api.http.port(), api.amqp.port()];
    let ok = ports.contains(&port);
    Ok(if ok {
        Json(json!({"status": "ok", "port": port})).into_response()
    } else {
        check(
            false,
            json!({"status": "failed", "reason": "No active listener", "missing": port, "ports": ports}),
        )
    })
}

async fn protocol_listener(
    State(_): State<Arc<Api>>,
    caller: Caller,
    Path(protocol): Path<String>,
) -> ApiResult<Response> {
    caller.require(Tag::Monitoring)?;
    let known = ["amqp", "amqp091", "amqp0-9-1", "http"];
    let ok = known.contains(&protocol.to_ascii_lowercase().as_str());
    Ok(if ok {
        Json(json!({"status": "ok", "protocol": protocol})).into_response()
    } else {
        check(
            false,
            json!({"status": "failed", "reason": "No active listener", "missing": protocol, "protocols": ["amqp", "http"]}),
        )
    })
}
