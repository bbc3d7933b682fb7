//! `hsm-admin check` against the tokens the project runs on: SoftHSM2 2.6.1 in process,
//! the same behind `p11-kit server` 0.24.1, and Kryoptic. Each passes or fails what it was
//! measured to; a token that cannot serve exits 1, one that cannot be opened 2.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use e2e::tokens::{Implementation, p11kit_client, private_softhsm};
use e2e::{TokenServer, binary};
use serde_json::Value;

/// Where `hsm-admin check` finds a token: its module, the PIN file, its environment.
struct Token {
    module: PathBuf,
    pin_file: PathBuf,
    env: Vec<(&'static str, OsString)>,
}

impl Token {
    /// The `hsm-test` token of `implementation`, in process, on a private copy of its
    /// provisioned tokens in `dir`.
    fn on(implementation: Implementation, dir: &Path) -> Result<Self> {
        let (variable, conf) = implementation.private_copy(dir)?;
        Ok(Self {
            module: implementation.module()?,
            pin_file: implementation.pin_file("hsm-test")?,
            env: vec![(variable, conf.into())],
        })
    }

    /// The `hsm-test` token `server` serves (SoftHSM), through p11-kit-client.
    fn p11kit(server: &TokenServer) -> Result<Self> {
        Self::p11kit_on(Implementation::SoftHsm, server)
    }

    /// The `hsm-test` token `server` serves from `implementation`, through p11-kit-client.
    fn p11kit_on(implementation: Implementation, server: &TokenServer) -> Result<Self> {
        Ok(Self {
            module: p11kit_client()?,
            pin_file: implementation.pin_file("hsm-test")?,
            env: vec![("P11_KIT_SERVER_ADDRESS", server.address().into())],
        })
    }
}

/// One run of `hsm-admin check`.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// stdout as the JSON document `--json` prints.
    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.stdout).with_context(|| format!("not JSON: {}\n{}", self.stdout, self.stderr))
    }
}

/// Runs `hsm-admin --token hsm-test ... check ARGS` on `token`; checks that the PIN
/// appears in neither output.
async fn check(token: &Token, token_label: &str, args: &[&str]) -> Result<Run> {
    let output = tokio::process::Command::new(binary("hsm-admin")?)
        .envs(token.env.iter().map(|(name, value)| (name, value)))
        .arg("--module")
        .arg(&token.module)
        .args(["--token", token_label, "--pin-file"])
        .arg(&token.pin_file)
        .arg("check")
        .args(args)
        .output()
        .await?;
    let run = Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout)?,
        stderr: String::from_utf8(output.stderr)?,
    };
    if let Ok(pin) = std::fs::read_to_string(&token.pin_file) {
        let pin = pin.trim();
        assert!(
            !pin.is_empty() && !run.stdout.contains(pin) && !run.stderr.contains(pin),
            "hsm-admin check printed the PIN"
        );
    }
    Ok(run)
}

/// Every row's result by id: what the token passed and failed.
fn results(report: &Value) -> BTreeMap<String, String> {
    report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|check| (as_text(&check["id"]), as_text(&check["result"])))
        .collect()
}

/// Every row `ok`, but those named in `others` with the result given there.
fn all_ok_but(others: &[(&str, &str)]) -> BTreeMap<String, String> {
    const IDS: [&str; 21] = [
        "mechanism:CKM_RSA_PKCS_KEY_PAIR_GEN",
        "mechanism:CKM_SHA256_RSA_PKCS",
        "mechanism:CKM_RSA_PKCS_PSS",
        "mechanism:CKM_RSA_PKCS_OAEP",
        "mechanism:CKM_EC_KEY_PAIR_GEN",
        "mechanism:CKM_ECDSA",
        "rsa_key_pairs",
        "allowed_mechanisms",
        "key_policy",
        "private_exponent_hidden",
        "wrap_refused",
        "signature_rs256",
        "signature_ps256",
        "oaep_decrypt_sha1",
        "oaep_decrypt_sha256",
        "oaep_unwrap",
        "ec_key_pair",
        "ecdsa_signature",
        "session_limit",
        "open_sessions",
        "second_login",
    ];
    let mut expected: BTreeMap<String, String> = IDS.iter().map(|id| (id.to_string(), "ok".to_string())).collect();
    for (id, result) in others {
        expected.insert(id.to_string(), result.to_string());
    }
    expected
}

