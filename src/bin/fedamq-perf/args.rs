//! The command line, with RabbitMQ PerfTest's flag names where PerfTest has the option.

use clap::Parser;
use fedamq::protocol::{FieldTable, FieldValue, ShortString};

/// A load generator for any AMQP 0-9-1 broker.
///
/// Producers and consumers each get their own connection with one channel. Producer `i`
/// publishes to queue `i mod <queues>` (through the exchange, with that queue's name as
/// routing key unless `-k` is given); consumer `j` consumes queue `j mod <queues>`. The
/// first 8 octets of every body carry the send time, so end-to-end latency is measured
/// when `-s` is at least 8.
#[derive(Debug, Clone, Parser)]
#[command(name = "fedamq-perf", version, about, long_about = None)]
pub struct Args {
    /// Broker to connect to.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub uri: String,

    /// Number of producers.
    #[arg(short = 'x', long = "producers", default_value_t = 1)]
    pub producers: usize,

    /// Number of consumers.
    #[arg(short = 'y', long = "consumers", default_value_t = 1)]
    pub consumers: usize,

    /// Message body size in bytes.
    #[arg(short = 's', long = "size", default_value_t = 12)]
    pub size: usize,

    /// Consumers use automatic acknowledgement (no-ack).
    #[arg(short = 'a', long = "autoack")]
    pub autoack: bool,

    /// Consumer prefetch count (basic.qos); 0 = unlimited.
    #[arg(short = 'q', long = "qos", default_value_t = 0)]
    pub qos: u16,

    /// Acknowledge with multiple=true every N deliveries (manual ack only); 0 = ack each.
    #[arg(short = 'A', long = "multi-ack-every", default_value_t = 0)]
    pub multi_ack_every: u64,

    /// Publisher confirms with at most N unconfirmed messages per producer.
    #[arg(short = 'c', long = "confirm")]
    pub confirm: Option<u64>,

    /// Publishing rate limit per producer, messages per second; 0 = unlimited.
    #[arg(short = 'r', long = "rate", default_value_t = 0.0)]
    pub rate: f64,

    /// Run time in seconds; 0 = until the message counts are reached (or Ctrl-C).
    #[arg(short = 'z', long = "time", default_value_t = 0.0)]
    pub time: f64,

    /// Messages each producer publishes, then stops; 0 = unlimited.
    #[arg(short = 'C', long = "pmessages", default_value_t = 0)]
    pub pmessages: u64,

    /// Messages each consumer receives, then stops; 0 = unlimited.
    #[arg(short = 'D', long = "cmessages", default_value_t = 0)]
    pub cmessages: u64,

    /// Queue name (ignored with --queue-pattern).
    #[arg(short = 'u', long = "queue", default_value = "fedamq-perf")]
    pub queue: String,

    /// Queue name pattern, `%d` replaced by each number from --queue-pattern-from to
    /// --queue-pattern-to.
    #[arg(long = "queue-pattern")]
    pub queue_pattern: Option<String>,

    #[arg(long = "queue-pattern-from", default_value_t = 1)]
    pub queue_pattern_from: u32,

    #[arg(long = "queue-pattern-to", default_value_t = 1)]
    pub queue_pattern_to: u32,

    /// Exchange name; "" publishes through the default exchange.
    #[arg(short = 'e', long = "exchange", default_value = "direct")]
    pub exchange: String,

    /// Exchange type: direct, fanout, topic, headers.
    #[arg(short = 't', long = "type", default_value = "direct")]
    pub exchange_type: String,

    /// With `-t headers`: each queue is bound with `x-match: any` and this many header
    /// keys, and every message carries the last of them, so each publish is routed
    /// through a binding of that size.
    #[arg(long = "header-keys", default_value_t = 1)]
    pub header_keys: usize,

    /// Routing key (and binding key); default: each queue's name.
    #[arg(short = 'k', long = "routing-key")]
    pub routing_key: Option<String>,

    /// Message flags: `persistent` (delivery-mode 2), `mandatory`. Repeatable.
    #[arg(short = 'f', long = "flag")]
    pub flags: Vec<String>,

