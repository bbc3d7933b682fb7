//! A rotated key's generations in a token — `label`, `label.1`, `label.2`, … — as last read.
//! The newest is current (manager signs new access tokens with it; manager seals new secrets
//! to vault's); every generation keeps verifying or opening until it is retired. manager's
//! signing keys and vault's wrapping keys are both such rings, and both admin tools rotate,
//! list and retire them the same way. Only protected private keys with the ring's usage
//! count (see [`hsm::rsa_key_generations`]); anything else under a generation's label — a
//! public key planted by someone without the PIN, say — is logged and never used.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use contract::jwk::{KeyError, RsaPublicKey};

use crate::report::error_chain;

/// One generation of a rotated key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// CKA_LABEL in the token.
    pub label: String,
    /// 0 for the base label, N for `<base>.N`.
    pub number: u64,
    /// Its public half.
    pub public: RsaPublicKey,
    /// The RFC 7638 thumbprint of `public`: the `kid` tokens and envelopes name it by.
    pub kid: String,
}

/// Every generation of one key as read at one moment, oldest first; never empty.
#[derive(Debug, Clone)]
pub struct KeySet {
    base: String,
    older: Vec<Generation>,
    current: Generation,
    ignored: Vec<hsm::IgnoredKeyObject>,
}

impl KeySet {
    /// The newest generation.
    pub fn current(&self) -> &Generation {
        &self.current
    }

    /// The generation named by `kid`, if the token holds it.
    pub fn get(&self, kid: &str) -> Option<&Generation> {
        self.iter().find(|generation| generation.kid == kid)
    }

    /// Every generation, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Generation> {
        self.older.iter().chain(std::iter::once(&self.current))
    }

    /// The objects under the generations' labels that were not used, sorted.
    pub fn ignored(&self) -> &[hsm::IgnoredKeyObject] {
        &self.ignored
    }

    /// Only the generations whose kid is in `pinned` (all of them when `pinned` is empty),
    /// and the ones left out. The newest one kept is current.
    fn pinned_to(self, pinned: &[String]) -> Result<(KeySet, Vec<Generation>), KeyRingError> {
        if pinned.is_empty() {
            return Ok((self, Vec::new()));
        }
        let (mut kept, unpinned): (Vec<Generation>, Vec<Generation>) = self
            .older
            .into_iter()
            .chain(std::iter::once(self.current))
            .partition(|generation| pinned.contains(&generation.kid));
        let Some(current) = kept.pop() else {
            return Err(KeyRingError::NonePinned {
                base: self.base,
                pinned: pinned.to_vec(),
            });
        };
        Ok((
            KeySet {
                base: self.base,
                older: kept,
                current,
                ignored: self.ignored,
            },
            unpinned,
        ))
    }

    /// The generation with `kid`, if it may be destroyed: it exists and is not current.
    pub fn retirable(&self, kid: &str) -> Result<&Generation, RetireRefused> {
        let generation = self.get(kid).ok_or_else(|| RetireRefused::Unknown {
            base: self.base.clone(),
            kid: kid.to_owned(),
        })?;
        if generation.kid == self.current.kid {
            return Err(RetireRefused::Current {
                kid: kid.to_owned(),
                label: generation.label.clone(),
            });
        }
        Ok(generation)
    }
}

/// One line per generation — number, label, kid — the current one marked, then one per
/// ignored object (`ignored`, label, class, reason): what the admin tools' list commands
/// print.
impl fmt::Display for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for generation in self.iter() {
            let mark = if generation.kid == self.current.kid {
                " (current)"
            } else {
                ""
            };
            writeln!(
                f,
                "{}\t{}\t{}{mark}",
                generation.number, generation.label, generation.kid
            )?;
        }
        IgnoredLines(&self.ignored).fmt(f)
    }
}

/// One line per ignored object: `ignored`, label, class, reason.
struct IgnoredLines<'a>(&'a [hsm::IgnoredKeyObject]);

impl fmt::Display for IgnoredLines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for object in self.0 {
            writeln!(f, "ignored\t{}\t{}\t{}", object.label, object.class, object.reason)?;
        }
        Ok(())
    }
}

/// The admin tools' retire commands' argument.
#[derive(Debug, Clone, clap::Args)]
pub struct RetireArgs {
    /// The key's kid (RFC 7638 thumbprint), as the list command prints it; it may begin with
    /// `-` (base64url).
    #[arg(long, allow_hyphen_values = true)]
    pub kid: String,
}

