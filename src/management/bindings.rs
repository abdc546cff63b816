//! `/api/bindings`: every form RabbitMQ has: per vhost, between an exchange and a
//! queue (`e/{source}/q/{queue}`) or two exchanges (`e/{source}/e/{destination}`),
//! created with POST and deleted by `properties_key`. A queue's implicit binding to
//! the default exchange is listed, as RabbitMQ lists it.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::{Value, json};

use super::Api;
use super::auth::Caller;
use super::body::Fields;
use super::error::{ApiError, ApiResult};
use super::format::{exchange_name, json_table, properties_key, segment, short, table_json};
use super::listing::ListQuery;
use crate::auth::Permission;
use crate::broker::owner::Owner;
use crate::broker::routing::Destination;
use crate::broker::topology::{BindingSpec, TopologyChange};
use crate::broker::vhost::VHost;
use crate::protocol::{FieldTable, ShortString};

pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/api/bindings", get(list_all))
        .route("/api/bindings/{vhost}", get(list_vhost))
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{destination}",
            get(between).post(create),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{destination}/{props}",
            get(show).delete(delete),
        )
}

fn binding_json(
    vhost: &str,
    source: &str,
    dest: &Destination,
    key: &ShortString,
    args: &FieldTable,
) -> Value {
    let (kind, name) = match dest {
        Destination::Queue(n) => ("queue", n),
        Destination::Exchange(n) => ("exchange", n),
    };
    let key = key.to_string();
    json!({
        "source": source,
        "vhost": vhost,
        "destination": name.to_string(),
        "destination_type": kind,
        "routing_key": key,
        "arguments": table_json(args),
        "properties_key": properties_key(&key, args),
    })
}

/// Every binding of a vhost, sorted by source, destination and key.
pub fn of_vhost(v: &VHost) -> Vec<Value> {
    let mut out = Vec::new();
    let mut queues: Vec<ShortString> = v.queues().iter().map(|q| q.name().clone()).collect();
    queues.sort();
    for q in queues {
        out.push(binding_json(
            &v.name,
            "",
            &Destination::Queue(q.clone()),
            &q,
            &FieldTable::new(),
        ));
    }
    let mut exchanges = v.exchanges();
    exchanges.sort_by(|a, b| a.name().cmp(b.name()));
    for ex in exchanges {
        let table = ex.table();
        let mut bindings: Vec<_> = table.bindings().collect();
        bindings.sort_by(|a, b| {
            (&a.destination, &a.routing_key).cmp(&(&b.destination, &b.routing_key))
        });
        let source = ex.name().to_string();
        out.extend(bindings.into_iter().map(|b| {
            binding_json(
                &v.name,
                &source,
                &b.destination,
                &b.routing_key,
                &b.arguments,
            )
        }));
    }
    out
}

async fn list_all(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let mut items = Vec::new();
    for name in api.broker.vhost_names() {
        if let Some(v) = api.broker.vhost(&name).filter(|_| caller.sees_vhost(&name)) {
            items.extend(of_vhost(&v));
        }
    }
    q.apply(items)
}

async fn list_vhost(
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&vhost)?;
    q.apply(of_vhost(&v))
}

/// The destination named by `q/{name}` or `e/{name}`.
fn destination(kind: &str, name: &str) -> ApiResult<Destination> {
    match kind {
        "q" => Ok(Destination::Queue(short(name)?)),
        "e" => Ok(Destination::Exchange(short(exchange_name(name))?)),
        _ => Err(ApiError::not_found()),
    }
}

/// The bindings from `source` to `dest`; 404 if either does not exist.
fn between_json(v: &VHost, source: &str, dest: &Destination) -> ApiResult<Vec<Value>> {
    let source = short(exchange_name(source))?;
    v.exchange(&source).ok_or_else(ApiError::not_found)?;
    let exists = match dest {
        Destination::Queue(n) => v.queue(n).is_some(),
        Destination::Exchange(n) => v.exchange(n).is_some(),
    };
    if !exists {
        return Err(ApiError::not_found());
    }
    let (kind, name) = match dest {
        Destination::Queue(n) => ("queue", n.to_string()),
        Destination::Exchange(n) => ("exchange", n.to_string()),
    };
    Ok(of_vhost(v)
        .into_iter()
        .filter(|b| {
            b["source"] == source.to_string()
                && b["destination_type"] == kind
                && b["destination"] == name
        })
        .collect())
}

