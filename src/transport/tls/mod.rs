//! TLS on top of TCP, for the `amqps` listener ([`server`]), for peerings that
//! connect to `amqps://` URIs ([`client`]), and for the management API's HTTPS
//! ([`listener`], on the same [`TlsServer`]).
//!
//! rustls (through tokio-rustls) rather than OpenSSL: no system library to match, and
//! memory safety in the code that parses what strangers send first. The crypto provider
//! is *ring*: it builds with a C compiler alone, where aws-lc-rs needs cmake (and nasm on
//! some targets). The provider is always passed explicitly rather than taken from the
//! process default, so a dependency that enables aws-lc-rs too (amq-protocol does in the
//! tests) cannot make rustls refuse to pick one.
//!
//! A TLS stream has no split of its own; it runs as a [`Joined`](super::Joined)
//! transport. Settings use RabbitMQ's names (`certfile`, `keyfile`, `cacertfile`,
//! `verify`, `fail_if_no_peer_cert`, `versions`, `ciphers`), so that its documentation
//! reads across.

pub mod client;
pub mod listener;
pub mod server;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use tokio_rustls::rustls;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{RootCertStore, SupportedProtocolVersion};

pub use client::{TlsClientSettings, connect_tls};
pub use listener::TlsListener;
pub use server::{AcceptError, CertLoginFrom, TlsServer, TlsServerSettings, certificate_user};

/// Whether the other side's certificate is checked (RabbitMQ's `verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Not checked (a server does not ask for one).
    VerifyNone,
    /// Checked against the CA file; a client's name is checked against the server's
    /// certificate.
    VerifyPeer,
}

impl std::str::FromStr for Verify {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "verify_none" => Ok(Verify::VerifyNone),
            "verify_peer" => Ok(Verify::VerifyPeer),
            _ => Err(format!("expected verify_none or verify_peer, got {s:?}")),
        }
    }
}

impl fmt::Display for Verify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verify::VerifyNone => "verify_none",
            Verify::VerifyPeer => "verify_peer",
        })
    }
}

/// A TLS protocol version, by RabbitMQ's (Erlang's) name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl std::str::FromStr for TlsVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tlsv1.2" => Ok(TlsVersion::Tls12),
            "tlsv1.3" => Ok(TlsVersion::Tls13),
            "tlsv1" | "tlsv1.1" | "sslv3" => Err(format!(
                "{s} is not supported (it is insecure): use tlsv1.2 or tlsv1.3"
            )),
            _ => Err(format!("expected tlsv1.2 or tlsv1.3, got {s:?}")),
        }
    }
}

impl TlsVersion {
    fn rustls(self) -> &'static SupportedProtocolVersion {
        match self {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        }
    }
}

