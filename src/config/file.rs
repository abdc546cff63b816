//! The TOML file: read on top of the defaults, every value checked and every error
//! naming the file, line or key.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;
use super::memory::MemoryLimit;
use super::settings::{Config, PermissionConfig, UserConfig};
use super::values::{
    check_cluster_name, check_duration, check_frame_max, check_log_filter, check_max_message_size,
    fraction, parse_duration, parse_ip, parse_limit, parse_management_port, parse_memory_limit,
    parse_size, seconds,
};
use crate::auth::{PasswordHash, compile_pattern};
use crate::transport::tls::{TlsServerSettings, TlsVersion, check_ciphers};

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
    load_definitions: Option<Value>,
    cluster_name: Option<Value>,
    vhosts: Option<Value>,
    limits: Option<FileLimits>,
    management: Option<FileManagement>,
    prometheus: Option<FilePrometheus>,
    #[serde(rename = "user", alias = "users")]
    users: Option<Vec<FileUser>>,
    #[serde(rename = "permission", alias = "permissions")]
    permissions: Option<Vec<FilePermission>>,
    ssl_port: Option<Value>,
    ssl_handshake_timeout: Option<Value>,
    ssl_cert_login_from: Option<Value>,
    ssl_options: Option<FileSslOptions>,
    ha: Option<FileHa>,
    federation_upstream: Option<Vec<Value>>,
    federation_upstream_set: Option<Vec<Value>>,
    #[serde(rename = "policy", alias = "policies")]
    policies: Option<Vec<Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [ha] table")]
struct FileHa {
    role: Option<Value>,
    peer: Option<Value>,
    timeout: Option<Value>,
    epoch_file: Option<Value>,
    name: Option<Value>,
    arbiter: Option<Value>,
}

/// `[ssl_options]` and `[management.ssl]`; `port` is a key of the second only (the
/// `amqps` listener's port is `ssl_port`, as in RabbitMQ).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of TLS settings")]
struct FileSslOptions {
    port: Option<Value>,
    certfile: Option<Value>,
    keyfile: Option<Value>,
    cacertfile: Option<Value>,
    verify: Option<Value>,
    fail_if_no_peer_cert: Option<Value>,
    versions: Option<Value>,
    ciphers: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [limits] table")]
struct FileLimits {
    max_connections: Option<Value>,
    max_queues: Option<Value>,
    max_exchanges: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [management] table")]
struct FileManagement {
    bind: Option<Value>,
    port: Option<Value>,
    ssl: Option<FileSslOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [prometheus] table")]
struct FilePrometheus {
    bind: Option<Value>,
    port: Option<Value>,
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
    set!(
        config.load_definitions,
        file.load_definitions,
        "load_definitions",
        |v: &Value| string(v).and_then(definitions_path).map(Some)
    );
    set!(
        config.cluster_name,
        file.cluster_name,
        "cluster_name",
        |v: &Value| string(v).and_then(check_cluster_name).map(Some)
    );
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

    if let Some(m) = &file.management {
        set!(
            config.management.bind,
            m.bind,
            "management.bind",
            |v: &Value| string(v).and_then(|s| parse_ip(&s))
        );
        set!(
            config.management.port,
            m.port,
            "management.port",
            management_port
        );
        if let Some(ssl) = &m.ssl {
            set!(
                config.management_ssl.port,
                ssl.port,
                "management.ssl.port",
                |v: &Value| integer(v, 0, u16::MAX)
            );
            read_tls_options(
                ssl,
                "management.ssl",
                &mut config.management_ssl.options,
                &invalid,
            )?;
        }
    }

    if let Some(m) = &file.prometheus {
        set!(
            config.prometheus.bind,
            m.bind,
            "prometheus.bind",
            |v: &Value| string(v).and_then(|s| parse_ip(&s))
        );
        set!(
            config.prometheus.port,
            m.port,
            "prometheus.port",
            management_port
        );
    }

    set!(config.ssl_port, file.ssl_port, "ssl_port", |v: &Value| {
        integer(v, 0, u16::MAX)
    });
    set!(
        config.ssl_options.handshake_timeout,
        file.ssl_handshake_timeout,
        "ssl_handshake_timeout",
        duration
    );
    set!(
        config.ssl_cert_login_from,
        file.ssl_cert_login_from,
        "ssl_cert_login_from",
        |v: &Value| string(v).and_then(|s| s.parse())
    );
    if let Some(ssl) = &file.ssl_options {
        if ssl.port.is_some() {
            return Err(invalid(
                "ssl_options.port",
                "not a key of [ssl_options]: the amqps listener's port is ssl_port".into(),
            ));
        }
        read_tls_options(ssl, "ssl_options", &mut config.ssl_options, &invalid)?;
    }

    if let Some(h) = &file.ha {
        config.ha = Some(read_ha(h, path, &invalid)?);
    }

