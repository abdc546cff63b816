//! The private RabbitMQ the tests run against: `tests/run` and `.ci/run` start one with
//! `tests/rabbitmq/start.sh` (RabbitMQ from Debian's packages, its own port, user
//! fedamq-test, vhosts `/` and `fedamq-test`) and export its URL as
//! `FEDAMQ_TEST_RABBITMQ_URL`, which is all these helpers read.

use std::net::{SocketAddr, ToSocketAddrs};

pub const URL_VAR: &str = "FEDAMQ_TEST_RABBITMQ_URL";

/// The second vhost start.sh creates, with the same permissions as `/`.
pub const SECOND_VHOST: &str = "fedamq-test";

/// `amqp://fedamq-test:<password>@127.0.0.1:<port>/%2f`.
pub fn url() -> String {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{URL_VAR} is not set: run tests/run, which starts a private RabbitMQ, or \
             tests/rabbitmq/start.sh"
        ),
    }
}

/// The parts of an `amqp://user:pass@host:port/vhost` URL, percent-decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlParts {
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub vhost: String,
}

/// Splits an AMQP URL (no query part expected; one is ignored).
pub fn parse(url: &str) -> UrlParts {
    let rest = url
        .strip_prefix("amqp://")
        .unwrap_or_else(|| panic!("not an amqp:// URL: {url}"));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let (userinfo, hostport) = authority
        .rsplit_once('@')
        .unwrap_or_else(|| panic!("no user:password@ in {url}"));
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (host, port) = hostport
        .rsplit_once(':')
        .map(|(h, p)| (h, p.parse().unwrap_or_else(|_| panic!("bad port in {url}"))))
        .unwrap_or((hostport, 5672));
    UrlParts {
        user: percent_decode(user),
        password: percent_decode(password),
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        vhost: percent_decode(path),
    }
}

/// The parts of `url()`.
pub fn parts() -> UrlParts {
    parse(&url())
}

pub fn user() -> String {
    parts().user
}

pub fn password() -> String {
    parts().password
}

/// The vhost of `url()` (`/`).
pub fn vhost() -> String {
    parts().vhost
}

/// Where the RabbitMQ node listens.
pub fn addr() -> SocketAddr {
    let p = parts();
    (p.host.as_str(), p.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("cannot resolve {}:{} from {URL_VAR}", p.host, p.port))
}

/// The same user on another vhost (e.g. [`SECOND_VHOST`]).
pub fn url_for_vhost(vhost: &str) -> String {
    let p = parts();
    format!(
        "amqp://{}:{}@{}:{}/{}",
        super::fault_proxy::percent_encode(&p.user),
        super::fault_proxy::percent_encode(&p.password),
        p.host,
        p.port,
        super::fault_proxy::percent_encode(vhost)
    )
}

/// Decodes `%xx` escapes (invalid ones are kept as they are).
pub fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a private RabbitMQ is there to test against; if not, says so on stderr for
/// the test that asks (which then returns: it is skipped).
pub fn available(test: &str) -> bool {
    let set = std::env::var(URL_VAR).is_ok_and(|u| !u.is_empty());
    if !set {
        eprintln!(
            "{test}: skipped: {URL_VAR} is not set (tests/run and .ci/run start a private \
             RabbitMQ with tests/rabbitmq/start.sh)"
        );
    }
    set
}

/// Runs `rabbitmqctl -q -n <node> ARGS` against the private node, with the environment
/// start.sh wrote to `$FEDAMQ_TEST_RABBITMQ_DIR/env`; its stdout, or a panic with its
/// stderr if it fails.
pub fn rabbitmqctl(args: &[&str]) -> String {
    try_rabbitmqctl(args).unwrap_or_else(|e| panic!("rabbitmqctl {args:?} failed: {e}"))
}

/// As [`rabbitmqctl`], with a failure as its output instead of a panic.
pub fn try_rabbitmqctl(args: &[&str]) -> Result<String, String> {
    let dir = std::env::var("FEDAMQ_TEST_RABBITMQ_DIR")
        .expect("FEDAMQ_TEST_RABBITMQ_DIR is set with FEDAMQ_TEST_RABBITMQ_URL (start.sh)");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#". "$1/env" && shift && exec "$rabbitmq_bin/rabbitmqctl" -q -n "$RABBITMQ_NODENAME" "$@""#)
        .arg("rabbitmqctl")
        .arg(&dir)
        .args(args)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// `amqps://fedamq-test:<password>@127.0.0.1:<tls port>/%2f`: start.sh's TLS listener.
pub fn amqps_url() -> String {
    std::env::var("FEDAMQ_TEST_RABBITMQ_AMQPS_URL").unwrap_or_else(|_| {
        panic!(
            "FEDAMQ_TEST_RABBITMQ_AMQPS_URL is not set: run tests/run or tests/rabbitmq/start.sh \
             (which needs openssl on PATH for the TLS listener)"
        )
    })
}

/// The CA that signed the TLS listener's certificate (start.sh's `tls/ca.pem`); its
/// directory also holds `client.pem`/`client.key` (CN fedamq-test).
pub fn tls_dir() -> std::path::PathBuf {
    let ca = std::env::var("FEDAMQ_TEST_RABBITMQ_CACERT")
        .expect("FEDAMQ_TEST_RABBITMQ_CACERT is not set: see amqps_url()");
    std::path::PathBuf::from(ca)
        .parent()
        .expect("a directory")
        .to_path_buf()
}
