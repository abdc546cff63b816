//! Counters, latency histograms and the result summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Nanoseconds since the UNIX epoch: what goes in the first 8 octets of a body. The wall
/// clock (not a process's own `Instant`) so that a message published by one fedamq-perf
/// process and consumed by another on the same host is still timed correctly.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Values below 2^SUB_BITS are kept exactly; above, each power of two is cut into
/// 2^SUB_BITS buckets, so a recorded value is off by less than 1/128 (0.8 %).
const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * SUB;

/// A log-linear histogram of u64 values (nanoseconds here); fixed size, allocated once.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    count: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB as u64 {
            return v as usize;
        }
        // v >= 2^SUB_BITS, so the exponent is at least SUB_BITS.
        let exponent = 63 - v.leading_zeros();
        let shift = exponent - SUB_BITS;
        let mantissa = ((v >> shift) as usize) & (SUB - 1);
        SUB + shift as usize * SUB + mantissa
    }

    /// The middle of bucket `i`'s range.
    fn value_of(i: usize) -> u64 {
        if i < SUB {
            return i as u64;
        }
        let shift = ((i - SUB) / SUB) as u32;
        let mantissa = ((i - SUB) % SUB) as u64;
        let low = (SUB as u64 + mantissa) << shift;
        low + ((1u64 << shift) >> 1)
    }

    #[cfg(test)]
    pub fn record(&mut self, v: u64) {
        self.record_n(v, 1);
    }

    /// Records `n` samples of value `v`.
    pub fn record_n(&mut self, v: u64, n: u64) {
        self.counts[Self::index(v)] += n;
        self.count += n;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v) * u128::from(n);
    }

    pub fn add(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += *b;
        }
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn clear(&mut self) {
        if self.count != 0 {
            self.counts.fill(0);
        }
        self.count = 0;
        self.min = u64::MAX;
        self.max = 0;
        self.sum = 0;
    }

    /// The value below which `p` percent of the recorded values fall (nearest rank);
    /// None when empty.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                // The bucket's middle, but never outside what was actually recorded.
                return Some(Self::value_of(i).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// The summary in microseconds, for values recorded in nanoseconds.
    pub fn summary_us(&self) -> Option<LatencySummary> {
        let us = |ns: u64| ns as f64 / 1_000.0;
        Some(LatencySummary {
            count: self.count,
            min: us(self.min),
            mean: self.sum as f64 / self.count.max(1) as f64 / 1_000.0,
            p50: us(self.percentile(50.0)?),
            p95: us(self.percentile(95.0)?),
            p99: us(self.percentile(99.0)?),
            p99_9: us(self.percentile(99.9)?),
            max: us(self.max),
        })
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

/// What every task adds to as it goes; the reporter reads it each second.
#[derive(Default)]
pub struct Counters {
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub returned: AtomicU64,
    pub consumed: AtomicU64,
    /// `write` calls that sent publishes.
    pub writes: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        if n != 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// One task's latency histograms: all of the run, and the current one-second interval.
/// The task locks it once per batch of frames, the reporter once a second.
#[derive(Default)]
pub struct Latencies {
    pub total: Histogram,
    pub interval: Histogram,
}

pub type SharedLatencies = Arc<Mutex<Latencies>>;

pub fn lock(l: &SharedLatencies) -> MutexGuard<'_, Latencies> {
    // A task that panicked mid-record leaves counts that are still usable.
    l.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records a batch of samples into both histograms.
pub fn record_batch(l: &SharedLatencies, samples: &mut Vec<u64>) {
    if samples.is_empty() {
        return;
    }
    let mut g = lock(l);
    // Messages sent in one batch and received in one read have the same latency, so
    // samples come in runs of equal values: one record per run.
    for run in samples.chunk_by(|a, b| a == b) {
        let n = run.len() as u64;
        g.total.record_n(run[0], n);
        g.interval.record_n(run[0], n);
    }
    samples.clear();
}

/// One line of the per-second report.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    /// Seconds since the start, at the end of this interval.
    pub t: f64,
    pub published: f64,
    pub confirmed: f64,
    pub consumed: f64,
    pub latency_p50_us: Option<f64>,
    pub latency_p99_us: Option<f64>,
}

/// The final result; `--json` prints it as is.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub broker: String,
    /// With `amqps://`: the TLS version and cipher suite negotiated, as rustls names them.
    pub tls: Option<String>,
    pub producers: usize,
    pub consumers: usize,
    pub size: usize,
    pub queues: usize,
    /// Seconds from the start to the end of the run.
    pub duration_s: f64,
    pub published: u64,
    /// Whether each publish had its own `write` call (`--unbatched`).
    pub unbatched: bool,
    /// The `write` calls the producers made to send their publishes.
    pub publish_writes: u64,
    /// Messages per second over the producers' active time (from the start until the
    /// broker answered their connection.close, so everything sent had been taken in).
    pub publish_rate: f64,
    pub publish_mib_s: f64,
    pub confirmed: u64,
    pub nacked: u64,
    pub returned: u64,
    pub consumed: u64,
    /// Messages per second over the consumers' active time.
    pub consume_rate: f64,
    pub consume_mib_s: f64,
    /// End-to-end latency (publisher encode to consumer decode), microseconds.
    pub latency_us: Option<LatencySummary>,
    /// Publish to broker confirm, microseconds.
    pub confirm_latency_us: Option<LatencySummary>,
    /// With --connections: how many were opened, and how long that took.
    pub connections_opened: usize,
    pub connect_time_s: f64,
    pub per_second: Vec<Second>,
    pub errors: Vec<String>,
}

pub fn fmt_us(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(us) if us >= 10_000.0 => format!("{:.0} ms", us / 1_000.0),
        Some(us) if us >= 1_000.0 => format!("{:.2} ms", us / 1_000.0),
        Some(us) => format!("{us:.0} µs"),
    }
}

