//! TLS keys in the token — ECDSA P-256 (default) or RSA-2048 — and a rustls signing key
//! backed by one: the handshake signature is made inside the token, so the TLS private key
//! never exists in the service.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::sign::{Signer as TlsSigner, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

use crate::error::{Error, Operation, Result};
use crate::keys::{KeyClass, find_key, key_exists};
use crate::pool::{Budget, TokenPool};
use crate::provision::{Generated, KeyUsage, RsaKeySpec, generate_rsa_key_pair};
use crate::public_key::{P256_PARAMS, PublicKeyInfo, TlsKeyType, tls_public_key};
use crate::restrictions::{ECDSA_SIGN, with_allowed_mechanisms};
use crate::sign::{RsaScheme, sign_in_session, signing_input};

/// Generates a TLS (or certificate-signing) key pair of `key_type` unless the label exists:
/// sensitive, never extractable, sign-only, unmodifiable, limited to the mechanisms
/// [`TokenTlsKey::sign`] uses.
pub async fn generate_tls_key_pair(
    pool: &TokenPool,
    label: &str,
    id: &[u8],
    key_type: TlsKeyType,
) -> Result<Generated> {
    match key_type {
        TlsKeyType::EcdsaP256 => generate_ec_p256_key_pair(pool, label, id).await,
        TlsKeyType::Rsa => {
            let spec = RsaKeySpec {
                label: label.to_owned(),
                id: id.to_vec(),
                bits: 2048,
                usage: KeyUsage::Sign,
            };
            generate_rsa_key_pair(pool, spec).await
        }
    }
}

/// Generates an ECDSA P-256 key pair for signing (TLS, certificates) unless the label
/// exists: sensitive, never extractable, sign-only, CKA_MODIFIABLE false, and CKM_ECDSA its
/// only allowed mechanism.
async fn generate_ec_p256_key_pair(pool: &TokenPool, label: &str, id: &[u8]) -> Result<Generated> {
    let (label, id) = (label.to_owned(), id.to_vec());
    pool.run_writing(Operation::GenerateKeyPair, move |session| {
        if key_exists(session, KeyClass::Private, &label)? {
            return Ok(Generated::AlreadyPresent);
        }
        // CKA_PRIVATE for the public half too: see `generate_rsa_key_pair`.
        let public = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
            Attribute::EcParams(P256_PARAMS.to_vec()),
            Attribute::Modifiable(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Modifiable(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
            // Sign only: SoftHSM's defaults would also allow decrypt and unwrap (Kryoptic's
            // defaults are false; neither is left to chance).
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
        ];
        with_allowed_mechanisms(&label, ECDSA_SIGN, |restriction| {
            let private = [private.as_slice(), restriction].concat();
            session.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
        })
        .map_err(Error::pkcs11(Operation::GenerateKeyPair))?;
        Ok(Generated::Created)
    })
    .await
}

/// A rustls signing key (and, in `hsm-admin`, a certificate signer) whose private half is
/// the TLS key labelled `label` in the token.
///
/// rustls calls [`TlsSigner::sign`] synchronously inside the handshake, so the token call
/// runs on the calling thread (one ECDSA operation is ~0.1 ms in SoftHSM, RSA ~1 ms)
/// through the pool's sessions; token failures fail the handshake, they never fall back.
/// A service's key gets a handshake budget ([`Self::with_handshake_budget`]): its own few
/// sessions, waited for only briefly, so that a flood of handshakes fails handshakes instead
/// of queueing in front of the requests' token operations.
#[derive(Clone)]
pub struct TokenTlsKey {
    pool: TokenPool,
    label: Arc<str>,
    public: Arc<PublicKeyInfo>,
    budget: Option<Budget>,
}

impl fmt::Debug for TokenTlsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenTlsKey")
            .field("label", &self.label)
            .field("key_type", &self.public.key_type())
            .finish_non_exhaustive()
    }
}

impl TokenTlsKey {
    /// The key labelled `label`; reads its public half now, to fail fast.
    pub async fn load(pool: TokenPool, label: &str) -> Result<Self> {
        let public = tls_public_key(&pool, label).await?;
        Ok(Self {
            pool,
            label: label.into(),
            public: Arc::new(public),
            budget: None,
        })
    }

