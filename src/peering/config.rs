//! What a peering is told when it is made: where the remote server is, how to log in,
//! and the limits it works within.

use std::time::Duration;

use crate::protocol::generated::properties::EncodedBasicProperties;
use crate::protocol::{FieldTable, FieldValue, ShortString};
use crate::transport::tls::TlsClientSettings;

/// Where the remote server is and who to log in as.
#[derive(Clone, PartialEq, Eq)]
pub struct Remote {
    pub host: String,
    pub port: u16,
    pub vhost: String,
    pub user: String,
    pub password: String,
    /// `amqps://`: how to do TLS. `None`: plain TCP.
    pub tls: Option<TlsClientSettings>,
}

impl std::fmt::Debug for Remote {
    // The password stays out of logs and status reports.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.display())
    }
}

/// Why a remote address could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    #[error("not an amqp:// or amqps:// URI: {0}")]
    Scheme(String),
    #[error("bad query parameter in {uri}: {message}")]
    Query { uri: String, message: String },
    #[error("bad port in {0}")]
    Port(String),
    #[error("bad percent-encoding in {0}")]
    Encoding(String),
    #[error("no password for login {0:?} in the local user table")]
    NoLocalPassword(String),
}

impl Remote {
    /// Parses `amqp://user:pass@host:port/vhost` (RabbitMQ's URI spec: user, password and
    /// vhost percent-encoded; port 5672, user and password `guest`, vhost `/` by
    /// default; an empty path is vhost `/`, `/%2f` is `/` too), or `amqps://…` (port
    /// 5671) with RabbitMQ's TLS query parameters: `cacertfile`, `certfile`, `keyfile`,
    /// `verify` (`verify_peer`, the default, or `verify_none`) and
    /// `server_name_indication` (a name, or `disable`). Other query parameters are
    /// ignored.
    pub fn from_uri(uri: &str) -> Result<Remote, RemoteError> {
        let (mut tls, rest) = if let Some(rest) = uri.strip_prefix("amqps://") {
            (Some(TlsClientSettings::default()), rest)
        } else if let Some(rest) = uri.strip_prefix("amqp://") {
            (None, rest)
        } else {
            return Err(RemoteError::Scheme(uri.to_owned()));
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        if let (Some(tls), Some(query)) = (&mut tls, query) {
            read_tls_query(tls, query).map_err(|message| RemoteError::Query {
                uri: uri.to_owned(),
                message,
            })?;
        }
        let default_port = if tls.is_some() { 5671 } else { 5672 };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let decode = |s: &str| percent_decode(s).ok_or_else(|| RemoteError::Encoding(uri.into()));
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (decode(user)?, decode(pass)?),
                None => (decode(u)?, String::new()),
            },
            None => ("guest".into(), "guest".into()),
        };
        let bad_port = || RemoteError::Port(uri.to_owned());
        let (host, port) = match hostport.strip_prefix('[') {
            // [IPv6]:port
            Some(v6) => {
                let (h, after) = v6.split_once(']').ok_or_else(bad_port)?;
                let port = match after.strip_prefix(':') {
                    Some(p) => p.parse().map_err(|_| bad_port())?,
                    None if after.is_empty() => default_port,
                    None => return Err(bad_port()),
                };
                (h, port)
            }
            None => match hostport.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| bad_port())?),
                None => (hostport, default_port),
            },
        };
        let vhost = match path {
            None | Some("") => "/".to_owned(),
            Some(p) => decode(p)?,
        };
        Ok(Remote {
            host: if host.is_empty() { "localhost" } else { host }.into(),
            port,
            vhost,
            user,
            password,
            tls,
        })
    }

    /// Host, port and vhost with a login whose password comes from the local user table
    /// (`password` in `fedamq.toml`), as OpenAMQ's peerings took theirs.
    pub fn with_local_login(
        host: &str,
        port: u16,
        vhost: &str,
        login: &str,
        users: &crate::auth::Users,
    ) -> Result<Remote, RemoteError> {
        let password = users
            .outbound_password(login)
            .ok_or_else(|| RemoteError::NoLocalPassword(login.into()))?;
        Ok(Remote {
            host: host.into(),
            port,
            vhost: vhost.into(),
            user: login.into(),
            password,
            tls: None,
        })
    }

    /// `amqp://user@host:port/vhost` (or `amqps://`), without the password.
    pub fn display(&self) -> String {
        format!(
            "{}://{}@{}:{}/{}",
            if self.tls.is_some() { "amqps" } else { "amqp" },
            self.user,
            self.host,
            self.port,
            percent_encode_vhost(&self.vhost)
        )
    }
}