    if let Some(d) = super::federation::definitions(
        file.federation_upstream.as_deref(),
        file.federation_upstream_set.as_deref(),
        file.policies.as_deref(),
    )
    .map_err(|(key, m)| invalid(&key, m))?
    {
        config.file_definitions = Some(d);
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

/// `[ha]`: role and peer are required; the epoch file defaults to beside `path`.
fn read_ha(
    h: &FileHa,
    path: &Path,
    invalid: &impl Fn(&str, String) -> ConfigError,
) -> Result<super::ha::HaConfig, ConfigError> {
    use super::ha::{DEFAULT_EPOCH_FILE, HaConfig, HaRole, check_peer, check_timeout};
    let role = required(&h.role, "ha.role", invalid)?;
    let role = HaRole::parse(&role).map_err(|m| invalid("ha.role", m))?;
    let peer = required(&h.peer, "ha.peer", invalid)?;
    let peer = check_peer(peer).map_err(|m| invalid("ha.peer", m))?;
    let mut ha = HaConfig::new(role, peer);
    if let Some(v) = &h.timeout {
        ha.timeout = duration(v)
            .and_then(check_timeout)
            .map_err(|m| invalid("ha.timeout", m))?;
    }
    ha.epoch_file = match &h.epoch_file {
        Some(v) => PathBuf::from(string(v).map_err(|m| invalid("ha.epoch_file", m))?),
        None => path
            .parent()
            .unwrap_or(Path::new("."))
            .join(DEFAULT_EPOCH_FILE),
    };
    if let Some(v) = &h.name {
        ha.name = string(v)
            .and_then(|n| {
                if n.is_empty() {
                    Err("must not be empty".into())
                } else {
                    Ok(n)
                }
            })
            .map_err(|m| invalid("ha.name", m))?;
    }
    if let Some(v) = &h.arbiter {
        ha.arbiter = Some(crate::arbiter::ArbiterConfig::from_toml(v).map_err(|p| {
            let key = if p.key.is_empty() {
                "ha.arbiter".to_owned()
            } else {
                format!("ha.arbiter.{}", p.key)
            };
            invalid(&key, p.message)
        })?);
    }
    Ok(ha)
}

/// One listener's TLS settings (`[ssl_options]`, `[management.ssl]`) onto `tls`;
/// `section` names the keys in errors.
fn read_tls_options(
    ssl: &FileSslOptions,
    section: &str,
    tls: &mut TlsServerSettings,
    invalid: &impl Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    // Converts `value` if present, naming `section.key` in the error.
    fn set<T>(
        field: &mut T,
        value: &Option<Value>,
        key: String,
        convert: impl Fn(&Value) -> Result<T, String>,
        invalid: &impl Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if let Some(v) = value {
            *field = convert(v).map_err(|m| invalid(&key, m))?;
        }
        Ok(())
    }
    let key = |k: &str| format!("{section}.{k}");
    let path = |v: &Value| string(v).map(|s| Some(PathBuf::from(s)));
    set(
        &mut tls.certfile,
        &ssl.certfile,
        key("certfile"),
        path,
        invalid,
    )?;
    set(
        &mut tls.keyfile,
        &ssl.keyfile,
        key("keyfile"),
        path,
        invalid,
    )?;
    set(
        &mut tls.cacertfile,
        &ssl.cacertfile,
        key("cacertfile"),
        path,
        invalid,
    )?;
    set(
        &mut tls.verify,
        &ssl.verify,
        key("verify"),
        |v| string(v).and_then(|s| s.parse()),
        invalid,
    )?;
    set(
        &mut tls.fail_if_no_peer_cert,
        &ssl.fail_if_no_peer_cert,
        key("fail_if_no_peer_cert"),
        boolean,
        invalid,
    )?;
    set(
        &mut tls.versions,
        &ssl.versions,
        key("versions"),
        |v| {
            string_list(v)?
                .iter()
                .map(|s| s.parse())
                .collect::<Result<Vec<TlsVersion>, String>>()
        },
        invalid,
    )?;
    set(
        &mut tls.ciphers,
        &ssl.ciphers,
        key("ciphers"),
        |v| {
            let list = string_list(v)?;
            check_ciphers(&list)?;
            Ok(list)
        },
        invalid,
    )
}

/// A definitions file's path, as written (relative paths are from the working
/// directory, as for `--config`).
fn definitions_path(s: String) -> Result<std::path::PathBuf, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(s.into())
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

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

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

fn boolean(v: &Value) -> Result<bool, String> {
    match v {
        Value::Boolean(b) => Ok(*b),
        other => Err(format!("expected true or false, got {}", describe(other))),
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

fn management_port(v: &Value) -> Result<Option<u16>, String> {
    match v {
        Value::Integer(_) => integer(v, 0, u16::MAX).map(Some),
        Value::String(s) => parse_management_port(s).map(|p| p.0),
        other => Err(format!(
            "expected a port or \"off\", got {}",
            describe(other)
        )),
    }
}
