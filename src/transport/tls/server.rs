//! The server side: the `amqps` listener's certificate and client verification, the
//! handshake under a time limit, the user name a client certificate logs in as
//! (EXTERNAL), and reloading the files without a restart.
//!
//! [`TlsServerSettings`] is not tied to AMQP: the management API serves HTTPS from the
//! same kind of settings with a [`TlsServer`] of its own (through
//! [`TlsListener`](super::TlsListener)).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::rustls::ServerConfig;
use super::rustls::server::WebPkiClientVerifier;
use super::{TlsError, TlsVersion, Verify, load_certs, load_key, load_roots, provider};

/// A TLS listener's settings, by RabbitMQ's `ssl_options` names.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsServerSettings {
    /// The server's certificate chain (PEM, the leaf first). No TLS listener without it.
    pub certfile: Option<PathBuf>,
    /// The server's private key (PEM).
    pub keyfile: Option<PathBuf>,
    /// CA certificates client certificates are checked against (PEM); needed for
    /// `verify_peer`.
    pub cacertfile: Option<PathBuf>,
    /// `verify_peer`: ask clients for a certificate and check it.
    pub verify: Verify,
    /// With `verify_peer`: refuse clients that send no certificate.
    pub fail_if_no_peer_cert: bool,
    /// Protocol versions enabled; empty means TLS 1.2 and 1.3.
    pub versions: Vec<TlsVersion>,
    /// Cipher suites enabled (OpenSSL, IANA or rustls names); empty means all *ring* has.
    pub ciphers: Vec<String>,
    /// Time a client has to complete the TLS handshake (RabbitMQ's
    /// `ssl_handshake_timeout`); the AMQP handshake's own time limit starts after it.
    pub handshake_timeout: Duration,
}

impl Default for TlsServerSettings {
    fn default() -> Self {
        TlsServerSettings {
            certfile: None,
            keyfile: None,
            cacertfile: None,
            verify: Verify::VerifyNone,
            fail_if_no_peer_cert: false,
            versions: Vec::new(),
            ciphers: Vec::new(),
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

impl TlsServerSettings {
    /// Builds rustls's configuration, reading every file.
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let (Some(certfile), Some(keyfile)) = (&self.certfile, &self.keyfile) else {
            return Err(TlsError::Settings(
                "a TLS listener needs both certfile and keyfile".into(),
            ));
        };
        let chain = load_certs("certfile", certfile)?;
        let key = load_key(keyfile)?;
        let (provider, versions) = provider(&self.versions, &self.ciphers)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)?;
        let builder = match self.verify {
            Verify::VerifyNone => builder.with_no_client_auth(),
            Verify::VerifyPeer => {
                let Some(cacertfile) = &self.cacertfile else {
                    return Err(TlsError::Settings(
                        "verify_peer needs cacertfile (the CA client certificates are checked against)"
                            .into(),
                    ));
                };
                let roots = Arc::new(load_roots(cacertfile)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
                let verifier = if self.fail_if_no_peer_cert {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| TlsError::Settings(format!("cacertfile: {e}")))?,
                )
            }
        };
        Ok(builder.with_single_cert(chain, key)?)
    }
}

/// Where the EXTERNAL mechanism takes the user name from in a client certificate
/// (`ssl_cert_login_from`, as RabbitMQ's rabbitmq_auth_mechanism_ssl).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertLoginFrom {
    /// The subject's CN.
    #[default]
    CommonName,
    /// The whole subject, e.g. `CN=app, O=Example`.
    DistinguishedName,
    /// The first DNS name among the subject alternative names (RabbitMQ's default
    /// `ssl_cert_login_san_type` is `dns`, index 0).
    SubjectAlternativeName,
}

impl std::str::FromStr for CertLoginFrom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "common_name" => Ok(CertLoginFrom::CommonName),
            "distinguished_name" => Ok(CertLoginFrom::DistinguishedName),
            "subject_alternative_name" | "subject_alt_name" => {
                Ok(CertLoginFrom::SubjectAlternativeName)
            }
            _ => Err(format!(
                "expected common_name, distinguished_name or subject_alternative_name, got {s:?}"
            )),
        }
    }
}

impl CertLoginFrom {
    /// The user name in a (DER) certificate, if it has one of this kind.
    pub fn user_name(self, der: &[u8]) -> Option<String> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        match self {
            CertLoginFrom::CommonName => cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            CertLoginFrom::DistinguishedName => Some(cert.subject().to_string()),
            CertLoginFrom::SubjectAlternativeName => cert
                .subject_alternative_name()
                .ok()
                .flatten()?
                .value
                .general_names
                .iter()
                .find_map(|n| match n {
                    GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                }),
        }
    }
}

/// Why an accepted TCP connection did not become a TLS one. Each is logged and the
/// socket closed.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("not TLS: it starts with {0:?} (a plain AMQP client on the TLS port?)")]
    NotTls(String),
    #[error("TLS handshake not completed within {0:?}")]
    Timeout(Duration),
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    #[error("closed before the TLS handshake")]
    Closed,
}

/// A TLS listener's configuration, swapped whole on reload: a handshake uses the one
/// current when it starts, and connections already open keep theirs.
pub struct TlsServer {
    settings: TlsServerSettings,
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Reads the files named in `settings`.
    pub fn new(settings: TlsServerSettings) -> Result<TlsServer, TlsError> {
        let config = settings.server_config()?;
        Ok(TlsServer {
            settings,
            current: RwLock::new(Arc::new(config)),
        })
    }

    pub fn settings(&self) -> &TlsServerSettings {
        &self.settings
    }

    /// Reads the certificate, key and CA files again; new handshakes use them. On an
    /// error the files in use stay in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(self.settings.server_config()?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs the server side of the handshake on `tcp`, for at most the handshake
    /// timeout. A client that sends something other than a TLS record first (a plain
    /// AMQP header) is told apart from a failed handshake, for the log.
    pub async fn accept(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, AcceptError> {
        let limit = self.settings.handshake_timeout;
        let acceptor = TlsAcceptor::from(self.current());
        let handshake = async {
            let mut first = [0u8; 8];
            let n = tcp.peek(&mut first).await.map_err(AcceptError::Handshake)?;
            // A TLS connection opens with a handshake record: content type 22.
            match first[..n].first() {
                None => return Err(AcceptError::Closed),
                Some(&0x16) => {}
                Some(_) => {
                    return Err(AcceptError::NotTls(
                        String::from_utf8_lossy(&first[..n]).into_owned(),
                    ));
                }
            }
            acceptor.accept(tcp).await.map_err(AcceptError::Handshake)
        };
        tokio::time::timeout(limit, handshake)
            .await
            .unwrap_or(Err(AcceptError::Timeout(limit)))
    }
}

/// The user a connection's client certificate names, when the client sent one that was
/// verified (rustls reports peer certificates only after verifying them).
pub fn certificate_user(stream: &TlsStream<TcpStream>, from: CertLoginFrom) -> Option<String> {
    let certs = stream.get_ref().1.peer_certificates()?;
    from.user_name(certs.first()?)
}
