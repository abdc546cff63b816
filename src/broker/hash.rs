//! The hash maps on the message path (exchanges and queues by name, binding tables,
//! channels, consumers).
//!
//! std's default SipHash costs more than the rest of a lookup for short names, and a
//! publish does several lookups. foldhash is several times faster and, seeded at random
//! per process, still keeps clients (who choose the names) from predicting collisions.

/// A `HashMap` with foldhash. Make one with `HashMap::default()`.
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