/// Why a key's generations could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// The token did not answer.
    #[error("cannot read keys {base:?} from the token")]
    Hsm {
        /// The base label.
        base: String,
        /// The token's error.
        #[source]
        source: hsm::Error,
    },
    /// No usable key with the label exists.
    #[error("no usable key labelled {base:?} (or {base:?}.N) in the token ({} other objects ignored)", ignored.len())]
    NoKey {
        /// The base label.
        base: String,
        /// What was found under the labels but not used.
        ignored: Vec<hsm::IgnoredKeyObject>,
    },
    /// `pinned` names no usable generation in the token.
    #[error("none of the pinned kids {pinned:?} is a usable key {base:?} (or {base:?}.N) in the token")]
    NonePinned {
        /// The base label.
        base: String,
        /// The configured kids.
        pinned: Vec<String>,
    },
    /// The generation just made is not usable (an object under its label that this ring
    /// ignores was there before).
    #[error("the new key {} is not used: {}", .0.label, .0.reason)]
    NewKeyIgnored(hsm::IgnoredKeyObject),
    /// A generation's public half is not a key this system accepts.
    #[error("key {label:?} in the token")]
    Key {
        /// Its label.
        label: String,
        /// Why it is refused.
        #[source]
        source: KeyError,
    },
}

/// Why a generation may not be retired.
#[derive(Debug, thiserror::Error)]
pub enum RetireRefused {
    /// No generation has this kid.
    #[error("no key {base:?} (or {base:?}.N) has kid {kid}")]
    Unknown {
        /// The base label.
        base: String,
        /// The kid asked for.
        kid: String,
    },
    /// It is the newest generation, still in use.
    #[error("{kid} is the current key ({label}); rotate first, then retire it")]
    Current {
        /// The kid asked for.
        kid: String,
        /// Its label.
        label: String,
    },
}

/// Reads every generation of `base` usable for `usage` from the token.
pub async fn read(pool: &hsm::TokenPool, base: &str, usage: hsm::KeyUsage) -> Result<KeySet, KeyRingError> {
    let found = hsm::rsa_key_generations(pool, base, usage)
        .await
        .map_err(|source| KeyRingError::Hsm {
            base: base.to_owned(),
            source,
        })?;
    let mut generations = found
        .keys
        .into_iter()
        .map(|key| {
            let public = RsaPublicKey::from_components(key.key.modulus(), key.key.exponent()).map_err(|source| {
                KeyRingError::Key {
                    label: key.label.clone(),
                    source,
                }
            })?;
            Ok(Generation {
                kid: public.thumbprint(),
                label: key.label,
                number: key.generation,
                public,
            })
        })
        .collect::<Result<Vec<_>, KeyRingError>>()?;
    let Some(current) = generations.pop() else {
        return Err(KeyRingError::NoKey {
            base: base.to_owned(),
            ignored: found.ignored,
        });
    };
    Ok(KeySet {
        base: base.to_owned(),
        older: generations,
        current,
        ignored: found.ignored,
    })
}

/// Generates the generation after the newest usable one of `base` (generation 0 if there
/// is none) with `usage`, and returns it. Services pick it up at their next refresh.
/// Ignored objects do not count: a planted `base.N` cannot push the numbering on.
pub async fn rotate(pool: &hsm::TokenPool, base: &str, usage: hsm::KeyUsage) -> Result<Generation, KeyRingError> {
    let hsm_error = |source| KeyRingError::Hsm {
        base: base.to_owned(),
        source,
    };
    let next = hsm::rsa_key_generations(pool, base, usage)
        .await
        .map_err(hsm_error)?
        .keys
        .last()
        .map_or(0, |key| key.generation + 1);
    let spec = hsm::RsaKeySpec {
        label: hsm::generation_label(base, next),
        id: next.to_be_bytes().to_vec(),
        bits: 2048,
        usage,
    };
    let label = spec.label.clone();
    hsm::generate_rsa_key_pair(pool, spec).await.map_err(hsm_error)?;
    // The generation made here, even if another rotation landed meanwhile.
    let keys = read(pool, base, usage).await?;
    if let Some(generation) = keys.iter().find(|generation| generation.label == label) {
        return Ok(generation.clone());
    }
    let refused = keys
        .ignored()
        .iter()
        .find(|object| object.label == label && object.class == hsm::KeyClass::Private);
    Err(match refused {
        Some(object) => KeyRingError::NewKeyIgnored(object.clone()),
        None => KeyRingError::NoKey {
            base: label,
            ignored: Vec::new(),
        },
    })
}

