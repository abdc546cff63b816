//! `/api/exchanges`: list, get, declare (PUT), delete, an exchange's bindings, and
//! publishing a message through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Api;
use super::auth::Caller;
use super::bindings;
use super::body::Fields;
use super::error::{ApiError, ApiResult};
use super::format::{exchange_name, json_table, short, table_json};
use super::listing::ListQuery;
use super::stats::{self, Shown};
use crate::auth::{Permission, base64};
use crate::broker::exchange::{Exchange, ExchangeSpec};
use crate::broker::routing::ExchangeKind;
use crate::broker::topology::{Applied, TopologyChange};
use crate::broker::vhost::VHost;
use crate::protocol::ShortString;
use crate::protocol::generated::properties::BasicProperties;

pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/api/exchanges", get(list_all))
        .route("/api/exchanges/{vhost}", get(list_vhost))
        .route("/api/exchanges/{vhost}/", get(list_vhost))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(show).put(put).delete(delete),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/source",
            get(bindings_source),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/destination",
            get(bindings_destination),
        )
        .route("/api/exchanges/{vhost}/{name}/publish", post(publish))
}

/// What identifies an exchange's rate samples.
fn rates_key(vhost: &VHost, ex: &Exchange) -> String {
    format!("exchange {} {}", vhost.name, ex.name())
}

pub fn exchange_json(api: &Api, vhost: &VHost, ex: &Exchange) -> Value {
    let mut item = json!({
        "name": ex.name().to_string(),
        "vhost": vhost.name,
        "type": ex.spec.kind.name(),
        "durable": ex.spec.durable,
        "auto_delete": ex.spec.auto_delete,
        "internal": ex.spec.internal,
        "arguments": table_json(&ex.spec.arguments),
        "policy": vhost.exchange_policy(ex.name()).policy_name(),
    });
    let counts = stats::exchange_counts(&ex.counters);
    if let Some(s) = api
        .rates
        .stats(&rates_key(vhost, ex), &counts, Shown::Counted(&[]))
    {
        item["message_stats"] = s;
    }
    item
}

fn sorted(vhost: &VHost) -> Vec<Arc<Exchange>> {
    let mut all = vhost.exchanges();
    all.sort_by(|a, b| a.name().cmp(b.name()));
    all
}

async fn list_all(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let mut items = Vec::new();
    let mut live = std::collections::HashSet::new();
    for name in api.broker.vhost_names() {
        let Some(v) = api.broker.vhost(&name) else {
            continue;
        };
        let exchanges = sorted(&v);
        live.extend(exchanges.iter().map(|e| rates_key(&v, e)));
        if caller.sees_vhost(&name) {
            items.extend(exchanges.iter().map(|e| exchange_json(&api, &v, e)));
        }
    }
    // Deleted exchanges' samples go when all exchanges are listed.
    api.rates
        .retain(|k| !k.starts_with("exchange ") || live.contains(k));
    q.apply(items)
}

async fn list_vhost(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&vhost)?;
    q.apply(
        sorted(&v)
            .iter()
            .map(|e| exchange_json(&api, &v, e))
            .collect(),
    )
}

fn find(v: &VHost, name: &str) -> ApiResult<Arc<Exchange>> {
    v.exchange(&short(exchange_name(name))?)
        .ok_or_else(ApiError::not_found)
}

async fn show(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&vhost)?;
    let ex = find(&v, &name)?;
    let mut item = exchange_json(&api, &v, &ex);
    item["incoming"] = json!([]);
    item["outgoing"] = json!([]);
    Ok(q.trim(item))
}

async fn put(
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let v = caller.vhost_for_change(&vhost)?;
    let fields = Fields::parse(&body)?;
    let kind_name = fields.string("type")?.unwrap_or_else(|| "direct".into());
    let kind = ExchangeKind::from_name(kind_name.as_bytes())
        .ok_or_else(|| ApiError::bad_request(format!("invalid exchange type '{kind_name}'")))?;
    let spec = ExchangeSpec {
        name: short(exchange_name(&name))?,
        kind,
        durable: fields.bool("durable", false)?,
        auto_delete: fields.bool("auto_delete", false)?,
        internal: fields.bool("internal", false)?,
        arguments: json_table(&fields.object("arguments")?)?,
    };
    caller.check(&vhost, Permission::Configure, exchange_name(&name))?;
    if spec.name.is_empty() {
        return Err(ApiError::not_authorised("Access refused."));
    }
    let existed = v.exchange(&spec.name).is_some();
    reserved(&name, existed)?;
    match v.apply(TopologyChange::DeclareExchange {
        spec,
        passive: false,
    })? {
        Applied::Exchange(_) if existed => Ok(StatusCode::NO_CONTENT),
        _ => Ok(StatusCode::CREATED),
    }
}

