//! Policies and operator policies applied as RabbitMQ applies them, seen through a real
//! client (lapin): which policy wins (priority, apply-to), the operator policy's lower
//! limits, queue arguments against policies, and changes that reach existing queues at
//! once (a lower max-length trims, a TTL expires, clearing lifts the limit), announced
//! to topology subscribers.

mod support;

use std::sync::Arc;
use std::time::Duration;

use fedamq::broker::policy::{ApplyTo, Policy, PolicyKind};
use fedamq::broker::topology::{PolicyObject, TopologyEventKind, TopologyNotice};
use fedamq::broker::vhost::VHost;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use serde_json::{Value, json};
use support::broker;

fn policy(
    kind: PolicyKind,
    name: &str,
    pattern: &str,
    apply: ApplyTo,
    prio: i64,
    def: Value,
) -> Policy {
    Policy::new(kind, "/", name, pattern, apply, prio, &def).expect("a valid policy")
}

fn user(name: &str, pattern: &str, prio: i64, def: Value) -> Policy {
    policy(PolicyKind::User, name, pattern, ApplyTo::Queues, prio, def)
}

async fn declare(ch: &Channel, name: &str, args: FieldTable) {
    ch.queue_declare(name, QueueDeclareOptions::default(), args)
        .await
        .expect("queue declared");
}