/// What the admin tools' list commands print: one line per generation and per ignored
/// object (see [`KeySet`]'s `Display`), nothing when the token holds neither.
pub async fn list(pool: &hsm::TokenPool, base: &str, usage: hsm::KeyUsage) -> Result<String, KeyRingError> {
    match read(pool, base, usage).await {
        Ok(keys) => Ok(keys.to_string()),
        Err(KeyRingError::NoKey { ignored, .. }) => Ok(IgnoredLines(&ignored).to_string()),
        Err(other) => Err(other),
    }
}

/// Logs each of `objects` (ignored under `base`) once, as a warning: it is either a
/// mistake in provisioning or someone without the PIN writing to the token.
fn warn_ignored<'a>(base: &str, objects: impl IntoIterator<Item = &'a hsm::IgnoredKeyObject>) {
    for object in objects {
        tracing::warn!(
            base,
            label = %object.label,
            class = %object.class,
            reason = %object.reason,
            "ignoring a key object in the token"
        );
    }
}

/// The objects ignored `now` that were not at the previous read (`before`).
fn newly_ignored<'a>(
    before: &'a [hsm::IgnoredKeyObject],
    now: &'a [hsm::IgnoredKeyObject],
) -> impl Iterator<Item = &'a hsm::IgnoredKeyObject> {
    now.iter().filter(|object| !before.contains(object))
}

/// Logs each generation in `unpinned` as not used: it is a usable key in the token, but
/// configuration pins other kids — a rotation not yet pinned, or a key made by someone who
/// has the PIN but not the configuration.
fn warn_unpinned<'a>(base: &str, unpinned: impl IntoIterator<Item = &'a Generation>) {
    for generation in unpinned {
        tracing::warn!(
            base,
            label = %generation.label,
            kid = %generation.kid,
            "not using a key generation whose kid is not pinned in the configuration"
        );
    }
}

/// A key's generations as last read from the token; [`KeyRing::refresh`] reads them again,
/// so a rotation or retirement done with an admin tool takes effect without a restart.
/// With pinned kids, only those generations are used, and a new one only once it is pinned.
pub struct KeyRing {
    pool: hsm::TokenPool,
    base: String,
    usage: hsm::KeyUsage,
    pinned: Vec<String>,
    keys: RwLock<Arc<KeySet>>,
    unpinned: RwLock<Vec<Generation>>,
}

impl KeyRing {
    /// Reads the generations of `base` usable for `usage` — only those whose kid is in
    /// `pinned`, unless it is empty — logging every ignored object and unpinned generation;
    /// fails when none is left.
    pub async fn load(
        pool: hsm::TokenPool,
        base: &str,
        usage: hsm::KeyUsage,
        pinned: &[String],
    ) -> Result<Self, KeyRingError> {
        let keys = match read(&pool, base, usage).await {
            Ok(keys) => keys,
            Err(error) => {
                if let KeyRingError::NoKey { ignored, .. } = &error {
                    warn_ignored(base, ignored);
                }
                return Err(error);
            }
        };
        warn_ignored(base, keys.ignored());
        // An empty entry (an empty list in a configuration file) pins nothing.
        let pinned: Vec<String> = pinned
            .iter()
            .map(|kid| kid.trim())
            .filter(|kid| !kid.is_empty())
            .map(str::to_owned)
            .collect();
        let (keys, unpinned) = keys.pinned_to(&pinned)?;
        warn_unpinned(base, &unpinned);
        Ok(Self {
            pool,
            base: base.to_owned(),
            usage,
            pinned,
            keys: RwLock::new(Arc::new(keys)),
            unpinned: RwLock::new(unpinned),
        })
    }

    /// Reads the token again; on failure the previous generations stay in use. Ignored
    /// objects and unpinned generations not seen at the last read are logged: each once,
    /// not at every refresh.
    pub async fn refresh(&self) -> Result<(), KeyRingError> {
        let keys = read(&self.pool, &self.base, self.usage).await?;
        warn_ignored(&self.base, newly_ignored(self.keys().ignored(), keys.ignored()));
        let (keys, unpinned) = keys.pinned_to(&self.pinned)?;
        {
            let mut before = self.unpinned.write().unwrap_or_else(|p| p.into_inner());
            warn_unpinned(
                &self.base,
                unpinned.iter().filter(|generation| !before.contains(generation)),
            );
            *before = unpinned;
        }
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        Ok(())
    }

    /// The generations as last read.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The token the keys live in.
    pub fn pool(&self) -> &hsm::TokenPool {
        &self.pool
    }