/// The row `id` of `report`.
fn row<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|check| check["id"] == id))
        .unwrap_or(&Value::Null)
}

fn as_text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// What a token that can serve is configured to: (signing_algorithm, key_wrap,
/// token_algorithms, TLS key type).
fn configuration(report: &Value) -> (String, String, Value, String) {
    let configuration = &report["configuration"];
    (
        as_text(&configuration["manager"]["signing_algorithm"]),
        as_text(&configuration["manager"]["key_wrap"]),
        configuration["vault"]["token_algorithms"].clone(),
        as_text(&configuration["tls_key_type"]),
    )
}

#[tokio::test]
async fn softhsm_in_process_serves_with_rsa_oaep_ps256_and_ecdsa_p256() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let run = check(
        &Token::on(Implementation::SoftHsm, dir.path())?,
        "hsm-test",
        &["--json"],
    )
    .await?;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let report = run.json()?;
    assert_eq!(
        results(&report),
        all_ok_but(&[("oaep_decrypt_sha256", "refused")]),
        "{report:#}"
    );
    assert_eq!(row(&report, "oaep_decrypt_sha256")["ck_rv"], "CKR_ARGUMENTS_BAD");
    assert_eq!(row(&report, "wrap_refused")["answered"], "CKR_KEY_UNEXTRACTABLE");
    assert_eq!(
        row(&report, "private_exponent_hidden")["answered"],
        "CKR_ATTRIBUTE_SENSITIVE"
    );
    assert_eq!(row(&report, "second_login")["answered"], "CKR_USER_ALREADY_LOGGED_IN");
    assert_eq!(
        configuration(&report),
        (
            "PS256".into(),
            "RSA-OAEP".into(),
            serde_json::json!(["PS256"]),
            "ecdsa-p256".into()
        )
    );
    assert_eq!(report["token"]["model"], "SoftHSM v2");
    Ok(())
}

/// The table an operator reads: one line per check, then TOML lines to paste into the
/// services' files, then the verdict.
#[tokio::test]
async fn softhsm_check_prints_one_line_per_check_and_the_toml_to_paste() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let run = check(&Token::on(Implementation::SoftHsm, dir.path())?, "hsm-test", &[]).await?;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let refused = lines
        .iter()
        .find(|line| line.starts_with("REFUSED"))
        .context("a REFUSED line")?;
    assert!(
        refused.contains("RSA-OAEP SHA-256") && refused.ends_with("CKR_ARGUMENTS_BAD"),
        "{refused}"
    );
    assert_eq!(lines.iter().filter(|line| line.starts_with("ok ")).count(), 20);
    for toml in [
        "signing_algorithm = \"PS256\"",
        "key_wrap = \"RSA-OAEP\"",
        "token_algorithms = [\"PS256\"]",
    ] {
        assert!(lines.contains(&toml), "{toml} in\n{}", run.stdout);
    }
    assert!(run.stdout.contains("hsm-admin generate-tls-key --type ecdsa-p256"));
    assert!(lines.last().is_some_and(|last| last.starts_with("can serve:")));
    Ok(())
}

