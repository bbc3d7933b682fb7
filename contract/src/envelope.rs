//! The JWE (RFC 7516, compact serialization) a secret is sealed in for vault.
//!
//! `alg` is `RSA-OAEP` or `RSA-OAEP-256` (a 32-byte key wrapped to vault's public key),
//! `enc` is `A256GCM`. The protected header also carries `key_id` and `user_id`; being the
//! GCM additional data, it binds the ciphertext to its row, so an envelope copied onto
//! another row fails to open.
//!
//! Two versions exist, and the header says which:
//! - **version 1** (no `ver`): the wrapped key is the content key. vault's token alone
//!   opens it. Still read, never written.
//! - **version 2** (`"ver": 2`): the content key is derived with HKDF from the wrapped key
//!   and the holder's share ([`HolderShare`]), which only the access token carries; the
//!   header's `share_check` lets vault refuse a wrong share before it unwraps anything.
//!   Rewrapping touches only the wrapped key, exactly as for version 1.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm, OaepPublicEncryptingKey, PublicEncryptingKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::jwk::{Jwk, KeyError, RsaPublicKey};
use crate::share::HolderShare;

/// Content encryption: the only `enc` this system writes or reads.
pub const CONTENT_ENCRYPTION: &str = "A256GCM";
const CEK_LEN: usize = 32;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// How the content key is wrapped to vault's RSA key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyWrap {
    /// `RSA-OAEP`: OAEP with SHA-1 and MGF1-SHA-1; the only one SoftHSM2 2.6.1 opens.
    RsaOaep,
    /// `RSA-OAEP-256`: OAEP with SHA-256 and MGF1-SHA-256; for HSMs that support it.
    RsaOaep256,
}

impl KeyWrap {
    /// The JOSE `alg` name.
    pub fn jose_name(self) -> &'static str {
        match self {
            KeyWrap::RsaOaep => "RSA-OAEP",
            KeyWrap::RsaOaep256 => "RSA-OAEP-256",
        }
    }

    fn oaep(self) -> &'static OaepAlgorithm {
        match self {
            KeyWrap::RsaOaep => &OAEP_SHA1_MGF1SHA1,
            KeyWrap::RsaOaep256 => &OAEP_SHA256_MGF1SHA256,
        }
    }
}

impl fmt::Display for KeyWrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jose_name())
    }
}

impl FromStr for KeyWrap {
    type Err = EnvelopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RSA-OAEP" => Ok(KeyWrap::RsaOaep),
            "RSA-OAEP-256" => Ok(KeyWrap::RsaOaep256),
            other => Err(EnvelopeError::UnsupportedAlgorithm(other.to_owned())),
        }
    }
}

/// Why an envelope could not be sealed, parsed or opened.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not five base64url parts, or a part has the wrong length.
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
    /// An `alg` or `enc` this system does not use. The name is kept for callers but not
    /// shown: the message reaches logs and error bodies, and the name is request text.
    #[error("unsupported envelope algorithm (alg or enc)")]
    UnsupportedAlgorithm(String),
    /// The recipient key is unusable.
    #[error("recipient key: {0}")]
    RecipientKey(#[from] KeyError),
    /// The header names another row or owner than the one it is stored under.
    #[error("envelope is bound to another key_id or user_id")]
    BindingMismatch,
    /// The unwrapped content key is not 32 bytes.
    #[error("unwrapped content key has {0} bytes, expected 32")]
    ContentKeyLength(usize),
    /// A `ver` this build does not know, or a header whose fields do not fit its version.
    #[error("unsupported envelope version")]
    UnsupportedVersion,
    /// The presented share is not this envelope's (or there is one where none belongs, or
    /// none where one is needed): the access token does not fit the secret. Told apart
    /// from [`EnvelopeError::Integrity`], which means the stored envelope was altered.
    #[error("the access token's share does not open this envelope")]
    ShareMismatch,
    /// The GCM tag did not verify: the ciphertext or header was altered.
    #[error("envelope failed its integrity check")]
    Integrity,
    /// The system RNG or the cipher failed while sealing.
    #[error("sealing failed in the crypto library")]
    Crypto,
}

