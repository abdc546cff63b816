//! A checker for the HA pair's fault tests, in the spirit of Jepsen's `total-queue`:
//! publishers (lapin, with confirms) that fail over between the members' client
//! addresses, an optional live consumer, and at the end a drain of every running member
//! as an administrator (always admitted, even on a passive member). It reports
//! confirmed messages lost, duplicates, ids never published, and where messages were
//! found.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::time::Instant;

use super::ha_pair::{HaPair, Role};

/// The queue the checker publishes to and consumes from.
pub const QUEUE: &str = "ha-checker";

/// What the publisher and consumers did, shared with the test while they run.
#[derive(Default)]
struct Record {
    /// Ids confirmed (ack) by a broker, with where and when.
    confirmed: BTreeMap<u64, (Role, Instant)>,
    /// Ids published whose outcome is unknown (the connection went first) or nacked.
    unconfirmed: BTreeSet<u64>,
    /// Every id received by a consumer (repeats kept).
    received: Vec<(u64, Role)>,
    /// (time, member) of every connection the publisher made.
    publisher_connections: Vec<(Instant, Role)>,
}

/// The checker's verdict.
#[derive(Debug, Clone)]
pub struct Report {
    pub published: u64,
    pub confirmed: usize,
    pub unconfirmed: usize,
    /// Confirmed ids no consumer received.
    pub lost: Vec<u64>,
    /// Ids received more than once, and how many times.
    pub duplicates: BTreeMap<u64, usize>,
    /// Ids received that were never published.
    pub unexpected: Vec<u64>,
    /// Ids received at each member (drain and live consumer together).
    pub received_at: BTreeMap<&'static str, usize>,
    /// The longest time between two confirms seen by the publisher.
    pub longest_confirm_gap: Duration,
    /// Publisher connections made, by member.
    pub connections: BTreeMap<&'static str, usize>,
}

/// A publisher (and optionally a live consumer) over both client addresses.
pub struct Checker {
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
    next_id: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    admin_urls: [(Role, String); 2],
}

/// Bounds each step of a client: a paused broker answers nothing.
const CLIENT_PATIENCE: Duration = Duration::from_secs(2);

