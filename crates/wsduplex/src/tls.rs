//! TLS with rustls: `wss://` for the client, acceptors for servers.
//!
//! The crypto provider is always *ring*, chosen explicitly for every config built here, so
//! the rustls "no process-level CryptoProvider" panic cannot happen whatever else the
//! application links. Configs offer and accept ALPN `http/1.1` only: a WebSocket opening
//! handshake is an HTTP/1.1 request.
//!
//! The client side needs nothing but a `wss://` URL ([`crate::connect`]); [`TlsOptions`] (in
//! [`crate::ClientConfig::tls`]) adds CA certificates, a client certificate, or (for tests)
//! turns verification off. A server wraps each accepted TCP stream with a
//! [`TlsAcceptor`] from [`acceptor_from_pem_files`] or `self_signed` (feature
//! `self-signed`: a development certificate made at start-up) before
//! [`crate::server::read_request`]:
//!
//! ```no_run
//! # async fn run() -> Result<(), wsduplex::Error> {
//! let acceptor = wsduplex::tls::acceptor_from_pem_files("cert.pem", "key.pem")?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! let (tcp, _) = listener.accept().await?;
//! let tls = wsduplex::tls::accept(&acceptor, tcp).await?;
//! let incoming = wsduplex::server::read_request(tls, &Default::default()).await?;
//! # Ok(())
//! # }
//! ```

use crate::error::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncRead, AsyncWrite};

pub use rustls;
pub use tokio_rustls::{client::TlsStream as ClientTlsStream, server::TlsStream, TlsAcceptor};

const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// The crypto provider of every config this module builds (*ring*).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Client TLS settings, used for `wss://` URLs.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct TlsOptions {
    /// Extra trusted CA certificates, each a PEM bundle of one or more `CERTIFICATE`
    /// blocks, on top of the bundled web roots and the system's roots.
    pub extra_ca_pem: Vec<Vec<u8>>,
    /// A client certificate for mutual TLS: the PEM chain (leaf first) and its PEM key.
    pub client_cert_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Accept any server certificate: expired, self-signed, for another name. The
    /// handshake signatures are still checked, but anyone on the path can impersonate
    /// the server. For tests and debugging only.
    pub dangerous_accept_invalid_certs: bool,
    /// A complete rustls config used as is, instead of one built from the fields above
    /// (its `alpn_protocols` should contain `http/1.1`, or be empty).
    pub rustls_config: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key material is never printed.
        f.debug_struct("TlsOptions")
            .field("extra_ca_pem", &self.extra_ca_pem.len())
            .field("client_cert_pem", &self.client_cert_pem.is_some())
            .field(
                "dangerous_accept_invalid_certs",
                &self.dangerous_accept_invalid_certs,
            )
            .field("rustls_config", &self.rustls_config.is_some())
            .finish()
    }
}

impl TlsOptions {
    /// The rustls config these options describe. The default options give one shared
    /// config, so repeated connects do not reload the system's roots.
    pub fn to_rustls_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        if let Some(c) = &self.rustls_config {
            return Ok(c.clone());
        }
        let is_default = self.extra_ca_pem.is_empty()
            && self.client_cert_pem.is_none()
            && !self.dangerous_accept_invalid_certs;
        if is_default {
            static DEFAULT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
            if let Some(c) = DEFAULT.get() {
                return Ok(c.clone());
            }
            let c = Arc::new(self.build()?);
            return Ok(DEFAULT.get_or_init(|| c).clone());
        }
        Ok(Arc::new(self.build()?))
    }

    fn build(&self) -> Result<rustls::ClientConfig> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error("no usable protocol version", e))?;
        let builder = if self.dangerous_accept_invalid_certs {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        } else {
            let mut roots = default_roots().clone();
            for pem in &self.extra_ca_pem {
                for cert in certs_from_pem(pem, "extra ca certificates")? {
                    roots
                        .add(cert)
                        .map_err(|e| config_error("unusable ca certificate", e))?;
                }
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match &self.client_cert_pem {
            Some((chain, key)) => builder
                .with_client_auth_cert(
                    certs_from_pem(chain, "client certificate")?,
                    key_from_pem(key, "client key")?,
                )
                .map_err(|e| config_error("unusable client certificate or key", e))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        Ok(config)
    }
}

/// The bundled web roots plus the system's roots, loaded once. System certificates that
/// cannot be read or parsed are skipped: the bundled roots still work.
fn default_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        roots
    })
}

