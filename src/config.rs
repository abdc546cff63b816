//! Configuration, in three layers: built-in defaults, then a TOML file (`--config`), then
//! command-line flags (or their `FEDAMQ_*` environment variables). Each layer overrides
//! only what it sets.
//!
//! The defaults are RabbitMQ's, so that fedamq runs with no file at all and a client
//! written against RabbitMQ connects unchanged: port 5672 on 127.0.0.1, user
//! `guest`/`guest` with full permissions on vhost `/`, heartbeat 60 s, frame_max 131072,
//! channel_max 2047, 128 MiB messages, memory watermark at 40% of RAM. The default bind
//! address is loopback because the default user is well known (RabbitMQ reaches the same
//! end by letting `guest` log in only over loopback).
//!
//! Every problem stops start-up with a message naming where it is and the key:
//! `fedamq.toml: frame_max: must be at least 4096, got 100`,
//! `command line: --max-message-size: must be at most 512MiB, got 1GiB`,
//! `fedamq.toml:3:1: unknown field `prot`, expected one of …`. Unknown keys are errors
//! rather than ignored, so a misspelt setting cannot silently fall back to its default.
//!
//! # The file
//!
//! ```toml
//! bind = "0.0.0.0"              # IPv4 or IPv6 address, no host names
//! port = 5672                   # 0 picks any free port
//! heartbeat = 60                # seconds the server proposes; 0 disables
//! frame_max = 131072            # bytes, at least 4096
//! channel_max = 2047            # per connection; 0 means no limit (65535)
//! max_message_size = "128MiB"   # bytes or a size with a unit; at most 512MiB
//! handshake_timeout = 10        # seconds (a float, or "500ms", also works)
//! memory_high_watermark = 0.4   # a fraction of RAM, "40%", a size ("2GiB"), or 0 = off
//! log = "info"                  # a tracing filter; RUST_LOG overrides it
//! vhosts = ["/", "staging"]
//!
//! [limits]                      # each an integer or "unlimited" (the default)
//! max_connections = 10000
//! max_queues = "unlimited"      # per vhost
//! max_exchanges = 1000          # per vhost
//!
//! [[user]]
//! name = "admin"
//! password = "change-me"        # hashed when the file is read
//! tags = ["administrator"]
//!
//! [[user]]
//! name = "app"
//! # What `rabbitmqctl hash_password` prints, or `password_hash` from definitions.json;
//! # "" locks the account.
//! password_hash = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
//!
//! [[permission]]                # at most one per user and vhost, as in RabbitMQ
//! user = "app"
//! vhost = "staging"
//! configure = "^app\\."         # regular expressions, unanchored; "" allows nothing
//! write = "^(app\\.|amq\\.default$)"
//! read = ".*"
//! ```
//!
//! Sizes are bytes, or a number with a unit: `KiB`/`MiB`/`GiB`/`TiB` (or `K`/`M`/`G`/`T`)
//! are powers of 1024, `KB`/`MB`/`GB`/`TB` powers of 1000; case does not matter.
//!
//! Users, vhosts and permissions come only from the file. `vhosts` replaces the default
//! `["/"]`. Any `[[user]]` replaces the default `guest` user *and* its permission, so only
//! the file's `[[permission]]` entries apply; with no `[[user]]`, `guest` stays and
//! `[[permission]]` entries, if any, replace its default one (`guest` keeps full access
//! to `/` only when the file has no `[[permission]]` and `/` is a vhost). Permissions
//! naming an unknown user or vhost are errors, as are patterns that do not compile (see
//! [`crate::auth`] for how they are matched).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::auth::{PasswordHash, Users, compile_pattern};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// The smallest frame_max AMQP 0-9-1 allows.
pub const FRAME_MIN_SIZE: u32 = 4096;
/// RabbitMQ's hard ceiling on `max_message_size`.
pub const MAX_MESSAGE_SIZE_LIMIT: u64 = 512 * MIB;
/// Share of RAM the memory watermark defaults to (RabbitMQ's
/// `vm_memory_high_watermark.relative`).
pub const DEFAULT_MEMORY_FRACTION: f64 = 0.4;
/// The watermark when total RAM cannot be read.
pub const FALLBACK_MEMORY_HIGH_WATERMARK: u64 = GIB;

/// The settings the broker runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address to listen on.
    pub bind: IpAddr,
    /// TCP port; 0 = any free port.
    pub port: u16,
    /// Heartbeat interval the server proposes in `connection.tune`, in seconds; 0 = none.
    pub heartbeat: u16,
    /// Largest frame the server accepts, proposed in `connection.tune`; at least 4096.
    pub frame_max: u32,
    /// Most channels per connection, proposed in `connection.tune`; 0 = no limit.
    pub channel_max: u16,
    /// Largest message body accepted, in bytes; at most 512 MiB.
    pub max_message_size: u64,
    /// Time a client has from TCP accept to `connection.open-ok`.
    pub handshake_timeout: Duration,
    /// Bytes of message data held in memory above which publishers are blocked
    /// (`connection.blocked`); 0 = never.
    pub memory_high_watermark: u64,
    pub limits: Limits,
    pub users: Vec<UserConfig>,
    pub vhosts: Vec<String>,
    pub permissions: Vec<PermissionConfig>,
    /// A `tracing` filter (`info`, `fedamq=debug,warn`, …). `RUST_LOG` overrides it.
    pub log: String,
}

