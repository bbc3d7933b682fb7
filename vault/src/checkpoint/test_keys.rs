//! Software RSA keys standing in for the token's, to sign checkpoints in unit tests.

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use contract::jwk::RsaPublicKey;

use super::{Checkpoint, assemble, signing_input};

/// An RSA-2048 key and its public half.
pub(crate) struct TestKey {
    pair: KeyPair,
    pub(crate) public: RsaPublicKey,
}

impl TestKey {
    fn generate() -> Self {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("keygen");
        let components: PublicKeyComponents<Vec<u8>> = pair.public_key().into();
        let public = RsaPublicKey::from_components(&components.n, &components.e).expect("public key");
        Self { pair, public }
    }

    /// Its kid.
    pub(crate) fn kid(&self) -> String {
        self.public.thumbprint()
    }

    /// Signs `checkpoint` under `kid`, as the token would.
    pub(crate) fn sign_as(&self, kid: &str, checkpoint: &Checkpoint) -> String {
        let input = signing_input(kid, checkpoint);
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .expect("sign");
        assemble(&input, &signature)
    }

    /// Signs `checkpoint` under its own kid.
    pub(crate) fn sign(&self, checkpoint: &Checkpoint) -> String {
        self.sign_as(&self.kid(), checkpoint)
    }
}

/// Two keys, generated once per test binary (RSA key generation is slow).
pub(crate) fn keys() -> &'static [TestKey; 2] {
    static KEYS: OnceLock<[TestKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| [TestKey::generate(), TestKey::generate()])
}
