//! The topology path's events and binding-state subscriptions, driven directly.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::broker::vhost::VHostLimits;

fn ss(s: &str) -> ShortString {
    ShortString::try_from(s).unwrap()
}

fn me() -> Owner {
    Owner::Connection(1)
}

fn vhost() -> Arc<VHost> {
    VHost::new("/", VHostLimits::default())
}

fn exchange(v: &VHost, name: &str, kind: ExchangeKind, auto_delete: bool) {
    v.apply(TopologyChange::DeclareExchange {
        spec: ExchangeSpec {
            name: ss(name),
            kind,
            durable: false,
            auto_delete,
            internal: false,
            arguments: FieldTable::new(),
        },
        passive: false,
    })
    .unwrap();
}

fn queue(v: &VHost, name: &str, owner: Option<Owner>) -> Arc<Queue> {
    let declare = QueueDeclare {
        name: ss(name),
        passive: false,
        durable: false,
        exclusive: owner.is_some(),
        auto_delete: false,
        arguments: FieldTable::new(),
    };
    v.declare_queue(declare, owner.unwrap_or_else(me))
        .unwrap()
        .0
}

fn spec(source: &str, dest: Destination, key: &str) -> BindingSpec {
    BindingSpec {
        source: ss(source),
        destination: dest,
        routing_key: ss(key),
        arguments: FieldTable::new(),
    }
}

fn q(name: &str) -> Destination {
    Destination::Queue(ss(name))
}

fn bind(v: &VHost, b: BindingSpec) {
    v.apply(TopologyChange::Bind {
        binding: b,
        by: me(),
    })
    .unwrap();
}

fn unbind(v: &VHost, b: BindingSpec) {
    v.apply(TopologyChange::Unbind {
        binding: b,
        by: me(),
    })
    .unwrap();
}

/// Every notice waiting, as (created?, exchange, key).
fn drain(sub: &mut BindingSubscription) -> Vec<(bool, String, String)> {
    let mut out = Vec::new();
    while let Some(Some(n)) = sub.try_recv() {
        match n {
            BindingNotice::Created { binding, .. } => out.push((
                true,
                binding.exchange.to_string(),
                binding.routing_key.to_string(),
            )),
            BindingNotice::Destroyed { binding, .. } => out.push((
                false,
                binding.exchange.to_string(),
                binding.routing_key.to_string(),
            )),
            BindingNotice::Resync { .. } => panic!("unexpected resync"),
        }
    }
    out
}

fn n(created: bool, ex: &str, key: &str) -> (bool, String, String) {
    (created, ex.to_string(), key.to_string())
}

fn events(sub: &mut TopologySubscription) -> Vec<TopologyEvent> {
    let mut out = Vec::new();
    while let Some(Some(TopologyNotice::Event(e))) = sub.try_recv() {
        out.push(e);
    }
    out
}

#[test]
fn nobody_deletes_the_default_or_an_amq_exchange() {
    // Every path (client, API, definitions, broker objects) goes through `apply`, so
    // the refusal is here and not only in the AMQP handler.
    let v = vhost();
    let (_, _, mut sub) = v.subscribe_topology(DEFAULT_CAPACITY);
    for (name, text) in [
        ("", "operation not permitted on the default exchange"),
        (
            "amq.direct",
            "exchange name 'amq.direct' contains reserved prefix 'amq.*'",
        ),
        (
            "amq.nope",
            "exchange name 'amq.nope' contains reserved prefix 'amq.*'",
        ),
    ] {
        let e = v
            .apply(TopologyChange::DeleteExchange {
                name: ss(name),
                if_unused: false,
            })
            .unwrap_err();
        assert_eq!((e.code, e.text.as_str()), (ReplyCode::AccessRefused, text));
    }
    assert!(v.exchange(&ss("")).is_some());
    assert!(v.exchange(&ss("amq.direct")).is_some());
    assert!(events(&mut sub).is_empty(), "nothing changed");
}

