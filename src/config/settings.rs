//! The settings the broker runs with, and their defaults (RabbitMQ's).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use super::memory::default_memory_high_watermark;
use super::values::MIB;
use crate::auth::{PasswordHash, Users};
use crate::transport::tls::{CertLoginFrom, TlsServerSettings};

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
    /// The `amqps` listener's port (on `bind`); 0 = any free port. Used only when
    /// `ssl_options.certfile` is set.
    pub ssl_port: u16,
    /// The `amqps` listener's certificate, key, client verification, versions and
    /// ciphers (RabbitMQ's `ssl_options`), and `ssl_handshake_timeout`. No TLS listener
    /// without a `certfile`.
    pub ssl_options: TlsServerSettings,
    /// Where EXTERNAL logins take the user name from in a client certificate.
    pub ssl_cert_login_from: CertLoginFrom,
    /// A definitions file (RabbitMQ's JSON) imported at start-up, after the users,
    /// vhosts and permissions above; a file that does not import stops start-up.
    pub load_definitions: Option<PathBuf>,
    /// This node's name in a federation graph (RabbitMQ's cluster name): what
    /// `x-received-from` entries and upstream queue names call it, so it must differ
    /// between linked brokers. `None`: `fedamq@<host name>`. The global parameter
    /// `cluster_name`, when set, takes precedence (see `Broker::cluster_name`).
    pub cluster_name: Option<String>,
    /// The management HTTP API's listener (RabbitMQ's 127.0.0.1:15672 by default).
    pub management: ManagementListener,
    /// The Prometheus endpoint's listener (rabbitmq_prometheus's 127.0.0.1:15692 by
    /// default).
    pub prometheus: ManagementListener,
    /// The management API's HTTPS listener (RabbitMQ's `management.ssl.*`), on
    /// `management.bind`.
    pub management_ssl: ManagementTls,
    /// This broker as a member of an HA pair (`[ha]`); None: standalone.
    pub ha: Option<super::ha::HaConfig>,
    /// The file's federation upstreams, upstream sets and policies, as a definitions
    /// document (`federation.rs`), imported at start-up after `load_definitions`.
    pub file_definitions: Option<serde_json::Value>,
}

/// The management API over HTTPS. It runs when `options.certfile` is set, beside the
/// plain HTTP listener (or alone, with `management.port = "off"`), as RabbitMQ's
/// `management.ssl.port` runs beside `management.tcp.port`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagementTls {
    /// 0 picks a free port (RabbitMQ's default is 15671).
    pub port: u16,
    /// Certificate, key, client verification, versions and ciphers, by the same names
    /// as the `amqps` listener's `ssl_options`.
    pub options: TlsServerSettings,
}

impl Default for ManagementTls {
    fn default() -> Self {
        ManagementTls {
            port: 15671,
            options: TlsServerSettings::default(),
        }
    }
}

impl ManagementTls {
    /// Whether the HTTPS listener runs.
    pub fn enabled(&self) -> bool {
        self.options.certfile.is_some()
    }
}

/// Where a management HTTP listener (the API, or the Prometheus endpoint) listens, if
/// anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagementListener {
    pub bind: IpAddr,
    /// `None` turns the API off; 0 picks a free port.
    pub port: Option<u16>,
}

impl Default for ManagementListener {
    fn default() -> Self {
        ManagementListener::loopback(15672)
    }
}

impl ManagementListener {
    /// On 127.0.0.1:`port`.
    pub fn loopback(port: u16) -> Self {
        ManagementListener {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: Some(port),
        }
    }
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
            load_definitions: None,
            cluster_name: None,
            management: ManagementListener::default(),
            prometheus: ManagementListener::loopback(15692),
            management_ssl: ManagementTls::default(),
            ssl_port: 5671,
            ssl_options: TlsServerSettings::default(),
            ssl_cert_login_from: CertLoginFrom::default(),
            ha: None,
            file_definitions: None,
        }
    }
}

impl Config {
    /// Whether the `amqps` listener runs.
    pub fn tls_enabled(&self) -> bool {
        self.ssl_options.certfile.is_some()
    }

    /// The user table this configuration describes. [`load`](super::load) has already rejected
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

pub(super) fn default_permission() -> PermissionConfig {
    PermissionConfig {
        user: "guest".into(),
        vhost: "/".into(),
        configure: ".*".into(),
        write: ".*".into(),
        read: ".*".into(),
    }
}