/// p11-kit 0.24.1 forwards everything the services use — CKM_RSA_PKCS_PSS over a digest,
/// CKM_RSA_PKCS_OAEP with its parameters, CKM_ECDSA — so the answers are SoftHSM's: OAEP
/// with SHA-256 reaches SoftHSM and is refused there. It forwards no AES key wrapping, so
/// the wrap refusal is seen through RSA-OAEP wrapping.
#[tokio::test]
async fn softhsm_through_p11_kit_serves_like_softhsm_in_process() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TokenServer::start(dir.path(), "hsm-test").await?;
    let run = check(&Token::p11kit(&server)?, "hsm-test", &["--json"]).await?;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let report = run.json()?;
    assert_eq!(
        results(&report),
        all_ok_but(&[("oaep_decrypt_sha256", "refused")]),
        "{report:#}"
    );
    assert_eq!(row(&report, "oaep_decrypt_sha256")["ck_rv"], "CKR_ARGUMENTS_BAD");
    assert_eq!(row(&report, "wrap_refused")["answered"], "CKR_KEY_UNEXTRACTABLE");
    assert_eq!(
        configuration(&report),
        (
            "PS256".into(),
            "RSA-OAEP".into(),
            serde_json::json!(["PS256"]),
            "ecdsa-p256".into()
        )
    );
    assert!(
        as_text(&report["token"]["library"]).contains("PKCS#11 Kit"),
        "{}",
        report["token"]
    );
    assert_eq!(report["token"]["model"], "SoftHSM v2");
    Ok(())
}

/// What Kryoptic answers, in process or through p11-kit: every check passes (OAEP with
/// SHA-256 too: RSA-OAEP-256); a non-extractable key is refused with
/// CKR_KEY_FUNCTION_NOT_PERMITTED. Returns the report.
fn kryoptic_serves(run: &Run) -> Result<Value> {
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let report = run.json()?;
    assert_eq!(results(&report), all_ok_but(&[]), "{report:#}");
    assert_eq!(
        row(&report, "wrap_refused")["answered"],
        "CKR_KEY_FUNCTION_NOT_PERMITTED"
    );
    assert_eq!(
        configuration(&report),
        (
            "PS256".into(),
            "RSA-OAEP-256".into(),
            serde_json::json!(["PS256"]),
            "ecdsa-p256".into()
        )
    );
    Ok(report)
}

/// Kryoptic does OAEP with SHA-256: RSA-OAEP-256. It refuses to wrap a non-extractable
/// key with CKR_KEY_FUNCTION_NOT_PERMITTED where SoftHSM answers CKR_KEY_UNEXTRACTABLE.
#[tokio::test]
async fn kryoptic_serves_with_rsa_oaep_256_ps256_and_ecdsa_p256() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let run = check(
        &Token::on(Implementation::Kryoptic, dir.path())?,
        "hsm-test",
        &["--json"],
    )
    .await?;
    let report = kryoptic_serves(&run)?;
    assert_eq!(report["token"]["manufacturer"], "Kryoptic Project");
    Ok(())
}

/// Kryoptic behind p11-kit 0.24.1: the OAEP parameters are forwarded, so RSA-OAEP-256 as
/// in process; no AES key wrapping is forwarded.
#[tokio::test]
async fn kryoptic_through_p11_kit_serves_with_rsa_oaep_256() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TokenServer::start_on(Implementation::Kryoptic, dir.path(), "hsm-test").await?;
    let run = check(
        &Token::p11kit_on(Implementation::Kryoptic, &server)?,
        "hsm-test",
        &["--json"],
    )
    .await?;
    let report = kryoptic_serves(&run)?;
    assert!(
        as_text(&report["token"]["library"]).contains("PKCS#11 Kit"),
        "{}",
        report["token"]
    );
    assert_eq!(report["token"]["manufacturer"], "Kryoptic Project");
    Ok(())
}

/// The mechanisms the services use, but for those in `without`, as a SoftHSM
/// `slots.mechanisms` allow-list (2.6.1 ignores the "-" deny form).
fn mechanisms_without(without: &[&str]) -> String {
    [
        "CKM_RSA_PKCS_KEY_PAIR_GEN",
        "CKM_SHA256_RSA_PKCS",
        "CKM_RSA_PKCS_PSS",
        "CKM_RSA_PKCS_OAEP",
        "CKM_EC_KEY_PAIR_GEN",
        "CKM_ECDSA",
        "CKM_AES_KEY_GEN",
        "CKM_AES_KEY_WRAP",
        "CKM_AES_KEY_WRAP_PAD",
        "CKM_AES_ECB",
    ]
    .into_iter()
    .filter(|mechanism| !without.contains(mechanism))
    .collect::<Vec<_>>()
    .join(",")
}