#[test]
fn every_kind_of_change_is_an_event_in_order() {
    let v = vhost();
    let (seq, snapshot, mut sub) = v.subscribe_topology(DEFAULT_CAPACITY);
    assert_eq!(seq, 0);
    // The predeclared exchanges are there from the start.
    assert!(snapshot.iter().any(
        |e| matches!(e, TopologyEventKind::ExchangeDeclared(s) if s.name.as_bytes() == b"amq.topic")
    ));
    exchange(&v, "x", ExchangeKind::Direct, false);
    queue(&v, "a", None);
    bind(&v, spec("x", q("a"), "k"));
    unbind(&v, spec("x", q("a"), "k"));
    v.delete_queue(&ss("a"), false, false, &me()).unwrap();
    v.apply(TopologyChange::DeleteExchange {
        name: ss("x"),
        if_unused: false,
    })
    .unwrap();
    let got = events(&mut sub);
    let kinds: Vec<&'static str> = got
        .iter()
        .map(|e| match &e.kind {
            TopologyEventKind::ExchangeDeclared(_) => "exchange declared",
            TopologyEventKind::ExchangeDeleted(_) => "exchange deleted",
            TopologyEventKind::QueueDeclared { .. } => "queue declared",
            TopologyEventKind::QueueDeleted(_) => "queue deleted",
            TopologyEventKind::BindingAdded(_) => "binding added",
            TopologyEventKind::BindingRemoved(_) => "binding removed",
            TopologyEventKind::PolicyChanged { .. } => "policy changed",
            TopologyEventKind::PolicyDefined { .. } => "policy defined",
            TopologyEventKind::ParameterChanged { .. } => "parameter changed",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "exchange declared",
            "queue declared",
            "binding added",
            "binding removed",
            "queue deleted",
            "exchange deleted"
        ]
    );
    let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    assert_eq!(v.topology_seq(), 6);
    // Re-declaring, a failed change and unbinding what is not bound announce nothing.
    exchange(&v, "y", ExchangeKind::Direct, false);
    exchange(&v, "y", ExchangeKind::Direct, false);
    assert!(
        v.apply(TopologyChange::DeclareExchange {
            spec: ExchangeSpec {
                name: ss("y"),
                kind: ExchangeKind::Fanout,
                durable: false,
                auto_delete: false,
                internal: false,
                arguments: FieldTable::new(),
            },
            passive: false,
        })
        .is_err()
    );
    assert_eq!(events(&mut sub).len(), 1);
}

#[test]
fn a_binding_is_created_once_and_destroyed_with_the_last() {
    let v = vhost();
    exchange(&v, "x", ExchangeKind::Direct, false);
    queue(&v, "a", None);
    queue(&v, "b", None);
    let (snapshot, mut sub) = v.subscribe_bindings(Some(ss("x")), DEFAULT_CAPACITY);
    assert!(snapshot.is_empty());
    bind(&v, spec("x", q("a"), "k"));
    bind(&v, spec("x", q("b"), "k"));
    bind(&v, spec("x", q("a"), "other"));
    assert_eq!(drain(&mut sub), [n(true, "x", "k"), n(true, "x", "other")]);
    unbind(&v, spec("x", q("a"), "k"));
    assert_eq!(drain(&mut sub), []);
    unbind(&v, spec("x", q("b"), "k"));
    assert_eq!(drain(&mut sub), [n(false, "x", "k")]);
}

#[test]
fn a_queue_deletion_destroys_its_bindings() {
    let v = vhost();
    exchange(&v, "x", ExchangeKind::Topic, false);
    queue(&v, "a", None);
    let (_, mut sub) = v.subscribe_bindings(None, DEFAULT_CAPACITY);
    bind(&v, spec("x", q("a"), "a.#"));
    v.delete_queue(&ss("a"), false, false, &me()).unwrap();
    assert_eq!(drain(&mut sub), [n(true, "x", "a.#"), n(false, "x", "a.#")]);
}

#[test]
fn an_exclusive_owner_going_destroys_its_bindings_and_says_exclusive() {
    let v = vhost();
    exchange(&v, "x", ExchangeKind::Direct, false);
    let owner = Owner::object("federation-link");
    queue(&v, "mine", Some(owner.clone()));
    let (_, mut sub) = v.subscribe_bindings(None, DEFAULT_CAPACITY);
    v.apply(TopologyChange::Bind {
        binding: spec("x", q("mine"), "k"),
        by: owner.clone(),
    })
    .unwrap();
    match sub.try_recv() {
        Some(Some(BindingNotice::Created { binding, .. })) => assert!(binding.exclusive),
        other => panic!("expected created, got {other:?}"),
    }
    // Another owner may not bind it.
    let refused = v.apply(TopologyChange::Bind {
        binding: spec("x", q("mine"), "k2"),
        by: me(),
    });
    assert_eq!(
        refused.unwrap_err().code,
        crate::protocol::ReplyCode::ResourceLocked
    );
    v.owner_gone(&owner);
    assert_eq!(drain(&mut sub), [n(false, "x", "k")]);
    assert!(v.queue(&ss("mine")).is_none());
}