/// Reads RabbitMQ's TLS query parameters (`a=1&b=2`, values percent-encoded).
fn read_tls_query(tls: &mut TlsClientSettings, query: &str) -> Result<(), String> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value =
            percent_decode(value).ok_or_else(|| format!("bad percent-encoding in {key}"))?;
        match key {
            "cacertfile" => tls.cacertfile = Some(value.into()),
            "certfile" => tls.certfile = Some(value.into()),
            "keyfile" => tls.keyfile = Some(value.into()),
            "verify" => tls.verify = value.parse()?,
            "server_name_indication" => tls.server_name_indication = Some(value),
            _ => {}
        }
    }
    Ok(())
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = (bytes.next()? as char).to_digit(16)?;
            let lo = (bytes.next()? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

fn percent_encode_vhost(vhost: &str) -> String {
    vhost.replace('%', "%25").replace('/', "%2f")
}

/// Reconnection after a failure: exponential back-off with jitter between `min` and
/// `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait before reconnect attempt `attempt` (1, 2, …): `min · 2^(attempt-1)`,
    /// capped at `max`, then a random point in its upper half, so that many peerings cut
    /// at once do not all come back at the same instant.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .min
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let cap = exp.min(self.max).max(self.min);
        let half = cap / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// Bounds on what waits to be confirmed by the remote (queued while disconnected, or
/// sent and not yet confirmed). A publish beyond them waits for room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    pub messages: usize,
    pub bytes: usize,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits {
            messages: 10_000,
            bytes: 64 << 20,
        }
    }
}

/// Everything a peering needs to know.
#[derive(Debug, Clone)]
pub struct PeeringConfig {
    pub remote: Remote,
    /// Heartbeat we ask for, in seconds (the lower of ours and the server's is used;
    /// 0 = none, unless the server asks for one).
    pub heartbeat: u16,
    /// Largest frame we accept (0 = the server's limit).
    pub frame_max: u32,
    /// For the TCP connect and the whole handshake.
    pub connect_timeout: Duration,
    /// For `stop()`: how long to wait for connection.close-ok.
    pub close_timeout: Duration,
    /// `None`: a failure is final (status `failed`).
    pub reconnect: Option<Backoff>,
    pub outbox: OutboxLimits,
    /// This broker's identifier (server property `identifier`), to refuse peering to
    /// ourselves.
    pub local_identifier: Option<String>,
    /// A name for logs and the `connection_name` client property.
    pub name: String,
    /// Announce the `tunnels` capability (a tunnel rides this peering).
    pub tunnels: bool,
    /// How a publish sent again after a lost connection or channel is marked (it may
    /// reach the remote twice); `None`: sent again as it was.
    pub mark_resent: Option<MarkResent>,
}

/// Gives a publish's properties as they are sent again: a possible duplicate, which the
/// owner marks in its own way (a federation link sets `redelivered` in its
/// `x-received-from` entry). Applied at each re-send, so it must be idempotent.
pub type MarkResent = fn(&EncodedBasicProperties) -> EncodedBasicProperties;

impl PeeringConfig {
    pub fn new(remote: Remote) -> PeeringConfig {
        PeeringConfig {
            remote,
            heartbeat: 10,
            frame_max: 131_072,
            connect_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            reconnect: Some(Backoff::default()),
            outbox: OutboxLimits::default(),
            local_identifier: None,
            name: "fedamq peering".into(),
            tunnels: false,
            mark_resent: None,
        }
    }

