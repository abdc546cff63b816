//! The command line (clap), each flag also readable from a `FEDAMQ_*` environment
//! variable; flags override the file.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::error::ConfigError;
use super::memory::MemoryLimit;
use super::settings::Config;
use super::values::{
    PortOrOff, check_cluster_name, check_duration, check_frame_max, check_log_filter,
    check_max_message_size, parse_duration, parse_limit, parse_management_port, parse_memory_limit,
    parse_size,
};
use crate::transport::tls::{CertLoginFrom, TlsVersion, Verify, check_ciphers};

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

    /// Memory held (messages, queues, topology) above which publishers are blocked: a
    /// fraction of RAM (0.4), a percentage (40%), a size (2GiB), or 0 to disable
    /// [default: 40% of RAM].
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

    /// IP address the management HTTP API listens on [default: 127.0.0.1].
    #[arg(long, value_name = "ADDR", env = "FEDAMQ_MANAGEMENT_BIND")]
    pub management_bind: Option<IpAddr>,

    /// Port of the management HTTP API; 0 picks a free one, "off" turns the API off
    /// [default: 15672].
    #[arg(long, value_name = "PORT|off", env = "FEDAMQ_MANAGEMENT_PORT", value_parser = parse_management_port)]
    pub management_port: Option<PortOrOff>,

    /// IP address the Prometheus endpoint (`/metrics`) listens on [default: 127.0.0.1].
    #[arg(long, value_name = "ADDR", env = "FEDAMQ_PROMETHEUS_BIND")]
    pub prometheus_bind: Option<IpAddr>,

    /// Port of the Prometheus endpoint (`/metrics`); 0 picks a free one, "off" turns it
    /// off [default: 15692].
    #[arg(long, value_name = "PORT|off", env = "FEDAMQ_PROMETHEUS_PORT", value_parser = parse_management_port)]
    pub prometheus_port: Option<PortOrOff>,

    /// Log filter, e.g. info or fedamq=debug,warn; RUST_LOG overrides it [default: info].
    #[arg(long, value_name = "FILTER", env = "FEDAMQ_LOG")]
    pub log: Option<String>,

    /// Definitions file (RabbitMQ's JSON, as `rabbitmqctl export_definitions` writes)
    /// to import at start-up; start-up fails if it does not import.
    #[arg(long, value_name = "PATH", env = "FEDAMQ_LOAD_DEFINITIONS")]
    pub load_definitions: Option<PathBuf>,

    /// This node's name in a federation graph (RabbitMQ's cluster name) [default:
    /// fedamq@<host name>].
    #[arg(long, value_name = "NAME", env = "FEDAMQ_CLUSTER_NAME")]
    pub cluster_name: Option<String>,

    /// Port of the amqps (TLS) listener, which runs when --ssl-certfile is given; 0 picks
    /// a free one [default: 5671].
    #[arg(long, value_name = "PORT", env = "FEDAMQ_SSL_PORT")]
    pub ssl_port: Option<u16>,

    /// The TLS listener's certificate chain, PEM (ssl_options.certfile).
    #[arg(long, value_name = "PATH", env = "FEDAMQ_SSL_CERTFILE")]
    pub ssl_certfile: Option<PathBuf>,

    /// The TLS listener's private key, PEM (ssl_options.keyfile).
    #[arg(long, value_name = "PATH", env = "FEDAMQ_SSL_KEYFILE")]
    pub ssl_keyfile: Option<PathBuf>,

    /// CA certificates client certificates are checked against, PEM
    /// (ssl_options.cacertfile).
    #[arg(long, value_name = "PATH", env = "FEDAMQ_SSL_CACERTFILE")]
    pub ssl_cacertfile: Option<PathBuf>,

    /// verify_peer asks clients for a certificate and checks it [default: verify_none].
    #[arg(long, value_name = "MODE", env = "FEDAMQ_SSL_VERIFY")]
    pub ssl_verify: Option<Verify>,

    /// With verify_peer, refuse clients that send no certificate [default: false].
    #[arg(long, value_name = "BOOL", env = "FEDAMQ_SSL_FAIL_IF_NO_PEER_CERT")]
    pub ssl_fail_if_no_peer_cert: Option<bool>,

    /// TLS versions, comma-separated: tlsv1.2,tlsv1.3 [default: both].
    #[arg(
        long,
        value_name = "LIST",
        env = "FEDAMQ_SSL_VERSIONS",
        value_delimiter = ','
    )]
    pub ssl_versions: Option<Vec<TlsVersion>>,

    /// Cipher suites, comma-separated, by OpenSSL or IANA name [default: all supported].
    #[arg(
        long,
        value_name = "LIST",
        env = "FEDAMQ_SSL_CIPHERS",
        value_delimiter = ','
    )]
    pub ssl_ciphers: Option<Vec<String>>,

    /// Time a client has for the TLS handshake, before the AMQP one: seconds, or e.g.
    /// 500ms [default: 5].
    #[arg(long, value_name = "DURATION", env = "FEDAMQ_SSL_HANDSHAKE_TIMEOUT", value_parser = parse_duration)]
    pub ssl_handshake_timeout: Option<Duration>,

    /// Where an EXTERNAL login takes the user name from in the client certificate:
    /// common_name, distinguished_name or subject_alternative_name [default: common_name].
    #[arg(long, value_name = "FIELD", env = "FEDAMQ_SSL_CERT_LOGIN_FROM")]
    pub ssl_cert_login_from: Option<CertLoginFrom>,
}

/// Applies the flags in `cli` (not `--config`, which [`load`](super::load) reads first).
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
    if let Some(v) = cli.management_bind {
        config.management.bind = v;
    }
    if let Some(v) = cli.management_port {
        config.management.port = v.0;
    }
    if let Some(v) = cli.prometheus_bind {
        config.prometheus.bind = v;
    }
    if let Some(v) = cli.prometheus_port {
        config.prometheus.port = v.0;
    }
    if let Some(v) = &cli.log {
        config.log = check_log_filter(v.clone()).map_err(|m| invalid("--log", m))?;
    }
    if let Some(v) = &cli.load_definitions {
        config.load_definitions = Some(v.clone());
    }
    if let Some(v) = &cli.cluster_name {
        config.cluster_name =
            Some(check_cluster_name(v.clone()).map_err(|m| invalid("--cluster-name", m))?);
    }
    if let Some(v) = cli.ssl_port {
        config.ssl_port = v;
    }
    let tls = &mut config.ssl_options;
    if let Some(v) = &cli.ssl_certfile {
        tls.certfile = Some(v.clone());
    }
    if let Some(v) = &cli.ssl_keyfile {
        tls.keyfile = Some(v.clone());
    }
    if let Some(v) = &cli.ssl_cacertfile {
        tls.cacertfile = Some(v.clone());
    }
    if let Some(v) = cli.ssl_verify {
        tls.verify = v;
    }
    if let Some(v) = cli.ssl_fail_if_no_peer_cert {
        tls.fail_if_no_peer_cert = v;
    }
    if let Some(v) = &cli.ssl_versions {
        tls.versions = v.clone();
    }
    if let Some(v) = &cli.ssl_ciphers {
        check_ciphers(v).map_err(|m| invalid("--ssl-ciphers", m))?;
        tls.ciphers = v.clone();
    }
    if let Some(v) = cli.ssl_handshake_timeout {
        tls.handshake_timeout =
            check_duration(v).map_err(|m| invalid("--ssl-handshake-timeout", m))?;
    }
    if let Some(v) = cli.ssl_cert_login_from {
        config.ssl_cert_login_from = v;
    }
    Ok(())
}
