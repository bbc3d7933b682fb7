//! TLS private keys live in the tokens: every listener's certificate carries the public
//! half of a key in its service's token, the handshakes are signed there (ECDSA P-256 by
//! default, RSA-2048 selectable), and provisioning leaves no private key file in `.dev/`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use e2e::Implementation;
use e2e::openssl::{openssl, openssl_rsa_key};
use e2e::tokens::dev_tls_key_on;
use e2e::{Launch, System, dev_dir, hsm_admin, hsm_admin_on};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer};
use rustls::sign::SigningKey;

/// A client certificate chain file and its key, or none.
type Identity = Option<(PathBuf, Arc<dyn SigningKey>)>;

/// What one HTTPS exchange over a fresh TLS connection showed.
struct Handshake {
    /// The server's end-entity certificate.
    certificate: CertificateDer<'static>,
    /// The negotiated TLS version.
    version: rustls::ProtocolVersion,
    /// First line of the HTTP response.
    status_line: String,
}

/// Connects to `addr` trusting only the dev CA (presenting `identity` when given), sends
/// `GET path` over HTTP/1.1 and returns the server's certificate and the status line.
async fn https_get(addr: SocketAddr, path: &str, identity: Identity) -> Result<Handshake> {
    let ca = dev_dir()?.join("tls/ca.pem");
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let identity = identity.as_ref().map(|(cert, key)| (cert.as_path(), Arc::clone(key)));
        let mut config = service_kit::tls::client_config(&ca, identity)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from("127.0.0.1")?;
        let mut connection = rustls::ClientConnection::new(Arc::new(config), name)?;
        let mut socket = std::net::TcpStream::connect(addr)?;
        socket.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut stream = rustls::Stream::new(&mut connection, &mut socket);
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).or_else(|e| {
            // Peers may close without close_notify after `Connection: close`.
            if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() {
                Ok(0)
            } else {
                Err(e)
            }
        })?;
        let certificate = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .context("no server certificate")?
            .clone()
            .into_owned();
        let version = connection.protocol_version().context("no protocol version")?;
        let status_line = String::from_utf8_lossy(&response)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        Ok(Handshake {
            certificate,
            version,
            status_line,
        })
    })
    .await?
}

/// The SubjectPublicKeyInfo a certificate carries, as rustls reads it.
fn certificate_spki(certificate: &CertificateDer<'_>) -> Result<Vec<u8>> {
    let parsed = rustls::server::ParsedCertificate::try_from(certificate)?;
    Ok(parsed.subject_public_key_info().as_ref().to_vec())
}

on_each_token!(every_listener_presents_the_certificate_of_a_key_held_in_its_token);

async fn every_listener_presents_the_certificate_of_a_key_held_in_its_token(
    implementation: Implementation,
) -> Result<()> {
    let system = System::start_on(implementation, &[], &[]).await?;
    let manager_client = dev_tls_key_on(implementation, "manager", "manager-client-tls").await?;
    let client_cert = implementation.dev_dir()?.join("tls/manager-client.pem");
    let listeners: [(&str, SocketAddr, &str, &str, &str, Identity); 3] = [
        (
            "manager",
            system.manager.addr("api"),
            "/healthz",
            "manager",
            "manager-tls",
            None,
        ),
        (
            "vault public",
            system.vault.addr("public"),
            "/healthz",
            "vault",
            "vault-tls",
            None,
        ),
        (
            "vault internal",
            system.vault.addr("internal"),
            "/internal/healthz",
            "vault",
            "vault-internal-tls",
            Some((client_cert, Arc::new(manager_client.clone()))),
        ),
    ];
    let mut seen = Vec::new();
    for (name, addr, path, token, label, identity) in listeners {
        let handshake = https_get(addr, path, identity).await.with_context(|| name.to_owned())?;
        assert_eq!(handshake.version, rustls::ProtocolVersion::TLSv1_3, "{name}");
        assert!(
            handshake.status_line.starts_with("HTTP/1.1 200"),
            "{name}: {}",
            handshake.status_line
        );
        let key = dev_tls_key_on(implementation, token, label).await?;
        assert_eq!(
            certificate_spki(&handshake.certificate)?,
            key.public_key_info().spki_der(),
            "{name}'s certificate must carry the public half of {label:?} in token {token:?}"
        );
        assert_eq!(key.public_key_info().key_type(), hsm::TlsKeyType::EcdsaP256, "{name}");
        seen.push(key.public_key_info().spki_der().to_vec());
    }
    seen.dedup();
    assert_eq!(seen.len(), 3, "each listener has a key of its own");
    Ok(())
}

on_each_token!(vault_serves_tls_with_an_rsa_2048_key_generated_in_its_token);