/// Runs the client TLS handshake for `host` (SNI and certificate name) over `io`.
pub async fn connect<S>(
    io: S,
    host: &str,
    options: &TlsOptions,
) -> Result<tokio_rustls::client::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| config_error(&format!("{host} is not a valid tls server name"), e))?;
    let connector = tokio_rustls::TlsConnector::from(options.to_rustls_config()?);
    connector.connect(name, io).await.map_err(handshake_error)
}

/// [`connect`] offering `h2` in ALPN: with `and_http1` also `http/1.1` (the server picks),
/// else `h2` alone. Whether the server picked `h2` is [`client_negotiated_http2`].
#[cfg(feature = "http2")]
pub async fn connect_offering_http2<S>(
    io: S,
    host: &str,
    options: &TlsOptions,
    and_http1: bool,
) -> Result<tokio_rustls::client::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| config_error(&format!("{host} is not a valid tls server name"), e))?;
    let mut config = (*options.to_rustls_config()?).clone();
    config.alpn_protocols = vec![crate::server::http2::ALPN_H2.to_vec()];
    if and_http1 {
        config.alpn_protocols.push(ALPN_HTTP_1_1.to_vec());
    }
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector.connect(name, io).await.map_err(handshake_error)
}

/// Whether the server chose HTTP/2 (ALPN `h2`) for a client connection.
#[cfg(feature = "http2")]
pub fn client_negotiated_http2<S>(tls: &tokio_rustls::client::TlsStream<S>) -> bool {
    tls.get_ref().1.alpn_protocol() == Some(crate::server::http2::ALPN_H2)
}

/// Runs the server TLS handshake over `io`. A client that breaks off or is refused gives
/// [`Error::Tls`] or [`Error::Io`]; nothing is sent beyond the TLS alert.
pub async fn accept<S>(acceptor: &TlsAcceptor, io: S) -> Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    acceptor.accept(io).await.map_err(handshake_error)
}

/// tokio-rustls reports TLS failures as `io::Error`s that wrap a `rustls::Error`.
pub(crate) fn handshake_error(e: std::io::Error) -> Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => Error::Tls(tls.clone()),
        None => Error::Io(e),
    }
}

fn config_error(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::TlsConfig {
        what: what.to_string(),
        source: Some(Box::new(e)),
    }
}

fn config_problem(what: String) -> Error {
    Error::TlsConfig { what, source: None }
}

/// Parses every `CERTIFICATE` block of a PEM bundle; `what` names it in errors.
pub fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config_error(&format!("cannot parse {what}"), e))?;
    if certs.is_empty() {
        return Err(config_problem(format!("no certificate in {what}")));
    }
    Ok(certs)
}

/// Parses the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file's contents.
pub fn key_from_pem(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            config_problem(format!("no private key in {what}"))
        }
        e => config_error(&format!("cannot parse {what}"), e),
    })
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| config_error(&format!("cannot read {}", path.display()), e))
}

