//! Public keys planted in the services' tokens by someone without the PIN: a PKCS#11
//! session that never logged in can create public objects, so an attacker's key labelled as
//! the next generation of manager's signing key or vault's wrapping key must be neither
//! published, signed with, sealed to nor trusted, and each service must say so in its log.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contract::jwk::{Jwk, RsaPublicKey};
use e2e::System;
use e2e::tokens::{dev_tls_key, private_softhsm};
use reqwest::StatusCode;
use serde_json::json;

/// The attacker's RSA-2048 key pair, made in software.
struct Attacker {
    pair: aws_lc_rs::rsa::KeyPair,
    public: RsaPublicKey,
}

impl Attacker {
    fn new() -> Result<Self> {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)?;
        let components = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let public = RsaPublicKey::from_components(&components.n, &components.e)?;
        Ok(Self { pair, public })
    }

    /// Writes the public key into token `token` of the test's token copy as a public-key
    /// object labelled `label`, from a process whose session never logs in: no PIN exists
    /// on this command line, and the services' logins are their own processes'.
    fn plant(&self, dir: &Path, token: &str, label: &str) -> Result<()> {
        let der = dir.join(format!("{label}.attacker.pub.der"));
        std::fs::write(&der, self.pair.public_key().as_der()?.as_ref())?;
        let output = std::process::Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", private_softhsm(dir)?)
            .args(["--module", e2e::dev::SOFTHSM, "--token-label", token])
            .args(["--type", "pubkey", "--label", label, "--write-object"])
            .arg(&der)
            .output()
            .context("running pkcs11-tool (softhsm-setup/setup.sh installs opensc)")?;
        ensure!(
            output.status.success(),
            "pkcs11-tool --write-object without login into {token}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    /// An RS256 token with `claims`, naming the attacker key's kid, signed by it.
    fn forge(&self, claims: &serde_json::Value) -> Result<String> {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.public.thumbprint()});
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let failed = std::cell::Cell::new(false);
        let token = e2e::jwt::forge(&header, claims, |input| {
            let mut signature = vec![0; self.pair.public_modulus_len()];
            let signed = self
                .pair
                .sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, input, &mut signature);
            failed.set(signed.is_err());
            signature
        });
        ensure!(!failed.get(), "signing with the attacker key failed");
        Ok(token)
    }

    /// Whether `jwk` is the attacker's key.
    fn is(&self, jwk: &Jwk) -> bool {
        jwk.n == URL_SAFE_NO_PAD.encode(self.public.modulus())
    }
}

fn admin(system: &System, tool: &str, args: &[&str]) -> Result<String> {
    let output = system.admin(tool, args)?;
    ensure!(
        output.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The generation after the newest one a list command prints (`N\tlabel\tkid`).
fn next_generation(listing: &str) -> Result<u64> {
    let newest = listing
        .lines()
        .filter_map(|line| line.split('\t').next()?.parse::<u64>().ok())
        .max()
        .with_context(|| format!("no generation in {listing:?}"))?;
    Ok(newest + 1)
}

/// Lines of `log` warning about the ignored object `label`.
fn warnings_about(log: &str, label: &str) -> usize {
    log.lines()
        .filter(|line| line.contains("WARN") && line.contains("ignoring a key object") && line.contains(label))
        .count()
}

/// Waits (up to 20 s) until `service`'s log warns about `label`: its key refresh ran.
async fn wait_for_warning(service: &e2e::Service, label: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while warnings_about(&service.log_text(), label) == 0 {
        if Instant::now() > deadline {
            bail!("no warning about {label} within 20 s; log:\n{}", service.log_text());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test]
async fn public_keys_planted_without_login_are_never_used_and_are_reported_once() -> Result<()> {
    let system = System::start_with_jwks_url(
        &[
            "--key-refresh-seconds",
            "1",
            "--jwks-refresh-seconds",
            "1",
            "--jwks-min-refresh-seconds",
            "0",
        ],
        &["--key-refresh-seconds", "1"],
    )
    .await?;
    let dir = system.dir.path();
    let signing = hsm::generation_label(
        "manager-signing",
        next_generation(&admin(&system, "manager-admin", &["list-signing-keys"])?)?,
    );
    let wrapping = hsm::generation_label(
        "vault-wrapping",
        next_generation(&admin(&system, "vault-admin", &["list-wrapping-keys"])?)?,
    );
    let genuine = system.store("victim", "before the attack").await?;

    let attacker = Attacker::new()?;
    attacker.plant(dir, "manager", &signing)?;
    attacker.plant(dir, "vault", &wrapping)?;
    wait_for_warning(&system.manager, &signing).await?;
    wait_for_warning(&system.vault, &wrapping).await?;

    // manager publishes only its real key...
    let jwks: contract::jwk::JwkSet = serde_json::from_value(system.manager_jwks().await?)?;
    ensure!(!jwks.keys.is_empty(), "manager publishes no key");
    assert!(
        !jwks.keys.iter().any(|jwk| attacker.is(jwk)),
        "the attacker's key is in manager's JWKS"
    );
    // ...and vault hands manager only its real wrapping key.
    let client_key = dev_tls_key("manager", "manager-client-tls").await?;
    let internal = e2e::https_client(Some((
        &e2e::dev_dir()?.join("tls/manager-client.pem"),
        Arc::new(client_key),
    )))?;
    let served: Jwk = internal
        .get(format!(
            "https://{}/internal/wrapping-key",
            system.vault.addr("internal")
        ))
        .send()
        .await?
        .json()
        .await?;
    assert!(!attacker.is(&served), "vault offers the attacker's key for wrapping");

    // Over several of manager's 1 s key refreshes, secrets are still sealed to a key vault
    // can open and signed by a key vault trusts.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(3) {
        let stored = system.store("victim", "after the attack").await?;
        let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["decrypted_key"], "after the attack");
        assert_ne!(
            e2e::compact_part(&stored.access_token, 0)?["kid"],
            attacker.public.thumbprint().as_str()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A token with a genuine token's claims, signed by the planted key, is refused.
    let forged = attacker.forge(&e2e::compact_part(&genuine.access_token, 1)?)?;
    let (status, body) = system.read(&genuine.key_id, &forged).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = system.read(&genuine.key_id, &genuine.access_token).await?;
    assert_eq!(status, StatusCode::OK, "the genuine token still reads");

    // Reported once each, however many refreshes saw the object since; nothing else is
    // (the real keys' public halves are not, even as the unprotected public objects that
    // tokens provisioned before this check hold).
    for (service, label) in [(&system.manager, &signing), (&system.vault, &wrapping)] {
        let log = service.log_text();
        assert_eq!(warnings_about(&log, label), 1, "{log}");
        assert_eq!(warnings_about(&log, ""), 1, "{log}");
    }
    for (tool, command, label) in [
        ("manager-admin", "list-signing-keys", &signing),
        ("vault-admin", "list-wrapping-keys", &wrapping),
    ] {
        let listing = admin(&system, tool, &[command])?;
        assert!(
            listing.contains(&format!("ignored\t{label}\tpublic key\t")),
            "{tool} {command} lists the planted object as ignored: {listing}"
        );
    }

    // A rotation is numbered after the real keys: the planted label does not block it.
    let rotated = admin(&system, "manager-admin", &["rotate-signing-key"])?;
    assert!(rotated.starts_with(&format!("generated {signing} kid ")), "{rotated}");
    ensure!(!rotated.contains(&attacker.public.thumbprint()), "{rotated}");
    Ok(())
}