/// Caps on what clients may create. `usize::MAX` means unlimited, the default for each
/// (RabbitMQ has none by default either). The per-connection channel cap is
/// [`Config::channel_max`], since that is what the client is told in `connection.tune`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open client connections; further ones are closed right after accept.
    pub max_connections: usize,
    /// Queues per vhost.
    pub max_queues: usize,
    /// Exchanges per vhost, the predeclared ones included.
    pub max_exchanges: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: usize::MAX,
            max_queues: usize::MAX,
            max_exchanges: usize::MAX,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConfig {
    pub name: String,
    pub password_hash: PasswordHash,
    /// The password itself, when the file gave `password` rather than a hash: a peering
    /// configured with this login uses it to log in to a remote server.
    pub password: Option<String>,
    pub tags: Vec<String>,
}

/// One user's permissions on one vhost: three regular expressions (see [`crate::auth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionConfig {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 5672,
            heartbeat: 60,
            frame_max: 131_072,
            channel_max: 2047,
            max_message_size: 128 * MIB,
            handshake_timeout: Duration::from_secs(10),
            memory_high_watermark: default_memory_high_watermark(),
            limits: Limits::default(),
            users: vec![UserConfig {
                name: "guest".into(),
                password_hash: PasswordHash::new("guest"),
                password: Some("guest".into()),
                tags: vec!["administrator".into()],
            }],
            vhosts: vec!["/".into()],
            permissions: vec![default_permission()],
            log: "info".into(),
        }
    }
}

impl Config {
    /// The user table this configuration describes. [`load`] has already rejected
    /// permissions naming unknown users or vhosts and patterns that do not compile; for
    /// a hand-built `Config`, such entries are skipped (logged), never a panic.
    pub fn user_table(&self) -> Users {
        let users = Users::new();
        for u in &self.users {
            let added = users
                .add_user(&u.name, u.password_hash.clone(), u.tags.clone())
                .and_then(|()| users.set_outbound_password(&u.name, u.password.clone()));
            if let Err(e) = added {
                tracing::warn!("user '{}' ignored: {e}", u.name);
            }
        }
        for p in &self.permissions {
            if !self.vhosts.contains(&p.vhost) {
                tracing::warn!("permission on unknown vhost '{}' ignored", p.vhost);
                continue;
            }
            if let Err(e) =
                users.set_permissions(&p.user, &p.vhost, &p.configure, &p.write, &p.read)
            {
                tracing::warn!(
                    "permission for user '{}' on vhost '{}' ignored: {e}",
                    p.user,
                    p.vhost
                );
            }
        }
        users
    }
}

fn default_permission() -> PermissionConfig {
    PermissionConfig {
        user: "guest".into(),
        vhost: "/".into(),
        configure: ".*".into(),
        write: ".*".into(),
        read: ".*".into(),
    }
}

fn default_memory_high_watermark() -> u64 {
    total_memory().map_or(FALLBACK_MEMORY_HIGH_WATERMARK, |t| {
        fraction_of(t, DEFAULT_MEMORY_FRACTION)
    })
}

fn fraction_of(total: u64, fraction: f64) -> u64 {
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

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => n.checked_mul(KIB),
        None => Some(n),
        Some(_) => None,
    }
}

// ---------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------

/// fedamq, an AMQP 0-9-1 message broker.
///
/// Settings come from built-in defaults (RabbitMQ's), then the TOML file given with
/// --config, then these flags. Users, vhosts and permissions are set in the file; with no
/// file, user guest/guest may use vhost "/".
#[derive(Debug, Clone, Default, PartialEq, clap::Parser)]
#[command(name = "fedamq", version)]
pub struct Cli {
    /// TOML configuration file; flags given here override its settings.
    #[arg(long, short = 'c', value_name = "PATH", env = "FEDAMQ_CONFIG")]
    pub config: Option<PathBuf>,

    /// IP address to listen on [default: 127.0.0.1]. Use 0.0.0.0 or :: for all
    /// interfaces, after replacing the default guest user.
    #[arg(long, value_name = "ADDR", env = "FEDAMQ_BIND")]
    pub bind: Option<IpAddr>,

    /// TCP port to listen on; 0 picks a free one [default: 5672].
    #[arg(long, short = 'p', value_name = "PORT", env = "FEDAMQ_PORT")]
    pub port: Option<u16>,

    /// Heartbeat interval the server proposes, in seconds; 0 disables [default: 60].
    #[arg(long, value_name = "SECONDS", env = "FEDAMQ_HEARTBEAT")]
    pub heartbeat: Option<u16>,

    /// Largest frame accepted, in bytes; at least 4096 [default: 131072].
    #[arg(long, value_name = "BYTES", env = "FEDAMQ_FRAME_MAX")]
    pub frame_max: Option<u32>,

    /// Most channels per connection; 0 means no limit (65535) [default: 2047].
    #[arg(long, value_name = "N", env = "FEDAMQ_CHANNEL_MAX")]
    pub channel_max: Option<u16>,

    /// Largest message body accepted: bytes or a size such as 64MiB; at most 512MiB
    /// [default: 128MiB].
    #[arg(long, value_name = "SIZE", env = "FEDAMQ_MAX_MESSAGE_SIZE", value_parser = parse_size)]
    pub max_message_size: Option<u64>,

    /// Time a client has to complete the AMQP handshake: seconds, or e.g. 500ms
    /// [default: 10].
    #[arg(long, value_name = "DURATION", env = "FEDAMQ_HANDSHAKE_TIMEOUT", value_parser = parse_duration)]
    pub handshake_timeout: Option<Duration>,

