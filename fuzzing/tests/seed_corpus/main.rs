//! The seed corpus `fuzz/corpus/<target>/` and the access-token fixtures: how they are made
//! (`cargo test -p fuzzing --test seed_corpus -- --ignored` rewrites them) and a check, run
//! with every `cargo test`, that each seed is what it claims to be.
//!
//! Seeds are built the way the system builds the real thing: tokens with manager's header
//! and claims, envelopes by `contract::envelope::seal`, JWKs by `RsaPublicKey::to_jwk`,
//! SPKI and PKCS#1 from freshly generated keys. The private keys are thrown away; only the
//! public JWKS and the list of tokens signed with it are kept, as fixtures.

use std::error::Error;
use std::fs;
use std::path::PathBuf;

mod check;
mod make;

pub(crate) type Result<T = ()> = std::result::Result<T, Box<dyn Error>>;

pub(crate) fn fuzzing_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus_dir(target: &str) -> PathBuf {
    fuzzing_dir().join("../fuzz/corpus").join(target)
}

/// The seeds of `target`, by file name.
pub(crate) fn seeds(target: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut seeds = Vec::new();
    for entry in fs::read_dir(corpus_dir(target))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        seeds.push((name, fs::read(&path)?));
    }
    seeds.sort();
    Ok(seeds)
}

/// Replaces `target`'s seeds with `seeds`.
pub(crate) fn write_seeds(target: &str, seeds: &[(&str, Vec<u8>)]) -> Result {
    let dir = corpus_dir(target);
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}