async fn vault_serves_tls_with_an_rsa_2048_key_generated_in_its_token(implementation: Implementation) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (public_key, cert) = (dir.path().join("rsa.pub.pem"), dir.path().join("rsa.pem"));
    let path = |p: &Path| p.to_string_lossy().into_owned();
    hsm_admin_on(
        implementation,
        dir.path(),
        "vault",
        &[
            "generate-tls-key",
            "--label",
            "vault-rsa-tls",
            "--id",
            "31",
            "--type",
            "rsa-2048",
            "--public-key-out",
            &path(&public_key),
        ],
    )?;
    // The dev CA signs in its own token, from the public key alone.
    hsm_admin(
        dir.path(),
        "dev-ca",
        &[
            "issue-certificate",
            "--ca-label",
            "dev-ca",
            "--public-key",
            &path(&public_key),
            "--common-name",
            "vault-rsa",
            "--name",
            "127.0.0.1",
            "--purpose",
            "server",
            "--out",
            &path(&cert),
        ],
    )?;
    let vault = Launch::vault(dir.path())
        .on(implementation)
        .args(&["--tls-cert", &path(&cert), "--tls-key-label", "vault-rsa-tls"])
        .start()
        .await?;

    let handshake = https_get(vault.addr("public"), "/healthz", None).await?;
    assert!(
        handshake.status_line.starts_with("HTTP/1.1 200"),
        "{}",
        handshake.status_line
    );
    let exported = SubjectPublicKeyInfoDer::from_pem_file(&public_key)?;
    assert_eq!(certificate_spki(&handshake.certificate)?, exported.as_ref());
    let info = hsm::PublicKeyInfo::from_spki_der(exported.as_ref()).context("an RSA SPKI")?;
    assert_eq!(info.key_type(), hsm::TlsKeyType::Rsa);
    // The internal listener keeps its own (P-256) key.
    let internal = https_get(vault.addr("internal"), "/internal/healthz", None).await;
    assert!(internal.is_err(), "no client certificate: refused");
    Ok(())
}

/// Names of the private keys found in `bytes`: PEM blocks of any private-key kind, and DER
/// PKCS#8, PKCS#1 (RSA) or SEC1 (EC) structures at any offset that aws-lc accepts.
fn private_keys_in(bytes: &[u8]) -> Vec<&'static str> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, RsaKeyPair};
    let mut found = Vec::new();
    if bytes.windows(16).any(|w| w == b"PRIVATE KEY-----") {
        found.push("PEM private key");
    }
    for start in 0..bytes.len() {
        // A SEQUENCE long enough to be a key.
        let Some(der) = hsm::der::element(&bytes[start..], 0x30).filter(|der| der.len() >= 50) else {
            continue;
        };
        if EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der).is_ok() || RsaKeyPair::from_pkcs8(der).is_ok()
        {
            found.push("PKCS#8 DER");
        } else if RsaKeyPair::from_der(der).is_ok() {
            found.push("PKCS#1 DER");
        } else if EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, der).is_ok() {
            found.push("SEC1 DER");
        }
    }
    found.dedup();
    found
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            files_under(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

#[test]
fn provisioning_leaves_no_private_key_in_any_file_under_dev() -> Result<()> {
    // The scanner first proves it finds each form of planted key, embedded in other bytes.
    let dir = tempfile::tempdir()?;
    let rsa_pem = dir.path().join("rsa.pem");
    openssl_rsa_key(&rsa_pem)?;
    let rsa = rsa_pem.to_string_lossy().into_owned();
    let planted = [
        ("PEM private key", std::fs::read(&rsa_pem)?),
        (
            "PKCS#8 DER",
            openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", &rsa, "-outform", "DER"])?,
        ),
        (
            "PKCS#1 DER",
            openssl(&["rsa", "-in", &rsa, "-traditional", "-outform", "DER"])?,
        ),
        (
            "SEC1 DER",
            openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-outform", "DER"])?,
        ),
    ];
    let ec_pem = dir.path().join("ec.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &ec_pem.to_string_lossy(),
    ])?;
    let ec_pkcs8 = openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        &ec_pem.to_string_lossy(),
        "-outform",
        "DER",
    ])?;
    for (kind, key) in planted.iter().chain([("PKCS#8 DER", ec_pkcs8)].iter()) {
        let embedded = [b"some header \x30\x82 bytes".as_slice(), key, b"\x30\x05 trailer"].concat();
        assert!(
            private_keys_in(&embedded).contains(kind),
            "the scanner must find a planted {kind}"
        );
    }

    let mut files = Vec::new();
    files_under(&dev_dir()?, &mut files)?;
    let tls_files = files
        .iter()
        .filter(|f| f.starts_with(dev_dir().unwrap_or_default().join("tls")))
        .count();
    assert!(
        tls_files >= 5,
        "certificates are provisioned ({tls_files} files in .dev/tls)"
    );
    let mut offenders = Vec::new();
    for file in &files {
        let found = private_keys_in(&std::fs::read(file)?);
        if !found.is_empty() {
            offenders.push(format!("{}: {found:?}", file.display()));
        }
    }
    assert!(offenders.is_empty(), "private keys in .dev/: {offenders:#?}");
    Ok(())
}