/// The JWE protected header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedHeader {
    /// Key wrapping algorithm.
    pub alg: String,
    /// Content encryption; always `A256GCM`.
    pub enc: String,
    /// `kid` of vault's wrapping key.
    pub kid: String,
    /// The secret's id: the row the envelope belongs to.
    pub key_id: String,
    /// The secret's owner.
    pub user_id: String,
    /// `2` for a split-trust envelope; absent in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ver: Option<u32>,
    /// Version 2: the holder's share's check value ([`HolderShare::check_value`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_check: Option<String>,
}

/// Which envelope format a header describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The wrapped key is the content key; vault's token alone opens it.
    V1,
    /// The content key needs the holder's share too.
    V2,
}

impl ProtectedHeader {
    /// The version this header describes; a header with a version's fields mixed up is
    /// refused rather than guessed at.
    pub fn version(&self) -> Result<Version, EnvelopeError> {
        match (self.ver, &self.share_check) {
            (None, None) => Ok(Version::V1),
            (Some(2), Some(check)) if is_check_value(check) => Ok(Version::V2),
            (Some(2), Some(_)) => Err(EnvelopeError::Malformed("share_check is not 32 bytes of base64url")),
            _ => Err(EnvelopeError::UnsupportedVersion),
        }
    }
}

fn is_check_value(text: &str) -> bool {
    URL_SAFE_NO_PAD
        .decode(text)
        .is_ok_and(|bytes| bytes.len() == crate::share::SHARE_LEN)
}

/// Vault's public wrapping key, as manager knows it.
pub struct Recipient {
    key: OaepPublicEncryptingKey,
    kid: String,
    key_wrap: Option<KeyWrap>,
}

impl Recipient {
    /// Builds the recipient from vault's exported JWK; `kid` is recomputed from the key
    /// (RFC 7638) rather than trusted from the file. The JWK's `alg`, when it names a
    /// wrapping this system uses, is the one vault's token opens ([`Recipient::key_wrap`]).
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, EnvelopeError> {
        let mut recipient = Self::from_public_key(&RsaPublicKey::from_jwk(jwk)?)?;
        recipient.key_wrap = jwk.alg.as_deref().and_then(|alg| alg.parse().ok());
        Ok(recipient)
    }

    /// The recipient for an RSA public key (its `kid` is the key's thumbprint).
    pub fn from_public_key(public: &RsaPublicKey) -> Result<Self, EnvelopeError> {
        let der = public.spki_der()?;
        let key = PublicEncryptingKey::from_der(&der).map_err(|_| KeyError::Invalid)?;
        let key = OaepPublicEncryptingKey::new(key).map_err(|_| KeyError::Invalid)?;
        Ok(Self {
            key,
            kid: public.thumbprint(),
            key_wrap: None,
        })
    }

    /// The recipient key's `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The wrapping its JWK's `alg` asks for, if it named one (vault publishes the one its
    /// token opens: `RSA-OAEP-256` where the token does OAEP with SHA-256).
    pub fn key_wrap(&self) -> Option<KeyWrap> {
        self.key_wrap
    }

    /// Wraps a content key to this recipient (what `rewrap` does with an unwrapped key);
    /// refuses anything but a 32-byte key.
    pub fn wrap_content_key(&self, wrap: KeyWrap, cek: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        if cek.len() != CEK_LEN {
            return Err(EnvelopeError::ContentKeyLength(cek.len()));
        }
        let mut wrapped = vec![0u8; self.key.ciphertext_size()];
        let len = self
            .key
            .encrypt(wrap.oaep(), cek, &mut wrapped, None)
            .map_err(|_| EnvelopeError::Crypto)?
            .len();
        wrapped.truncate(len);
        Ok(wrapped)
    }
}