#[test]
fn auto_delete_and_expiry_destroy_bindings() {
    let v = vhost();
    exchange(&v, "x", ExchangeKind::Direct, false);
    let a = queue(&v, "a", None);
    let (_, mut sub) = v.subscribe_bindings(None, DEFAULT_CAPACITY);
    bind(&v, spec("x", q("a"), "k"));
    v.remove_queue(&a, Removal::AutoDelete);
    assert_eq!(drain(&mut sub), [n(true, "x", "k"), n(false, "x", "k")]);
    let b = queue(&v, "b", None);
    bind(&v, spec("x", q("b"), "k"));
    v.remove_queue(&b, Removal::Expired);
    assert_eq!(drain(&mut sub), [n(true, "x", "k"), n(false, "x", "k")]);
    // A stale handle to a queue that was replaced removes nothing.
    let c = queue(&v, "c", None);
    v.delete_queue(&ss("c"), false, false, &me()).unwrap();
    queue(&v, "c", None);
    bind(&v, spec("x", q("c"), "k"));
    v.remove_queue(&c, Removal::Expired);
    assert_eq!(drain(&mut sub), [n(true, "x", "k")]);
}

#[test]
fn deleting_an_exchange_destroys_its_bindings_both_ways() {
    let v = vhost();
    exchange(&v, "src", ExchangeKind::Fanout, false);
    exchange(&v, "mid", ExchangeKind::Direct, false);
    // An auto-delete exchange whose only binding goes to `mid` goes with it.
    exchange(&v, "ad", ExchangeKind::Direct, true);
    queue(&v, "a", None);
    let (_, mut sub) = v.subscribe_bindings(None, DEFAULT_CAPACITY);
    bind(&v, spec("src", Destination::Exchange(ss("mid")), ""));
    bind(&v, spec("ad", Destination::Exchange(ss("mid")), "r"));
    bind(&v, spec("mid", q("a"), "k"));
    drain(&mut sub);
    v.apply(TopologyChange::DeleteExchange {
        name: ss("mid"),
        if_unused: false,
    })
    .unwrap();
    let mut got = drain(&mut sub);
    got.sort();
    assert_eq!(
        got,
        [
            n(false, "ad", "r"),
            n(false, "mid", "k"),
            n(false, "src", "")
        ]
    );
    assert!(v.exchange(&ss("ad")).is_none());
}

#[test]
fn a_subscription_to_one_exchange_sees_only_it() {
    let v = vhost();
    exchange(&v, "x", ExchangeKind::Direct, false);
    exchange(&v, "y", ExchangeKind::Direct, false);
    queue(&v, "a", None);
    bind(&v, spec("x", q("a"), "before"));
    let (snapshot, mut sub) = v.subscribe_bindings(Some(ss("x")), DEFAULT_CAPACITY);
    assert_eq!(snapshot.len(), 1);
    bind(&v, spec("y", q("a"), "k"));
    bind(&v, spec("x", q("a"), "k"));
    assert_eq!(drain(&mut sub), [n(true, "x", "k")]);
}

#[test]
fn a_slow_subscriber_is_resynchronised_with_a_fresh_snapshot() {
    let v = vhost();
    exchange(&v, "x", ExchangeKind::Direct, false);
    queue(&v, "a", None);
    let (_, mut sub) = v.subscribe_bindings(Some(ss("x")), 4);
    for i in 0..10 {
        bind(&v, spec("x", q("a"), &format!("k{i}")));
    }
    unbind(&v, spec("x", q("a"), "k0"));
    match sub.try_recv() {
        Some(Some(BindingNotice::Resync { seq, bindings })) => {
            assert_eq!(seq, v.topology_seq());
            assert_eq!(bindings.len(), 9);
        }
        other => panic!("expected a resync, got {other:?}"),
    }
    // Then the changes after the snapshot, and nothing else.
    assert!(sub.try_recv().is_none());
    bind(&v, spec("x", q("a"), "k10"));
    assert_eq!(drain(&mut sub), [n(true, "x", "k10")]);
}

#[test]
fn a_dropped_subscription_is_forgotten() {
    let v = vhost();
    exchange(&v, "x", ExchangeKind::Direct, false);
    queue(&v, "a", None);
    let (_, sub) = v.subscribe_bindings(None, DEFAULT_CAPACITY);
    drop(sub);
    bind(&v, spec("x", q("a"), "k"));
    assert_eq!(v.lock_topology().subscribers(), 0);
}

#[tokio::test]
async fn a_deleted_vhost_ends_its_subscriptions() {
    let v = vhost();
    let (_, mut sub) = v.subscribe_bindings(None, DEFAULT_CAPACITY);
    v.close_subscriptions();
    assert_eq!(sub.recv().await, None);
}