    /// Signs on `sessions` sessions of its own, kept open in the pool beside the requests'
    /// ones, waiting at most `wait` for one: a signature asked for while all stay busy
    /// fails with [`Error::Busy`] (the handshake fails; the client may retry). Without a
    /// budget (the admin tools) signatures share the pool's sessions and wait their turn.
    pub fn with_handshake_budget(mut self, sessions: usize, wait: Duration) -> Self {
        self.budget = Some(self.pool.budget(sessions, wait));
        self
    }

    /// Runs one signing call on a session: within the budget if the key has one.
    fn in_session<T>(&self, op: impl Fn(&cryptoki::session::Session) -> Result<T>) -> Result<T> {
        match &self.budget {
            Some(budget) => self.pool.run_sync_within(budget, Operation::Sign, op),
            None => self.pool.run_sync(Operation::Sign, op),
        }
    }

    /// The key's label in the token.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The key's public half (what its certificate must carry).
    pub fn public_key_info(&self) -> &PublicKeyInfo {
        &self.public
    }

    /// Signs `message` with `scheme` in the token. Supported: ECDSA_NISTP256_SHA256 (DER
    /// signature, the TLS and X.509 form) for P-256 keys; RSA_PSS_SHA256 and
    /// RSA_PKCS1_SHA256 for RSA keys.
    pub fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>> {
        let label: &str = &self.label;
        let unusable = |reason| Error::UnusableKey {
            label: label.to_owned(),
            reason,
        };
        match (self.public.key_type(), scheme) {
            (TlsKeyType::EcdsaP256, SignatureScheme::ECDSA_NISTP256_SHA256) => {
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message);
                let raw = self.in_session(|session| {
                    let key = find_key(session, KeyClass::Private, label)?;
                    session
                        .sign(&Mechanism::Ecdsa, key, digest.as_ref())
                        .map_err(Error::pkcs11(Operation::Sign))
                })?;
                raw_to_der(&raw).ok_or_else(|| unusable("not a P-256 signature"))
            }
            (TlsKeyType::Rsa, SignatureScheme::RSA_PSS_SHA256 | SignatureScheme::RSA_PKCS1_SHA256) => {
                let rsa = match scheme {
                    SignatureScheme::RSA_PSS_SHA256 => RsaScheme::PssSha256,
                    _ => RsaScheme::Pkcs1Sha256,
                };
                let input = signing_input(rsa, message);
                self.in_session(|session| sign_in_session(session, label, rsa, &input))
            }
            _ => Err(unusable("signature scheme does not fit the key type")),
        }
    }

    /// The scheme this key signs with among those the peer `offered`, most preferred first.
    pub fn scheme_for(&self, offered: &[SignatureScheme]) -> Option<SignatureScheme> {
        self.schemes().iter().find(|s| offered.contains(s)).copied()
    }

    /// The scheme this key signs TLS handshakes with when the peer offers it.
    pub fn preferred_scheme(&self) -> SignatureScheme {
        self.schemes()[0]
    }

    /// The schemes this key signs with, most preferred first.
    fn schemes(&self) -> &'static [SignatureScheme] {
        match self.public.key_type() {
            TlsKeyType::EcdsaP256 => &[SignatureScheme::ECDSA_NISTP256_SHA256],
            TlsKeyType::Rsa => &[SignatureScheme::RSA_PSS_SHA256, SignatureScheme::RSA_PKCS1_SHA256],
        }
    }
}

impl SigningKey for TokenTlsKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn TlsSigner>> {
        Some(Box::new(TokenTlsSigner {
            key: self.clone(),
            scheme: self.scheme_for(offered)?,
        }))
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.public.spki_der()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self.public.key_type() {
            TlsKeyType::EcdsaP256 => SignatureAlgorithm::ECDSA,
            TlsKeyType::Rsa => SignatureAlgorithm::RSA,
        }
    }
}

/// One handshake's signer: the key and the scheme negotiated for it.
#[derive(Debug)]
struct TokenTlsSigner {
    key: TokenTlsKey,
    scheme: SignatureScheme,
}

