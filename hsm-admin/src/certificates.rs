//! X.509 certificates for token-held keys, built with rcgen: the CA's key signs inside its
//! own token, and the subject's key is only ever seen as its public half, so issuing a
//! certificate moves no private key anywhere.
//!
//! The CA certificate is not parsed back when issuing: the issuer name and key identifier
//! are rebuilt from the same [`ca_params`] and the CA key's public half, which yields the
//! same bytes rcgen wrote into the CA certificate (DER is deterministic).

use std::sync::Mutex;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use hsm::{Error, PublicKeyInfo, TlsKeyType, TokenTlsKey};

/// Why a certificate could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The token refused or failed the signature.
    #[error("the CA key could not sign")]
    Token(#[source] Error),
    /// rcgen refused the parameters (e.g. a name that is neither a DNS name nor an IP).
    #[error("invalid certificate request: {0}")]
    Invalid(#[source] rcgen::Error),
}

/// What an issued certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A TLS server (extended key usage serverAuth).
    Server,
    /// A TLS client (extended key usage clientAuth), e.g. manager at vault's internal listener.
    Client,
}

/// An end-entity certificate to issue.
#[derive(Debug, Clone)]
pub struct CertificateRequest {
    /// Subject common name (informational; names are checked against `names`).
    pub common_name: String,
    /// subjectAltName entries: DNS names or IP addresses.
    pub names: Vec<String>,
    /// Server or client.
    pub purpose: Purpose,
    /// Validity from one hour ago (clock skew) to this many days from now.
    pub days: u32,
}

/// The CA certificate's fixed parts; [`ca_certificate`] and [`issue_certificate`] must agree.
fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn validity(params: &mut CertificateParams, days: u32) -> Result<(), CertificateError> {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| CertificateError::Invalid(rcgen::Error::RingUnspecified))?;
    serial[0] &= 0x7f; // a positive INTEGER
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(())
}

/// A self-signed CA certificate (PEM) for the key in `ca_key`, valid for `days`; it may
/// sign end-entity certificates only (path length 0).
pub fn ca_certificate(ca_key: &TokenTlsKey, common_name: &str, days: u32) -> Result<String, CertificateError> {
    let mut params = ca_params(common_name);
    validity(&mut params, days)?;
    let signer = CertSigner::new(ca_key);
    let certificate = params.self_signed(&signer).map_err(|e| signer.error(e))?;
    Ok(certificate.pem())
}

/// An end-entity certificate (PEM) for `subject`, issued by the CA whose key is `ca_key`
/// and whose certificate [`ca_certificate`] made with `ca_common_name`.
pub fn issue_certificate(
    ca_key: &TokenTlsKey,
    ca_common_name: &str,
    subject: &PublicKeyInfo,
    request: &CertificateRequest,
) -> Result<String, CertificateError> {
    let mut params = CertificateParams::new(request.names.clone()).map_err(CertificateError::Invalid)?;
    params.distinguished_name = distinguished_name(&request.common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match request.purpose {
        Purpose::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Purpose::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, request.days)?;
    let signer = CertSigner::new(ca_key);
    let issuer = Issuer::new(ca_params(ca_common_name), &signer);
    let certificate = params
        .signed_by(&PublicKey(subject), &issuer)
        .map_err(|e| signer.error(e))?;
    Ok(certificate.pem())
}

/// A PKCS#10 certificate signing request (PEM) for the token key `key`, signed by it
/// (proof of possession), for a CA outside this system (a real deployment's PKI).
pub fn certificate_signing_request(
    key: &TokenTlsKey,
    common_name: &str,
    names: Vec<String>,
) -> Result<String, CertificateError> {
    let mut params = CertificateParams::new(names).map_err(CertificateError::Invalid)?;
    params.distinguished_name = distinguished_name(common_name);
    let signer = CertSigner::new(key);
    let request = params.serialize_request(&signer).map_err(|e| signer.error(e))?;
    request.pem().map_err(CertificateError::Invalid)
}

/// rcgen's view of a public key held in a token.
struct PublicKey<'a>(&'a PublicKeyInfo);