    /// Memory held by messages above which publishers are blocked: a fraction of RAM
    /// (0.4), a percentage (40%), a size (2GiB), or 0 to disable [default: 40% of RAM].
    #[arg(long, value_name = "LIMIT", env = "FEDAMQ_MEMORY_HIGH_WATERMARK", value_parser = parse_memory_limit)]
    pub memory_high_watermark: Option<MemoryLimit>,

    /// Most open client connections, or "unlimited" [default: unlimited].
    #[arg(long, value_name = "N", env = "FEDAMQ_MAX_CONNECTIONS", value_parser = parse_limit)]
    pub max_connections: Option<usize>,

    /// Most queues per vhost, or "unlimited" [default: unlimited].
    #[arg(long, value_name = "N", env = "FEDAMQ_MAX_QUEUES", value_parser = parse_limit)]
    pub max_queues: Option<usize>,

    /// Most exchanges per vhost, or "unlimited" [default: unlimited].
    #[arg(long, value_name = "N", env = "FEDAMQ_MAX_EXCHANGES", value_parser = parse_limit)]
    pub max_exchanges: Option<usize>,

    /// Log filter, e.g. info or fedamq=debug,warn; RUST_LOG overrides it [default: info].
    #[arg(long, value_name = "FILTER", env = "FEDAMQ_LOG")]
    pub log: Option<String>,
}

/// A memory watermark as written: absolute, or relative to total memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryLimit {
    Bytes(u64),
    /// A fraction of total memory, 0.0 ..= 1.0.
    Fraction(f64),
}

impl MemoryLimit {
    fn resolve(self) -> u64 {
        match self {
            MemoryLimit::Bytes(b) => b,
            MemoryLimit::Fraction(f) => {
                total_memory().map_or(FALLBACK_MEMORY_HIGH_WATERMARK, |t| fraction_of(t, f))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why the configuration could not be loaded. `Display` says where and which key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a table where a value belongs (`message` names
    /// the key).
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value of the wrong type or out of range. `origin` is the file or "command line".
    #[error("{origin}: {key}: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// The offending key, when the error is about one value (`frame_max`, `--port`,
    /// `user[1].password`).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------

// Leaf values are read as `toml::Value` and converted by hand so each error can name its
// key; serde still rejects unknown keys and misplaced tables.
type Value = toml::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<Value>,
    port: Option<Value>,
    heartbeat: Option<Value>,
    frame_max: Option<Value>,
    channel_max: Option<Value>,
    max_message_size: Option<Value>,
    handshake_timeout: Option<Value>,
    memory_high_watermark: Option<Value>,
    log: Option<Value>,
    vhosts: Option<Value>,
    limits: Option<FileLimits>,
    #[serde(rename = "user", alias = "users")]
    users: Option<Vec<FileUser>>,
    #[serde(rename = "permission", alias = "permissions")]
    permissions: Option<Vec<FilePermission>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [limits] table")]
struct FileLimits {
    max_connections: Option<Value>,
    max_queues: Option<Value>,
    max_exchanges: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[user]] table")]
struct FileUser {
    name: Option<Value>,
    password: Option<Value>,
    password_hash: Option<Value>,
    tags: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[permission]] table")]
struct FilePermission {
    user: Option<Value>,
    vhost: Option<Value>,
    configure: Option<Value>,
    write: Option<Value>,
    read: Option<Value>,
}

/// Builds the configuration: defaults, then the file named by `cli.config`, then the
/// flags in `cli`.
pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    if let Some(path) = &cli.config {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        apply_file(&mut config, path, &text)?;
    }
    apply_cli(&mut config, cli)?;
    Ok(config)
}

/// Reads `text` (the contents of `path`) on top of `config`.
pub fn apply_file(config: &mut Config, path: &Path, text: &str) -> Result<(), ConfigError> {
    let file: FileConfig = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_column(text, s.start));
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim_end().to_string(),
        }
    })?;
    let origin = path.display().to_string();
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        origin: origin.clone(),
        key: key.to_string(),
        message,
    };
    // Runs a converter on an optional value, naming `key` in the error.
    macro_rules! set {
        ($field:expr, $value:expr, $key:expr, $convert:expr) => {
            if let Some(v) = &$value {
                $field = $convert(v).map_err(|m| invalid($key, m))?;
            }
        };
    }

    set!(config.bind, file.bind, "bind", |v: &Value| string(v)
        .and_then(|s| parse_ip(&s)));
    set!(config.port, file.port, "port", |v: &Value| integer(
        v,
        0,
        u16::MAX
    ));
    set!(
        config.heartbeat,
        file.heartbeat,
        "heartbeat",
        |v: &Value| integer(v, 0, u16::MAX)
    );
    set!(
        config.frame_max,
        file.frame_max,
        "frame_max",
        |v: &Value| { integer::<u32>(v, 0, u32::MAX).and_then(check_frame_max) }
    );
    set!(
        config.channel_max,
        file.channel_max,
        "channel_max",
        |v: &Value| integer(v, 0, u16::MAX)
    );
    set!(
        config.max_message_size,
        file.max_message_size,
        "max_message_size",
        |v: &Value| { size(v).and_then(check_max_message_size) }
    );
    set!(
        config.handshake_timeout,
        file.handshake_timeout,
        "handshake_timeout",
        duration
    );
    set!(
        config.memory_high_watermark,
        file.memory_high_watermark,
        "memory_high_watermark",
        |v: &Value| { memory_limit(v).map(MemoryLimit::resolve) }
    );
    set!(config.log, file.log, "log", |v: &Value| string(v)
        .and_then(check_log_filter));
    if let Some(limits) = &file.limits {
        set!(
            config.limits.max_connections,
            limits.max_connections,
            "limits.max_connections",
            limit
        );
        set!(
            config.limits.max_queues,
            limits.max_queues,
            "limits.max_queues",
            limit
        );
        set!(
            config.limits.max_exchanges,
            limits.max_exchanges,
            "limits.max_exchanges",
            limit
        );
    }

    if let Some(v) = &file.vhosts {
        let vhosts = string_list(v).map_err(|m| invalid("vhosts", m))?;
        let mut seen = HashSet::new();
        for (i, name) in vhosts.iter().enumerate() {
            if name.is_empty() {
                return Err(invalid(&format!("vhosts[{i}]"), "must not be empty".into()));
            }
            if !seen.insert(name) {
                return Err(invalid(
                    &format!("vhosts[{i}]"),
                    format!("vhost {name:?} is listed twice"),
                ));
            }
        }
        config.vhosts = vhosts;
    }

    if let Some(users) = &file.users {
        config.users = read_users(users, &invalid)?;
        config.permissions.clear();
    }
    if let Some(perms) = &file.permissions {
        config.permissions = read_permissions(perms, &invalid)?;
    }
    // Drop the default guest permission if the file removed "/" (with guest kept).
    if file.users.is_none() && file.permissions.is_none() && !config.vhosts.iter().any(|v| v == "/")
    {
        config.permissions.clear();
    }
    check_permission_references(config, &invalid)
}