/// Which row an envelope belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The secret's id.
    pub key_id: &'a str,
    /// The secret's owner.
    pub user_id: &'a str,
}

/// Seals `plaintext` for `recipient` as a version-2 envelope: a fresh random key is
/// wrapped to vault, and the content is encrypted under the key HKDF derives from it and
/// `share`.
pub fn seal(
    recipient: &Recipient,
    wrap: KeyWrap,
    binding: Binding<'_>,
    share: &HolderShare,
    plaintext: &[u8],
) -> Result<String, EnvelopeError> {
    seal_version(recipient, wrap, binding, Some(share), plaintext)
}

/// Sealing as it was before split trust. manager never calls it; it exists so that tests
/// can prove rows stored before version 2 stay readable.
pub fn seal_version_1(
    recipient: &Recipient,
    wrap: KeyWrap,
    binding: Binding<'_>,
    plaintext: &[u8],
) -> Result<String, EnvelopeError> {
    seal_version(recipient, wrap, binding, None, plaintext)
}

fn seal_version(
    recipient: &Recipient,
    wrap: KeyWrap,
    binding: Binding<'_>,
    share: Option<&HolderShare>,
    plaintext: &[u8],
) -> Result<String, EnvelopeError> {
    let rng = SystemRandom::new();
    let mut wrapped_key = Zeroizing::new([0u8; CEK_LEN]);
    let mut iv = [0u8; IV_LEN];
    rng.fill(wrapped_key.as_mut()).map_err(|_| EnvelopeError::Crypto)?;
    rng.fill(&mut iv).map_err(|_| EnvelopeError::Crypto)?;

    let header = ProtectedHeader {
        alg: wrap.jose_name().into(),
        enc: CONTENT_ENCRYPTION.into(),
        kid: recipient.kid.clone(),
        key_id: binding.key_id.into(),
        user_id: binding.user_id.into(),
        ver: share.map(|_| 2),
        share_check: share.map(HolderShare::check_value),
    };
    let header_json = serde_json::to_vec(&header).map_err(|_| EnvelopeError::Crypto)?;
    let header_b64 = URL_SAFE_NO_PAD.encode(header_json);

    let wrapped = recipient.wrap_content_key(wrap, wrapped_key.as_ref())?;
    let cek = match share {
        Some(share) => share.content_key(wrapped_key.as_ref()),
        None => wrapped_key,
    };

    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, cek.as_ref()).map_err(|_| EnvelopeError::Crypto)?);
    let mut ciphertext = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(header_b64.as_bytes()),
            &mut ciphertext,
        )
        .map_err(|_| EnvelopeError::Crypto)?;

    Ok([
        header_b64,
        URL_SAFE_NO_PAD.encode(wrapped),
        URL_SAFE_NO_PAD.encode(iv),
        URL_SAFE_NO_PAD.encode(ciphertext),
        URL_SAFE_NO_PAD.encode(tag.as_ref()),
    ]
    .join("."))
}

/// A parsed, not yet opened, envelope.
#[derive(Debug, Clone)]
pub struct Envelope {
    header: ProtectedHeader,
    version: Version,
    wrap: KeyWrap,
    header_b64: String,
    encrypted_key: Vec<u8>,
    iv: [u8; IV_LEN],
    ciphertext: Vec<u8>,
    tag: [u8; TAG_LEN],
}