async fn connect(url: &str) -> Option<Connection> {
    tokio::time::timeout(
        CLIENT_PATIENCE,
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .ok()?
    .ok()
}

async fn declare(ch: &lapin::Channel) -> bool {
    matches!(
        tokio::time::timeout(
            CLIENT_PATIENCE,
            ch.queue_declare(
                QUEUE,
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await,
        Ok(Ok(_))
    )
}

impl Checker {
    /// Starts publishing as `app` through the pair's client proxies, first to the
    /// primary, moving to the other address whenever a connection fails or a confirm
    /// does not come within 2 s. With `live_consumer`, also consumes (acking) as it
    /// goes, following the active member the same way.
    pub fn start(pair: &HaPair, live_consumer: bool) -> Checker {
        let urls = [
            (Role::Primary, pair.client_url(Role::Primary, "app", "app")),
            (Role::Backup, pair.client_url(Role::Backup, "app", "app")),
        ];
        let admin_urls = [
            (
                Role::Primary,
                pair.client_url(Role::Primary, "guest", "guest"),
            ),
            (
                Role::Backup,
                pair.client_url(Role::Backup, "guest", "guest"),
            ),
        ];
        let mut c = Checker {
            record: Arc::default(),
            stop: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
            tasks: Vec::new(),
            admin_urls,
        };
        c.tasks.push(tokio::spawn(publish(
            urls.to_vec(),
            c.record.clone(),
            c.stop.clone(),
            c.next_id.clone(),
        )));
        if live_consumer {
            c.tasks.push(tokio::spawn(consume(
                urls,
                c.record.clone(),
                c.stop.clone(),
            )));
        }
        c
    }

    /// Another publisher into the same record (ids stay unique), going round the
    /// addresses of `members` in that order (one member: a client that knows only it,
    /// as one on its side of a split would).
    pub fn add_publisher(&mut self, pair: &HaPair, members: &[Role]) {
        let urls: Vec<(Role, String)> = members
            .iter()
            .map(|r| (*r, pair.client_url(*r, "app", "app")))
            .collect();
        self.tasks.push(tokio::spawn(publish(
            urls,
            self.record.clone(),
            self.stop.clone(),
            self.next_id.clone(),
        )));
    }

    /// Confirms from `role` so far.
    pub fn confirmed_by(&self, role: Role) -> usize {
        self.record
            .lock()
            .unwrap()
            .confirmed
            .values()
            .filter(|(r, _)| *r == role)
            .count()
    }

    pub fn confirmed(&self) -> usize {
        self.record.lock().unwrap().confirmed.len()
    }

    /// When the last confirm came, and from which member.
    pub fn last_confirm(&self) -> Option<(Role, Instant)> {
        self.record
            .lock()
            .unwrap()
            .confirmed
            .values()
            .max_by_key(|(_, t)| *t)
            .copied()
    }

    /// Ids handed out so far (published or being published).
    pub fn published(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed) - 1
    }

    /// Who confirmed `id`, and when.
    pub fn confirm_of(&self, id: u64) -> Option<(Role, Instant)> {
        self.record.lock().unwrap().confirmed.get(&id).copied()
    }

    /// The first confirm from `role` after `after`.
    pub fn first_confirm_from(&self, role: Role, after: Instant) -> Option<Instant> {
        self.record
            .lock()
            .unwrap()
            .confirmed
            .values()
            .filter(|(r, t)| *r == role && *t > after)
            .map(|(_, t)| *t)
            .min()
    }

    /// Waits until `pred` holds for the checker, or panics after `patience`.
    pub async fn wait_for(&self, what: &str, patience: Duration, pred: impl Fn(&Checker) -> bool) {
        let deadline = Instant::now() + patience;
        while !pred(self) {
            assert!(
                Instant::now() < deadline,
                "checker: never {what} (confirmed {})",
                self.confirmed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the clients, drains both members (as guest, an administrator: admitted
    /// even on a passive member; one not running is skipped) and reports.
    pub async fn finish(mut self, pair: &HaPair) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        for (role, url) in self.admin_urls.clone() {
            if !pair.member(role).is_running() {
                continue;
            }
            drain(&url, role, &self.record).await;
        }
        let r = self.record.lock().unwrap();
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        let mut received_at: BTreeMap<&'static str, usize> = BTreeMap::new();
        for (id, role) in &r.received {
            *counts.entry(*id).or_default() += 1;
            *received_at.entry(role.name()).or_default() += 1;
        }
        let published = self.next_id.load(Ordering::Relaxed) - 1;
        let lost = r
            .confirmed
            .keys()
            .filter(|id| !counts.contains_key(id))
            .copied()
            .collect();
        let duplicates = counts
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, n)| (*id, *n))
            .collect();
        let unexpected = counts
            .keys()
            .filter(|id| **id == 0 || **id > published)
            .copied()
            .collect();
        let mut times: Vec<Instant> = r.confirmed.values().map(|(_, t)| *t).collect();
        times.sort();
        let longest_confirm_gap = times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        let mut connections: BTreeMap<&'static str, usize> = BTreeMap::new();
        for (_, role) in &r.publisher_connections {
            *connections.entry(role.name()).or_default() += 1;
        }
        Report {
            published,
            confirmed: r.confirmed.len(),
            unconfirmed: r.unconfirmed.len(),
            lost,
            duplicates,
            unexpected,
            received_at,
            longest_confirm_gap,
            connections,
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Publishes ids 1, 2, ... one at a time, each waited for (confirm or failure) before
/// the next, moving between the two addresses on any failure.
async fn publish(
    urls: Vec<(Role, String)>,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
    next_id: Arc<AtomicU64>,
) {
    let mut at = 0;
    while !stop.load(Ordering::Relaxed) {
        let (role, url) = &urls[at];
        let Some(conn) = connect(url).await else {
            at = (at + 1) % urls.len();
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        record
            .lock()
            .unwrap()
            .publisher_connections
            .push((Instant::now(), *role));
        let ch = match tokio::time::timeout(CLIENT_PATIENCE, conn.create_channel()).await {
            Ok(Ok(ch)) => ch,
            _ => {
                at = (at + 1) % urls.len();
                continue;
            }
        };
        let ok = matches!(
            tokio::time::timeout(
                CLIENT_PATIENCE,
                ch.confirm_select(ConfirmSelectOptions::default())
            )
            .await,
            Ok(Ok(()))
        ) && declare(&ch).await;
        if !ok {
            at = (at + 1) % urls.len();
            continue;
        }
        while !stop.load(Ordering::Relaxed) {
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            let outcome = tokio::time::timeout(CLIENT_PATIENCE, async {
                let pending = ch
                    .basic_publish(
                        "",
                        QUEUE,
                        BasicPublishOptions::default(),
                        id.to_string().as_bytes(),
                        BasicProperties::default(),
                    )
                    .await?;
                pending.await
            })
            .await;
            match outcome {
                Ok(Ok(c)) if c.is_ack() => {
                    record
                        .lock()
                        .unwrap()
                        .confirmed
                        .insert(id, (*role, Instant::now()));
                }
                Ok(Ok(_)) => {
                    record.lock().unwrap().unconfirmed.insert(id);
                }
                _ => {
                    record.lock().unwrap().unconfirmed.insert(id);
                    break;
                }
            }
        }
        // A paused broker would hold a polite close: don't wait for it.
        let _ = tokio::time::timeout(Duration::from_millis(200), conn.close(200, "bye")).await;
        at = (at + 1) % urls.len();
    }
}

fn id_of(data: &[u8]) -> u64 {
    std::str::from_utf8(data)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Consumes with manual acks (each id recorded before its ack), following whichever
/// member admits it. On leaving a member it closes the channel first, which gives
/// back what it had not taken, for the next consumer or the final drain.
async fn consume(urls: [(Role, String); 2], record: Arc<Mutex<Record>>, stop: Arc<AtomicBool>) {
    let mut at = 0;
    while !stop.load(Ordering::Relaxed) {
        let (role, url) = &urls[at];
        at = 1 - at;
        let Some(conn) = connect(url).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(Ok(ch)) = tokio::time::timeout(CLIENT_PATIENCE, conn.create_channel()).await else {
            continue;
        };
        if !declare(&ch).await {
            continue;
        }
        let Ok(Ok(mut consumer)) = tokio::time::timeout(
            CLIENT_PATIENCE,
            ch.basic_consume(
                QUEUE,
                "checker",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        else {
            continue;
        };
        // Until the connection fails, or nothing comes for a while (a paused broker
        // looks like a quiet one: move on and come back).
        while !stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_secs(3), consumer.next()).await {
                Ok(Some(Ok(d))) => {
                    record
                        .lock()
                        .unwrap()
                        .received
                        .push((id_of(&d.data), *role));
                    let _ =
                        tokio::time::timeout(CLIENT_PATIENCE, d.ack(BasicAckOptions::default()))
                            .await;
                }
                Ok(_) | Err(_) => break,
            }
        }
        let _ = tokio::time::timeout(CLIENT_PATIENCE, ch.close(200, "bye")).await;
        let _ = tokio::time::timeout(Duration::from_millis(200), conn.close(200, "bye")).await;
    }
}

/// Takes everything queued on one member with basic.get (acked), recording each.
async fn drain(url: &str, role: Role, record: &Mutex<Record>) {
    let Some(conn) = connect(url).await else {
        return;
    };
    let Ok(Ok(ch)) = tokio::time::timeout(CLIENT_PATIENCE, conn.create_channel()).await else {
        return;
    };
    if !declare(&ch).await {
        return;
    }
    loop {
        let got = tokio::time::timeout(
            CLIENT_PATIENCE,
            ch.basic_get(QUEUE, BasicGetOptions::default()),
        )
        .await;
        let Ok(Ok(Some(m))) = got else { break };
        record
            .lock()
            .unwrap()
            .received
            .push((id_of(&m.delivery.data), role));
        let _ = m.delivery.ack(BasicAckOptions::default()).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, "bye")).await;
}