fn read_users(
    users: &[FileUser],
    invalid: &impl Fn(&str, String) -> ConfigError,
) -> Result<Vec<UserConfig>, ConfigError> {
    let mut out: Vec<UserConfig> = Vec::with_capacity(users.len());
    for (i, u) in users.iter().enumerate() {
        let key = |field: &str| format!("user[{i}].{field}");
        let name = required(&u.name, &key("name"), invalid)?;
        if name.is_empty() {
            return Err(invalid(&key("name"), "must not be empty".into()));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(invalid(
                &key("name"),
                format!("user {name:?} is defined twice"),
            ));
        }
        let mut password = None;
        let password_hash = match (&u.password, &u.password_hash) {
            (Some(p), None) => {
                let p = string(p).map_err(|m| invalid(&key("password"), m))?;
                if p.is_empty() {
                    return Err(invalid(
                        &key("password"),
                        "must not be empty (blank passwords are refused at login; use password_hash = \"\" to lock the account)".into(),
                    ));
                }
                let hash = PasswordHash::new(&p);
                password = Some(p);
                hash
            }
            (None, Some(h)) => {
                let h = string(h).map_err(|m| invalid(&key("password_hash"), m))?;
                PasswordHash::parse(&h)
                    .map_err(|e| invalid(&key("password_hash"), e.to_string()))?
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    &key("password"),
                    "give either password or password_hash, not both".into(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    &key("password"),
                    "missing: give password or password_hash".into(),
                ));
            }
        };
        let tags = match &u.tags {
            Some(t) => string_list(t).map_err(|m| invalid(&key("tags"), m))?,
            None => Vec::new(),
        };
        out.push(UserConfig {
            name,
            password_hash,
            password,
            tags,
        });
    }
    Ok(out)
}

fn read_permissions(
    perms: &[FilePermission],
    invalid: &impl Fn(&str, String) -> ConfigError,
) -> Result<Vec<PermissionConfig>, ConfigError> {
    let mut out: Vec<PermissionConfig> = Vec::with_capacity(perms.len());
    for (i, p) in perms.iter().enumerate() {
        let key = |field: &str| format!("permission[{i}].{field}");
        let pattern = |v: &Option<Value>, field: &str| -> Result<String, ConfigError> {
            let s = required(v, &key(field), invalid)?;
            compile_pattern(&s).map_err(|e| {
                invalid(
                    &key(field),
                    format!("invalid regular expression {s:?}: {e}"),
                )
            })?;
            Ok(s)
        };
        let entry = PermissionConfig {
            user: required(&p.user, &key("user"), invalid)?,
            vhost: required(&p.vhost, &key("vhost"), invalid)?,
            configure: pattern(&p.configure, "configure")?,
            write: pattern(&p.write, "write")?,
            read: pattern(&p.read, "read")?,
        };
        if out
            .iter()
            .any(|o| o.user == entry.user && o.vhost == entry.vhost)
        {
            return Err(invalid(
                &key("vhost"),
                format!(
                    "user {:?} already has permissions on vhost {:?}",
                    entry.user, entry.vhost
                ),
            ));
        }
        out.push(entry);
    }
    Ok(out)
}

fn check_permission_references(
    config: &Config,
    invalid: &impl Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    for (i, p) in config.permissions.iter().enumerate() {
        if !config.users.iter().any(|u| u.name == p.user) {
            return Err(invalid(
                &format!("permission[{i}].user"),
                format!("no user named {:?}", p.user),
            ));
        }
        if !config.vhosts.contains(&p.vhost) {
            return Err(invalid(
                &format!("permission[{i}].vhost"),
                format!("no vhost named {:?} in vhosts", p.vhost),
            ));
        }
    }
    Ok(())
}