/// A private SoftHSM copy in `dir` whose module offers only `mechanisms`.
fn softhsm_offering(dir: &Path, mechanisms: &str) -> Result<Token> {
    let token = Token::on(Implementation::SoftHsm, dir)?;
    let conf = private_softhsm(dir)?;
    let mut text = std::fs::read_to_string(&conf)?;
    text.push_str(&format!("slots.mechanisms = {mechanisms}\n"));
    std::fs::write(&conf, text)?;
    Ok(token)
}

/// An HSM whose policy disables RSA-OAEP (here SoftHSM told so by its configuration):
/// vault could not open a content key, so the token cannot serve, and says why last.
#[tokio::test]
async fn a_softhsm_without_rsa_oaep_cannot_serve_and_exits_1() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let token = softhsm_offering(dir.path(), &mechanisms_without(&["CKM_RSA_PKCS_OAEP"]))?;
    let run = check(&token, "hsm-test", &[]).await?;
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    let last = run.stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("cannot serve:") && last.contains("vault cannot open content keys"),
        "{last}"
    );
    assert!(
        !run.stdout.contains("key_wrap ="),
        "no configuration for a token that cannot serve"
    );

    let report = check(&token, "hsm-test", &["--json"]).await?.json()?;
    assert_eq!(report["can_serve"], false);
    assert_eq!(report["configuration"], Value::Null);
    assert_eq!(
        results(&report),
        all_ok_but(&[
            ("mechanism:CKM_RSA_PKCS_OAEP", "missing"),
            ("oaep_decrypt_sha1", "refused"),
            ("oaep_decrypt_sha256", "refused"),
            ("oaep_unwrap", "refused"),
        ])
    );
    assert_eq!(row(&report, "oaep_decrypt_sha1")["ck_rv"], "CKR_MECHANISM_INVALID");
    Ok(())
}

/// Without ECDSA the TLS keys are RSA-2048, signing handshakes with PSS. (SoftHSM 2.6.1
/// leaves CKM_EC_KEY_PAIR_GEN out of its list but still generates EC keys: the signature is
/// what it refuses.)
#[tokio::test]
async fn a_softhsm_without_ecdsa_serves_with_rsa_2048_tls_keys() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let token = softhsm_offering(dir.path(), &mechanisms_without(&["CKM_ECDSA", "CKM_EC_KEY_PAIR_GEN"]))?;
    let run = check(&token, "hsm-test", &["--json"]).await?;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let report = run.json()?;
    assert_eq!(
        results(&report),
        all_ok_but(&[
            ("mechanism:CKM_EC_KEY_PAIR_GEN", "missing"),
            ("mechanism:CKM_ECDSA", "missing"),
            ("oaep_decrypt_sha256", "refused"),
            ("ecdsa_signature", "refused"),
        ])
    );
    assert_eq!(row(&report, "ecdsa_signature")["ck_rv"], "CKR_MECHANISM_INVALID");
    assert_eq!(configuration(&report).3, "rsa-2048");
    Ok(())
}

#[tokio::test]
async fn a_token_or_pin_that_cannot_be_opened_or_a_usage_error_exits_2() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let token = Token::on(Implementation::SoftHsm, dir.path())?;
    let unknown = check(&token, "no-such-token", &[]).await?;
    assert_eq!(unknown.code, Some(2), "{}{}", unknown.stdout, unknown.stderr);
    assert!(
        unknown.stderr.contains("no token labelled \"no-such-token\""),
        "{}",
        unknown.stderr
    );
    assert!(unknown.stdout.is_empty());
    let zero_sessions = check(&token, "hsm-test", &["--sessions", "0"]).await?;
    assert_eq!(zero_sessions.code, Some(2), "{}", zero_sessions.stderr);
    let no_pin = Token {
        pin_file: dir.path().join("missing.pin"),
        ..token
    };
    let without_pin = check(&no_pin, "hsm-test", &[]).await?;
    assert_eq!(without_pin.code, Some(2), "{}", without_pin.stderr);
    assert!(without_pin.stdout.is_empty());
    Ok(())
}