impl Envelope {
    /// Parses the compact serialization and checks algorithms and part lengths.
    pub fn parse(compact: &str) -> Result<Self, EnvelopeError> {
        let parts: Vec<&str> = compact.split('.').collect();
        let [header_b64, encrypted_key, iv, ciphertext, tag] = parts.as_slice() else {
            return Err(EnvelopeError::Malformed("expected five dot-separated parts"));
        };
        let decode = |part: &str, what| URL_SAFE_NO_PAD.decode(part).map_err(|_| EnvelopeError::Malformed(what));
        let header: ProtectedHeader = serde_json::from_slice(&decode(header_b64, "header is not base64url")?)
            .map_err(|_| EnvelopeError::Malformed("header is not the expected JSON"))?;
        if header.enc != CONTENT_ENCRYPTION {
            return Err(EnvelopeError::UnsupportedAlgorithm(header.enc));
        }
        let wrap = header.alg.parse()?;
        let version = header.version()?;
        let iv = decode(iv, "iv is not base64url")?
            .try_into()
            .map_err(|_| EnvelopeError::Malformed("iv is not 12 bytes"))?;
        let tag = decode(tag, "tag is not base64url")?
            .try_into()
            .map_err(|_| EnvelopeError::Malformed("tag is not 16 bytes"))?;
        Ok(Self {
            header,
            version,
            wrap,
            header_b64: (*header_b64).to_owned(),
            encrypted_key: decode(encrypted_key, "encrypted key is not base64url")?,
            iv,
            ciphertext: decode(ciphertext, "ciphertext is not base64url")?,
            tag,
        })
    }

    /// The protected header (authenticated only once [`Envelope::open`] succeeds).
    pub fn header(&self) -> &ProtectedHeader {
        &self.header
    }

    /// Which format the envelope is in.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Refuses `share` unless it is the one this envelope needs: the share whose check
    /// value the header records for version 2, none for version 1 (so a token issued for a
    /// version-2 secret never opens a version-1 envelope planted in its row).
    pub fn check_share(&self, share: Option<&HolderShare>) -> Result<(), EnvelopeError> {
        let fits = match (self.version, share, &self.header.share_check) {
            (Version::V1, None, _) => true,
            (Version::V2, Some(share), Some(check)) => share.matches(check),
            _ => false,
        };
        if fits {
            Ok(())
        } else {
            Err(EnvelopeError::ShareMismatch)
        }
    }

    /// How the content key was wrapped.
    pub fn key_wrap(&self) -> KeyWrap {
        self.wrap
    }

    /// The wrapped content key, to be decrypted by vault's token.
    pub fn encrypted_key(&self) -> &[u8] {
        &self.encrypted_key
    }

    /// The same envelope with another wrapped content key. The protected header — and
    /// so the GCM tag — is unchanged: its `kid` keeps naming the key the envelope was
    /// sealed to, which is why storage records where the content key lives now.
    pub fn with_encrypted_key(&self, encrypted_key: &[u8]) -> String {
        [
            self.header_b64.clone(),
            URL_SAFE_NO_PAD.encode(encrypted_key),
            URL_SAFE_NO_PAD.encode(self.iv),
            URL_SAFE_NO_PAD.encode(&self.ciphertext),
            URL_SAFE_NO_PAD.encode(self.tag),
        ]
        .join(".")
    }

    /// Refuses an envelope whose header names another row or owner.
    pub fn check_binding(&self, binding: Binding<'_>) -> Result<(), EnvelopeError> {
        if self.header.key_id == binding.key_id && self.header.user_id == binding.user_id {
            Ok(())
        } else {
            Err(EnvelopeError::BindingMismatch)
        }
    }

