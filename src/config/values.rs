//! Values as written in the file or on the command line: sizes (`64MiB`), durations
//! (`500ms`), memory limits (`40%`), counts (`unlimited`), and the range checks both
//! sources share. Each returns the message; the caller adds where it came from and the
//! key.

use std::net::IpAddr;
use std::time::Duration;

use super::memory::MemoryLimit;

pub(super) const KIB: u64 = 1024;
pub(super) const MIB: u64 = 1024 * KIB;
pub(super) const GIB: u64 = 1024 * MIB;

/// The smallest frame_max AMQP 0-9-1 allows.
pub const FRAME_MIN_SIZE: u32 = 4096;

/// RabbitMQ's hard ceiling on `max_message_size`.
pub const MAX_MESSAGE_SIZE_LIMIT: u64 = 512 * MIB;

pub(super) fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("expected an IP address such as 127.0.0.1, 0.0.0.0 or ::, got {s:?}"))
}

pub(super) fn check_frame_max(v: u32) -> Result<u32, String> {
    if v < FRAME_MIN_SIZE {
        Err(format!("must be at least {FRAME_MIN_SIZE}, got {v}"))
    } else {
        Ok(v)
    }
}

pub(super) fn check_max_message_size(v: u64) -> Result<u64, String> {
    if v == 0 {
        Err("must be at least 1 byte".into())
    } else if v > MAX_MESSAGE_SIZE_LIMIT {
        Err(format!("must be at most 512MiB, got {}", show_size(v)))
    } else {
        Ok(v)
    }
}

pub(super) fn check_duration(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        Err("must be more than 0".into())
    } else if d > Duration::from_secs(3600) {
        Err(format!(
            "must be at most 3600 seconds, got {}",
            d.as_secs_f64()
        ))
    } else {
        Ok(d)
    }
}

pub(super) fn check_log_filter(s: String) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(&s)
        .map_err(|e| format!("invalid log filter {s:?}: {e}"))?;
    Ok(s)
}

/// A cluster name goes into queue names and headers: not empty, at most 255 bytes.
pub(super) fn check_cluster_name(s: String) -> Result<String, String> {
    if s.is_empty() || s.len() > 255 {
        return Err(format!("cluster name must be 1 to 255 bytes, got {s:?}"));
    }
    Ok(s)
}

fn show_size(v: u64) -> String {
    for (unit, n) in [
        ("TiB", 1024 * GIB),
        ("GiB", GIB),
        ("MiB", MIB),
        ("KiB", KIB),
    ] {
        if v >= n && v % n == 0 {
            return format!("{}{unit}", v / n);
        }
    }
    v.to_string()
}

pub(super) fn seconds(f: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(f)
        .map_err(|_| format!("expected a non-negative number of seconds, got {f}"))
}

pub(super) fn fraction(f: f64) -> Result<MemoryLimit, String> {
    if (0.0..=1.0).contains(&f) {
        Ok(MemoryLimit::Fraction(f))
    } else {
        Err(format!(
            "a fraction of RAM must be between 0 and 1, got {f}"
        ))
    }
}

/// Parses a size: bytes, or a number with a unit (`64MiB`, `2GB`, `512k`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected bytes or a size such as 64MiB, got {s:?}"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => KIB,
        "m" | "mib" => MIB,
        "g" | "gib" => GIB,
        "t" | "tib" => 1024 * GIB,
        "kb" => 1000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "unknown size unit {:?} in {s:?} (use KiB, MiB, GiB, KB, MB, GB, …)",
                unit.trim()
            ));
        }
    };
    n.checked_mul(multiplier)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses a duration: seconds (`10`, `2.5`), or with a unit (`500ms`, `10s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        (t, 1.0)
    };
    let f: f64 = number.trim().parse().map_err(|_| {
        format!("expected seconds such as 10 or 2.5, or milliseconds such as 500ms, got {s:?}")
    })?;
    seconds(f * scale)
}

/// Parses a memory watermark: `0` (off), a fraction (`0.4`), a percentage (`40%`), or a
/// size (`2GiB`, `1073741824`).
pub fn parse_memory_limit(s: &str) -> Result<MemoryLimit, String> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p
            .trim()
            .parse()
            .map_err(|_| format!("expected a percentage such as 40%, got {s:?}"))?;
        return fraction(p / 100.0);
    }
    if t.contains('.') {
        let f: f64 = t
            .parse()
            .map_err(|_| format!("expected a fraction such as 0.4, got {s:?}"))?;
        return fraction(f);
    }
    parse_size(t).map(MemoryLimit::Bytes)
}

/// Parses a count limit: a number, or `unlimited` / `infinity`.
pub fn parse_limit(s: &str) -> Result<usize, String> {
    match s.trim() {
        "unlimited" | "infinity" => Ok(usize::MAX),
        t => t
            .parse()
            .map_err(|_| format!("expected a number or \"unlimited\", got {s:?}")),
    }
}

/// A listener's port, or `off` for no listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortOrOff(pub Option<u16>);

/// Parses a management listener's port (the API's, Prometheus's): a number, or `off`
/// for no listener.
pub fn parse_management_port(s: &str) -> Result<PortOrOff, String> {
    match s.trim() {
        "off" => Ok(PortOrOff(None)),
        t => t
            .parse()
            .map(|p| PortOrOff(Some(p)))
            .map_err(|_| format!("expected a port (0-65535) or \"off\", got {s:?}")),
    }
}