async fn between(
    caller: Caller,
    Path((vhost, source, kind, dest)): Path<(String, String, String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&vhost)?;
    let dest = destination(&kind, &dest)?;
    q.apply(between_json(&v, &source, &dest)?)
}

fn check_bind(caller: &Caller, vhost: &str, source: &str, dest: &Destination) -> ApiResult<()> {
    let dest_name = dest.name().to_string();
    caller.check(vhost, Permission::Write, &dest_name)?;
    caller.check(vhost, Permission::Read, source)
}

async fn create(
    caller: Caller,
    Path((vhost, source, kind, dest)): Path<(String, String, String, String)>,
    uri: Uri,
    body: Bytes,
) -> ApiResult<Response> {
    let v = caller.vhost_for_change(&vhost)?;
    let dest = destination(&kind, &dest)?;
    let fields = Fields::parse(&body)?;
    let routing_key = fields.string("routing_key")?.unwrap_or_default();
    let arguments = json_table(&fields.object("arguments")?)?;
    let source = exchange_name(&source).to_string();
    check_bind(&caller, &vhost, &source, &dest)?;
    let props = properties_key(&routing_key, &arguments);
    v.apply(TopologyChange::Bind {
        binding: BindingSpec {
            source: short(&source)?,
            destination: dest.clone(),
            routing_key: short(&routing_key)?,
            arguments,
        },
        by: Owner::object("management"),
    })?;
    let target = format!(
        "/api/bindings/{}/e/{}/{}/{}/{}",
        segment(&vhost),
        segment(&source),
        kind,
        segment(dest.name().as_str().unwrap_or_default()),
        segment(&props),
    );
    let location = relative(uri.path(), &target);
    let mut r = StatusCode::CREATED.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, value);
    }
    Ok(r)
}

/// `target` relative to the request's `path`, as RabbitMQ writes `Location`: from the
/// request's directory, up past the first segment that differs.
fn relative(path: &str, target: &str) -> String {
    let from: Vec<&str> = path.split('/').collect();
    let dir = &from[..from.len().saturating_sub(1)];
    let to: Vec<&str> = target.split('/').collect();
    let common = dir.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; dir.len() - common];
    parts.extend(&to[common..]);
    parts.join("/")
}

/// The binding whose `properties_key` is `props` (as listed, or percent-decoded once
/// more, as clients that quote it twice send it).
fn find(v: &VHost, source: &str, dest: &Destination, props: &str) -> ApiResult<Value> {
    between_json(v, source, dest)?
        .into_iter()
        .find(|b| {
            let key = b["properties_key"].as_str().unwrap_or_default();
            key == props || percent_decode(key) == props
        })
        .ok_or_else(ApiError::not_found)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn show(
    caller: Caller,
    Path((vhost, source, kind, dest, props)): Path<(String, String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&vhost)?;
    let dest = destination(&kind, &dest)?;
    Ok(Json(find(&v, exchange_name(&source), &dest, &props)?))
}

async fn delete(
    caller: Caller,
    Path((vhost, source, kind, dest, props)): Path<(String, String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let v = caller.vhost(&vhost)?;
    let dest = destination(&kind, &dest)?;
    let source = exchange_name(&source).to_string();
    find(&v, &source, &dest, &props)?;
    if source.is_empty() {
        // The default exchange's bindings cannot be removed.
        return Err(ApiError::from(
            crate::broker::error::AmqpError::default_exchange(),
        ));
    }
    check_bind(&caller, &vhost, &source, &dest)?;
    let source = short(&source)?;
    // The binding as declared (its arguments with their AMQP types), not as shown.
    let binding = v.exchange(&source).and_then(|ex| {
        ex.table()
            .bindings()
            .find(|b| {
                b.destination == dest && {
                    let key = properties_key(&b.routing_key.to_string(), &b.arguments);
                    key == props || percent_decode(&key) == props
                }
            })
            .cloned()
    });
    let Some(binding) = binding else {
        return Err(ApiError::not_found());
    };
    v.apply(TopologyChange::Unbind {
        binding: BindingSpec {
            source,
            destination: dest,
            routing_key: binding.routing_key,
            arguments: binding.arguments,
        },
        by: Owner::object("management"),
    })?;
    Ok(StatusCode::NO_CONTENT)
}