    /// Decrypts the content with the key unwrapped in vault's token and the holder's
    /// share (see [`Envelope::check_share`]); the header is the GCM additional data, so any
    /// change to it fails here.
    pub fn open(&self, unwrapped: &[u8], share: Option<&HolderShare>) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        self.check_share(share)?;
        if unwrapped.len() != CEK_LEN {
            return Err(EnvelopeError::ContentKeyLength(unwrapped.len()));
        }
        let derived;
        let cek = match share {
            Some(share) => {
                derived = share.content_key(unwrapped);
                derived.as_ref()
            }
            None => unwrapped,
        };
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, cek).map_err(|_| EnvelopeError::Integrity)?);
        let mut buffer = Zeroizing::new([self.ciphertext.as_slice(), &self.tag].concat());
        let plain_len = key
            .open_in_place(
                Nonce::assume_unique_for_key(self.iv),
                Aad::from(self.header_b64.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| EnvelopeError::Integrity)?
            .len();
        buffer.truncate(plain_len);
        Ok(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair, KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey, PublicKeyComponents};

    const BINDING: Binding<'static> = Binding {
        key_id: "k1",
        user_id: "alice",
    };

    fn software_key() -> (Recipient, OaepPrivateDecryptingKey) {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("keygen");
        let components: PublicKeyComponents<Vec<u8>> = aws_lc_rs::signature::KeyPair::public_key(&pair).into();
        let jwk = RsaPublicKey::from_components(&components.n, &components.e)
            .expect("key")
            .to_jwk("RSA-OAEP", "enc");
        let der = pair.as_der().expect("pkcs8");
        let private = PrivateDecryptingKey::from_pkcs8(der.as_ref()).expect("private");
        (
            Recipient::from_jwk(&jwk).expect("recipient"),
            OaepPrivateDecryptingKey::new(private).expect("oaep"),
        )
    }

    /// What vault's token does: the RSA-OAEP unwrap.
    fn unwrap_key(private: &OaepPrivateDecryptingKey, envelope: &Envelope) -> Vec<u8> {
        let mut out = vec![0u8; private.min_output_size()];
        private
            .decrypt(envelope.key_wrap().oaep(), envelope.encrypted_key(), &mut out, None)
            .expect("unwrap")
            .to_vec()
    }

    fn share() -> HolderShare {
        HolderShare::generate().expect("rng")
    }

    #[test]
    fn seals_and_opens_with_both_oaep_hashes_and_the_share() {
        let (recipient, private) = software_key();
        let share = share();
        for wrap in [KeyWrap::RsaOaep, KeyWrap::RsaOaep256] {
            let compact = seal(&recipient, wrap, BINDING, &share, "héllo wörld".as_bytes()).expect("seal");
            let envelope = Envelope::parse(&compact).expect("parse");
            assert_eq!(envelope.version(), Version::V2);
            assert_eq!(envelope.header().alg, wrap.jose_name());
            assert_eq!(envelope.header().kid, recipient.kid());
            envelope.check_binding(BINDING).expect("binding");
            let plain = envelope
                .open(&unwrap_key(&private, &envelope), Some(&share))
                .expect("open");
            assert_eq!(plain.as_slice(), "héllo wörld".as_bytes());
        }
    }

    #[test]
    fn version_1_envelopes_still_open_without_a_share() {
        let (recipient, private) = software_key();
        let compact = seal_version_1(&recipient, KeyWrap::RsaOaep, BINDING, b"old").expect("seal");
        let envelope = Envelope::parse(&compact).expect("parse");
        assert_eq!(envelope.version(), Version::V1);
        let header = URL_SAFE_NO_PAD
            .decode(compact.split('.').next().expect("header"))
            .expect("b64");
        let header: serde_json::Value = serde_json::from_slice(&header).expect("json");
        assert!(
            header.get("ver").is_none() && header.get("share_check").is_none(),
            "{header}"
        );
        let unwrapped = unwrap_key(&private, &envelope);
        assert_eq!(envelope.open(&unwrapped, None).expect("open").as_slice(), b"old");
        // A token that carries a share is for a version-2 secret: it does not open a
        // version-1 envelope put in that secret's row.
        assert!(matches!(
            envelope.open(&unwrapped, Some(&share())),
            Err(EnvelopeError::ShareMismatch)
        ));
    }

    #[test]
    fn vaults_unwrap_alone_does_not_open_a_version_2_envelope() {
        let (recipient, private) = software_key();
        let share = share();
        let compact = seal(&recipient, KeyWrap::RsaOaep, BINDING, &share, b"top secret").expect("seal");
        let envelope = Envelope::parse(&compact).expect("parse");
        let unwrapped = unwrap_key(&private, &envelope);
        // Everything vault holds: the unwrapped key, used as a content key directly...
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &unwrapped).expect("key"));
        let mut buffer = [envelope.ciphertext.as_slice(), &envelope.tag].concat();
        assert!(
            key.open_in_place(
                Nonce::assume_unique_for_key(envelope.iv),
                Aad::from(envelope.header_b64.as_bytes()),
                &mut buffer
            )
            .is_err()
        );
        // ...or through the envelope without a share, or with a wrong one.
        for wrong in [None, Some(&self::share())] {
            assert!(matches!(
                envelope.open(&unwrapped, wrong),
                Err(EnvelopeError::ShareMismatch)
            ));
        }
        assert_eq!(
            envelope.open(&unwrapped, Some(&share)).expect("open").as_slice(),
            b"top secret"
        );
    }

    #[test]
    fn an_edited_header_fails_the_integrity_check_not_the_share_check() {
        let (recipient, private) = software_key();
        let share = share();
        let compact = seal(&recipient, KeyWrap::RsaOaep, BINDING, &share, b"s").expect("seal");
        let mut parts: Vec<String> = compact.split('.').map(str::to_owned).collect();
        let forged = ProtectedHeader {
            key_id: "k2".into(),
            ..Envelope::parse(&compact).expect("parse").header().clone()
        };
        parts[0] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
        let envelope = Envelope::parse(&parts.join(".")).expect("parse");
        envelope
            .check_binding(Binding {
                key_id: "k2",
                user_id: "alice",
            })
            .expect("claims k2");
        let unwrapped = unwrap_key(&private, &envelope);
        assert!(matches!(
            envelope.open(&unwrapped, Some(&share)),
            Err(EnvelopeError::Integrity)
        ));
    }

    #[test]
    fn headers_with_an_unknown_or_inconsistent_version_are_refused() {
        let (recipient, _) = software_key();
        let compact = seal(&recipient, KeyWrap::RsaOaep, BINDING, &share(), b"s").expect("seal");
        let header = Envelope::parse(&compact).expect("parse").header().clone();
        let mut rest: Vec<String> = compact.split('.').map(str::to_owned).collect();
        for edited in [
            ProtectedHeader {
                ver: Some(3),
                ..header.clone()
            },
            ProtectedHeader {
                share_check: None,
                ..header.clone()
            },
            ProtectedHeader {
                ver: None,
                ..header.clone()
            },
        ] {
            rest[0] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&edited).expect("json"));
            assert!(matches!(
                Envelope::parse(&rest.join(".")),
                Err(EnvelopeError::UnsupportedVersion)
            ));
        }
    }

    #[test]
    fn a_share_check_that_is_not_32_bytes_is_malformed() {
        let (recipient, _) = software_key();
        let compact = seal(&recipient, KeyWrap::RsaOaep, BINDING, &share(), b"s").expect("seal");
        let header = Envelope::parse(&compact).expect("parse").header().clone();
        let mut parts: Vec<String> = compact.split('.').map(str::to_owned).collect();
        for check in ["", "AAAA", "not base64!"] {
            let edited = ProtectedHeader {
                share_check: Some(check.into()),
                ..header.clone()
            };
            parts[0] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&edited).expect("json"));
            assert!(
                matches!(Envelope::parse(&parts.join(".")), Err(EnvelopeError::Malformed(_))),
                "{check:?}"
            );
        }
    }

    #[test]
    fn rejects_wrong_binding_and_malformed_input() {
        let (recipient, _) = software_key();
        let share = share();
        let compact = seal(&recipient, KeyWrap::RsaOaep, BINDING, &share, b"s").expect("seal");
        let envelope = Envelope::parse(&compact).expect("parse");
        assert!(matches!(
            envelope.check_binding(Binding {
                key_id: "k1",
                user_id: "bob"
            }),
            Err(EnvelopeError::BindingMismatch)
        ));
        assert!(matches!(Envelope::parse("a.b.c"), Err(EnvelopeError::Malformed(_))));
        assert!(matches!(
            envelope.open(&[0u8; 16], Some(&share)),
            Err(EnvelopeError::ContentKeyLength(16))
        ));
    }
}
