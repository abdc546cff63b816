//! `/api/channels` (list, get), `/api/connections/{name}/channels`,
//! `/api/vhosts/{vhost}/channels`, and consumers as RabbitMQ shows them, with their
//! channel's details.
//!
//! A channel's state lives in its connection's task (see `broker::channels`): each
//! connection is asked through its mailbox, all of them at once, and answers between
//! two reads with its channels' state and counters. So the message path keeps no
//! shared copy of them; a listing costs one mailbox round trip per connection.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use serde_json::{Value, json};

use super::Api;
use super::auth::Caller;
use super::connections::{find, name, visible_connections};
use super::error::{ApiError, ApiResult};
use super::listing::ListQuery;
use super::stats::{self, Shown};
use crate::broker::channels::ChannelReport;
use crate::broker::connections::ConnectionInfo;
use crate::broker::queue::Queue;
use crate::broker::queue::consumer::Consumer;
use crate::broker::vhost::VHost;

pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/api/connections/{name}/channels", get(channels_of))
        .route("/api/channels", get(channels))
        .route("/api/channels/{name}", get(channel))
        .route("/api/vhosts/{vhost}/channels", get(channels_of_vhost))
}

/// RabbitMQ's channel name: the connection's, and the number in brackets.
fn channel_name(api: &Api, c: &ConnectionInfo, number: u16) -> String {
    format!("{} ({number})", name(api, c))
}

/// What a consumer's or channel's `connection_details` say.
fn connection_details(api: &Api, c: &ConnectionInfo) -> Value {
    json!({
        "name": name(api, c),
        "peer_host": c.peer.map(|p| p.ip().to_string()),
        "peer_port": c.peer.map(|p| p.port()),
    })
}

/// A consumer's `channel_details`: the channel it was started on, and its connection's
/// when it has one (a broker object's consumer has none).
fn consumer_channel_details(
    api: &Api,
    connections: &[Arc<ConnectionInfo>],
    consumer: &Consumer,
) -> Value {
    match connections.iter().find(|c| c.owns(&consumer.mailbox)) {
        Some(c) => json!({
            "name": channel_name(api, c, consumer.channel),
            "number": consumer.channel,
            "connection_name": name(api, c),
            "peer_host": c.peer.map(|p| p.ip().to_string()),
            "peer_port": c.peer.map(|p| p.port()),
            "user": c.user,
            "node": api.node(),
        }),
        None => json!({ "number": consumer.channel }),
    }
}

fn channel_json(api: &Api, c: &ConnectionInfo, r: &ChannelReport) -> Value {
    let key = format!("channel {} {}", c.id, r.number);
    let counts = stats::channel_counts(&r.counters);
    let mut item = json!({
        "name": channel_name(api, c, r.number),
        "number": r.number,
        "node": api.node(),
        "user": c.user,
        "user_who_performed_action": c.user,
        "vhost": c.vhost,
        "connection_details": connection_details(api, c),
        "state": if !r.running { "closing" } else if r.flow_active { "running" } else { "flow" },
        "confirm": r.confirm,
        "transactional": r.transactional,
        "prefetch_count": r.prefetch_count,
        "global_prefetch_count": r.global_prefetch_count,
        "consumer_count": r.consumer_count,
        "messages_unacknowledged": r.messages_unacknowledged,
        // Confirms go out at the end of the read that routed the message.
        "messages_unconfirmed": 0,
        "messages_uncommitted": r.messages_uncommitted,
        "acks_uncommitted": r.acks_uncommitted,
        "pending_raft_commands": 0,
    });
    if let Some(s) = api
        .rates
        .stats(&key, &counts, Shown::Counted(stats::CHANNEL_GROUPS))
    {
        item["message_stats"] = s;
    }
    item
}

/// The channels of `connections`, each connection asked at once; a connection that
/// ended meanwhile or does not answer in time is left out.
async fn channels_json(api: &Api, connections: Vec<Arc<ConnectionInfo>>) -> Vec<Value> {
    let mut asked = tokio::task::JoinSet::new();
    for (i, c) in connections.iter().enumerate() {
        let c = c.clone();
        asked.spawn(async move { (i, c.channels().await) });
    }
    let mut answers: Vec<(usize, Vec<ChannelReport>)> = Vec::new();
    while let Some(done) = asked.join_next().await {
        if let Ok((i, Some(reports))) = done {
            answers.push((i, reports));
        }
    }
    answers.sort_by_key(|(i, _)| *i);
    answers
        .iter()
        .flat_map(|(i, reports)| {
            let c = &connections[*i];
            reports.iter().map(move |r| channel_json(api, c, r))
        })
        .collect()
}

/// A consumer as RabbitMQ lists it, with its channel's details from `connections`.
pub fn consumer_json(
    api: &Api,
    connections: &[Arc<ConnectionInfo>],
    vhost: &VHost,
    q: &Queue,
    c: &Consumer,
) -> Value {
    json!({
        "consumer_tag": c.tag.to_string(),
        "ack_required": !c.no_ack,
        "exclusive": c.exclusive,
        "prefetch_count": c.credit.as_ref().map_or(0, |cr| cr.limit()),
        "active": true,
        "activity_status": "up",
        "arguments": {},
        "channel_details": consumer_channel_details(api, connections, c),
        "queue": {"name": q.name().to_string(), "vhost": vhost.name},
    })
}

async fn channels_of(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(wanted): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let c = find(&api, &caller, &wanted)?;
    q.apply(channels_json(&api, vec![c]).await)
}

async fn channels(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let connections = visible_connections(&api, &caller, None);
    q.apply(channels_json(&api, connections).await)
}

async fn channels_of_vhost(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    caller.vhost(&vhost)?;
    let connections = visible_connections(&api, &caller, Some(&vhost));
    q.apply(channels_json(&api, connections).await)
}

/// One channel by its name (`<connection name> (<number>)`), with its consumers.
async fn channel(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(wanted): Path<String>,
) -> ApiResult<Json<Value>> {
    let (connection, number) = wanted
        .rsplit_once(" (")
        .and_then(|(c, n)| Some((c, n.strip_suffix(')')?.parse::<u16>().ok()?)))
        .ok_or_else(ApiError::not_found)?;
    let c = find(&api, &caller, connection)?;
    let report = c
        .channels()
        .await
        .and_then(|all| all.into_iter().find(|r| r.number == number))
        .ok_or_else(ApiError::not_found)?;
    let mut item = channel_json(&api, &c, &report);
    let mut consumers = Vec::new();
    if let Some(v) = api.broker.vhost(&c.vhost) {
        for queue in v.queues() {
            for consumer in queue.snapshot().consumers {
                if consumer.channel == number && c.owns(&consumer.mailbox) {
                    consumers.push(consumer_json(
                        &api,
                        std::slice::from_ref(&c),
                        &v,
                        &queue,
                        &consumer,
                    ));
                }
            }
        }
    }
    item["consumer_details"] = Value::Array(consumers);
    item["deliveries"] = json!([]);
    item["publishes"] = json!([]);
    Ok(Json(item))
}