    /// The client properties sent in connection.start-ok: who we are, and the
    /// capabilities that make a RabbitMQ server tell us why it refuses a login and send
    /// basic.nack, basic.cancel and connection.blocked.
    pub(crate) fn client_properties(&self) -> FieldTable {
        let mut caps = FieldTable::new();
        for cap in [
            "publisher_confirms",
            "consumer_cancel_notify",
            "basic.nack",
            "connection.blocked",
            "authentication_failure_close",
            "exchange_exchange_bindings",
        ] {
            caps.insert(ShortString::from_static(cap), FieldValue::Bool(true));
        }
        if self.tunnels {
            caps.insert(ShortString::from_static("tunnels"), FieldValue::Bool(true));
        }
        let mut props = FieldTable::new();
        let mut put = |k: &'static str, v: FieldValue| props.insert(ShortString::from_static(k), v);
        put("product", "fedamq".into());
        put("version", env!("CARGO_PKG_VERSION").into());
        put("platform", "Rust".into());
        put("information", "fedamq peering".into());
        put("connection_name", self.name.as_str().into());
        put("capabilities", FieldValue::Table(caps));
        // Lets the remote tell which of its connections come from this broker.
        if let Some(id) = &self.local_identifier {
            put("identifier", id.as_str().into());
        }
        props
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_forms() {
        let r = Remote::from_uri("amqp://bob:s%40cret@example.com:5673/prod%2fa").unwrap();
        assert_eq!(
            (
                r.user.as_str(),
                r.password.as_str(),
                r.host.as_str(),
                r.port
            ),
            ("bob", "s@cret", "example.com", 5673)
        );
        assert_eq!(r.vhost, "prod/a");
        let r = Remote::from_uri("amqp://localhost").unwrap();
        assert_eq!(
            (r.user.as_str(), r.port, r.vhost.as_str()),
            ("guest", 5672, "/")
        );
        assert_eq!(Remote::from_uri("amqp://h/%2f").unwrap().vhost, "/");
        let r = Remote::from_uri("amqp://[::1]:99/v").unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.vhost.as_str()),
            ("::1", 99, "v")
        );
        assert_eq!(Remote::from_uri("amqp://[::1]").unwrap().port, 5672);
        assert_eq!(Remote::from_uri("amqp://").unwrap().host, "localhost");
        assert!(matches!(
            Remote::from_uri("amqp://[::1"),
            Err(RemoteError::Port(_))
        ));
        assert_eq!(Remote::from_uri("amqp://h/").unwrap().vhost, "/");
        assert!(matches!(
            Remote::from_uri("http://h"),
            Err(RemoteError::Scheme(_))
        ));
        assert!(matches!(
            Remote::from_uri("amqp://h:x"),
            Err(RemoteError::Port(_))
        ));
        assert!(matches!(
            Remote::from_uri("amqp://h/%zz"),
            Err(RemoteError::Encoding(_))
        ));
    }

    #[test]
    fn amqps_uris() {
        use crate::transport::tls::Verify;
        let r = Remote::from_uri("amqps://h").unwrap();
        assert_eq!(r.port, 5671);
        assert_eq!(r.tls, Some(TlsClientSettings::default()));
        assert_eq!(r.display(), "amqps://guest@h:5671/%2f");
        let r = Remote::from_uri(
            "amqps://u:p@h:1/v?cacertfile=/c/ca.pem&certfile=%2Fc%2Fme.pem&keyfile=/c/key.pem\
             &verify=verify_none&server_name_indication=broker.example&heartbeat=5",
        )
        .unwrap();
        let tls = r.tls.unwrap();
        assert_eq!(r.vhost, "v");
        assert_eq!(tls.cacertfile.unwrap().to_str(), Some("/c/ca.pem"));
        assert_eq!(tls.certfile.unwrap().to_str(), Some("/c/me.pem"));
        assert_eq!(tls.keyfile.unwrap().to_str(), Some("/c/key.pem"));
        assert_eq!(tls.verify, Verify::VerifyNone);
        assert_eq!(
            tls.server_name_indication.as_deref(),
            Some("broker.example")
        );
        assert!(matches!(
            Remote::from_uri("amqps://h?verify=maybe"),
            Err(RemoteError::Query { .. })
        ));
        // A plain URI's query is not part of the vhost.
        assert_eq!(
            Remote::from_uri("amqp://h/v?heartbeat=5").unwrap().vhost,
            "v"
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let r = Remote::from_uri("amqp://bob:hunter2@h:1/v").unwrap();
        let shown = format!("{r:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(shown, "amqp://bob@h:1/v");
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let b = Backoff::default();
        for attempt in 1..40 {
            let d = b.delay(attempt);
            let cap = (b.min * 2u32.pow((attempt - 1).min(20))).min(b.max);
            assert!(
                d >= cap / 2 && d <= cap,
                "attempt {attempt}: {d:?} vs {cap:?}"
            );
        }
        assert!(b.delay(30) >= Duration::from_secs(15));
    }
}
