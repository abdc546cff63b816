//! Extending broker-to-broker behaviour by writing XML, end to end: the `counter`
//! service exists only in a test overlay (tests/overlays/tunnel-counter.xml, class
//! 1901). `cargo xtask codegen` checked it against spec/ and wrote its Rust to
//! tests/support/generated/tunnel_counter.rs (`--check` keeps it current); this test
//! implements the trait it asks for, registers it on two in-process brokers, and the
//! brokers exchange its methods both ways. Neither broker's spec knows the class: the
//! tunnel carries its methods as they were encoded.

mod support;

#[path = "support/generated/tunnel_counter.rs"]
mod tunnel_counter;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedamq::BrokerHandle;
use fedamq::auth::password::PasswordHash;
use fedamq::peering::{Backoff, Remote};
use fedamq::protocol::ShortString;
use fedamq::tunnel::{PEERING_TAG, TunnelConfig, TunnelSender, TunnelState, Tunnels};
use support::broker;
use tokio::sync::mpsc;
use tunnel_counter::{COUNTER, Counter, CounterAdd, CounterAdded, CounterService};

/// Guards against a hang; no assertion is about time.
const PATIENCE: Duration = Duration::from_secs(60);

/// One side's counter: adds what the other side sends and answers with the total;
/// the answers it gets are handed to `seen`.
struct Tally {
    total: u64,
    holder: ShortString,
    /// Answers go out in order through one task, which waits when the window is full
    /// (a handler must not wait).
    answers: mpsc::UnboundedSender<CounterAdded>,
    seen: mpsc::UnboundedSender<CounterAdded>,
}

impl Tally {
    fn new(sender: TunnelSender, holder: &str, seen: mpsc::UnboundedSender<CounterAdded>) -> Tally {
        let (answers, mut rx) = mpsc::unbounded_channel::<CounterAdded>();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sender.send(m).await.is_err() {
                    return;
                }
            }
        });
        Tally {
            total: 0,
            holder: ShortString::try_from(holder).unwrap(),
            answers,
            seen,
        }
    }
}

impl CounterService for Tally {
    fn add(&mut self, method: CounterAdd) {
        assert_eq!(method.note, "from the other side");
        self.total += u64::from(method.amount);
        let _ = self.answers.send(CounterAdded {
            serial: method.serial,
            total: self.total,
            holder: self.holder.clone(),
        });
    }

    fn added(&mut self, method: CounterAdded) {
        let _ = self.seen.send(method);
    }
}

fn add(serial: u64) -> CounterAdd {
    CounterAdd {
        serial,
        amount: serial as u32,
        note: ShortString::from_static("from the other side"),
    }
}

fn add_link_user(b: &BrokerHandle) {
    let users = b.broker().users();
    users
        .add_user("link", PasswordHash::new("link"), vec![PEERING_TAG.into()])
        .unwrap();
    users
        .set_permissions("link", "/", ".*", ".*", ".*")
        .unwrap();
}

/// Receives `n` answers: serials 1..=n in order, the running totals, from `holder`.
async fn expect_answers(rx: &mut mpsc::UnboundedReceiver<CounterAdded>, n: u64, holder: &str) {
    let mut total = 0;
    for serial in 1..=n {
        let got = tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .expect("an answer in time")
            .expect("the tunnel lives");
        total += serial;
        assert_eq!((got.serial, got.total), (serial, total), "in order, once");
        assert_eq!(got.holder, holder);
    }
}

#[tokio::test]
async fn a_service_written_only_in_a_test_overlay_runs_between_two_brokers() {
    let a = broker::start().await;
    let b = broker::start().await;
    add_link_user(&b);
    // The overlay's service on b (the accepting side): its sender is kept so b can
    // send too.
    let (b_seen_tx, mut b_seen) = mpsc::unbounded_channel();
    let b_sender: Arc<Mutex<Option<TunnelSender>>> = Arc::default();
    let keep = b_sender.clone();
    Tunnels::of(b.broker()).register(&COUNTER, move |sender| {
        *keep.lock().unwrap() = Some(sender.clone());
        Box::new(Counter(Tally::new(sender, "b", b_seen_tx.clone())))
    });
    // …and on a, which opens the tunnel to b.
    let (a_seen_tx, mut a_seen) = mpsc::unbounded_channel();
    let mut config = TunnelConfig::new(Remote::from_uri(&b.url("link", "link")).unwrap());
    config.peering.reconnect = Some(Backoff {
        min: Duration::from_millis(5),
        max: Duration::from_millis(50),
    });
    let t = Tunnels::of(a.broker())
        .open(config, &COUNTER, |sender| {
            Box::new(Counter(Tally::new(sender, "a", a_seen_tx)))
        })
        .unwrap();

    // a → b: b's counter adds and answers.
    for serial in 1..=100 {
        t.send(add(serial)).await.unwrap();
    }
    expect_answers(&mut a_seen, 100, "b").await;
    assert_eq!(t.status().state, TunnelState::Open);

    // b → a, on the same tunnel.
    let from_b = b_sender.lock().unwrap().clone().expect("b's side was made");
    for serial in 1..=100 {
        from_b.send(add(serial)).await.unwrap();
    }
    expect_answers(&mut b_seen, 100, "a").await;

    let s = t.status();
    assert_eq!((s.counters.sent, s.counters.received), (200, 200));
    assert!(
        a_seen.try_recv().is_err() && b_seen.try_recv().is_err(),
        "nothing twice"
    );
    // A method of another service is refused at the sender.
    assert!(
        t.send(fedamq::tunnel::greeting::hello(1, "wrong class"))
            .await
            .is_err()
    );
    t.close().await;
}
