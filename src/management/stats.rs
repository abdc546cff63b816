//! `message_stats` as RabbitMQ shapes them: each counter, and beside it
//! `<counter>_details: {"rate": per second}`.
//!
//! Counts come from where the work is done: queues (`broker::queue::QueueCounters`,
//! under the queue's lock), exchanges (`ExchangeCounters`, added to once per publisher
//! batch), channels (`ChannelCounters`, in the connection task's own state, read
//! through its mailbox) and the broker's publish totals. Rates are sampled when the API
//! is asked: an object's rate is the change since the sample taken at least
//! [`INTERVAL`] before (RabbitMQ's default sample interval is 5 s). Nothing runs when
//! nobody asks, and the message path only counts.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::broker::channels::ChannelCounters;
use crate::broker::exchange::ExchangeCounters;
use crate::broker::hash::HashMap;
use crate::broker::publish::PublishCounts;
use crate::broker::queue::QueueCounters;

pub const INTERVAL: Duration = Duration::from_secs(5);

/// The counters in `message_stats`, in RabbitMQ's names.
pub fn named(c: &QueueCounters) -> [(&'static str, u64); 10] {
    [
        ("publish", c.publish),
        ("deliver", c.deliver),
        ("deliver_no_ack", c.deliver_no_ack),
        ("get", c.get),
        ("get_no_ack", c.get_no_ack),
        ("get_empty", c.get_empty),
        (
            "deliver_get",
            c.deliver + c.deliver_no_ack + c.get + c.get_no_ack,
        ),
        ("redeliver", c.redeliver),
        ("ack", c.ack),
        ("ack_ignored", 0),
    ]
}

pub fn add(total: &mut QueueCounters, c: &QueueCounters) {
    total.publish += c.publish;
    total.deliver += c.deliver;
    total.deliver_no_ack += c.deliver_no_ack;
    total.get += c.get;
    total.get_no_ack += c.get_no_ack;
    total.get_empty += c.get_empty;
    total.redeliver += c.redeliver;
    total.ack += c.ack;
}

/// An object's counters by RabbitMQ's names, in a fixed order per kind of object.
pub type Counts = Vec<(&'static str, u64)>;

/// A queue's counters as `message_stats` shows them (`ack_ignored` is never counted).
pub fn queue_counts(c: &QueueCounters) -> Counts {
    named(c)
        .into_iter()
        .filter(|(name, _)| *name != "ack_ignored")
        .collect()
}

/// An exchange's counters.
pub fn exchange_counts(c: &ExchangeCounters) -> Counts {
    vec![
        ("publish_in", c.publish_in.load(Ordering::Relaxed)),
        ("publish_out", c.publish_out.load(Ordering::Relaxed)),
    ]
}

/// A channel's counters.
pub fn channel_counts(c: &ChannelCounters) -> Counts {
    vec![
        ("publish", c.publish),
        ("confirm", c.confirm),
        ("return_unroutable", c.return_unroutable),
        ("drop_unroutable", c.drop_unroutable),
        ("deliver", c.deliver),
        ("deliver_no_ack", c.deliver_no_ack),
        ("get", c.get),
        ("get_no_ack", c.get_no_ack),
        ("get_empty", c.get_empty),
        (
            "deliver_get",
            c.deliver + c.deliver_no_ack + c.get + c.get_no_ack,
        ),
        ("redeliver", c.redeliver),
        ("ack", c.ack),
    ]
}

/// The node's: what publishers did (the broker's publish totals) and what consumers
/// did (summed over the queues).
pub fn overview_counts(p: &PublishCounts, queues: &QueueCounters) -> Counts {
    let mut counts = vec![
        ("publish", p.received),
        ("confirm", p.confirmed),
        ("return_unroutable", p.unroutable_returned),
        ("drop_unroutable", p.unroutable_dropped),
    ];
    counts.extend(
        queue_counts(queues)
            .into_iter()
            .filter(|(name, _)| *name != "publish"),
    );
    counts
}

#[derive(Debug)]
struct Sample {
    at: Instant,
    counts: Vec<u64>,
    rates: Vec<f64>,
}

/// Per-object samples, keyed by what the object is (`queue /%2f/name`, `overview`).
#[derive(Debug, Default)]
pub struct Rates {
    samples: Mutex<HashMap<String, Sample>>,
}

/// Which counters `message_stats` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Every counter, zero or not (queues, vhosts, the overview).
    All,
    /// Only groups of counters of which one moved, and no `message_stats` at all while
    /// none has: RabbitMQ creates an exchange's or channel's counters on their first
    /// increment, a group at a time. A counter in no group is a group of its own.
    Counted(&'static [&'static [&'static str]]),
}

/// A channel's counter groups, as RabbitMQ keeps them: what it published, and what it
/// was delivered or got and acknowledged.
pub const CHANNEL_GROUPS: &[&[&str]] = &[
    &["publish", "confirm", "return_unroutable", "drop_unroutable"],
    &[
        "deliver",
        "deliver_no_ack",
        "get",
        "get_no_ack",
        "get_empty",
        "deliver_get",
        "redeliver",
        "ack",
    ],
];

impl Shown {
    /// Whether `name` is shown, given every counter's count.
    fn shows(self, name: &str, counts: &Counts) -> bool {
        let Shown::Counted(groups) = self else {
            return true;
        };
        let moved = |n: &str| counts.iter().any(|(c, v)| *c == n && *v != 0);
        match groups.iter().find(|g| g.contains(&name)) {
            Some(group) => group.iter().any(|n| moved(n)),
            None => moved(name),
        }
    }
}

impl Rates {
    /// `message_stats` for a queue whose counters are now `now`.
    pub fn message_stats(&self, key: &str, now: &QueueCounters) -> Value {
        self.stats(key, &queue_counts(now), Shown::All)
            .unwrap_or_default()
    }

    /// `message_stats` for the object `key` whose counters are now `counts`; `None`
    /// when nothing is to be shown.
    pub fn stats(&self, key: &str, counts: &Counts, shown: Shown) -> Option<Value> {
        self.stats_at(key, counts, shown, Instant::now())
    }

    fn stats_at(&self, key: &str, counts: &Counts, shown: Shown, at: Instant) -> Option<Value> {
        if shown != Shown::All && counts.iter().all(|(_, n)| *n == 0) {
            return None;
        }
        let rates = self.rates(key, counts, at);
        let mut out = Map::new();
        for ((name, count), rate) in counts.iter().zip(rates) {
            if !shown.shows(name, counts) {
                continue;
            }
            out.insert((*name).into(), (*count).into());
            out.insert(format!("{name}_details"), json!({ "rate": rate }));
        }
        Some(Value::Object(out))
    }

    fn rates(&self, key: &str, counts: &Counts, at: Instant) -> Vec<f64> {
        let now: Vec<u64> = counts.iter().map(|(_, n)| *n).collect();
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        match samples.get_mut(key) {
            Some(s) if s.counts.len() == now.len() => {
                let elapsed = at.duration_since(s.at);
                if elapsed >= INTERVAL {
                    let secs = elapsed.as_secs_f64();
                    for (i, (n, b)) in now.iter().zip(&s.counts).enumerate() {
                        s.rates[i] = n.saturating_sub(*b) as f64 / secs;
                    }
                    s.at = at;
                    s.counts = now;
                }
                s.rates.clone()
            }
            _ => {
                let rates = vec![0.0; now.len()];
                samples.insert(
                    key.to_string(),
                    Sample {
                        at,
                        counts: now,
                        rates: rates.clone(),
                    },
                );
                rates
            }
        }
    }

    /// Forgets samples of objects not in `live` (deleted queues).
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| live(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_the_change_per_second_over_a_sample_interval() {
        let rates = Rates::default();
        let t0 = Instant::now();
        let mut c = QueueCounters {
            publish: 100,
            ..Default::default()
        };
        let s = rates
            .stats_at("q", &queue_counts(&c), Shown::All, t0)
            .unwrap();
        assert_eq!(s["publish"], 100);
        assert_eq!(s["publish_details"]["rate"], 0.0);
        // Within the interval: the last rate stands.
        c.publish = 150;
        c.deliver = 20;
        c.get_no_ack = 5;
        let s = rates
            .stats_at(
                "q",
                &queue_counts(&c),
                Shown::All,
                t0 + Duration::from_secs(1),
            )
            .unwrap();
        assert_eq!(s["publish_details"]["rate"], 0.0);
        // After it: the change since the last sample.
        let s = rates
            .stats_at("q", &queue_counts(&c), Shown::All, t0 + INTERVAL)
            .unwrap();
        assert_eq!(s["publish_details"]["rate"], 10.0);
        assert_eq!(s["deliver_get"], 25);
        assert_eq!(s["deliver_get_details"]["rate"], 5.0);
        assert!(s.get("ack_ignored").is_none());
        rates.retain(|_| false);
        let s = rates
            .stats_at("q", &queue_counts(&c), Shown::All, t0 + 2 * INTERVAL)
            .unwrap();
        assert_eq!(
            s["publish_details"]["rate"], 0.0,
            "a new sample after retain"
        );
    }

    #[test]
    fn counted_objects_show_only_the_counters_that_moved() {
        let rates = Rates::default();
        let t0 = Instant::now();
        let none = vec![("publish_in", 0), ("publish_out", 0)];
        assert_eq!(rates.stats_at("x", &none, Shown::Counted(&[]), t0), None);
        let some = vec![("publish_in", 3), ("publish_out", 0)];
        let s = rates.stats_at("x", &some, Shown::Counted(&[]), t0).unwrap();
        assert_eq!(s["publish_in"], 3);
        assert!(s.get("publish_out").is_none());
        assert_eq!(s["publish_in_details"]["rate"], 0.0);
        // A group shows whole once one of its counters moved.
        let c = ChannelCounters {
            deliver: 2,
            ..Default::default()
        };
        let s = rates
            .stats_at("c", &channel_counts(&c), Shown::Counted(CHANNEL_GROUPS), t0)
            .unwrap();
        assert_eq!(
            (&s["deliver"], &s["get"], &s["ack"]),
            (&json!(2), &json!(0), &json!(0))
        );
        assert!(s.get("publish").is_none());
    }
}