    /// Queues and exchange exist already: declare nothing.
    #[arg(short = 'p', long = "predeclared")]
    pub predeclared: bool,

    /// Write each publish (method, header and body frames) with its own `write` call, as
    /// pika, amqplib and amqprs do, instead of many publishes per call.
    #[arg(long = "unbatched", visible_alias = "write-per-publish")]
    pub unbatched: bool,

    /// After setting up, producers and consumers never read their sockets, as a careless
    /// or hostile client: returns, confirms and deliveries pile up on the broker's side.
    /// They are dropped at the end without a close.
    #[arg(long = "no-read")]
    pub no_read: bool,

    /// Declare the queues auto-delete.
    #[arg(long = "auto-delete")]
    pub auto_delete: bool,

    /// Delete the queues (and the exchange, if declared here) at the end.
    #[arg(long = "cleanup")]
    pub cleanup: bool,

    /// Instead of producing and consuming: open this many connections with one channel
    /// each, hold them for -z seconds (prints "connections open" to stderr once all are
    /// open), then close them.
    #[arg(long = "connections", default_value_t = 0)]
    pub connections: usize,

    /// Print the final result as one JSON object on stdout (per-second lines go to stderr).
    #[arg(long = "json")]
    pub json: bool,

    /// Do not print the per-second lines.
    #[arg(long = "quiet")]
    pub quiet: bool,
}

impl Args {
    /// The queues, in the order producers and consumers are assigned to them.
    pub fn queues(&self) -> Vec<String> {
        match &self.queue_pattern {
            Some(p) => (self.queue_pattern_from..=self.queue_pattern_to)
                .map(|i| p.replace("%d", &i.to_string()))
                .collect(),
            None => vec![self.queue.clone()],
        }
    }

    pub fn persistent(&self) -> bool {
        self.flags.iter().any(|f| f == "persistent")
    }