impl PublicKeyData for PublicKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0.subject_public_key()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match self.0.key_type() {
            TlsKeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            TlsKeyType::Rsa => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

/// rcgen's view of a token key; keeps the token's error, which rcgen's own error type
/// cannot carry.
struct CertSigner<'a> {
    key: &'a TokenTlsKey,
    failure: Mutex<Option<Error>>,
}

impl<'a> CertSigner<'a> {
    fn new(key: &'a TokenTlsKey) -> Self {
        Self {
            key,
            failure: Mutex::new(None),
        }
    }

    fn error(&self, error: rcgen::Error) -> CertificateError {
        match self.failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(token) => CertificateError::Token(token),
            None => CertificateError::Invalid(error),
        }
    }
}

impl PublicKeyData for CertSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.key.public_key_info().subject_public_key()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        PublicKey(self.key.public_key_info()).algorithm()
    }
}

impl rcgen::SigningKey for CertSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        // X.509 signatures: ECDSA-with-SHA256 (DER) or sha256WithRSAEncryption (PKCS#1 v1.5).
        let scheme = match self.key.public_key_info().key_type() {
            TlsKeyType::EcdsaP256 => rustls::SignatureScheme::ECDSA_NISTP256_SHA256,
            TlsKeyType::Rsa => rustls::SignatureScheme::RSA_PKCS1_SHA256,
        };
        self.key.sign(scheme, msg).map_err(|e| {
            *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            rcgen::Error::RemoteKeyError
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Result;
    use e2e::openssl::openssl_output;
    use e2e::tokens::dev_pool;
    use hsm::generate_tls_key_pair;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    /// webpki's verdict on `cert` for `usage`, chaining to `anchor` alone.
    fn verify_chain(
        cert: &webpki::EndEntityCert<'_>,
        anchor: &rustls::pki_types::TrustAnchor<'_>,
        usage: webpki::KeyUsage,
    ) -> Result<(), webpki::Error> {
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            std::slice::from_ref(anchor),
            &[],
            UnixTime::now(),
            usage,
            None,
            None,
        )
        .map(drop)
    }

    /// What `openssl req -verify` says of the request in `path` (OpenSSL 3.0 exits 0 either
    /// way; the verdict is in the message).
    fn openssl_req_verdict(path: &std::path::Path, form: &str) -> Result<String> {
        let path = path.to_string_lossy();
        let (stdout, stderr, _) = openssl_output(&["req", "-verify", "-noout", "-inform", form, "-in", &path])?;
        Ok(stderr + &String::from_utf8_lossy(&stdout))
    }

    /// A CA key (P-256) and a server key of each type, all in the `hsm-test` token; the
    /// certificates are then checked by webpki, an independent verifier, as a TLS client
    /// would check them.
    #[tokio::test]
    async fn certificates_issued_by_a_token_ca_verify_with_webpki() -> Result<()> {
        let pool = dev_pool("hsm-test").await?;
        let tag = std::process::id();
        let ca_label = format!("ca-{tag}");
        generate_tls_key_pair(&pool, &ca_label, &[9], TlsKeyType::EcdsaP256).await?;
        let ca_key = TokenTlsKey::load(pool.clone(), &ca_label).await?;
        let ca_pem = ca_certificate(&ca_key, "test CA", 1).expect("CA certificate");
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("PEM");
        let anchor = webpki::anchor_from_trusted_cert(&ca_der).expect("trust anchor");

        for key_type in [TlsKeyType::EcdsaP256, TlsKeyType::Rsa] {
            let label = format!("leaf-{key_type}-{tag}");
            generate_tls_key_pair(&pool, &label, &[8], key_type).await?;
            let leaf = TokenTlsKey::load(pool.clone(), &label).await?;
            let request = CertificateRequest {
                common_name: "vault".into(),
                names: vec!["localhost".into(), "127.0.0.1".into()],
                purpose: Purpose::Server,
                days: 1,
            };
            let pem = issue_certificate(&ca_key, "test CA", leaf.public_key_info(), &request).expect("issued");
            let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM");
            let cert = webpki::EndEntityCert::try_from(&der).expect("parses");
            verify_chain(&cert, &anchor, webpki::KeyUsage::server_auth())
                .unwrap_or_else(|e| panic!("{key_type} certificate must chain to the CA: {e:?}"));
            let client_use = verify_chain(&cert, &anchor, webpki::KeyUsage::client_auth());
            assert!(client_use.is_err(), "a server certificate is not a client certificate");
            for name in ["localhost", "127.0.0.1"] {
                let name = ServerName::try_from(name).expect("name");
                assert!(cert.verify_is_valid_for_subject_name(&name).is_ok());
            }
            let other = ServerName::try_from("example.com").expect("name");
            assert!(cert.verify_is_valid_for_subject_name(&other).is_err());
            let parsed = rustls::server::ParsedCertificate::try_from(&der).expect("parses");
            assert_eq!(
                parsed.subject_public_key_info().as_ref(),
                leaf.public_key_info().spki_der()
            );
            hsm::destroy_key_pair(&pool, &label).await?;
        }

        // Another CA's key with the same name cannot have issued them.
        let forged = format!("forged-{tag}");
        generate_tls_key_pair(&pool, &forged, &[7], TlsKeyType::EcdsaP256).await?;
        let forged_key = TokenTlsKey::load(pool.clone(), &forged).await?;
        let request = CertificateRequest {
            common_name: "vault".into(),
            names: vec!["localhost".into()],
            purpose: Purpose::Server,
            days: 1,
        };
        let pem = issue_certificate(&forged_key, "test CA", ca_key.public_key_info(), &request).expect("issued");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM");
        let cert = webpki::EndEntityCert::try_from(&der).expect("parses");
        let verified = verify_chain(&cert, &anchor, webpki::KeyUsage::server_auth());
        assert!(verified.is_err(), "signed by a key that is not the CA's");
        hsm::destroy_key_pair(&pool, &forged).await?;
        hsm::destroy_key_pair(&pool, &ca_label).await?;
        Ok(())
    }

    /// OpenSSL, an independent implementation, checks the request's self-signature.
    #[tokio::test]
    async fn signing_requests_from_token_keys_verify_with_openssl() -> Result<()> {
        let pool = dev_pool("hsm-test").await?;
        let dir = std::env::temp_dir().join(format!("csr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for key_type in [TlsKeyType::EcdsaP256, TlsKeyType::Rsa] {
            let label = format!("csr-{key_type}-{}", std::process::id());
            generate_tls_key_pair(&pool, &label, &[6], key_type).await?;
            let key = TokenTlsKey::load(pool.clone(), &label).await?;
            let pem = certificate_signing_request(&key, "vault.example", vec!["vault.example".into()]).expect("CSR");
            let path = dir.join(format!("{key_type}.csr"));
            std::fs::write(&path, &pem).expect("write CSR");
            let said = openssl_req_verdict(&path, "PEM")?;
            assert!(said.contains("verify OK"), "{key_type}: {said}");
            // The DER's last byte is the signature's last byte (RSA, or ECDSA's s).
            let mut corrupted = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
                .expect("PEM")
                .as_ref()
                .to_vec();
            *corrupted.last_mut().expect("not empty") ^= 0x01;
            std::fs::write(&path, &corrupted).expect("write CSR");
            let said = openssl_req_verdict(&path, "DER")?;
            assert!(
                said.contains("verify failure") && !said.contains("verify OK"),
                "{key_type}: a corrupted CSR must not verify: {said}"
            );
            hsm::destroy_key_pair(&pool, &label).await?;
        }
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }

    #[tokio::test]
    async fn a_name_that_is_neither_dns_nor_ip_is_refused_before_signing() -> Result<()> {
        let pool = dev_pool("hsm-test").await?;
        let label = format!("ca-bad-{}", std::process::id());
        generate_tls_key_pair(&pool, &label, &[9], TlsKeyType::EcdsaP256).await?;
        let key = TokenTlsKey::load(pool.clone(), &label).await?;
        let request = CertificateRequest {
            common_name: "x".into(),
            names: vec!["bücher.example".into()],
            purpose: Purpose::Client,
            days: 1,
        };
        let result = issue_certificate(&key, "CA", key.public_key_info(), &request);
        assert!(matches!(result, Err(CertificateError::Invalid(_))), "{result:?}");
        hsm::destroy_key_pair(&pool, &label).await?;
        Ok(())
    }
}
