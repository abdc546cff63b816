//! Certificates made at test time (rcgen) in a temporary directory, TLS broker settings
//! built from them, and lapin's TLS options.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fedamq::config::Config;
use fedamq::transport::tls::{TlsServerSettings, Verify};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, SanType,
    date_time_ymd,
};

/// A certificate and its key, written as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test CA and the certificates it signs, in a directory removed on drop.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM), for `cacertfile`.
    pub ca: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    files: AtomicUsize,
}

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = dn(name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert.pem()).unwrap();
        Pki {
            dir,
            ca,
            issuer: Issuer::new(params, key),
            files: AtomicUsize::new(0),
        }
    }

    /// A server certificate valid for 127.0.0.1 and localhost.
    pub fn server(&self) -> CertFiles {
        self.sign("fedamq", &["127.0.0.1", "localhost"], false)
    }

    /// A client certificate whose subject CN is `cn`.
    pub fn client(&self, cn: &str) -> CertFiles {
        self.sign(cn, &[], false)
    }

    /// A certificate that expired in 2020.
    pub fn expired(&self, cn: &str, names: &[&str]) -> CertFiles {
        self.sign(cn, names, true)
    }

    /// A certificate with CN `cn` and these subject alternative names.
    pub fn sign(&self, cn: &str, names: &[&str], expired: bool) -> CertFiles {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(cn);
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().unwrap()),
            })
            .collect();
        if expired {
            params.not_before = date_time_ymd(2019, 1, 1);
            params.not_after = date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        let files = CertFiles {
            cert: self.dir.path().join(format!("cert-{n}.pem")),
            key: self.dir.path().join(format!("key-{n}.pem")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    /// The CA certificate's PEM text.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(&self.ca).unwrap()
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "fedamq tests");
    dn
}

/// How long tests give a client for the TLS handshake: short, so that a stalled one is
/// closed soon.
pub const TEST_HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(300);

/// A broker configuration with an `amqps` listener on a free port, serving `server`;
/// `verify_peer` checks client certificates against `pki`'s CA.
pub fn config(
    pki: &Pki,
    server: &CertFiles,
    verify_peer: bool,
    fail_if_no_peer_cert: bool,
) -> Config {
    Config {
        ssl_port: 0,
        ssl_options: TlsServerSettings {
            certfile: Some(server.cert.clone()),
            keyfile: Some(server.key.clone()),
            cacertfile: Some(pki.ca.clone()),
            verify: if verify_peer {
                Verify::VerifyPeer
            } else {
                Verify::VerifyNone
            },
            fail_if_no_peer_cert,
            handshake_timeout: TEST_HANDSHAKE_TIMEOUT,
            ..TlsServerSettings::default()
        },
        ..Config::default()
    }
}

/// lapin's TLS options: trust `pki`'s CA, and present `identity` if given.
pub fn lapin_tls(pki: &Pki, identity: Option<&CertFiles>) -> OwnedTLSConfig {
    use_ring_by_default();
    OwnedTLSConfig {
        identity: identity.map(|c| OwnedIdentity::PKCS8 {
            pem: std::fs::read(&c.cert).unwrap(),
            key: std::fs::read(&c.key).unwrap(),
        }),
        cert_chain: Some(pki.ca_pem()),
    }
}

/// Makes *ring* the process's default rustls provider. The tests build rustls with both
/// *ring* (ours) and aws-lc-rs (amq-protocol's), and with both and no default, rustls
/// cannot pick one: lapin's connector (`ClientConfig::builder()`) panics in lapin's
/// I/O thread and the connect never completes.
fn use_ring_by_default() {
    // Err: one is installed already (by an earlier call), which is what is wanted.
    let _ = fedamq::transport::tls::rustls::crypto::ring::default_provider().install_default();
}