/// One step of the model-based test below.
#[derive(Debug, Clone)]
enum Step {
    Bind(u8, u8, u8),
    Unbind(u8, u8, u8),
    DeleteQueue(u8),
    DeleteExchange(u8),
    /// Subscribe now (to every exchange).
    Subscribe,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3u8, 0..4u8, 0..3u8).prop_map(|(e, q, k)| Step::Bind(e, q, k)),
        3 => (0..3u8, 0..4u8, 0..3u8).prop_map(|(e, q, k)| Step::Unbind(e, q, k)),
        1 => (0..4u8).prop_map(Step::DeleteQueue),
        1 => (0..3u8).prop_map(Step::DeleteExchange),
        1 => Just(Step::Subscribe),
    ]
}

type Distinct = std::collections::BTreeSet<(String, String)>;

fn apply_notices(state: &mut Distinct, sub: &mut BindingSubscription) {
    while let Some(Some(notice)) = sub.try_recv() {
        match notice {
            BindingNotice::Created { binding, .. } => {
                let fresh = state.insert((
                    binding.exchange.to_string(),
                    binding.routing_key.to_string(),
                ));
                assert!(fresh, "created twice: {binding:?}");
            }
            BindingNotice::Destroyed { binding, .. } => {
                let known = state.remove(&(
                    binding.exchange.to_string(),
                    binding.routing_key.to_string(),
                ));
                assert!(known, "destroyed unknown: {binding:?}");
            }
            BindingNotice::Resync { bindings, .. } => {
                *state = bindings
                    .iter()
                    .map(|b| (b.exchange.to_string(), b.routing_key.to_string()))
                    .collect();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Subscribers that join at any moment, fed by changes made from several threads
    /// at once, each end with the distinct bindings the vhost really has: the snapshot
    /// and the notices after it have no gap and no duplicate.
    #[test]
    fn snapshot_then_changes_has_no_gap_and_no_duplicate(
        threads in proptest::collection::vec(proptest::collection::vec(step(), 1..40), 1..4),
        capacity in prop_oneof![Just(3usize), Just(DEFAULT_CAPACITY)],
    ) {
        let v = vhost();
        let names = ["e0", "e1", "e2"];
        let subs = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for steps in &threads {
                let (v, subs) = (&v, &subs);
                scope.spawn(move || {
                    for s in steps {
                        // Exchanges and queues come back after a deletion.
                        for e in names {
                            exchange(v, e, ExchangeKind::Direct, false);
                        }
                        for i in 0..4 {
                            let _ = v.declare_queue(
                                QueueDeclare {
                                    name: ss(&format!("q{i}")),
                                    passive: false,
                                    durable: false,
                                    exclusive: false,
                                    auto_delete: false,
                                    arguments: FieldTable::new(),
                                },
                                me(),
                            );
                        }
                        match *s {
                            Step::Bind(e, q, k) => {
                                let _ = v.apply(TopologyChange::Bind {
                                    binding: spec(names[e as usize], Destination::Queue(ss(&format!("q{q}"))), &format!("k{k}")),
                                    by: me(),
                                });
                            }
                            Step::Unbind(e, q, k) => {
                                let _ = v.apply(TopologyChange::Unbind {
                                    binding: spec(names[e as usize], Destination::Queue(ss(&format!("q{q}"))), &format!("k{k}")),
                                    by: me(),
                                });
                            }
                            Step::DeleteQueue(q) => {
                                let _ = v.delete_queue(&ss(&format!("q{q}")), false, false, &me());
                            }
                            Step::DeleteExchange(e) => {
                                let _ = v.apply(TopologyChange::DeleteExchange { name: ss(names[e as usize]), if_unused: false });
                            }
                            Step::Subscribe => {
                                let (snapshot, sub) = v.subscribe_bindings(None, capacity);
                                let state: Distinct = snapshot
                                    .iter()
                                    .map(|b| (b.exchange.to_string(), b.routing_key.to_string()))
                                    .collect();
                                subs.lock().unwrap().push((state, sub));
                            }
                        }
                    }
                });
            }
        });
        // The truth: every binding of every exchange, by (exchange, key).
        let truth: Distinct = v
            .exchanges()
            .iter()
            .filter(|e| names.contains(&e.name().to_string().as_str()))
            .flat_map(|e| {
                let name = e.name().to_string();
                e.table()
                    .bindings()
                    .map(|b| (name.clone(), b.routing_key.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (mut state, mut sub) in subs.into_inner().unwrap() {
            apply_notices(&mut state, &mut sub);
            prop_assert_eq!(&state, &truth);
        }
    }
}
