//! `hsm-admin check`: runs `hsm::check_token` and prints its report as a table and the
//! configuration that follows as TOML lines, or all of it as JSON.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use contract::claims::JwsAlgorithm;
use contract::envelope::KeyWrap;
use hsm::{CheckResult, Configuration, Item, Outcome, TokenReport, Verdict};
use serde_json::{Value, json};

/// The token to check, from the global options.
pub(crate) struct Target<'a> {
    pub(crate) module: &'a Path,
    pub(crate) token: &'a str,
    pub(crate) pin_file: &'a Path,
    pub(crate) connections: usize,
}

/// How the report is printed.
#[derive(Clone, Copy)]
pub(crate) enum Format {
    /// A table, then the configuration as TOML lines, then the verdict.
    Table,
    /// One JSON document.
    Json,
}

/// Exit codes: the token can serve, it cannot, it could not be checked.
const CAN_SERVE: u8 = 0;
const CANNOT_SERVE: u8 = 1;
pub(crate) const NOT_CHECKED: u8 = 2;

/// Opens the token, checks it and prints the report: exit 0 if it can serve, 1 if it cannot,
/// 2 if it could not be opened (usage errors are clap's, also 2).
pub(crate) async fn run(target: &Target<'_>, sessions: usize, format: Format) -> ExitCode {
    let report = match check(target, sessions).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("hsm-admin check: {e:#}");
            return ExitCode::from(NOT_CHECKED);
        }
    };
    let verdict = report.verdict();
    match format {
        Format::Table => print!("{}", table(target.module, &report, &verdict)),
        Format::Json => println!("{:#}", document(target.module, &report, &verdict)),
    }
    match verdict {
        Verdict::CanServe(_) => ExitCode::from(CAN_SERVE),
        Verdict::CannotServe(_) => ExitCode::from(CANNOT_SERVE),
    }
}

async fn check(target: &Target<'_>, sessions: usize) -> anyhow::Result<TokenReport> {
    let module = hsm::Module::load_connections(target.module, target.connections)?;
    let pin = hsm::read_pin_file(target.pin_file)?;
    let pool = crate::connect(&module, target.token, pin).await?;
    Ok(hsm::check_token(&pool, hsm::CheckOptions { sessions }).await?)
}

/// The word a row starts with.
fn status(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Works => "ok",
        Outcome::Missing => "MISSING",
        Outcome::Refused(_) => "REFUSED",
        Outcome::Wrong(_) => "WRONG",
        Outcome::Skipped(_) => "SKIPPED",
        Outcome::Failed(_) => "FAILED",
    }
}

/// What a row says beyond its status: the CK_RV of a refusal, the problem, or what the
/// token answered.
fn detail(check: &CheckResult) -> String {
    let outcome = match &check.outcome {
        Outcome::Works | Outcome::Missing => None,
        Outcome::Refused(rv) => Some(rv.to_string()),
        Outcome::Wrong(problem) => Some(problem.to_string()),
        Outcome::Skipped(needed) => Some(format!("needs: {}", needed.name())),
        Outcome::Failed(error) => Some(chain(error)),
    };
    [outcome, check.observed.as_ref().map(ToString::to_string)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ")
}

/// An error and its sources, `: `-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

fn table(module: &Path, report: &TokenReport, verdict: &Verdict) -> String {
    let token = &report.token;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "token {:?}: {} {}, firmware {}",
        token.label, token.manufacturer, token.model, token.firmware
    );
    let _ = writeln!(out, "module {}: {}", module.display(), token.library);
    let _ = writeln!(
        out,
        "max sessions: {} (read-write: {}); asked for: {}\n",
        token.max_sessions, token.max_rw_sessions, report.sessions
    );
    let rows: Vec<[String; 5]> = std::iter::once(["RESULT", "NEED", "CHECK", "USED FOR", "DETAIL"].map(String::from))
        .chain(report.checks.iter().map(|check| {
            [
                status(&check.outcome).to_owned(),
                check.need().to_string(),
                check.name(),
                check.used_for().to_owned(),
                detail(check),
            ]
        }))
        .collect();
    let widths: Vec<usize> = (0..4)
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        line.push_str(&row[4]);
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out.push('\n');
    match verdict {
        Verdict::CanServe(configuration) => {
            out.push_str(&toml(configuration));
            let _ = writeln!(
                out,
                "\ncan serve: {} content keys, {} access tokens, {} TLS keys",
                key_wrap(configuration).jose_name(),
                algorithm(configuration).jose_name(),
                configuration.tls_key_type
            );
        }
        Verdict::CannotServe(shortfalls) => {
            let reasons: Vec<String> = shortfalls.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "cannot serve: {}", reasons.join("; "));
        }
    }
    out
}

