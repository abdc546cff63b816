//! Binding churn through the topology path: distinct bindings created and destroyed per
//! second, with no binding-state subscriber and with ten.
//!
//! One iteration binds a queue to a topic exchange with 1,000 distinct routing keys and
//! unbinds them again: 2,000 changes, each taking the vhost's topology lock, updating
//! the routing table, the distinct-binding counts and the route-cache counter, and
//! announcing a topology event and a binding notice to every subscriber. The
//! subscribers are drained once per iteration, inside the timing, as a federation link
//! reading its notices would. LavinMQ's figure for comparison is in ARCHITECTURE.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fedamq::broker::exchange::ExchangeSpec;
use fedamq::broker::owner::Owner;
use fedamq::broker::routing::{Destination, ExchangeKind};
use fedamq::broker::topology::{BindingSpec, DEFAULT_CAPACITY, TopologyChange};
use fedamq::broker::vhost::{QueueDeclare, VHost, VHostLimits};
use fedamq::protocol::{FieldTable, ShortString};

const KEYS: usize = 1_000;

fn ss(s: &str) -> ShortString {
    ShortString::try_from(s).expect("bench names are short")
}

fn setup() -> std::sync::Arc<VHost> {
    let v = VHost::new("/", VHostLimits::default());
    v.apply(TopologyChange::DeclareExchange {
        spec: ExchangeSpec {
            name: ss("x"),
            kind: ExchangeKind::Topic,
            durable: false,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::new(),
        },
        passive: false,
    })
    .expect("declared");
    v.declare_queue(
        QueueDeclare {
            name: ss("q"),
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::new(),
        },
        Owner::Connection(1),
    )
    .expect("declared");
    v
}

fn churn(c: &mut Criterion) {
    let keys: Vec<BindingSpec> = (0..KEYS)
        .map(|i| BindingSpec {
            source: ss("x"),
            destination: Destination::Queue(ss("q")),
            routing_key: ss(&format!("site.{}.event.{}", i % 37, i)),
            arguments: FieldTable::new(),
        })
        .collect();
    let mut group = c.benchmark_group("binding_churn");
    group.throughput(Throughput::Elements(2 * KEYS as u64));
    for subscribers in [0usize, 10] {
        let v = setup();
        let mut subs: Vec<_> = (0..subscribers)
            .map(|_| v.subscribe_bindings(Some(ss("x")), DEFAULT_CAPACITY).1)
            .collect();
        group.bench_function(format!("{subscribers}_subscribers"), |b| {
            b.iter(|| {
                for k in &keys {
                    let binding = k.clone();
                    v.apply(TopologyChange::Bind {
                        binding,
                        by: Owner::Connection(1),
                    })
                    .expect("bound");
                }
                for k in &keys {
                    let binding = k.clone();
                    v.apply(TopologyChange::Unbind {
                        binding,
                        by: Owner::Connection(1),
                    })
                    .expect("unbound");
                }
                let mut seen = 0;
                for s in &mut subs {
                    while let Some(Some(_)) = s.try_recv() {
                        seen += 1;
                    }
                }
                assert_eq!(
                    seen,
                    subscribers * 2 * KEYS,
                    "every notice reached every subscriber"
                );
            })
        });
    }
    group.finish();
}

criterion_group!(benches, churn);
criterion_main!(benches);
