//! The client side, for peerings to `amqps://` URIs: RabbitMQ's URI query parameters
//! (`cacertfile`, `certfile`, `keyfile`, `verify`, `server_name_indication`). By default
//! the server's certificate is verified, and so is its name against the host connected
//! to. The files are read at each connection attempt, so a renewed certificate is used
//! from the next reconnect on.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::rustls::client::WebPkiServerVerifier;
use super::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use super::rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use super::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use super::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use super::{TlsError, Verify, load_certs, load_key, load_roots, provider};

/// How a client connection does TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsClientSettings {
    /// CA certificates the server's is checked against; the system's when absent.
    pub cacertfile: Option<PathBuf>,
    /// A client certificate chain to present (with `keyfile`).
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    /// `verify_peer` (the default) checks the server's certificate and name.
    pub verify: Verify,
    /// The name sent in SNI and checked against the certificate, when it is not the
    /// host connected to; `disable` sends no SNI (the name checked stays the host).
    pub server_name_indication: Option<String>,
}

impl Default for TlsClientSettings {
    fn default() -> Self {
        TlsClientSettings {
            cacertfile: None,
            certfile: None,
            keyfile: None,
            verify: Verify::VerifyPeer,
            server_name_indication: None,
        }
    }
}

impl TlsClientSettings {
    /// Builds rustls's configuration, reading every file.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let (provider, versions) = provider(&[], &[])?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)?;
        let builder = match self.verify {
            Verify::VerifyPeer => {
                let roots = match &self.cacertfile {
                    Some(path) => load_roots(path)?,
                    None => system_roots()?,
                };
                let verifier =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::Settings(format!("cacertfile: {e}")))?;
                builder.with_webpki_verifier(verifier)
            }
            Verify::VerifyNone => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
        };
        let mut config = match (&self.certfile, &self.keyfile) {
            (Some(cert), Some(key)) => {
                builder.with_client_auth_cert(load_certs("certfile", cert)?, load_key(key)?)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(TlsError::Settings(
                    "a client certificate needs both certfile and keyfile".into(),
                ));
            }
        };
        config.enable_sni = self.server_name_indication.as_deref() != Some("disable");
        Ok(config)
    }

    /// The name to verify the server's certificate against, and send in SNI.
    fn server_name(&self, host: &str) -> Result<ServerName<'static>, TlsError> {
        let name = match self.server_name_indication.as_deref() {
            Some(sni) if sni != "disable" => sni,
            _ => host,
        };
        ServerName::try_from(name.to_owned())
            .map_err(|_| TlsError::Settings(format!("{name:?} is not a valid server name")))
    }
}

/// The system's trusted CAs, for a `verify_peer` with no `cacertfile`.
fn system_roots() -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if roots.is_empty() {
        return Err(TlsError::Settings(
            "verify_peer without cacertfile, and no system CA certificates found".into(),
        ));
    }
    Ok(roots)
}

/// Why a TLS connection could not be made: the settings (a file), or the handshake
/// (whose text says why a certificate was refused: expired, unknown issuer, wrong name).
#[derive(Debug, thiserror::Error)]
pub enum ConnectTlsError {
    #[error("TLS settings: {0}")]
    Settings(#[from] TlsError),
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

/// Runs the client side of the handshake on `tcp`, connected to `host`.
pub async fn connect_tls(
    tcp: TcpStream,
    host: &str,
    settings: &TlsClientSettings,
) -> Result<TlsStream<TcpStream>, ConnectTlsError> {
    let name = settings.server_name(host)?;
    let connector = TlsConnector::from(Arc::new(settings.client_config()?));
    connector
        .connect(name, tcp)
        .await
        .map_err(ConnectTlsError::Handshake)
}

/// `verify_none`: any certificate is accepted, but the handshake's signatures are still
/// checked (they prove the server holds the key of the certificate it sent).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, super::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, super::rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, super::rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
