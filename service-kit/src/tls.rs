//! rustls configurations the services (and their tests) build: server, mutual-TLS server
//! pinned to one client name, and client. Certificates come from PEM files; private keys are
//! never files here but a [`SigningKey`] (the services pass one whose key lives in their
//! token).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SigningKey, SingleCertAndKey};
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}")]
    Pem {
        /// "certificate chain" or "CA certificate".
        what: &'static str,
        /// File path.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The file holds no certificate.
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    /// A name given for pinning is not a DNS name or IP address.
    #[error("{0:?} is not a valid DNS name or IP address")]
    BadName(String),
    /// The certificate's public key is not the key's (e.g. the key was regenerated and
    /// the certificate not re-issued).
    #[error("{0} is not the certificate of this key")]
    KeyMismatch(PathBuf),
    /// rustls refused the combination.
    #[error("invalid TLS configuration")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built from the CA.
    #[error("invalid client CA")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |source| TlsError::Pem {
        what,
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

/// A resolver always presenting the certificate chain in `cert` with `key` (server or
/// client side), refused unless the first certificate carries `key`'s public key.
fn single_cert(cert: &Path, key: Arc<dyn SigningKey>) -> Result<Arc<SingleCertAndKey>, TlsError> {
    let certified = CertifiedKey::new(certs(cert, "certificate chain")?, key);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(SingleCertAndKey::from(certified))),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch(cert.to_owned())),
        Err(other) => Err(other.into()),
    }
}

/// A root store holding the certificates in `ca`.
pub fn root_store(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(ca, "CA certificate")? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// HTTP/2 and HTTP/1.1 by ALPN, and session resumption by stateless tickets: a returning
/// client's handshake is then a PSK with a fresh (EC)DHE share (rustls resumes TLS 1.3 only
/// in `psk_dhe_ke` mode, so forward secrecy holds) and costs the token no signature. The
/// ticket keys are random, live only in this process's memory and rotate every 6 hours;
/// tickets are not tied to a session cache, so a flood of new handshakes cannot evict a
/// returning client's session.
fn finish(mut config: ServerConfig) -> Result<ServerConfig, TlsError> {
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(config)
}

/// A server config for a certificate chain and its key.
pub fn server_config(cert: &Path, key: Arc<dyn SigningKey>) -> Result<ServerConfig, TlsError> {
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(single_cert(cert, key)?);
    finish(config)
}

/// A server config that requires a client certificate issued by `client_ca` **and**
/// valid for `client_name` (a SAN), so that another certificate from the same CA — a
/// server's, say — is refused.
pub fn mutual_tls_server_config(
    cert: &Path,
    key: Arc<dyn SigningKey>,
    client_ca: &Path,
    client_name: &str,
) -> Result<ServerConfig, TlsError> {
    let name = ServerName::try_from(client_name.to_owned()).map_err(|_| TlsError::BadName(client_name.to_owned()))?;
    let inner = WebPkiClientVerifier::builder(Arc::new(root_store(client_ca)?)).build()?;
    let verifier = Arc::new(PinnedClientVerifier { inner, name });
    let config = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(single_cert(cert, key)?);
    finish(config)
}

/// A client config trusting `ca` that accepts only a server certificate valid for
/// `server_name`, whatever host the URL names: so that another certificate from the same CA
/// valid for the same address (another service's on that host, say) is refused. Presents
/// `identity` (certificate chain, key) when given.
pub fn pinned_client_config(
    ca: &Path,
    server_name: &str,
    identity: Option<(&Path, Arc<dyn SigningKey>)>,
) -> Result<ClientConfig, TlsError> {
    let name = ServerName::try_from(server_name.to_owned()).map_err(|_| TlsError::BadName(server_name.to_owned()))?;
    let inner = WebPkiServerVerifier::builder(Arc::new(root_store(ca)?)).build()?;
    let mut config = client_config(ca, identity)?;
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(PinnedServerVerifier { inner, name }));
    Ok(config)
}

/// A client config trusting `ca`, presenting `identity` (certificate chain, key) when given.
pub fn client_config(ca: &Path, identity: Option<(&Path, Arc<dyn SigningKey>)>) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder().with_root_certificates(root_store(ca)?);
    let mut config = match identity {
        Some((cert, key)) => builder.with_client_cert_resolver(single_cert(cert, key)?),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// WebPKI validation of the server's chain and name, the name being the pinned one
/// instead of the URL's host.
#[derive(Debug)]
struct PinnedServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _url_host: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// WebPKI chain validation (including the clientAuth EKU) plus a name check.
#[derive(Debug)]
struct PinnedClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    name: ServerName<'static>,
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        cert.verify_is_valid_for_subject_name(&self.name)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