    pub fn mandatory(&self) -> bool {
        self.flags.iter().any(|f| f == "mandatory")
    }

    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        for f in &self.flags {
            if f != "persistent" && f != "mandatory" {
                return Err(format!(
                    "unknown -f flag {f:?} (persistent, mandatory are known)"
                ));
            }
        }
        if self.queue_pattern.is_some() && self.queue_pattern_from > self.queue_pattern_to {
            return Err("--queue-pattern-from is after --queue-pattern-to".into());
        }
        if self.queues().is_empty() {
            return Err("no queues".into());
        }
        if !matches!(
            self.exchange_type.as_str(),
            "direct" | "fanout" | "topic" | "headers"
        ) {
            return Err(format!(
                "exchange type {:?} is not supported (direct, fanout, topic, headers)",
                self.exchange_type
            ));
        }
        if self.header_keys == 0 || self.header_keys > 62 * 62 * 62 {
            return Err("--header-keys must be from 1 to 238,328".into());
        }
        if self.no_read && self.confirm.is_some() {
            return Err("--no-read with -c would wait forever for confirms it never reads".into());
        }
        if self.confirm == Some(0) {
            return Err("-c must be at least 1".into());
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return Err("-r must be a non-negative number".into());
        }
        if !(self.time >= 0.0 && self.time.is_finite()) {
            return Err("-z must be a non-negative number".into());
        }
        Ok(())
    }

    /// With `-t headers`: the binding arguments (`x-match: any` and `--header-keys` keys)
    /// and the headers each message carries (the last key); `None` for other types.
    /// Keys are three characters with void values, so 25,000 of them fit in one frame
    /// of the default 128 KiB.
    pub fn headers(&self) -> Option<(FieldTable, FieldTable)> {
        if self.exchange_type != "headers" {
            return None;
        }
        const ALPHABET: &[u8; 62] =
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let key = |i: usize| {
            let n = ALPHABET.len();
            let name: String = [i / (n * n) % n, i / n % n, i % n]
                .iter()
                .map(|&d| char::from(ALPHABET[d]))
                .collect();
            ShortString::try_from(name.as_str()).expect("three characters")
        };
        let mut binding = FieldTable::new();
        binding.insert(ShortString::from_static("x-match"), "any".into());
        for i in 0..self.header_keys {
            binding.insert(key(i), FieldValue::Void);
        }
        let mut message = FieldTable::new();
        message.insert(key(self.header_keys - 1), FieldValue::Void);
        Some((binding, message))
    }

    /// The multi-ack interval actually used: never more than the prefetch, or the
    /// consumer would wait forever for deliveries the broker holds back.
    pub fn effective_multi_ack(&self) -> u64 {
        match (self.multi_ack_every, self.qos) {
            (0, _) => 0,
            (a, 0) => a,
            (a, q) => a.min(u64::from(q)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("fedamq-perf").chain(args.iter().copied()))
            .expect("parses")
    }

    #[test]
    fn perftest_flag_names() {
        let a = parse(&[
            "-x",
            "2",
            "-y",
            "3",
            "-s",
            "256",
            "-a",
            "-q",
            "100",
            "-A",
            "50",
            "-c",
            "1000",
            "-r",
            "500",
            "-z",
            "10",
            "-C",
            "7",
            "-D",
            "8",
            "-u",
            "qq",
            "-e",
            "ex",
            "-t",
            "fanout",
            "-k",
            "rk",
            "-f",
            "persistent",
            "-f",
            "mandatory",
            "--unbatched",
        ]);
        assert_eq!((a.producers, a.consumers, a.size), (2, 3, 256));
        assert!(a.autoack);
        assert_eq!((a.qos, a.multi_ack_every, a.confirm), (100, 50, Some(1000)));
        assert_eq!(
            (a.rate, a.time, a.pmessages, a.cmessages),
            (500.0, 10.0, 7, 8)
        );
        assert_eq!(a.queues(), vec!["qq".to_string()]);
        assert_eq!(
            (a.exchange.as_str(), a.exchange_type.as_str()),
            ("ex", "fanout")
        );
        assert_eq!(a.routing_key.as_deref(), Some("rk"));
        assert!(a.persistent() && a.mandatory());
        assert!(a.unbatched);
        assert!(a.validate().is_ok());
        assert!(parse(&["--write-per-publish"]).unbatched);
        assert!(!parse(&[]).unbatched);
    }

    #[test]
    fn queue_pattern() {
        let a = parse(&[
            "--queue-pattern",
            "q-%d",
            "--queue-pattern-from",
            "3",
            "--queue-pattern-to",
            "5",
        ]);
        assert_eq!(a.queues(), vec!["q-3", "q-4", "q-5"]);
    }

    #[test]
    fn multi_ack_never_exceeds_prefetch() {
        assert_eq!(
            parse(&["-A", "500", "-q", "100"]).effective_multi_ack(),
            100
        );
        assert_eq!(parse(&["-A", "50", "-q", "100"]).effective_multi_ack(), 50);
        assert_eq!(parse(&["-A", "50"]).effective_multi_ack(), 50);
        assert_eq!(parse(&["-q", "100"]).effective_multi_ack(), 0);
    }

    #[test]
    fn headers_binding_has_the_keys_and_messages_match_the_last() {
        let a = parse(&["-t", "headers", "--header-keys", "3"]);
        let (binding, message) = a.headers().expect("headers exchange");
        assert_eq!(binding.len(), 4);
        assert_eq!(message.len(), 1);
        let (key, _) = message.iter().next().expect("one header");
        assert_eq!(key.as_str(), Some("aac"));
        assert!(binding.iter().any(|(k, _)| k == key));
        assert!(parse(&["-t", "direct"]).headers().is_none());
    }

    #[test]
    fn bad_values() {
        assert!(parse(&["-f", "lazy"]).validate().is_err());
        assert!(parse(&["-t", "match"]).validate().is_err());
        assert!(
            parse(&["-t", "headers", "--header-keys", "0"])
                .validate()
                .is_err()
        );
        assert!(parse(&["--no-read", "-c", "10"]).validate().is_err());
        assert!(parse(&["-c", "0"]).validate().is_err());
    }
}