/// Names starting `amq.` are the broker's: declaring a new one is refused, as over
/// AMQP.
pub fn reserved(name: &str, exists: bool) -> ApiResult<()> {
    if name.starts_with("amq.") && !exists {
        Err(ApiError::not_authorised("Access refused."))
    } else {
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    #[serde(rename = "if-unused")]
    if_unused: Option<String>,
}

async fn delete(
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let v = caller.vhost(&vhost)?;
    let ex = find(&v, &name)?;
    caller.check(&vhost, Permission::Configure, exchange_name(&name))?;
    // The core refuses to delete the default exchange and the `amq.` ones (403, which
    // the API answers as RabbitMQ's plugin does: 401 "Access refused.").
    v.apply(TopologyChange::DeleteExchange {
        name: ex.name().clone(),
        if_unused: q.if_unused.as_deref() == Some("true"),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

async fn bindings_source(
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&vhost)?;
    let ex = find(&v, &name)?;
    q.apply(
        bindings::of_vhost(&v)
            .into_iter()
            .filter(|b| b["source"] == ex.name().to_string())
            .collect(),
    )
}

async fn bindings_destination(
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&vhost)?;
    let ex = find(&v, &name)?;
    q.apply(
        bindings::of_vhost(&v)
            .into_iter()
            .filter(|b| {
                b["destination_type"] == "exchange" && b["destination"] == ex.name().to_string()
            })
            .collect(),
    )
}

async fn publish(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&vhost)?;
    let fields = Fields::parse(&body)?;
    fields.require(&["routing_key", "properties", "payload", "payload_encoding"])?;
    let ex = find(&v, &name)?;
    caller.check(&vhost, Permission::Write, exchange_name(&name))?;
    let routing_key = short(&fields.string("routing_key")?.unwrap_or_default())?;
    let payload = fields.string("payload")?.unwrap_or_default();
    let body = match fields.string("payload_encoding")?.as_deref() {
        Some("string") => Bytes::from(payload),
        Some("base64") => Bytes::from(
            base64::decode(&payload).ok_or_else(|| ApiError::bad_request("not_base64"))?,
        ),
        other => {
            return Err(ApiError::bad_request(format!(
                "unsupported payload_encoding {}",
                other.unwrap_or_default()
            )));
        }
    };
    let properties = properties(&fields.object("properties")?)?;
    let mut publisher = api
        .broker
        .internal_publisher(&vhost)
        .ok_or_else(ApiError::not_found)?;
    let returned = Arc::new(AtomicBool::new(false));
    let flag = returned.clone();
    publisher.on_return(move |_| flag.store(true, Ordering::Relaxed));
    let _ = publisher
        .publish(ex.name(), routing_key, &properties, body, true)?
        .await;
    Ok(Json(json!({ "routed": !returned.load(Ordering::Relaxed) })))
}

/// Message properties from the JSON RabbitMQ's API takes.
fn properties(map: &Map<String, Value>) -> ApiResult<BasicProperties> {
    let mut p = BasicProperties::default();
    let text = |k: &str, v: &Value| -> ApiResult<ShortString> {
        match v {
            Value::String(s) => short(s),
            Value::Number(n) => short(&n.to_string()),
            other => Err(ApiError::bad_request(format!("{k}: not a string: {other}"))),
        }
    };
    let int = |k: &str, v: &Value| -> ApiResult<u64> {
        match v {
            Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64().unwrap_or(0)),
            Value::String(s) if s.parse::<u64>().is_ok() => Ok(s.parse().unwrap_or(0)),
            other => Err(ApiError::bad_request(format!(
                "{k}: not an integer: {other}"
            ))),
        }
    };
    for (k, v) in map {
        match k.as_str() {
            "content_type" => p.content_type = Some(text(k, v)?),
            "content_encoding" => p.content_encoding = Some(text(k, v)?),
            "correlation_id" => p.correlation_id = Some(text(k, v)?),
            "reply_to" => p.reply_to = Some(text(k, v)?),
            "expiration" => p.expiration = Some(text(k, v)?),
            "message_id" => p.message_id = Some(text(k, v)?),
            "type" => p.r#type = Some(text(k, v)?),
            "user_id" => p.user_id = Some(text(k, v)?),
            "app_id" => p.app_id = Some(text(k, v)?),
            "cluster_id" => p.cluster_id = Some(text(k, v)?),
            "delivery_mode" => p.delivery_mode = Some(int(k, v)?.min(255) as u8),
            "priority" => p.priority = Some(int(k, v)?.min(255) as u8),
            "timestamp" => p.timestamp = Some(int(k, v)?),
            "headers" => match v {
                Value::Object(h) => p.headers = Some(json_table(h)?),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "headers: not an object: {other}"
                    )));
                }
            },
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown message property {other}"
                )));
            }
        }
    }
    Ok(p)
}