/// Why TLS could not be set up: a file that cannot be read or holds nothing usable, or
/// settings rustls refuses. Each names the file or setting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{setting} {path}: {message}")]
    File {
        setting: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{0}")]
    Settings(String),
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

fn file_error(setting: &'static str, path: &Path, message: impl fmt::Display) -> TlsError {
    TlsError::File {
        setting,
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The certificates in a PEM file, in order (a chain: the leaf first).
pub(crate) fn load_certs(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(setting, path, e))?;
    if certs.is_empty() {
        return Err(file_error(setting, path, "no certificate in the file"));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error("keyfile", path, e))
}

/// The CA certificates trusted for verifying the other side.
pub(crate) fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(load_certs("cacertfile", path)?);
    if added == 0 {
        return Err(file_error(
            "cacertfile",
            path,
            "no usable CA certificate in the file",
        ));
    }
    Ok(roots)
}

/// The cipher suites *ring* offers, by each name they are known under: rustls's, the
/// IANA one, and OpenSSL's (which RabbitMQ's `ciphers` lists use). TLS 1.3 suites have
/// one name in IANA's and OpenSSL's lists.
const SUITE_NAMES: &[(&str, &str, &str)] = &[
    (
        "TLS13_AES_256_GCM_SHA384",
        "TLS_AES_256_GCM_SHA384",
        "TLS_AES_256_GCM_SHA384",
    ),
    (
        "TLS13_AES_128_GCM_SHA256",
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_128_GCM_SHA256",
    ),
    (
        "TLS13_CHACHA20_POLY1305_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ),
];

/// Checks a `ciphers` list without building anything (for the configuration loader).
pub fn check_ciphers(ciphers: &[String]) -> Result<(), String> {
    for c in ciphers {
        if !SUITE_NAMES
            .iter()
            .any(|(a, b, o)| c == a || c == b || c == o)
        {
            let known: Vec<&str> = SUITE_NAMES.iter().map(|(_, _, o)| *o).collect();
            return Err(format!(
                "unknown or unsupported cipher suite {c:?}; supported: {}",
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// *ring*'s provider limited to `ciphers` (all of them when empty), and the protocol
/// versions to enable (both when empty). Each version enabled must keep a suite.
pub(crate) fn provider(
    versions: &[TlsVersion],
    ciphers: &[String],
) -> Result<(Arc<CryptoProvider>, Vec<&'static SupportedProtocolVersion>), TlsError> {
    check_ciphers(ciphers).map_err(TlsError::Settings)?;
    let mut provider = rustls::crypto::ring::default_provider();
    if !ciphers.is_empty() {
        provider.cipher_suites.retain(|suite| {
            let rustls_name = format!("{:?}", suite.suite());
            SUITE_NAMES
                .iter()
                .filter(|(r, _, _)| *r == rustls_name)
                .any(|(r, i, o)| ciphers.iter().any(|c| c == r || c == i || c == o))
        });
    }
    let versions = if versions.is_empty() {
        vec![TlsVersion::Tls12, TlsVersion::Tls13]
    } else {
        versions.to_vec()
    };
    for v in &versions {
        let has_suite = provider
            .cipher_suites
            .iter()
            .any(|s| s.version() == v.rustls());
        if !has_suite {
            return Err(TlsError::Settings(format!(
                "no cipher suite in `ciphers` for {}",
                match v {
                    TlsVersion::Tls12 => "tlsv1.2",
                    TlsVersion::Tls13 => "tlsv1.3",
                }
            )));
        }
    }
    let versions = versions.iter().map(|v| v.rustls()).collect();
    Ok((Arc::new(provider), versions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_rabbitmq_writes_them() {
        assert_eq!("verify_peer".parse(), Ok(Verify::VerifyPeer));
        assert_eq!("verify_none".parse(), Ok(Verify::VerifyNone));
        assert!("peer".parse::<Verify>().is_err());
        assert_eq!("tlsv1.3".parse(), Ok(TlsVersion::Tls13));
        assert!(
            "tlsv1.1"
                .parse::<TlsVersion>()
                .unwrap_err()
                .contains("insecure")
        );
    }

    #[test]
    fn ciphers_by_any_name_and_each_version_keeps_one() {
        let (p, v) = provider(&[], &[]).unwrap();
        assert_eq!(p.cipher_suites.len(), SUITE_NAMES.len());
        assert_eq!(v.len(), 2);
        let only = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (p, _) = provider(
            &[],
            &only(&["ECDHE-RSA-AES128-GCM-SHA256", "TLS_AES_128_GCM_SHA256"]),
        )
        .unwrap();
        assert_eq!(p.cipher_suites.len(), 2);
        // A TLS 1.2 suite alone leaves TLS 1.3 with nothing.
        let e = provider(&[], &only(&["ECDHE-RSA-AES128-GCM-SHA256"])).unwrap_err();
        assert!(e.to_string().contains("tlsv1.3"), "{e}");
        assert!(
            provider(
                &[TlsVersion::Tls12],
                &only(&["ECDHE-RSA-AES128-GCM-SHA256"])
            )
            .is_ok()
        );
        assert!(check_ciphers(&only(&["RC4-MD5"])).is_err());
        // Every name in the table is a suite *ring* has.
        let all = rustls::crypto::ring::default_provider();
        for (r, _, _) in SUITE_NAMES {
            assert!(
                all.cipher_suites
                    .iter()
                    .any(|s| format!("{:?}", s.suite()) == *r),
                "{r}"
            );
        }
    }
}
