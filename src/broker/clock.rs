//! Milliseconds since the broker process started: the time base for TTLs and expiry.
//!
//! Monotonic, cheap, and a plain `u64` so the pure queue structures can take "now" as an
//! argument and be tested without a clock.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Milliseconds on the monotonic clock.
pub fn now_ms() -> u64 {
    start().elapsed().as_millis() as u64
}

/// The `Instant` a monotonic millisecond reading stands for.
pub fn instant_at(ms: u64) -> Instant {
    start() + Duration::from_millis(ms)
}

/// Seconds since the Unix epoch, for timestamps written into messages (x-death).
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