    /// Refreshes every `interval`, forever, logging a change of the current generation;
    /// `what` names the key in those lines ("signing key").
    pub async fn refresh_forever(self: Arc<Self>, interval: Duration, what: &'static str) {
        loop {
            tokio::time::sleep(interval).await;
            let before = self.keys().current().kid.clone();
            match self.refresh().await {
                Ok(()) => {
                    let keys = self.keys();
                    let current = keys.current();
                    if current.kid != before {
                        tracing::info!(kid = %current.kid, label = %current.label, "{what} changed");
                    }
                }
                Err(e) => tracing::warn!(error = %error_chain(&e), "cannot refresh the {what}s"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn planted(label: &str) -> hsm::IgnoredKeyObject {
        hsm::IgnoredKeyObject {
            label: label.to_owned(),
            class: hsm::KeyClass::Public,
            reason: hsm::IgnoreReason::NotPublicHalfOfUsableKey,
        }
    }

    #[test]
    fn an_ignored_object_is_reported_when_it_appears_not_at_every_refresh() {
        let first = [planted("k.1")];
        let second = [planted("k.1"), planted("k.2")];
        let new: Vec<_> = newly_ignored(&[], &first).collect();
        assert_eq!(new, vec![&planted("k.1")]);
        assert_eq!(newly_ignored(&first, &first).count(), 0, "same set: nothing again");
        let new: Vec<_> = newly_ignored(&first, &second).collect();
        assert_eq!(new, vec![&planted("k.2")]);
        assert_eq!(newly_ignored(&second, &first).count(), 0, "one went away");
    }

    #[test]
    fn the_listing_names_ignored_objects_after_the_generations() -> Result<(), KeyError> {
        let n = [&[0xc5u8][..], &[0x11; 255]].concat();
        let public = RsaPublicKey::from_components(&n, &[1, 0, 1])?;
        let current = Generation {
            label: "k".into(),
            number: 0,
            kid: public.thumbprint(),
            public,
        };
        let keys = KeySet {
            base: "k".into(),
            older: Vec::new(),
            current: current.clone(),
            ignored: vec![planted("k.1")],
        };
        assert_eq!(
            keys.to_string(),
            format!(
                "0\tk\t{} (current)\nignored\tk.1\tpublic key\tnot the public half of a usable private key with this label\n",
                current.kid
            )
        );
        Ok(())
    }

    fn generation(number: u64, fill: u8) -> Result<Generation, KeyError> {
        let n = [&[0xc5u8][..], &[fill; 255]].concat();
        let public = RsaPublicKey::from_components(&n, &[1, 0, 1])?;
        Ok(Generation {
            label: generation_label(number),
            number,
            kid: public.thumbprint(),
            public,
        })
    }

    fn generation_label(number: u64) -> String {
        hsm::generation_label("k", number)
    }

    #[test]
    fn pinned_kids_keep_only_their_generations_and_the_newest_of_them_is_current() -> Result<(), KeyError> {
        let [g0, g1, g2] = [generation(0, 1)?, generation(1, 2)?, generation(2, 3)?];
        let keys = || KeySet {
            base: "k".into(),
            older: vec![g0.clone(), g1.clone()],
            current: g2.clone(),
            ignored: Vec::new(),
        };
        let (all, unpinned) = keys().pinned_to(&[]).expect("no pin");
        assert_eq!(all.current().kid, g2.kid);
        assert!(unpinned.is_empty());

        let (pinned, unpinned) = keys()
            .pinned_to(&[g0.kid.clone(), g1.kid.clone(), "not-in-the-token".into()])
            .expect("two pinned");
        assert_eq!(pinned.current().kid, g1.kid, "the newest pinned generation signs/seals");
        assert_eq!(pinned.iter().count(), 2);
        assert!(pinned.get(&g2.kid).is_none(), "an unpinned generation opens nothing");
        assert_eq!(unpinned, vec![g2.clone()]);

        assert!(matches!(
            keys().pinned_to(&["not-in-the-token".into()]),
            Err(KeyRingError::NonePinned { .. })
        ));
        Ok(())
    }

    #[derive(Parser)]
    struct Retire {
        #[command(flatten)]
        args: RetireArgs,
    }

    #[test]
    fn a_kid_beginning_with_a_hyphen_is_a_value_not_a_flag() {
        let parsed = Retire::try_parse_from(["retire", "--kid", "-pSlvJo7T2q"]).expect("parses");
        assert_eq!(parsed.args.kid, "-pSlvJo7T2q");
    }
}