/// Applies the flags in `cli` (not `--config`, which [`load`] reads first).
pub fn apply_cli(config: &mut Config, cli: &Cli) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        origin: "command line".into(),
        key: key.into(),
        message,
    };
    if let Some(v) = cli.bind {
        config.bind = v;
    }
    if let Some(v) = cli.port {
        config.port = v;
    }
    if let Some(v) = cli.heartbeat {
        config.heartbeat = v;
    }
    if let Some(v) = cli.frame_max {
        config.frame_max = check_frame_max(v).map_err(|m| invalid("--frame-max", m))?;
    }
    if let Some(v) = cli.channel_max {
        config.channel_max = v;
    }
    if let Some(v) = cli.max_message_size {
        config.max_message_size =
            check_max_message_size(v).map_err(|m| invalid("--max-message-size", m))?;
    }
    if let Some(v) = cli.handshake_timeout {
        config.handshake_timeout =
            check_duration(v).map_err(|m| invalid("--handshake-timeout", m))?;
    }
    if let Some(v) = cli.memory_high_watermark {
        config.memory_high_watermark = v.resolve();
    }
    if let Some(v) = cli.max_connections {
        config.limits.max_connections = v;
    }
    if let Some(v) = cli.max_queues {
        config.limits.max_queues = v;
    }
    if let Some(v) = cli.max_exchanges {
        config.limits.max_exchanges = v;
    }
    if let Some(v) = &cli.log {
        config.log = check_log_filter(v.clone()).map_err(|m| invalid("--log", m))?;
    }
    Ok(())
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

// ---------------------------------------------------------------------------------------
// Value conversion and checks. Each returns the message; the caller adds origin and key.
// ---------------------------------------------------------------------------------------

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Table(_) => "a table".into(),
        Value::Array(_) => "an array".into(),
        other => other.to_string(),
    }
}

fn string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("expected a string, got {}", describe(other))),
    }
}

fn required(
    v: &Option<Value>,
    key: &str,
    invalid: &impl Fn(&str, String) -> ConfigError,
) -> Result<String, ConfigError> {
    match v {
        Some(v) => string(v).map_err(|m| invalid(key, m)),
        None => Err(invalid(key, "missing".into())),
    }
}

fn string_list(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("expected strings, got {}", describe(other))),
            })
            .collect(),
        other => Err(format!(
            "expected an array of strings, got {}",
            describe(other)
        )),
    }
}

fn integer<T: TryFrom<i64> + Into<i64> + Copy + std::fmt::Display>(
    v: &Value,
    min: T,
    max: T,
) -> Result<T, String> {
    match v {
        Value::Integer(i) => T::try_from(*i)
            .ok()
            .filter(|t| (*t).into() >= min.into() && (*t).into() <= max.into())
            .ok_or_else(|| format!("must be between {min} and {max}, got {i}")),
        other => Err(format!("expected an integer, got {}", describe(other))),
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("expected an IP address such as 127.0.0.1, 0.0.0.0 or ::, got {s:?}"))
}

fn check_frame_max(v: u32) -> Result<u32, String> {
    if v < FRAME_MIN_SIZE {
        Err(format!("must be at least {FRAME_MIN_SIZE}, got {v}"))
    } else {
        Ok(v)
    }
}

fn check_max_message_size(v: u64) -> Result<u64, String> {
    if v == 0 {
        Err("must be at least 1 byte".into())
    } else if v > MAX_MESSAGE_SIZE_LIMIT {
        Err(format!("must be at most 512MiB, got {}", show_size(v)))
    } else {
        Ok(v)
    }
}

