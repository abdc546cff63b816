//! Moving every queued message to another broker: what an HA member stepping down does
//! with the messages its clients left, so nothing confirmed is lost.
//!
//! Per vhost, one peering to the remote (the same vhost there). Per queue (exclusive
//! ones are left: they die with their connection), the queue is found on the remote
//! (passive declare) or declared there with the same arguments; then an internal
//! consumer takes the messages and each is published to the remote's default exchange
//! with the queue's name as routing key, properties and headers unchanged, and acked
//! (removed here) only once the remote confirmed it. A cut in between makes the peering
//! publish again what was unconfirmed: a message may arrive twice, never not at all.
//! A queue is done when it is empty and nothing is in flight.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::broker::consume::{ConsumeOptions, InternalConsumer};
use crate::broker::owner::Owner;
use crate::peering::{Backoff, Peering, PeeringConfig, PeeringError, Remote};
use crate::protocol::ShortString;
use crate::protocol::generated::methods::{BasicPublish, QueueDeclare};

/// Messages published and not yet confirmed, per queue: at most this many arrive twice
/// after a cut.
const IN_FLIGHT: usize = 256;

/// How long an empty queue is watched before it counts as drained (a message may be on
/// its way from a publisher that was still connected).
const SETTLE: Duration = Duration::from_millis(50);

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Queues emptied, as (vhost, queue).
    pub queues: Vec<(String, String)>,
    /// Messages the remote confirmed (and that were removed here).
    pub moved: u64,
    /// What failed, as (vhost, queue, why); their messages that were not confirmed are
    /// still here.
    pub failed: Vec<(String, String, String)>,
}

/// Moves every message of every non-exclusive queue of `broker` to the same-named queue
/// on `remote` (its login; the vhost is taken from each queue). Waits while the remote
/// is unreachable: the caller bounds it with a timeout if it must.
pub async fn drain_to(broker: &Arc<Broker>, remote: Remote) -> DrainReport {
    let mut report = DrainReport::default();
    for name in broker.vhost_names() {
        let Some(vhost) = broker.vhost(&name) else {
            continue;
        };
        let queues: Vec<_> = vhost
            .queues()
            .into_iter()
            .filter(|q| q.spec.exclusive_owner.is_none() && q.message_count() > 0)
            .collect();
        if queues.is_empty() {
            continue;
        }
        let mut config = PeeringConfig::new(Remote {
            vhost: name.clone(),
            ..remote.clone()
        });
        config.name = "fedamq drain".into();
        config.local_identifier = Some(broker.identifier().to_owned());
        config.reconnect = Some(Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_secs(1),
        });
        let (peering, _events) = Peering::new(config);
        peering.start();
        let peering = Arc::new(peering);
        for q in queues {
            let queue = q.name().clone();
            match drain_queue(&vhost, &q.spec, &peering).await {
                Ok(n) => {
                    report.moved += n;
                    report.queues.push((name.clone(), queue.to_string()));
                }
                Err((n, why)) => {
                    report.moved += n;
                    report.failed.push((name.clone(), queue.to_string(), why));
                }
            }
        }
        peering.stop().await;
    }
    report
}

/// Drains one queue; the number moved, and why it stopped early if it did.
async fn drain_queue(
    vhost: &Arc<crate::broker::vhost::VHost>,
    spec: &crate::broker::queue::QueueSpec,
    peering: &Arc<Peering>,
) -> Result<u64, (u64, String)> {
    let name = spec.name.clone();
    declare_remote(peering, spec)
        .await
        .map_err(|e| (0, e.to_string()))?;
    let mut consumer = InternalConsumer::start(
        vhost,
        &name,
        &Owner::object("drain"),
        ConsumeOptions {
            tag: ShortString::from_static("fedamq-drain"),
            prefetch: u32::try_from(IN_FLIGHT).unwrap_or(u32::MAX),
            no_ack: false,
            exclusive: false,
            priority: 0,
        },
    )
    .map_err(|e| (0, e.to_string()))?;
    let mut in_flight: JoinSet<(u64, Result<(), PeeringError>)> = JoinSet::new();
    let mut moved = 0;
    let mut failure = None;
    let mut gone = false;
    loop {
        if (failure.is_some() || gone) && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                match done {
                    Ok((tag, Ok(()))) => {
                        moved += 1;
                        let _ = consumer.ack(tag, false);
                    }
                    Ok((tag, Err(e))) => {
                        let _ = consumer.nack(tag, false, true);
                        failure.get_or_insert_with(|| e.to_string());
                    }
                    Err(e) => {
                        failure.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            d = consumer.recv(), if failure.is_none() && !gone && in_flight.len() < IN_FLIGHT => {
                let Some(d) = d else {
                    gone = true;
                    continue;
                };
                let peering = peering.clone();
                let publish = BasicPublish {
                    exchange: ShortString::default(),
                    routing_key: name.clone(),
                    ..Default::default()
                };
                let properties = d.message.properties().clone();
                let body = d.message.body_bytes();
                in_flight.spawn(async move {
                    (d.tag, peering.publish(publish, properties, body).await)
                });
            }
            _ = tokio::time::sleep(SETTLE), if in_flight.is_empty() && failure.is_none() && !gone => {
                if consumer.queue().message_count() == 0 && consumer.outstanding() == 0 {
                    break;
                }
            }
        }
    }
    match failure {
        Some(why) => Err((moved, why)),
        None => Ok(moved),
    }
}

/// Finds the queue on the remote, or declares it there as it is here.
async fn declare_remote(
    peering: &Peering,
    spec: &crate::broker::queue::QueueSpec,
) -> Result<(), PeeringError> {
    let passive = QueueDeclare {
        queue: spec.name.clone(),
        passive: true,
        ..Default::default()
    };
    match peering.declare_queue(passive).await {
        Ok(_) => Ok(()),
        Err(PeeringError::Refused { code: 404, .. }) => peering
            .declare_queue(QueueDeclare {
                queue: spec.name.clone(),
                durable: spec.durable,
                auto_delete: spec.auto_delete,
                arguments: spec.arguments.clone(),
                ..Default::default()
            })
            .await
            .map(drop),
        Err(e) => Err(e),
    }
}
