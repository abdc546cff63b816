//! Tunnel latency and throughput between two in-process brokers on loopback, with the
//! greeting service: `cargo bench --bench tunnels`.
//!
//! - Round trip: one hello at a time, each waiting for its hello-ok (A → B's service →
//!   A's): p50 and p99 over `TRIPS` trips, after a warm-up.
//! - Throughput: `BURST` hellos sent as fast as the window lets, until the last
//!   hello-ok is back: methods per second each way (both directions run at once).
//!
//! Prints one line per measure; the figures go in ARCHITECTURE.md, not in the code.

use std::time::{Duration, Instant};

use fedamq::auth::PasswordHash;
use fedamq::config::Config;
use fedamq::peering::Remote;
use fedamq::protocol::generated::methods::Method;
use fedamq::protocol::generated::services::{GREETING, Greeting};
use fedamq::tunnel::greeting::{Forward, hello};
use fedamq::tunnel::{PEERING_TAG, TunnelConfig, TunnelState, Tunnels};
use fedamq::{BrokerHandle, Server};
use tokio::sync::mpsc;

const WARM_UP: u64 = 1_000;
const TRIPS: u64 = 20_000;
const BURST: u64 = 200_000;

async fn start() -> BrokerHandle {
    let mut config = Config {
        bind: "127.0.0.1".parse().unwrap(),
        port: 0,
        ..Default::default()
    };
    config.management.port = None;
    config.prometheus.port = None;
    Server::start(config).await.expect("broker starts")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    // `cargo bench` passes --bench; a filter that is not ours skips the run.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"tunnels".contains(&a))
    {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let a = start().await;
        let b = start().await;
        let users = b.broker().users();
        users
            .add_user("link", PasswordHash::new("link"), vec![PEERING_TAG.into()])
            .unwrap();
        users.set_permissions("link", "/", ".*", ".*", ".*").unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel::<Method>();
        let t = Tunnels::of(a.broker())
            .open(
                TunnelConfig::new(Remote::from_uri(&b.url("link", "link")).unwrap()),
                &GREETING,
                |_| Box::new(Greeting(Forward(tx))),
            )
            .unwrap();
        let mut w = t.watch_status();
        while t.status().state != TunnelState::Open {
            w.changed().await.unwrap();
        }

        let mut lat = Vec::with_capacity(TRIPS as usize);
        for i in 0..WARM_UP + TRIPS {
            let t0 = Instant::now();
            t.send(hello(i, "ping")).await.unwrap();
            rx.recv().await.unwrap();
            if i >= WARM_UP {
                lat.push(t0.elapsed());
            }
        }
        lat.sort();
        println!(
            "tunnel round trip ({TRIPS} trips): p50 {:?}, p99 {:?}, max {:?}",
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            lat[lat.len() - 1]
        );

        let sender = t.sender();
        let t0 = Instant::now();
        let sending = tokio::spawn(async move {
            for i in 0..BURST {
                sender.send(hello(i, "x")).await.unwrap();
            }
        });
        for _ in 0..BURST {
            rx.recv().await.unwrap();
        }
        let took = t0.elapsed();
        sending.await.unwrap();
        println!(
            "tunnel throughput ({BURST} hellos and their hello-oks, window {}): {:.0} methods/s each way",
            fedamq::tunnel::DEFAULT_WINDOW,
            BURST as f64 / took.as_secs_f64()
        );
        t.close().await;
        a.shutdown().await;
        b.shutdown().await;
    });
}