fn check_duration(d: Duration) -> Result<Duration, String> {
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

fn check_log_filter(s: String) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(&s)
        .map_err(|e| format!("invalid log filter {s:?}: {e}"))?;
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

fn size(v: &Value) -> Result<u64, String> {
    match v {
        Value::Integer(i) => {
            u64::try_from(*i).map_err(|_| format!("must not be negative, got {i}"))
        }
        Value::String(s) => parse_size(s),
        other => Err(format!(
            "expected bytes or a size such as \"64MiB\", got {}",
            describe(other)
        )),
    }
}

fn duration(v: &Value) -> Result<Duration, String> {
    let d = match v {
        Value::Integer(i) => u64::try_from(*i)
            .map(Duration::from_secs)
            .map_err(|_| format!("must not be negative, got {i}"))?,
        Value::Float(f) => seconds(*f)?,
        Value::String(s) => parse_duration(s)?,
        other => return Err(format!("expected seconds, got {}", describe(other))),
    };
    check_duration(d)
}

fn seconds(f: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(f)
        .map_err(|_| format!("expected a non-negative number of seconds, got {f}"))
}

fn memory_limit(v: &Value) -> Result<MemoryLimit, String> {
    match v {
        Value::Integer(i) => u64::try_from(*i)
            .map(MemoryLimit::Bytes)
            .map_err(|_| format!("must not be negative, got {i}")),
        Value::Float(f) => fraction(*f),
        Value::String(s) => parse_memory_limit(s),
        other => Err(format!(
            "expected a fraction of RAM, a percentage or a size, got {}",
            describe(other)
        )),
    }
}

fn fraction(f: f64) -> Result<MemoryLimit, String> {
    if (0.0..=1.0).contains(&f) {
        Ok(MemoryLimit::Fraction(f))
    } else {
        Err(format!(
            "a fraction of RAM must be between 0 and 1, got {f}"
        ))
    }
}

fn limit(v: &Value) -> Result<usize, String> {
    match v {
        Value::Integer(i) => {
            usize::try_from(*i).map_err(|_| format!("must not be negative, got {i}"))
        }
        Value::String(s) => parse_limit(s),
        other => Err(format!(
            "expected a number or \"unlimited\", got {}",
            describe(other)
        )),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    fn file(text: &str) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        apply_file(&mut c, Path::new("fedamq.toml"), text)?;
        Ok(c)
    }

    fn file_err(text: &str) -> String {
        file(text).unwrap_err().to_string()
    }

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("fedamq").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_are_rabbitmqs() {
        let c = Config::default();
        assert_eq!(c.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(
            (c.port, c.heartbeat, c.frame_max, c.channel_max),
            (5672, 60, 131_072, 2047)
        );
        assert_eq!(c.max_message_size, 134_217_728);
        assert_eq!(c.handshake_timeout, Duration::from_secs(10));
        assert!(c.memory_high_watermark > 0);
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.vhosts, ["/"]);
        assert_eq!(c.users.len(), 1);
        assert_eq!(c.users[0].name, "guest");
        assert!(c.users[0].password_hash.verify("guest"));
        assert_eq!(c.users[0].tags, ["administrator"]);
        assert_eq!(c.permissions, [default_permission()]);
        assert_eq!(c.log, "info");
    }

    #[test]
    fn no_file_no_flags_is_the_default() {
        let c = load(&Cli::default()).unwrap();
        let d = Config::default();
        // Hashes are salted afresh, so compare everything else.
        assert_eq!(
            Config {
                users: vec![],
                ..c.clone()
            },
            Config { users: vec![], ..d }
        );
        assert!(c.users[0].password_hash.verify("guest"));
    }

    #[test]
    fn memory_watermark_default_is_40_percent() {
        match total_memory() {
            Some(t) => assert_eq!(Config::default().memory_high_watermark, fraction_of(t, 0.4)),
            None => assert_eq!(Config::default().memory_high_watermark, GIB),
        }
        assert_eq!(
            parse_meminfo("MemTotal:       16318712 kB\nMemFree: 1 kB\n"),
            Some(16_318_712 * 1024)
        );
        assert_eq!(parse_meminfo("nothing"), None);
    }

    #[test]
    fn file_overrides_defaults() {
        let c = file(
            r#"
            bind = "::"
            port = 0
            heartbeat = 0
            frame_max = 4096
            channel_max = 0
            max_message_size = "64MiB"
            handshake_timeout = 2.5
            memory_high_watermark = "2GiB"
            log = "fedamq=debug,warn"
            vhosts = ["/", "staging"]

            [limits]
            max_connections = 100
            max_queues = "unlimited"
            max_exchanges = 50

            [[user]]
            name = "admin"
            password = "change-me"
            tags = ["administrator", "monitoring"]

            [[user]]
            name = "app"
            password_hash = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"

            [[permission]]
            user = "app"
            vhost = "staging"
            configure = "^app\\."
            write = "^(app\\.|amq\\.default$)"
            read = ".*"
            "#,
        )
        .unwrap();
        assert_eq!(c.bind, "::".parse::<IpAddr>().unwrap());
        assert_eq!(
            (c.port, c.heartbeat, c.frame_max, c.channel_max),
            (0, 0, 4096, 0)
        );
        assert_eq!(c.max_message_size, 64 * MIB);
        assert_eq!(c.handshake_timeout, Duration::from_millis(2500));
        assert_eq!(c.memory_high_watermark, 2 * GIB);
        assert_eq!(c.log, "fedamq=debug,warn");
        assert_eq!(c.vhosts, ["/", "staging"]);
        assert_eq!(
            c.limits,
            Limits {
                max_connections: 100,
                max_queues: usize::MAX,
                max_exchanges: 50
            }
        );
        assert_eq!(c.users.len(), 2);
        assert!(c.users[0].password_hash.verify("change-me"));
        assert_eq!(c.users[0].tags, ["administrator", "monitoring"]);
        assert!(c.users[1].password_hash.verify("test12"));
        assert!(c.users[1].tags.is_empty());
        // [[user]] replaced guest and its permission.
        assert_eq!(c.permissions.len(), 1);
        assert_eq!(c.permissions[0].configure, "^app\\.");
    }

    #[test]
    fn untouched_settings_keep_defaults() {
        let c = file("port = 5673").unwrap();
        assert_eq!(c.port, 5673);
        assert_eq!(c.frame_max, 131_072);
        assert_eq!(c.users[0].name, "guest");
        assert_eq!(c.permissions, [default_permission()]);
    }

    #[test]
    fn guest_permissions_follow_the_file() {
        // Permissions without users: guest stays, the file's entries replace its default.
        let c = file(
            "vhosts = [\"a\"]\n[[permission]]\nuser = \"guest\"\nvhost = \"a\"\nconfigure = \"\"\nwrite = \".*\"\nread = \".*\"",
        )
        .unwrap();
        assert_eq!(c.permissions.len(), 1);
        assert_eq!(c.permissions[0].vhost, "a");
        // No "/" and no permissions: guest has none rather than one on a missing vhost.
        let c = file("vhosts = [\"a\"]").unwrap();
        assert!(c.permissions.is_empty());
    }

    #[test]
    fn memory_watermark_forms() {
        assert_eq!(
            file("memory_high_watermark = 0")
                .unwrap()
                .memory_high_watermark,
            0
        );
        assert_eq!(
            file("memory_high_watermark = 1000")
                .unwrap()
                .memory_high_watermark,
            1000
        );
        assert_eq!(parse_memory_limit("0"), Ok(MemoryLimit::Bytes(0)));
        assert_eq!(parse_memory_limit("0.4"), Ok(MemoryLimit::Fraction(0.4)));
        assert_eq!(parse_memory_limit("40%"), Ok(MemoryLimit::Fraction(0.4)));
        assert_eq!(
            parse_memory_limit("2GB"),
            Ok(MemoryLimit::Bytes(2_000_000_000))
        );
        assert!(parse_memory_limit("150%").is_err());
        assert!(parse_memory_limit("1.5").is_err());
        let half = file("memory_high_watermark = 0.5")
            .unwrap()
            .memory_high_watermark;
        assert_eq!(half, total_memory().map_or(GIB, |t| fraction_of(t, 0.5)));
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64MiB"), Ok(64 * MIB));
        assert_eq!(parse_size("64 mib"), Ok(64 * MIB));
        assert_eq!(parse_size("512k"), Ok(512 * KIB));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert!(parse_size("1.5GiB").is_err());
        assert!(parse_size("12XB").unwrap_err().contains("XB"));
        assert!(
            parse_size("99999999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("NaN").is_err());
        assert_eq!(parse_limit("infinity"), Ok(usize::MAX));
        assert_eq!(parse_limit("7"), Ok(7));
        assert!(parse_limit("-7").is_err());
    }

    #[test]
    fn cli_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fedamq.toml");
        std::fs::write(
            &path,
            "port = 5673\nheartbeat = 30\nframe_max = 8192\n[limits]\nmax_queues = 10\n",
        )
        .unwrap();
        let path_str = path.to_str().unwrap();
        let c = load(&cli(&[
            "--config",
            path_str,
            "--port",
            "5674",
            "--max-message-size",
            "1MiB",
            "--memory-high-watermark",
            "0",
            "--handshake-timeout",
            "250ms",
            "--max-queues",
            "unlimited",
            "--max-connections",
            "3",
            "--bind",
            "0.0.0.0",
            "--log",
            "debug",
        ]))
        .unwrap();
        assert_eq!(c.port, 5674); // flag beats file
        assert_eq!(c.heartbeat, 30); // file beats default
        assert_eq!(c.frame_max, 8192);
        assert_eq!(c.channel_max, 2047); // default
        assert_eq!(c.max_message_size, MIB);
        assert_eq!(c.memory_high_watermark, 0);
        assert_eq!(c.handshake_timeout, Duration::from_millis(250));
        assert_eq!(c.limits.max_queues, usize::MAX);
        assert_eq!(c.limits.max_connections, 3);
        assert_eq!(c.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(c.log, "debug");
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = load(&cli(&["--config", "/nonexistent/fedamq.toml"])).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(
            e.to_string().starts_with("/nonexistent/fedamq.toml: "),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = file_err("port = 5672\nprot = 1\n");
        assert!(
            e.starts_with("fedamq.toml:2:1: unknown field `prot`"),
            "{e}"
        );
        let e = file_err("[limits]\nmax_conections = 1\n");
        assert!(e.contains("unknown field `max_conections`"), "{e}");
        let e = file_err("[[user]]\nname = \"a\"\npassword = \"b\"\npasswd = \"c\"\n");
        assert!(e.contains("unknown field `passwd`"), "{e}");
        let e = file_err(
            "[[permission]]\nuser = \"guest\"\nvhost = \"/\"\nconfigure = \"\"\nwrite = \"\"\nread = \"\"\nexchange = \"\"",
        );
        assert!(e.contains("unknown field `exchange`"), "{e}");
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = file("port = = 1").unwrap_err();
        assert!(matches!(e, ConfigError::Parse { line: 1, .. }), "{e}");
        let e = file("limits = 5").unwrap_err().to_string();
        assert!(
            e.starts_with("fedamq.toml:1:") && e.ends_with("expected a [limits] table"),
            "{e}"
        );
    }

    #[test]
    fn invalid_values_name_the_key() {
        for (text, expected) in [
            (
                "frame_max = 100",
                "fedamq.toml: frame_max: must be at least 4096, got 100",
            ),
            (
                "port = \"abc\"",
                "fedamq.toml: port: expected an integer, got \"abc\"",
            ),
            (
                "port = 70000",
                "fedamq.toml: port: must be between 0 and 65535, got 70000",
            ),
            (
                "heartbeat = -1",
                "fedamq.toml: heartbeat: must be between 0 and 65535, got -1",
            ),
            (
                "max_message_size = \"1GiB\"",
                "fedamq.toml: max_message_size: must be at most 512MiB, got 1GiB",
            ),
            (
                "max_message_size = 0",
                "fedamq.toml: max_message_size: must be at least 1 byte",
            ),
            (
                "handshake_timeout = 0",
                "fedamq.toml: handshake_timeout: must be more than 0",
            ),
            (
                "bind = \"localhost\"",
                "fedamq.toml: bind: expected an IP address",
            ),
            (
                "memory_high_watermark = 2.0",
                "fedamq.toml: memory_high_watermark: a fraction of RAM must be between 0 and 1",
            ),
            (
                "log = \"foo=bar=baz\"",
                "fedamq.toml: log: invalid log filter",
            ),
            (
                "vhosts = \"/\"",
                "fedamq.toml: vhosts: expected an array of strings",
            ),
            (
                "vhosts = [\"/\", \"/\"]",
                "fedamq.toml: vhosts[1]: vhost \"/\" is listed twice",
            ),
            (
                "[limits]\nmax_queues = -1",
                "fedamq.toml: limits.max_queues: must not be negative",
            ),
            (
                "[[user]]\nname = \"a\"",
                "fedamq.toml: user[0].password: missing",
            ),
            (
                "[[user]]\nname = \"a\"\npassword = \"\"",
                "fedamq.toml: user[0].password: must not be empty",
            ),
            (
                "[[user]]\nname = \"a\"\npassword = \"x\"\npassword_hash = \"\"",
                "fedamq.toml: user[0].password: give either",
            ),
            (
                "[[user]]\nname = \"a\"\npassword_hash = \"ab!c\"",
                "fedamq.toml: user[0].password_hash: not valid base64",
            ),
            (
                "[[user]]\npassword = \"x\"",
                "fedamq.toml: user[0].name: missing",
            ),
            (
                "[[user]]\nname = \"a\"\npassword = \"x\"\ntags = \"admin\"",
                "fedamq.toml: user[0].tags: expected an array",
            ),
            (
                "[[user]]\nname = \"a\"\npassword = \"x\"\n[[user]]\nname = \"a\"\npassword = \"y\"",
                "fedamq.toml: user[1].name: user \"a\" is defined twice",
            ),
        ] {
            let e = file_err(text);
            assert!(
                e.starts_with(expected),
                "{text:?}: got {e:?}, want {expected:?}"
            );
        }
        let e = file("frame_max = 100").unwrap_err();
        assert_eq!(e.key(), Some("frame_max"));
    }

    #[test]
    fn invalid_flags_name_the_flag() {
        let e = load(&cli(&["--frame-max", "100"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "command line: --frame-max: must be at least 4096, got 100"
        );
        let e = load(&cli(&["--max-message-size", "1GiB"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "command line: --max-message-size: must be at most 512MiB, got 1GiB"
        );
        let e = load(&cli(&["--handshake-timeout", "0"])).unwrap_err();
        assert_eq!(e.key(), Some("--handshake-timeout"));
        // Malformed values are refused by clap itself, naming the flag.
        let e = Cli::try_parse_from(["fedamq", "--max-message-size", "12XB"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--max-message-size") && e.contains("XB"), "{e}");
        let e = Cli::try_parse_from(["fedamq", "--port", "http"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--port"), "{e}");
    }

    #[test]
    fn permissions_must_reference_known_users_and_vhosts() {
        let perm = |user: &str, vhost: &str| {
            format!(
                "[[permission]]\nuser = \"{user}\"\nvhost = \"{vhost}\"\nconfigure = \".*\"\nwrite = \".*\"\nread = \".*\"\n"
            )
        };
        let e = file_err(&perm("nobody", "/"));
        assert_eq!(
            e,
            "fedamq.toml: permission[0].user: no user named \"nobody\""
        );
        let e = file_err(&perm("guest", "nowhere"));
        assert_eq!(
            e,
            "fedamq.toml: permission[0].vhost: no vhost named \"nowhere\" in vhosts"
        );
        // guest is gone once [[user]] is given.
        let e = file_err(&format!(
            "[[user]]\nname = \"a\"\npassword = \"x\"\n{}",
            perm("guest", "/")
        ));
        assert!(e.contains("no user named \"guest\""), "{e}");
        let e = file_err(&format!("{}{}", perm("guest", "/"), perm("guest", "/")));
        assert!(
            e.starts_with(
                "fedamq.toml: permission[1].vhost: user \"guest\" already has permissions"
            ),
            "{e}"
        );
    }

    #[test]
    fn permission_patterns_must_compile() {
        let e = file_err(
            "[[permission]]\nuser = \"guest\"\nvhost = \"/\"\nconfigure = \"(\"\nwrite = \"\"\nread = \"\"",
        );
        assert!(
            e.starts_with("fedamq.toml: permission[0].configure: invalid regular expression \"(\""),
            "{e}"
        );
        let e = file_err(
            "[[permission]]\nuser = \"guest\"\nvhost = \"/\"\nconfigure = \"\"\nwrite = \"\"",
        );
        assert_eq!(e, "fedamq.toml: permission[0].read: missing");
    }

    #[test]
    fn loaded_users_feed_auth() {
        let c = file(
            "[[user]]\nname = \"app\"\npassword = \"pw\"\n[[permission]]\nuser = \"app\"\nvhost = \"/\"\nconfigure = \"\"\nwrite = \"^amq\\\\.default$\"\nread = \".*\"",
        )
        .unwrap();
        let users = c.user_table();
        assert_eq!(users.authenticate(b"PLAIN", b"\0app\0pw"), Ok("app".into()));
        assert!(users.authenticate(b"PLAIN", b"\0guest\0guest").is_err());
        assert!(users.check("app", "/", crate::auth::Permission::Write, b""));
        assert!(!users.check("app", "/", crate::auth::Permission::Configure, b"q"));
    }

    #[test]
    fn help_documents_every_option() {
        let mut cmd = Cli::command();
        cmd.build();
        cmd.clone().debug_assert();
        let help = cmd.render_long_help().to_string();
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            assert!(
                arg.get_help().is_some_and(|h| !h.to_string().is_empty()),
                "--{id} has no help"
            );
            let long = arg.get_long().unwrap();
            assert!(
                help.contains(&format!("--{long}")),
                "--{long} missing from --help"
            );
        }
        for flag in [
            "--config",
            "--bind",
            "--port",
            "--heartbeat",
            "--frame-max",
            "--channel-max",
            "--max-message-size",
            "--handshake-timeout",
            "--memory-high-watermark",
            "--max-connections",
            "--max-queues",
            "--max-exchanges",
            "--log",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
    }

    #[test]
    fn module_doc_example_is_valid() {
        // The example at the top of this file, kept in step with the parser.
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| format!("{}\n", l.strip_prefix("//! ").unwrap_or("")))
            .collect();
        assert!(example.contains("[[permission]]"));
        let c = file(&example).unwrap();
        assert_eq!(c.users.len(), 2);
        assert_eq!(c.limits.max_connections, 10_000);
    }
}
