//! `message_stats` as RabbitMQ shapes them: each counter, and beside it
//! `<counter>_details: {"rate": per second}`.
//!
//! Rates come from the queues' counters (`broker::queue::QueueCounters`), sampled when
//! the API is asked: an object's rate is the change since the sample taken at least
//! [`INTERVAL`] before (RabbitMQ's default sample interval is 5 s). Nothing runs when
//! nobody asks, and the message path only counts.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::broker::hash::HashMap;
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

#[derive(Debug)]
struct Sample {
    at: Instant,
    counters: QueueCounters,
    rates: [f64; 10],
}

/// Per-object samples, keyed by what the object is (`queue /%2f/name`, `overview`).
#[derive(Debug, Default)]
pub struct Rates {
    samples: Mutex<HashMap<String, Sample>>,
}

impl Rates {
    /// `message_stats` for an object whose counters are now `now`.
    pub fn message_stats(&self, key: &str, now: &QueueCounters) -> Value {
        self.message_stats_at(key, now, Instant::now())
    }

    fn message_stats_at(&self, key: &str, now: &QueueCounters, at: Instant) -> Value {
        let rates = self.rates(key, now, at);
        let mut out = Map::new();
        for ((name, count), rate) in named(now).into_iter().zip(rates) {
            if name == "ack_ignored" {
                continue;
            }
            out.insert(name.into(), count.into());
            out.insert(format!("{name}_details"), json!({ "rate": rate }));
        }
        Value::Object(out)
    }

    fn rates(&self, key: &str, now: &QueueCounters, at: Instant) -> [f64; 10] {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        match samples.get_mut(key) {
            None => {
                samples.insert(
                    key.to_string(),
                    Sample {
                        at,
                        counters: *now,
                        rates: [0.0; 10],
                    },
                );
                [0.0; 10]
            }
            Some(s) => {
                let elapsed = at.duration_since(s.at);
                if elapsed >= INTERVAL {
                    let secs = elapsed.as_secs_f64();
                    let before = named(&s.counters);
                    for (i, ((_, n), (_, b))) in named(now).iter().zip(before).enumerate() {
                        s.rates[i] = (n.saturating_sub(b)) as f64 / secs;
                    }
                    s.at = at;
                    s.counters = *now;
                }
                s.rates
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
        let s = rates.message_stats_at("q", &c, t0);
        assert_eq!(s["publish"], 100);
        assert_eq!(s["publish_details"]["rate"], 0.0);
        // Within the interval: the last rate stands.
        c.publish = 150;
        c.deliver = 20;
        c.get_no_ack = 5;
        let s = rates.message_stats_at("q", &c, t0 + Duration::from_secs(1));
        assert_eq!(s["publish_details"]["rate"], 0.0);
        // After it: the change since the last sample.
        let s = rates.message_stats_at("q", &c, t0 + INTERVAL);
        assert_eq!(s["publish_details"]["rate"], 10.0);
        assert_eq!(s["deliver_get"], 25);
        assert_eq!(s["deliver_get_details"]["rate"], 5.0);
        assert!(s.get("ack_ignored").is_none());
        rates.retain(|_| false);
        let s = rates.message_stats_at("q", &c, t0 + 2 * INTERVAL);
        assert_eq!(
            s["publish_details"]["rate"], 0.0,
            "a new sample after retain"
        );
    }
}
