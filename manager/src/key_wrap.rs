//! Which RSA-OAEP manager wraps content keys with: the one vault's token opens, unless
//! configuration forces one.

use std::fmt;
use std::str::FromStr;

use contract::envelope::{KeyWrap, Recipient};

/// `key_wrap` in manager's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyWrapChoice {
    /// What vault publishes in its wrapping key's JWK `alg`: vault tries OAEP with SHA-256
    /// and with SHA-1 in its token at start-up and names the one it opens (SHA-256 first).
    /// A JWK without a usable `alg` (an older vault, a file exported by hand) means
    /// `RSA-OAEP`, which every token this system has met opens.
    Auto,
    /// Always this one; vault refuses to store an envelope its token cannot open.
    Fixed(KeyWrap),
}

impl KeyWrapChoice {
    /// The wrapping to seal to `recipient` with.
    pub fn for_recipient(self, recipient: &Recipient) -> KeyWrap {
        match self {
            KeyWrapChoice::Auto => recipient.key_wrap().unwrap_or(KeyWrap::RsaOaep),
            KeyWrapChoice::Fixed(wrap) => wrap,
        }
    }
}

impl fmt::Display for KeyWrapChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyWrapChoice::Auto => f.write_str("auto"),
            KeyWrapChoice::Fixed(wrap) => wrap.fmt(f),
        }
    }
}

impl FromStr for KeyWrapChoice {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "auto" {
            return Ok(KeyWrapChoice::Auto);
        }
        value
            .parse()
            .map(KeyWrapChoice::Fixed)
            .map_err(|_| format!("{value:?} is none of \"auto\", \"RSA-OAEP\", \"RSA-OAEP-256\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipient(alg: Option<&str>) -> Recipient {
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("keygen");
        let public =
            aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(aws_lc_rs::signature::KeyPair::public_key(&key));
        let mut jwk = contract::jwk::RsaPublicKey::from_components(&public.n, &public.e)
            .expect("key")
            .to_jwk("RSA-OAEP", "enc");
        jwk.alg = alg.map(str::to_owned);
        Recipient::from_jwk(&jwk).expect("recipient")
    }

    #[test]
    fn auto_follows_the_alg_vault_publishes_and_defaults_to_sha1_oaep() {
        assert_eq!(
            KeyWrapChoice::Auto.for_recipient(&recipient(Some("RSA-OAEP-256"))),
            KeyWrap::RsaOaep256
        );
        assert_eq!(
            KeyWrapChoice::Auto.for_recipient(&recipient(Some("RSA-OAEP"))),
            KeyWrap::RsaOaep
        );
        assert_eq!(KeyWrapChoice::Auto.for_recipient(&recipient(None)), KeyWrap::RsaOaep);
        assert_eq!(
            KeyWrapChoice::Auto.for_recipient(&recipient(Some("RS256"))),
            KeyWrap::RsaOaep
        );
    }

    #[test]
    fn a_fixed_choice_overrides_what_vault_publishes() {
        let fixed = KeyWrapChoice::Fixed(KeyWrap::RsaOaep);
        assert_eq!(fixed.for_recipient(&recipient(Some("RSA-OAEP-256"))), KeyWrap::RsaOaep);
        assert_eq!("RSA-OAEP-256".parse(), Ok(KeyWrapChoice::Fixed(KeyWrap::RsaOaep256)));
        assert_eq!("auto".parse(), Ok(KeyWrapChoice::Auto));
        assert!("RSA1_5".parse::<KeyWrapChoice>().is_err());
    }
}
