//! `fedamq-perf`: a load generator for any AMQP 0-9-1 broker, built on fedamq's own
//! protocol layer. Flag names follow RabbitMQ PerfTest (`-x -y -s -a -q -A -c -r -z -C -D
//! -u -e -t -k -f --queue-pattern`); `fedamq-perf --help` lists them.
//!
//! It reports publish, confirm and consume rates each second and at the end, end-to-end
//! latency (send time in the first 8 octets of each body) and confirm latency as
//! p50/p95/p99/p99.9; `--json` prints the final result as one JSON object.

mod args;
mod client;
mod consumer;
mod producer;
mod stats;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::sync::watch;
use tokio::task::JoinSet;

use args::Args;
use client::{AmqpUri, Conn};
use consumer::{ConsumerConfig, ConsumerOutcome};
use producer::{ProducerConfig, ProducerOutcome, Writes};
use stats::{Counters, Histogram, Latencies, Second, SharedLatencies, Summary, fmt_us, lock};

const CHANNEL: u16 = 1;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("fedamq-perf: {e}");
        return ExitCode::from(2);
    }
    let uri = match AmqpUri::from_uri(&args.uri) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("fedamq-perf: {e}");
            return ExitCode::from(2);
        }
    };
    // One socket per producer, consumer or idle connection.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fedamq-perf: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let summary = runtime.block_on(async {
        if args.connections > 0 {
            idle_connections(&args, &uri).await
        } else {
            run(&args, &uri).await
        }
    });
    match summary {
        Ok(s) => {
            if args.json {
                match serde_json::to_string(&s) {
                    Ok(j) => println!("{j}"),
                    Err(e) => eprintln!("fedamq-perf: {e}"),
                }
            } else {
                s.print_text();
            }
            if s.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("fedamq-perf: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Per-second lines go to stderr with --json (stdout is for the JSON), else to stdout.
fn progress(args: &Args, line: &str) {
    if args.quiet {
        return;
    }
    if args.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// Declares the exchange, queues and bindings on a connection kept for the cleanup.
async fn declare(args: &Args, setup: &mut Conn, queues: &[String]) -> client::Result<()> {
    if args.predeclared {
        return Ok(());
    }
    let declare_exchange = !args.exchange.is_empty() && !args.exchange.starts_with("amq.");
    if declare_exchange {
        setup
            .declare_exchange(CHANNEL, &args.exchange, &args.exchange_type)
            .await?;
    }
    for q in queues {
        setup.declare_queue(CHANNEL, q, args.auto_delete).await?;
        if !args.exchange.is_empty() {
            let key = args.routing_key.as_deref().unwrap_or(q);
            let arguments = args
                .headers()
                .map(|(binding, _)| binding)
                .unwrap_or_default();
            setup
                .bind_queue(CHANNEL, q, &args.exchange, key, arguments)
                .await?;
        }
    }
    Ok(())
}

async fn cleanup(args: &Args, setup: &mut Conn, queues: &[String]) -> client::Result<()> {
    for q in queues {
        setup.delete_queue(CHANNEL, q).await?;
    }
    if !args.predeclared && !args.exchange.is_empty() && !args.exchange.starts_with("amq.") {
        setup.delete_exchange(CHANNEL, &args.exchange).await?;
    }
    Ok(())
}

fn summary_base(args: &Args, conn: Option<&Conn>, queues: usize) -> Summary {
    Summary {
        broker: conn.map(|c| c.server()).unwrap_or_default(),
        tls: conn.and_then(|c| client::tls_description(&c.stream)),
        producers: args.producers,
        consumers: args.consumers,
        size: args.size,
        queues,
        duration_s: 0.0,
        published: 0,
        unbatched: args.unbatched,
        publish_writes: 0,
        publish_rate: 0.0,
        publish_mib_s: 0.0,
        confirmed: 0,
        nacked: 0,
        returned: 0,
        consumed: 0,
        consume_rate: 0.0,
        consume_mib_s: 0.0,
        latency_us: None,
        confirm_latency_us: None,
        connections_opened: 0,
        connect_time_s: 0.0,
        per_second: Vec::new(),
        errors: Vec::new(),
    }
}

enum Outcome {
    Producer(ProducerOutcome),
    Consumer(ConsumerOutcome),
}

async fn run(args: &Args, uri: &AmqpUri) -> Result<Summary, String> {
    let queues = args.queues();
    let mut setup = client::connect(uri)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.uri))?;
    setup
        .open_channel(CHANNEL)
        .await
        .map_err(|e| e.to_string())?;
    declare(args, &mut setup, &queues)
        .await
        .map_err(|e| format!("declaring: {e}"))?;
    let mut summary = summary_base(args, Some(&setup), queues.len());

    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);

    // Consumers first, so nothing published is missed.
    let mut consumer_conns = Vec::with_capacity(args.consumers);
    for j in 0..args.consumers {
        let mut c = client::connect(uri)
            .await
            .map_err(|e| format!("consumer {j}: {e}"))?;
        let queue = &queues[j % queues.len()];
        let setup_consumer = async {
            c.open_channel(CHANNEL).await?;
            if args.qos > 0 {
                c.qos(CHANNEL, args.qos).await?;
            }
            c.consume(CHANNEL, queue, &format!("fedamq-perf-{j}"), args.autoack)
                .await
        };
        setup_consumer
            .await
            .map_err(|e| format!("consumer {j} on {queue}: {e}"))?;
        consumer_conns.push(c);
    }
    let mut producer_conns = Vec::with_capacity(args.producers);
    for i in 0..args.producers {
        let mut c = client::connect(uri)
            .await
            .map_err(|e| format!("producer {i}: {e}"))?;
        let setup_producer = async {
            c.open_channel(CHANNEL).await?;
            if args.confirm.is_some() {
                c.confirm_select(CHANNEL).await?;
            }
            Ok::<_, client::Error>(())
        };
        setup_producer
            .await
            .map_err(|e| format!("producer {i}: {e}"))?;
        producer_conns.push(c);
    }

    let start = Instant::now();
    let mut tasks = JoinSet::new();
    let mut consumer_latency: Vec<SharedLatencies> = Vec::new();
    let mut confirm_latency: Vec<SharedLatencies> = Vec::new();
    let consumer_cfg = Arc::new(ConsumerConfig {
        channel: CHANNEL,
        no_ack: args.autoack,
        multi_ack: args.effective_multi_ack(),
        count: args.cmessages,
        no_read: args.no_read,
    });
    for c in consumer_conns {
        let l = SharedLatencies::default();
        consumer_latency.push(l.clone());
        let fut = consumer::run(
            c,
            consumer_cfg.clone(),
            counters.clone(),
            l,
            stop_rx.clone(),
        );
        tasks.spawn(async move { Outcome::Consumer(fut.await) });
    }
    for (i, c) in producer_conns.into_iter().enumerate() {
        let routing_key = match &args.routing_key {
            Some(k) => k.clone(),
            None => queues[i % queues.len()].clone(),
        };
        let cfg = Arc::new(ProducerConfig {
            channel: CHANNEL,
            exchange: args.exchange.clone(),
            routing_key,
            size: args.size,
            persistent: args.persistent(),
            mandatory: args.mandatory(),
            confirm: args.confirm,
            rate: args.rate,
            count: args.pmessages,
            writes: if args.unbatched {
                Writes::PerPublish
            } else {
                Writes::Batched
            },
            headers: args.headers().map(|(_, message)| message),
            no_read: args.no_read,
        });
        let l = SharedLatencies::default();
        confirm_latency.push(l.clone());
        let fut = producer::run(c, cfg, counters.clone(), l, stop_rx.clone());
        tasks.spawn(async move { Outcome::Producer(fut.await) });
    }
    if args.time == 0.0
        && ((args.producers > 0 && args.pmessages == 0)
            || (args.consumers > 0 && args.cmessages == 0))
    {
        progress(
            args,
            "fedamq-perf: no -z and no message count on every side: running until Ctrl-C",
        );
    }

    // The per-second report, until every task is done or the time is up.
    let deadline = (args.time > 0.0).then(|| start + Duration::from_secs_f64(args.time));
    let mut tick = tokio::time::interval_at(
        (start + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    let mut last = [0u64; 3];
    let mut last_t = 0.0;
    let mut interval = Histogram::new();
    let mut outcomes = Vec::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut stopped = false;
    loop {
        let remaining = tasks.len();
        if remaining == 0 {
            break;
        }
        tokio::select! {
            Some(joined) = tasks.join_next() => match joined {
                Ok(o) => outcomes.push(o),
                Err(e) => summary.errors.push(format!("task failed: {e}")),
            },
            _ = tick.tick() => {
                let t = start.elapsed().as_secs_f64();
                let now = [
                    Counters::get(&counters.published),
                    Counters::get(&counters.confirmed),
                    Counters::get(&counters.consumed),
                ];
                let dt = (t - last_t).max(1e-9);
                interval.clear();
                for l in &consumer_latency {
                    let mut g = lock(l);
                    interval.add(&g.interval);
                    g.interval.clear();
                }
                for l in &confirm_latency {
                    lock(l).interval.clear();
                }
                let p50 = interval.percentile(50.0).map(|ns| ns as f64 / 1_000.0);
                let p99 = interval.percentile(99.0).map(|ns| ns as f64 / 1_000.0);
                let second = Second {
                    t,
                    published: (now[0] - last[0]) as f64 / dt,
                    confirmed: (now[1] - last[1]) as f64 / dt,
                    consumed: (now[2] - last[2]) as f64 / dt,
                    latency_p50_us: p50,
                    latency_p99_us: p99,
                };
                progress(args, &format!(
                    "{:>6.1}s  sent {:>9.0} msg/s  confirmed {:>9.0} msg/s  received {:>9.0} msg/s  latency p50 {} p99 {}",
                    t, second.published, second.confirmed, second.consumed, fmt_us(p50), fmt_us(p99)
                ));
                summary.per_second.push(second);
                last = now;
                last_t = t;
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or(start).into()), if deadline.is_some() && !stopped => {
                stopped = true;
                let _ = stop_tx.send(true);
            }
            _ = &mut ctrl_c, if !stopped => {
                stopped = true;
                let _ = stop_tx.send(true);
            }
        }
    }
    let duration = start.elapsed().as_secs_f64();

    // Publishing time: until the broker took in the last message; consuming time: until
    // the last delivery (or the deadline).
    let mut publish_end = start;
    let mut consume_end = start;
    for o in &outcomes {
        match o {
            Outcome::Producer(p) => {
                summary.published += p.published;
                publish_end = publish_end.max(p.end);
                if let Some(e) = &p.error {
                    summary.errors.push(format!("producer: {e}"));
                }
            }
            Outcome::Consumer(c) => {
                summary.consumed += c.consumed;
                consume_end = consume_end.max(c.end);
                if let Some(e) = &c.error {
                    summary.errors.push(format!("consumer: {e}"));
                }
            }
        }
    }
    summary.duration_s = duration;
    summary.confirmed = Counters::get(&counters.confirmed);
    summary.nacked = Counters::get(&counters.nacked);
    summary.returned = Counters::get(&counters.returned);
    summary.publish_writes = Counters::get(&counters.writes);
    let rate = |n: u64, end: Instant| {
        let secs = end.duration_since(start).as_secs_f64();
        if secs > 0.0 { n as f64 / secs } else { 0.0 }
    };
    summary.publish_rate = rate(summary.published, publish_end);
    summary.consume_rate = rate(summary.consumed, consume_end);
    let mib = args.size as f64 / (1024.0 * 1024.0);
    summary.publish_mib_s = summary.publish_rate * mib;
    summary.consume_mib_s = summary.consume_rate * mib;
    summary.latency_us = merged(&consumer_latency).summary_us();
    summary.confirm_latency_us = merged(&confirm_latency).summary_us();

    if args.cleanup {
        if let Err(e) = cleanup(args, &mut setup, &queues).await {
            summary.errors.push(format!("cleanup: {e}"));
        }
    }
    let _ = setup.close().await;
    Ok(summary)
}

fn merged(all: &[SharedLatencies]) -> Histogram {
    let mut h = Histogram::new();
    for l in all {
        let g: std::sync::MutexGuard<'_, Latencies> = lock(l);
        h.add(&g.total);
    }
    h
}

/// `--connections N`: N connections with a channel each, held open for -z seconds.
async fn idle_connections(args: &Args, uri: &AmqpUri) -> Result<Summary, String> {
    const AT_ONCE: usize = 50;
    let start = Instant::now();
    let mut conns: Vec<Conn> = Vec::with_capacity(args.connections);
    let mut errors = Vec::new();
    let mut opening = JoinSet::new();
    let mut next = 0;
    while conns.len() + errors.len() < args.connections {
        while next < args.connections && opening.len() < AT_ONCE {
            let uri = uri.clone();
            opening.spawn(async move {
                let mut c = client::connect(&uri).await?;
                c.open_channel(CHANNEL).await?;
                Ok::<_, client::Error>(c)
            });
            next += 1;
        }
        match opening.join_next().await {
            Some(Ok(Ok(c))) => conns.push(c),
            Some(Ok(Err(e))) => errors.push(e.to_string()),
            Some(Err(e)) => errors.push(e.to_string()),
            None => break,
        }
    }
    let connect_time = start.elapsed().as_secs_f64();
    let mut summary = summary_base(args, conns.first(), 0);
    summary.producers = 0;
    summary.consumers = 0;
    summary.connections_opened = conns.len();
    summary.connect_time_s = connect_time;
    eprintln!(
        "fedamq-perf: {} connections open ({} failed) in {connect_time:.2} s",
        conns.len(),
        errors.len()
    );
    if let Some(e) = errors.first() {
        summary
            .errors
            .push(format!("{} connections failed, first: {e}", errors.len()));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.time)).await;
    let mut closing = JoinSet::new();
    for mut c in conns {
        closing.spawn(async move { c.close().await });
    }
    while closing.join_next().await.is_some() {}
    summary.duration_s = start.elapsed().as_secs_f64();
    Ok(summary)
}
