//! How much memory the broker may hold (messages, queues, topology: the account in
//! `broker::memory`): the watermark as written (a size or a fraction of RAM), and the
//! machine's (or container's) total memory it is a fraction of.

/// Share of RAM the memory watermark defaults to (RabbitMQ's
/// `vm_memory_high_watermark.relative`).
pub const DEFAULT_MEMORY_FRACTION: f64 = 0.4;

/// The watermark when total RAM cannot be read.
pub const FALLBACK_MEMORY_HIGH_WATERMARK: u64 = 1 << 30;

/// A memory watermark as written: absolute, or relative to total memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryLimit {
    Bytes(u64),
    /// A fraction of total memory, 0.0 ..= 1.0.
    Fraction(f64),
}

impl MemoryLimit {
    pub(super) fn resolve(self) -> u64 {
        match self {
            MemoryLimit::Bytes(b) => b,
            MemoryLimit::Fraction(f) => {
                total_memory().map_or(FALLBACK_MEMORY_HIGH_WATERMARK, |t| fraction_of(t, f))
            }
        }
    }
}

pub(super) fn default_memory_high_watermark() -> u64 {
    total_memory().map_or(FALLBACK_MEMORY_HIGH_WATERMARK, |t| {
        fraction_of(t, DEFAULT_MEMORY_FRACTION)
    })
}

pub(super) fn fraction_of(total: u64, fraction: f64) -> u64 {
    // Float to int `as` saturates; precision loss at this scale is irrelevant.
    (total as f64 * fraction) as u64
}

/// Total memory available to this process: `MemTotal` from `/proc/meminfo`, lowered to
/// the cgroup limit when one is set (so a container's watermark follows its own limit).
/// `None` when it cannot be read (not Linux).
pub fn total_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total = parse_meminfo(&meminfo)?;
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .filter_map(|s| s.trim().parse::<u64>().ok())
    .min();
    Some(cgroup.map_or(total, |c| c.min(total)))
}

pub(super) fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}