impl Summary {
    /// The human-readable end of the report.
    pub fn print_text(&self) {
        println!("---");
        println!("broker:            {}", self.broker);
        if let Some(tls) = &self.tls {
            println!("tls:               {tls}");
        }
        if self.connections_opened > 0 {
            println!(
                "connections:       {} opened in {:.2} s",
                self.connections_opened, self.connect_time_s
            );
        }
        println!("duration:          {:.2} s", self.duration_s);
        println!(
            "published:         {} ({:.0} msg/s, {:.1} MiB/s)",
            self.published, self.publish_rate, self.publish_mib_s
        );
        if self.publish_writes > 0 {
            println!(
                "publish writes:    {} ({})",
                self.publish_writes,
                if self.unbatched {
                    "one per publish"
                } else {
                    "batched"
                }
            );
        }
        if self.confirmed + self.nacked > 0 {
            println!(
                "confirmed:         {} (nacked {})",
                self.confirmed, self.nacked
            );
        }
        if self.returned > 0 {
            println!("returned:          {}", self.returned);
        }
        println!(
            "consumed:          {} ({:.0} msg/s, {:.1} MiB/s)",
            self.consumed, self.consume_rate, self.consume_mib_s
        );
        for (name, l) in [
            ("latency", &self.latency_us),
            ("confirm latency", &self.confirm_latency_us),
        ] {
            if let Some(l) = l {
                println!(
                    "{:<18} min {} p50 {} p95 {} p99 {} p99.9 {} max {}",
                    format!("{name}:"),
                    fmt_us(Some(l.min)),
                    fmt_us(Some(l.p50)),
                    fmt_us(Some(l.p95)),
                    fmt_us(Some(l.p99)),
                    fmt_us(Some(l.p99_9)),
                    fmt_us(Some(l.max)),
                );
            }
        }
        for e in &self.errors {
            println!("error:             {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 0..128 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), Some(63));
        assert_eq!(h.percentile(100.0), Some(127));
        assert_eq!(h.percentile(0.0), Some(0));
    }

    #[test]
    fn large_values_within_one_percent() {
        for v in [200u64, 1_000, 12_345, 987_654, 5_000_000_000, u64::MAX / 3] {
            let mut h = Histogram::new();
            h.record(1);
            h.record(v);
            h.record(u64::MAX);
            let got = h.percentile(50.0).unwrap();
            let err = (got as f64 - v as f64).abs() / v as f64;
            assert!(err < 0.01, "{v}: got {got}");
        }
    }

    #[test]
    fn index_is_monotonic_and_in_range() {
        let mut last = 0;
        let mut v = 1u64;
        while v < u64::MAX / 2 {
            let i = Histogram::index(v);
            assert!(i >= last && i < BUCKETS);
            last = i;
            v = v + v / 7 + 1;
        }
        assert_eq!(Histogram::index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1_000);
        }
        let p99 = h.percentile(99.0).unwrap() as f64;
        assert!((p99 - 99_000_000.0).abs() / 99_000_000.0 < 0.01);
        let s = h.summary_us().unwrap();
        assert_eq!(s.count, 100_000);
        assert!((s.p50 - 50_000.0).abs() < 500.0);
        assert_eq!(s.max, 100_000.0);
        assert_eq!(s.min, 1.0);
    }

    #[test]
    fn a_batch_in_runs_records_what_one_by_one_would() {
        let samples = [5, 5, 5, 700, 700, 5, 90_000, 90_000, 90_000, 90_000, 1];
        let mut one_by_one = Histogram::new();
        samples.iter().for_each(|&v| one_by_one.record(v));
        let shared = SharedLatencies::default();
        let mut batch = samples.to_vec();
        record_batch(&shared, &mut batch);
        assert!(batch.is_empty());
        let g = lock(&shared);
        for h in [&g.total, &g.interval] {
            assert_eq!(h.counts, one_by_one.counts);
            assert_eq!(
                (h.count, h.min, h.max, h.sum),
                (
                    one_by_one.count,
                    one_by_one.min,
                    one_by_one.max,
                    one_by_one.sum
                )
            );
        }
        assert_eq!(g.total.count, samples.len() as u64);
    }

    #[test]
    fn add_and_clear() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(10);
        b.record(1_000_000);
        a.add(&b);
        assert_eq!(a.count, 2);
        assert_eq!(a.percentile(100.0), Some(1_000_000));
        a.clear();
        assert_eq!(a.count, 0);
        assert_eq!(a.percentile(50.0), None);
        assert!(a.summary_us().is_none());
    }
}