async fn publish(ch: &Channel, queue: &str, n: usize) {
    for i in 0..n {
        ch.basic_publish(
            "",
            queue,
            BasicPublishOptions::default(),
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

/// Ready messages, by passive declare.
async fn count(ch: &Channel, queue: &str) -> u32 {
    ch.queue_declare(
        queue,
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap()
    .message_count()
}

/// Gets every ready message's body.
async fn drain(ch: &Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        out.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
    }
    out
}

fn queue_policy(vhost: &Arc<VHost>, q: &str) -> (Option<String>, Option<String>) {
    let p = vhost.queue(&q.try_into().unwrap()).unwrap().policy();
    (
        p.policy_name().map(str::to_owned),
        p.operator_policy_name().map(str::to_owned),
    )
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

#[tokio::test]
async fn a_lower_max_length_trims_an_existing_queue_into_its_dead_letter_exchange() {
    let b = broker::start().await;
    let vhost = b.broker().vhost("/").unwrap();
    let (_conn, ch) = broker::channel(&b).await;
    declare(&ch, "work", FieldTable::default()).await;
    declare(&ch, "dead", FieldTable::default()).await;
    publish(&ch, "work", 5).await;
    assert_eq!(count(&ch, "work").await, 5);

    vhost.set_policy(user(
        "cap",
        "^work$",
        0,
        json!({"max-length": 2, "dead-letter-exchange": "", "dead-letter-routing-key": "dead"}),
    ));
    // Dropped from the head, at once, and dead-lettered as maxlen.
    assert_eq!(count(&ch, "work").await, 2);
    assert_eq!(drain(&ch, "dead").await, ["m0", "m1", "m2"]);
    assert_eq!(drain(&ch, "work").await, ["m3", "m4"]);

    // Cleared: the limit is gone for the same queue.
    vhost.clear_policy(PolicyKind::User, "cap").unwrap();
    publish(&ch, "work", 4).await;
    assert_eq!(count(&ch, "work").await, 4);
    assert_eq!(queue_policy(&vhost, "work"), (None, None));
    // Clearing what is not there is a 404.
    let e = vhost.clear_policy(PolicyKind::User, "cap").unwrap_err();
    assert_eq!(e.status(), 404);
    b.shutdown().await;
}

#[tokio::test]
async fn a_message_ttl_policy_expires_messages_of_an_existing_queue() {
    let b = broker::start().await;
    let vhost = b.broker().vhost("/").unwrap();
    let (_conn, ch) = broker::channel(&b).await;
    declare(&ch, "ttl.q", FieldTable::default()).await;
    declare(&ch, "expired", FieldTable::default()).await;
    vhost.set_policy(user(
        "ttl",
        "^ttl\\.",
        0,
        json!({"message-ttl": 0, "dead-letter-exchange": "", "dead-letter-routing-key": "expired"}),
    ));
    publish(&ch, "ttl.q", 2).await;
    // TTL 0 and no consumer: expired before anyone can get them.
    assert!(drain(&ch, "ttl.q").await.is_empty());
    let dead = ch
        .basic_get("expired", BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the expired message was dead-lettered");
    let headers = dead.delivery.properties.headers().clone().unwrap();
    let AMQPValue::FieldArray(deaths) = &headers.inner()["x-death"] else {
        panic!("x-death is a list: {headers:?}");
    };
    let AMQPValue::FieldTable(death) = &deaths.as_slice()[0] else {
        panic!("an x-death entry is a table");
    };
    assert_eq!(
        death.inner()["reason"],
        AMQPValue::LongString("expired".into())
    );
    b.shutdown().await;
}

#[tokio::test]
async fn highest_priority_wins_and_apply_to_is_respected() {
    let b = broker::start().await;
    let vhost = b.broker().vhost("/").unwrap();
    let (_conn, ch) = broker::channel(&b).await;
    declare(&ch, "orders.a", FieldTable::default()).await;
    vhost.set_policy(user("low", "^orders", 1, json!({"max-length": 1})));
    vhost.set_policy(user("high", "^orders\\.", 5, json!({"max-length": 3})));
    // An exchanges-only policy with the highest priority does not touch queues.
    vhost.set_policy(policy(
        PolicyKind::User,
        "fed",
        ".*",
        ApplyTo::Exchanges,
        9,
        json!({"federation-upstream-set": "all"}),
    ));
    assert_eq!(
        queue_policy(&vhost, "orders.a"),
        (Some("high".into()), None)
    );
    publish(&ch, "orders.a", 5).await;
    assert_eq!(count(&ch, "orders.a").await, 3);
    // A queue declared after the policies gets them at once too.
    declare(&ch, "orders", FieldTable::default()).await;
    assert_eq!(queue_policy(&vhost, "orders"), (Some("low".into()), None));
    publish(&ch, "orders", 3).await;
    assert_eq!(count(&ch, "orders").await, 1);
    // The exchanges have the exchange policy, reported for federation.
    let x = vhost.exchange_policy(&"amq.topic".try_into().unwrap());
    assert_eq!(x.policy_name(), Some("fed"));
    assert_eq!(x.settings().federation_upstream_set.as_deref(), Some("all"));
    // Dropping the winner hands the queue to the next one.
    vhost.clear_policy(PolicyKind::User, "high").unwrap();
    assert_eq!(queue_policy(&vhost, "orders.a"), (Some("low".into()), None));
    assert_eq!(count(&ch, "orders.a").await, 1);
    b.shutdown().await;
}

#[tokio::test]
async fn operator_policies_and_queue_arguments_take_the_lower_limit() {
    let b = broker::start().await;
    let vhost = b.broker().vhost("/").unwrap();
    let (_conn, ch) = broker::channel(&b).await;
    declare(&ch, "a", FieldTable::default()).await;
    declare(&ch, "b", table(&[("x-max-length", AMQPValue::LongInt(2))])).await;
    vhost.set_policy(user("user", "^[ab]$", 0, json!({"max-length": 10})));
    vhost.set_policy(policy(
        PolicyKind::Operator,
        "op",
        ".*",
        ApplyTo::Queues,
        0,
        json!({"max-length": 4}),
    ));
    assert_eq!(
        queue_policy(&vhost, "a"),
        (Some("user".into()), Some("op".into()))
    );
    publish(&ch, "a", 6).await;
    publish(&ch, "b", 6).await;
    // User 10, operator 4: 4. Argument 2 against policies 10/4: 2.
    assert_eq!(count(&ch, "a").await, 4);
    assert_eq!(count(&ch, "b").await, 2);
    // The user policy lower than the operator's: the user's.
    vhost.set_policy(user("user", "^[ab]$", 0, json!({"max-length": 1})));
    assert_eq!(count(&ch, "a").await, 1);
    // An operator policy may not set what it has no business setting.
    let e = Policy::new(
        PolicyKind::Operator,
        "/",
        "bad",
        ".*",
        ApplyTo::Queues,
        0,
        &json!({"dead-letter-exchange": "x"}),
    )
    .unwrap_err();
    assert_eq!(e.status(), 400);
    b.shutdown().await;
}

#[tokio::test]
async fn the_dead_letter_exchange_argument_beats_the_policy() {
    let b = broker::start().await;
    let vhost = b.broker().vhost("/").unwrap();
    let (_conn, ch) = broker::channel(&b).await;
    declare(&ch, "from-arg", FieldTable::default()).await;
    declare(&ch, "from-policy", FieldTable::default()).await;
    declare(
        &ch,
        "q",
        table(&[
            ("x-dead-letter-exchange", AMQPValue::LongString("".into())),
            (
                "x-dead-letter-routing-key",
                AMQPValue::LongString("from-arg".into()),
            ),
        ]),
    )
    .await;
    vhost.set_policy(user(
        "dlx",
        "^q$",
        0,
        json!({"dead-letter-exchange": "", "dead-letter-routing-key": "from-policy", "max-length": 0}),
    ));
    publish(&ch, "q", 1).await;
    assert_eq!(drain(&ch, "from-arg").await, ["m0"]);
    assert!(drain(&ch, "from-policy").await.is_empty());
    b.shutdown().await;
}

#[tokio::test]
async fn policy_changes_are_announced_to_topology_subscribers() {
    let b = broker::start().await;
    let vhost = b.broker().vhost("/").unwrap();
    let (_conn, ch) = broker::channel(&b).await;
    declare(&ch, "watched", FieldTable::default()).await;
    let (_seq, _snapshot, mut sub) = vhost.subscribe_topology(64);
    vhost.set_policy(user("p", "^watched$", 0, json!({"max-length": 5})));
    vhost.clear_policy(PolicyKind::User, "p").unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let n = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap()
            .unwrap();
        match n {
            TopologyNotice::Event(e) => seen.push(e.kind),
            other => panic!("unexpected {other:?}"),
        }
    }
    let watched = PolicyObject::Queue("watched".try_into().unwrap());
    assert_eq!(
        seen,
        [
            // The policy itself, then what it changed.
            TopologyEventKind::PolicyDefined {
                operator: false,
                name: "p".into(),
                set: true
            },
            TopologyEventKind::PolicyChanged {
                object: watched.clone(),
                policy: Some("p".into()),
                operator_policy: None
            },
            TopologyEventKind::PolicyDefined {
                operator: false,
                name: "p".into(),
                set: false
            },
            TopologyEventKind::PolicyChanged {
                object: watched,
                policy: None,
                operator_policy: None
            },
        ]
    );
    // Runtime parameters too.
    let up = fedamq::broker::policy::Parameter::new(
        "federation-upstream",
        "/",
        "up",
        json!({"uri": "amqp://remote"}),
    )
    .unwrap();
    vhost.set_parameter(up);
    vhost.clear_parameter("federation-upstream", "up").unwrap();
    for set in [true, false] {
        let n = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap()
            .unwrap();
        let TopologyNotice::Event(e) = n else {
            panic!("unexpected {n:?}")
        };
        assert_eq!(
            e.kind,
            TopologyEventKind::ParameterChanged {
                component: "federation-upstream".into(),
                name: "up".into(),
                set
            }
        );
    }
    // The snapshot of a new subscriber lists the policy of each object that has one.
    vhost.set_policy(user("p", "^watched$", 0, json!({"max-length": 5})));
    let (_, snapshot, _sub) = vhost.subscribe_topology(64);
    assert!(snapshot.iter().any(|k| matches!(
        k,
        TopologyEventKind::PolicyChanged { policy: Some(p), .. } if p == "p"
    )));
    b.shutdown().await;
}