/// A server config: the PEM chain (leaf first) and key, ALPN `http/1.1`, and, with
/// `client_ca_pem`, mutual TLS (clients must present a certificate issued by one of
/// those CAs).
pub fn server_config(
    chain_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<Arc<rustls::ServerConfig>> {
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error("no usable protocol version", e))?;
    let builder = match client_ca_pem {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in certs_from_pem(pem, "client ca certificates")? {
                roots
                    .add(cert)
                    .map_err(|e| config_error("unusable client ca certificate", e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| config_error("unusable client ca certificates", e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(
            certs_from_pem(chain_pem, "certificate chain")?,
            key_from_pem(key_pem, "private key")?,
        )
        .map_err(|e| config_error("unusable certificate or key", e))?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// The same acceptor offering HTTP/2 as well: ALPN `h2`, then `http/1.1`. Serve a
/// connection as [`negotiated_http2`] says.
#[cfg(feature = "http2")]
#[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
pub fn offer_http2(acceptor: &TlsAcceptor) -> TlsAcceptor {
    let mut config = (**acceptor.config()).clone();
    config.alpn_protocols = vec![
        crate::server::http2::ALPN_H2.to_vec(),
        ALPN_HTTP_1_1.to_vec(),
    ];
    TlsAcceptor::from(Arc::new(config))
}

/// Whether the client chose HTTP/2 (ALPN `h2`) during the handshake.
#[cfg(feature = "http2")]
#[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
pub fn negotiated_http2<S>(tls: &TlsStream<S>) -> bool {
    tls.get_ref().1.alpn_protocol() == Some(crate::server::http2::ALPN_H2)
}

/// An acceptor from a PEM certificate chain (leaf first) and a PEM private key.
pub fn acceptor_from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor> {
    Ok(TlsAcceptor::from(server_config(chain_pem, key_pem, None)?))
}

/// An acceptor from a PEM certificate chain file and a PEM private key file.
pub fn acceptor_from_pem_files(
    chain: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<TlsAcceptor> {
    let (chain, key) = (chain.as_ref(), key.as_ref());
    let chain_pem = read(chain)?;
    let key_pem = read(key)?;
    let config = server_config(&chain_pem, &key_pem, None).map_err(|e| match e {
        Error::TlsConfig { what, source } => Error::TlsConfig {
            what: format!("{what} ({}, {})", chain.display(), key.display()),
            source,
        },
        e => e,
    })?;
    Ok(TlsAcceptor::from(config))
}

/// A freshly generated self-signed certificate and an acceptor that serves it.
#[cfg(feature = "self-signed")]
#[cfg_attr(docsrs, doc(cfg(feature = "self-signed")))]
#[derive(Clone)]
#[non_exhaustive]
pub struct SelfSigned {
    /// Serves the certificate.
    pub acceptor: TlsAcceptor,
    /// The certificate, PEM: what a client adds to its trusted CAs.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
    /// SHA-256 of the certificate (DER), as colon-separated uppercase hex, the way
    /// browsers and `openssl x509 -fingerprint -sha256` show it.
    pub fingerprint: String,
}

#[cfg(feature = "self-signed")]
impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Generates a self-signed certificate for `localhost`, `127.0.0.1` and `::1`, for
/// development: clients must be told to trust it (its PEM, or the fingerprint by eye).
#[cfg(feature = "self-signed")]
#[cfg_attr(docsrs, doc(cfg(feature = "self-signed")))]
pub fn self_signed() -> Result<SelfSigned> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| config_error("cannot generate a certificate", e))?;
    let cert_pem = generated.cert.pem();
    let key_pem = generated.key_pair.serialize_pem();
    let acceptor = acceptor_from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?;
    Ok(SelfSigned {
        acceptor,
        fingerprint: fingerprint(generated.cert.der()),
        cert_pem,
        key_pem,
    })
}

/// SHA-256 of a DER certificate as colon-separated uppercase hex (`AB:CD:...`).
pub fn fingerprint(cert_der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert_der);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// `dangerous_accept_invalid_certs`: trusts any certificate, but still checks that the
/// server holds the key of the certificate it sent.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_colon_separated_uppercase_hex() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            fingerprint(b"abc").replace(':', ""),
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
        );
        assert_eq!(fingerprint(b"").split(':').count(), 32);
    }

    #[test]
    fn pem_errors_say_what_is_wrong() {
        let e = certs_from_pem(b"not pem", "cert.pem").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid tls settings: no certificate in cert.pem"
        );
        let e = key_from_pem(b"", "key.pem").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid tls settings: no private key in key.pem"
        );
    }

    #[test]
    #[cfg(feature = "self-signed")]
    fn self_signed_certificates_load() {
        let s = self_signed().unwrap();
        assert_eq!(s.fingerprint.len(), 32 * 3 - 1);
        assert_eq!(
            certs_from_pem(s.cert_pem.as_bytes(), "cert").unwrap().len(),
            1
        );
        server_config(s.cert_pem.as_bytes(), s.key_pem.as_bytes(), None).unwrap();
        // A key that does not match the certificate is refused up front.
        let other = self_signed().unwrap();
        assert!(server_config(s.cert_pem.as_bytes(), other.key_pem.as_bytes(), None).is_err());
    }
}
