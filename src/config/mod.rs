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
//! load_definitions = "definitions.json"  # RabbitMQ's JSON, imported at start-up
//! vhosts = ["/", "staging"]
//!
//! ssl_port = 5671              # the amqps listener; it runs when ssl_options.certfile is set
//! ssl_handshake_timeout = 5     # seconds for the TLS handshake (before handshake_timeout)
//! ssl_cert_login_from = "common_name"  # EXTERNAL's user: or distinguished_name,
//!                               # subject_alternative_name (the first DNS name)
//!
//! [management]                  # the HTTP API (RabbitMQ's paths)
//! bind = "127.0.0.1"
//! port = 15672                  # 0 picks any free port; "off" turns the API off
//!
//! [management.ssl]              # the API over HTTPS too (RabbitMQ's management.ssl.*)
//! port = 15671                  # 0 picks any free port; it runs when certfile is set
//! certfile = "/etc/fedamq/server.pem"  # and keyfile, cacertfile, verify,
//! keyfile = "/etc/fedamq/server.key"   # fail_if_no_peer_cert, versions, ciphers
//!                               # as in [ssl_options] below
//!
//! [prometheus]                  # /metrics, as rabbitmq_prometheus names things
//! bind = "127.0.0.1"
//! port = 15692                  # 0 picks any free port; "off" turns it off
//!
//! [ssl_options]                 # RabbitMQ's names; PEM files
//! certfile = "/etc/fedamq/server.pem"  # the chain, leaf first
//! keyfile = "/etc/fedamq/server.key"
//! cacertfile = "/etc/fedamq/ca.pem"    # CA for client certificates
//! verify = "verify_peer"        # or "verify_none" (the default): ask for client certs
//! fail_if_no_peer_cert = true   # with verify_peer: refuse clients without one
//! versions = ["tlsv1.3", "tlsv1.2"]    # the default: both
//! ciphers = ["TLS_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"]  # default: all
//!
//! [limits]                      # each an integer or "unlimited" (the default)
//! max_connections = 10000
//! max_queues = "unlimited"      # per vhost
//! max_exchanges = 1000          # per vhost
//!
//! [[federation_upstream]]       # and [[federation_upstream_set]], [[policy]]: see
//! name = "site-a"               # `federation` (RabbitMQ's parameters and policies)
//! uri = "amqp://fed:secret@site-a:5672"
//!
//! [ha]                          # one member of an HA pair: see `ha`
//! role = "primary"
//! peer = "amqp://peer:secret@10.0.0.2:5672"
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
//! Users, vhosts and permissions come from the file, and then from `load_definitions`
//! if given (imported as `POST /api/definitions` would: users and objects it names are
//! added or updated; a file that does not import stops start-up). `vhosts` replaces the default
//! `["/"]`. Any `[[user]]` replaces the default `guest` user *and* its permission, so only
//! the file's `[[permission]]` entries apply; with no `[[user]]`, `guest` stays and
//! `[[permission]]` entries, if any, replace its default one (`guest` keeps full access
//! to `/` only when the file has no `[[permission]]` and `/` is a vhost). Permissions
//! naming an unknown user or vhost are errors, as are patterns that do not compile (see
//! [`crate::auth::permissions`] for how they are matched).
//!
//! # Where things are
//!
//! - [`settings`]: [`Config`] and its defaults; [`Config::user_table`] turns the users and
//!   permissions into the broker's [`crate::auth::Users`];
//! - [`file`](mod@file): the TOML file; [`cli`]: the flags; [`values`]: the value parsers and
//!   checks both share; [`memory`]: the memory watermark and total memory;
//! - [`ha`]: the `[ha]` section (an HA pair's member);
//! - [`error`]: why loading failed ([`ConfigError`]).

pub mod cli;
pub mod error;
pub mod federation;
pub mod file;
pub mod ha;
pub mod memory;
pub mod settings;
pub mod values;

#[cfg(test)]
mod tests;

pub use cli::{Cli, apply_cli};
pub use error::ConfigError;
pub use file::apply_file;
pub use ha::{HaConfig, HaRole};
pub use memory::{
    DEFAULT_MEMORY_FRACTION, FALLBACK_MEMORY_HIGH_WATERMARK, MemoryLimit, total_memory,
};
pub use settings::{
    Config, Limits, ManagementListener, ManagementTls, PermissionConfig, UserConfig,
};
pub use values::{
    FRAME_MIN_SIZE, MAX_MESSAGE_SIZE_LIMIT, parse_duration, parse_limit, parse_memory_limit,
    parse_size,
};

/// The TLS settings that only make sense together, checked once every layer is read
/// (the files themselves are read when the listener starts): the `amqps` listener's
/// and the management API's.
fn check_tls(config: &Config) -> Result<(), ConfigError> {
    check_tls_options(&config.ssl_options, "ssl_options")?;
    check_tls_options(&config.management_ssl.options, "management.ssl")
}

/// One listener's TLS settings, `section` naming them in errors.
fn check_tls_options(
    tls: &crate::transport::tls::TlsServerSettings,
    section: &str,
) -> Result<(), ConfigError> {
    use crate::transport::tls::Verify;
    let invalid = |key: &str, message: &str| ConfigError::Invalid {
        origin: "configuration".into(),
        key: format!("{section}.{key}"),
        message: message.into(),
    };
    match (&tls.certfile, &tls.keyfile) {
        (Some(_), None) => return Err(invalid("keyfile", "missing: certfile is set")),
        (None, Some(_)) => return Err(invalid("certfile", "missing: keyfile is set")),
        _ => {}
    }
    if tls.certfile.is_some() && tls.verify == Verify::VerifyPeer && tls.cacertfile.is_none() {
        return Err(invalid(
            "cacertfile",
            "missing: verify_peer checks client certificates against it",
        ));
    }
    Ok(())
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
    check_tls(&config)?;
    Ok(config)
}
