//! The cost of one routing decision against large binding tables: what every publish
//! pays before its message reaches a queue.
//!
//! - topic: 10,000 bindings, half literal patterns, the rest with `*` or `#`, routed
//!   with a key several of them match and with one none of them does;
//! - direct: 10,000 keys, a hit and a miss;
//! - headers: 1,000 `x-match=all` bindings, then 1,000 `x-match=any` ones, each routed
//!   with headers a handful of them match;
//! - headers against unrelated keys: 2,000 bindings testing a key each, and one binding
//!   testing 25,000 keys (legal: it fits in a frame), none of them in the message,
//!   beside three bindings that match it.
//!
//! The output vector is reused across iterations, as a connection reuses it across
//! publishes, so the figures are the lookup and the copies of the matched names.

use criterion::{Criterion, criterion_group, criterion_main};
use fedamq::broker::routing::{Binding, Destination, ExchangeKind, RoutingTable};
use fedamq::protocol::{FieldTable, FieldValue, ShortString};
use std::hint::black_box;

fn ss(s: &str) -> ShortString {
    ShortString::try_from(s).expect("bench names are short")
}

fn bind(t: &mut RoutingTable, queue: &str, key: &str, args: FieldTable) {
    let b = Binding {
        destination: Destination::Queue(ss(queue)),
        routing_key: ss(key),
        arguments: args,
    };
    assert_eq!(t.bind(b), Ok(true), "{queue} {key}");
}

/// A fixed pseudo-random number per binding (SplitMix64), so runs are comparable.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 10,000 patterns over `region.service.event` keys (20 regions, 10 services, 20
/// events): 50% literal, 30% with a `*`, 20% with a `#` (half of those `r.s.#`, half
/// `#.e.x<i>`, which keep a `#` node alive through the whole key).
fn topic_table() -> RoutingTable {
    let mut t = RoutingTable::new(ExchangeKind::Topic);
    for i in 0..10_000u64 {
        let h = mix(i);
        let (r, s, e) = (h % 20, (h >> 8) % 10, (h >> 16) % 20);
        let pattern = match (h >> 24) % 10 {
            0..=4 => format!("r{r}.s{s}.e{e}"),
            5 | 6 => format!("r{r}.*.e{e}"),
            7 => format!("*.s{s}.e{e}"),
            8 => format!("r{r}.s{s}.#"),
            _ => format!("#.e{e}.x{i}"),
        };
        bind(&mut t, &format!("q{i}"), &pattern, FieldTable::new());
    }
    t
}

fn direct_table() -> RoutingTable {
    let mut t = RoutingTable::new(ExchangeKind::Direct);
    for i in 0..10_000u32 {
        bind(
            &mut t,
            &format!("q{i}"),
            &format!("orders.{i}"),
            FieldTable::new(),
        );
    }
    t
}

fn headers_table(mode: &str) -> RoutingTable {
    let mut t = RoutingTable::new(ExchangeKind::Headers);
    for i in 0..1_000u32 {
        let mut args = FieldTable::new();
        args.insert(ss("x-match"), mode.into());
        args.insert(ss("format"), format!("f{}", i % 10).into());
        args.insert(ss("region"), format!("r{}", i % 100).into());
        args.insert(ss("version"), FieldValue::I32((i % 7) as i32));
        bind(&mut t, &format!("q{i}"), "", args);
    }
    t
}

/// Three bindings the benchmark message matches, beside `keys` argument keys it does not
/// have: one binding per key (`spread`), or one binding testing them all.
fn headers_unrelated(mode: &str, keys: u32, spread: bool) -> RoutingTable {
    let mut t = RoutingTable::new(ExchangeKind::Headers);
    let table = |entries: &mut dyn Iterator<Item = (String, FieldValue)>| {
        let mut args = FieldTable::new();
        args.insert(ss("x-match"), mode.into());
        for (k, v) in entries {
            args.insert(ss(&k), v);
        }
        args
    };
    let key = |i: u32| (format!("k{i}"), FieldValue::I32(i as i32));
    if spread {
        for i in 0..keys {
            bind(
                &mut t,
                &format!("q{i}"),
                "",
                table(&mut std::iter::once(key(i))),
            );
        }
    } else {
        bind(&mut t, "hostile", "", table(&mut (0..keys).map(key)));
    }
    let hits = [
        vec![("format".to_owned(), "f3".into())],
        vec![("region".to_owned(), "r43".into())],
        vec![
            ("format".to_owned(), "f3".into()),
            ("version".to_owned(), FieldValue::I32(2)),
        ],
    ];
    for (i, entries) in hits.into_iter().enumerate() {
        bind(
            &mut t,
            &format!("hit{i}"),
            "",
            table(&mut entries.into_iter()),
        );
    }
    t
}

fn route_bench(
    c: &mut Criterion,
    name: &str,
    t: &RoutingTable,
    key: &str,
    headers: Option<&FieldTable>,
) {
    let mut out = Vec::with_capacity(1024);
    t.route(key.as_bytes(), headers, &mut out);
    eprintln!("{name}: {} destination(s)", out.len());
    c.bench_function(name, |b| {
        b.iter(|| {
            out.clear();
            t.route(black_box(key.as_bytes()), black_box(headers), &mut out);
            black_box(out.len())
        })
    });
}

fn bench(c: &mut Criterion) {
    let topic = topic_table();
    route_bench(c, "topic_10k/match", &topic, "r12.s3.e17", None);
    route_bench(c, "topic_10k/miss", &topic, "nowhere.s3.e99", None);
    route_bench(
        c,
        "topic_10k/long_miss",
        &topic,
        "a.b.c.d.e.f.g.h.i.j",
        None,
    );

    let direct = direct_table();
    route_bench(c, "direct_10k/hit", &direct, "orders.4242", None);
    route_bench(c, "direct_10k/miss", &direct, "orders.x", None);

    let mut headers = FieldTable::new();
    headers.insert(ss("format"), "f3".into());
    headers.insert(ss("region"), "r43".into());
    headers.insert(ss("version"), FieldValue::I64(2));
    headers.insert(ss("trace-id"), "0123456789abcdef".into());
    route_bench(
        c,
        "headers_1k/all",
        &headers_table("all"),
        "",
        Some(&headers),
    );
    route_bench(
        c,
        "headers_1k/any",
        &headers_table("any"),
        "",
        Some(&headers),
    );
    for (name, keys, spread) in [("2k", 2_000, true), ("25k", 25_000, false)] {
        for mode in ["all", "any"] {
            route_bench(
                c,
                &format!("headers_unrelated_{name}/{mode}"),
                &headers_unrelated(mode, keys, spread),
                "",
                Some(&headers),
            );
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