impl TlsSigner for TokenTlsSigner {
    fn sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, rustls::Error> {
        self.key
            .sign(self.scheme, message)
            .map_err(|e| rustls::Error::General(format!("token signature failed: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// r‖s (32 bytes each, as CKM_ECDSA returns) to DER `SEQUENCE { INTEGER r, INTEGER s }`.
fn raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() != 64 {
        return None;
    }
    let integer = |half: &[u8]| {
        let start = half.iter().position(|&b| b != 0).unwrap_or(half.len() - 1);
        let mut value = half[start..].to_vec();
        if value[0] & 0x80 != 0 {
            value.insert(0, 0);
        }
        let mut out = vec![0x02, value.len() as u8];
        out.extend(value);
        out
    };
    let body = [integer(&raw[..32]), integer(&raw[32..])].concat();
    let mut der = vec![0x30, body.len() as u8];
    der.extend(body);
    Some(der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenConfig;
    use crate::test_support::{Token, hsm_test_config, token_tests};
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1, RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256, UnparsedPublicKey,
        VerificationAlgorithm,
    };

    /// Signs two messages with every scheme the key offers and checks each signature with
    /// aws-lc (an independent implementation) against the exported public key.
    fn assert_signatures_verify(key: &TokenTlsKey, schemes: &[(SignatureScheme, &'static dyn VerificationAlgorithm)]) {
        for &(scheme, algorithm) in schemes {
            let offered = [SignatureScheme::ED25519, scheme];
            let signer = key.choose_scheme(&offered).expect("scheme offered");
            assert_eq!(signer.scheme(), scheme);
            let verifier = UnparsedPublicKey::new(algorithm, key.public_key_info().subject_public_key());
            for message in [b"TLS 1.3, server CertificateVerify".as_slice(), b"another transcript"] {
                let signature = signer.sign(message).expect("token signs");
                assert!(verifier.verify(message, &signature).is_ok(), "{scheme:?}");
                assert!(verifier.verify(b"tampered", &signature).is_err());
            }
        }
    }

    token_tests!(
        ecdsa_p256_tls_signatures_from_the_token_verify_with_aws_lc,
        rsa_tls_signatures_pss_and_pkcs1_from_the_token_verify_with_aws_lc,
    );
    token_tests!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        tls_signatures_from_worker_threads_share_the_pools_sessions,
        handshake_signatures_use_their_own_sessions_and_fail_soon_when_those_are_busy,
    );

    async fn ecdsa_p256_tls_signatures_from_the_token_verify_with_aws_lc(token: Token) -> Result<()> {
        let (pool, _login) = crate::test_support::connect(token, hsm_test_config(token)?).await?;
        let label = format!("tls-ec-{}", std::process::id());
        let generate = || generate_tls_key_pair(&pool, &label, &[1], TlsKeyType::EcdsaP256);
        assert_eq!(generate().await?, Generated::Created);
        assert_eq!(generate().await?, Generated::AlreadyPresent);
        let key = TokenTlsKey::load(pool.clone(), &label).await?;
        assert_eq!(key.public_key_info().key_type(), TlsKeyType::EcdsaP256);
        assert_signatures_verify(
            &key,
            &[(SignatureScheme::ECDSA_NISTP256_SHA256, &ECDSA_P256_SHA256_ASN1)],
        );
        assert!(key.choose_scheme(&[SignatureScheme::RSA_PSS_SHA256]).is_none());
        crate::destroy_key_pair(&pool, &label).await
    }

    async fn rsa_tls_signatures_pss_and_pkcs1_from_the_token_verify_with_aws_lc(token: Token) -> Result<()> {
        let (pool, _login) = crate::test_support::connect(token, hsm_test_config(token)?).await?;
        let label = format!("tls-rsa-{}", std::process::id());
        assert_eq!(
            generate_tls_key_pair(&pool, &label, &[2], TlsKeyType::Rsa).await?,
            Generated::Created
        );
        let key = TokenTlsKey::load(pool.clone(), &label).await?;
        assert_eq!(key.public_key_info().key_type(), TlsKeyType::Rsa);
        assert_signatures_verify(
            &key,
            &[
                (SignatureScheme::RSA_PSS_SHA256, &RSA_PSS_2048_8192_SHA256),
                (SignatureScheme::RSA_PKCS1_SHA256, &RSA_PKCS1_2048_8192_SHA256),
            ],
        );
        let both = [SignatureScheme::RSA_PKCS1_SHA256, SignatureScheme::RSA_PSS_SHA256];
        assert_eq!(
            key.choose_scheme(&both).map(|s| s.scheme()),
            Some(SignatureScheme::RSA_PSS_SHA256),
            "PSS preferred"
        );
        assert!(key.choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256]).is_none());
        assert!(key.sign(SignatureScheme::ECDSA_NISTP256_SHA256, b"x").is_err());
        crate::destroy_key_pair(&pool, &label).await
    }

    /// In the services rustls signs on tokio worker threads: the signature must wait for a
    /// session under the pool's bound there, without blocking the runtime or panicking.
    async fn tls_signatures_from_worker_threads_share_the_pools_sessions(token: Token) -> Result<()> {
        let config = TokenConfig {
            sessions: 1,
            ..hsm_test_config(token)?
        };
        let (pool, _login) = crate::test_support::connect(token, config).await?;
        let label = format!("tls-workers-{}", std::process::id());
        generate_tls_key_pair(&pool, &label, &[3], TlsKeyType::EcdsaP256).await?;
        let key = TokenTlsKey::load(pool.clone(), &label).await?;
        let tasks: Vec<_> = (0..8u8)
            .map(|i| {
                let key = key.clone();
                tokio::spawn(async move { key.sign(SignatureScheme::ECDSA_NISTP256_SHA256, &[i; 32]) })
            })
            .collect();
        let verifier = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key_info().subject_public_key());
        for (i, task) in (0..8u8).zip(tasks) {
            let signature = task.await.map_err(Error::Worker)??;
            assert!(verifier.verify(&[i; 32], &signature).is_ok());
        }
        crate::destroy_key_pair(&pool, &label).await
    }

    /// A handshake flood must not take the requests' sessions nor queue for long: with the
    /// pool's only request session busy a budgeted signature still goes through, and with
    /// its own budget busy past its short wait it fails instead of queueing.
    async fn handshake_signatures_use_their_own_sessions_and_fail_soon_when_those_are_busy(token: Token) -> Result<()> {
        let config = TokenConfig {
            sessions: 1,
            ..hsm_test_config(token)?
        };
        let (pool, _login) = crate::test_support::connect(token, config).await?;
        let label = format!("tls-budget-{}", std::process::id());
        generate_tls_key_pair(&pool, &label, &[4], TlsKeyType::EcdsaP256).await?;
        let key = TokenTlsKey::load(pool.clone(), &label)
            .await?
            .with_handshake_budget(1, Duration::from_millis(50));
        let scheme = SignatureScheme::ECDSA_NISTP256_SHA256;

        let (busy, release_request) = hold(|started, release| {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(Operation::CheckSession, move |_session| {
                    let _ = started.send(());
                    let _ = release.recv();
                    Ok(())
                })
                .await
            })
        });
        busy.recv().expect("the request holds the pool's only session");
        let signer = key.clone();
        let signed = tokio::task::spawn_blocking(move || signer.sign(scheme, b"handshake"))
            .await
            .map_err(Error::Worker)?;
        assert!(signed.is_ok(), "{signed:?}");

        let (busy, release_handshake) = hold(|started, release| {
            let (pool, budget) = (pool.clone(), key.budget.clone().expect("budget set"));
            std::thread::spawn(move || {
                pool.run_sync_within(&budget, Operation::Sign, |_session| {
                    let _ = started.send(());
                    let _ = release.recv();
                    Ok(())
                })
            })
        });
        busy.recv().expect("a handshake holds the budget's only session");
        let refused = key.sign(scheme, b"second handshake");
        assert!(
            matches!(
                refused,
                Err(Error::Busy {
                    operation: Operation::Sign
                })
            ),
            "{refused:?}"
        );

        release_handshake.send(()).expect("holder waits");
        release_request.send(()).expect("holder waits");
        crate::destroy_key_pair(&pool, &label).await
    }

    /// Starts `holder` with a "started" sender and a "release" receiver; returns the
    /// "started" receiver and the "release" sender.
    fn hold<T>(
        holder: impl FnOnce(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>) -> T,
    ) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        holder(started_tx, release_rx);
        (started_rx, release_tx)
    }

    #[test]
    fn raw_signatures_become_der_with_sign_padding_and_without_leading_zeros() {
        let mut raw = [0u8; 64];
        raw[0] = 0x80; // r: high bit set, needs a 0x00 pad
        raw[33] = 0x01; // s: one leading zero byte to strip
        let der = raw_to_der(&raw).expect("64 bytes");
        assert_eq!(usize::from(der[1]), der.len() - 2, "SEQUENCE length");
        assert_eq!(&der[2..5], &[0x02, 33, 0x00], "r padded to 33 bytes");
        assert_eq!(der[5], 0x80);
        assert_eq!(&der[37..40], &[0x02, 31, 0x01], "s without its leading zero");
        assert_eq!(der.len(), 2 + 35 + 33);
        assert!(raw_to_der(&[0u8; 63]).is_none());
    }
}