fn algorithm(configuration: &Configuration) -> JwsAlgorithm {
    match configuration.signature {
        hsm::RsaScheme::Pkcs1Sha256 => JwsAlgorithm::Rs256,
        hsm::RsaScheme::PssSha256 => JwsAlgorithm::Ps256,
    }
}

fn key_wrap(configuration: &Configuration) -> KeyWrap {
    match configuration.key_wrap {
        hsm::OaepHash::Sha1 => KeyWrap::RsaOaep,
        hsm::OaepHash::Sha256 => KeyWrap::RsaOaep256,
    }
}

/// The lines an operator pastes into manager's and vault's configuration files (the keys
/// of `manager/src/config.rs` and `vault/src/config.rs`). The TLS key type is no
/// configuration key: it is the type of the key `hsm-admin generate-tls-key` makes.
fn toml(configuration: &Configuration) -> String {
    let algorithm = algorithm(configuration).jose_name();
    format!(
        "# manager.toml\n\
         signing_algorithm = \"{algorithm}\"\n\
         # key_wrap \"auto\" (the default) picks the same: vault publishes the OAEP its token opens\n\
         key_wrap = \"{}\"\n\
         # vault.toml\n\
         token_algorithms = [\"{algorithm}\"]\n\
         # TLS keys: hsm-admin generate-tls-key --type {tls} (softhsm-setup/setup.sh: TLS_KEY_TYPE={tls})\n",
        key_wrap(configuration).jose_name(),
        tls = configuration.tls_key_type,
    )
}

/// A name for `item` that stays put, for scripts.
fn id(item: Item) -> String {
    match item {
        Item::Mechanism(mechanism) => format!("mechanism:{mechanism}"),
        Item::RsaKeyPairs => "rsa_key_pairs".into(),
        Item::AllowedMechanisms => "allowed_mechanisms".into(),
        Item::KeyPolicy => "key_policy".into(),
        Item::PrivateExponentHidden => "private_exponent_hidden".into(),
        Item::WrapRefused => "wrap_refused".into(),
        Item::Signature(hsm::RsaScheme::Pkcs1Sha256) => "signature_rs256".into(),
        Item::Signature(hsm::RsaScheme::PssSha256) => "signature_ps256".into(),
        Item::OaepDecrypt(hsm::OaepHash::Sha1) => "oaep_decrypt_sha1".into(),
        Item::OaepDecrypt(hsm::OaepHash::Sha256) => "oaep_decrypt_sha256".into(),
        Item::OaepUnwrap => "oaep_unwrap".into(),
        Item::EcKeyPair => "ec_key_pair".into(),
        Item::EcdsaSignature => "ecdsa_signature".into(),
        Item::SessionLimit => "session_limit".into(),
        Item::OpenSessions => "open_sessions".into(),
        Item::SecondLogin => "second_login".into(),
    }
}

fn document(module: &Path, report: &TokenReport, verdict: &Verdict) -> Value {
    let token = &report.token;
    let checks: Vec<Value> = report
        .checks
        .iter()
        .map(|check| {
            json!({
                "id": id(check.item),
                "check": check.name(),
                "need": check.need().to_string(),
                "used_for": check.used_for(),
                "result": status(&check.outcome).to_lowercase(),
                "ck_rv": match &check.outcome {
                    Outcome::Refused(rv) => Some(rv.to_string()),
                    _ => None,
                },
                "answered": match &check.observed {
                    Some(hsm::Observed::Answered(rv)) => Some(rv.to_string()),
                    _ => None,
                },
                "unverified": match &check.observed {
                    Some(hsm::Observed::Unverified(rv)) => Some(rv.to_string()),
                    _ => None,
                },
                "detail": detail(check),
            })
        })
        .collect();
    let (configuration, cannot_serve) = match verdict {
        Verdict::CanServe(configuration) => (
            json!({
                "manager": {
                    "signing_algorithm": algorithm(configuration).jose_name(),
                    "key_wrap": key_wrap(configuration).jose_name(),
                },
                "vault": { "token_algorithms": [algorithm(configuration).jose_name()] },
                "tls_key_type": configuration.tls_key_type.to_string(),
            }),
            Vec::new(),
        ),
        Verdict::CannotServe(shortfalls) => (Value::Null, shortfalls.iter().map(ToString::to_string).collect()),
    };
    json!({
        "module": module.display().to_string(),
        "token": {
            "label": token.label,
            "manufacturer": token.manufacturer,
            "model": token.model,
            "firmware": token.firmware,
            "library": token.library,
            "max_sessions": token.max_sessions.to_string(),
            "max_rw_sessions": token.max_rw_sessions.to_string(),
        },
        "sessions": report.sessions,
        "checks": checks,
        "can_serve": matches!(verdict, Verdict::CanServe(_)),
        "configuration": configuration,
        "cannot_serve": cannot_serve,
    })
}
