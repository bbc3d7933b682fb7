use cryptoki::error::RvError;
use cryptoki::mechanism::MechanismType;
use cryptoki::object::Attribute;
use cryptoki::session::SessionState;

use super::*;
use crate::error::Error;
use crate::test_support::{LOGIN_STATE, Token, hsm_test_config, module, token_tests};
use crate::{TokenConfig, TokenPool};

fn outcome_of(report: &TokenReport, item: Item) -> &Outcome {
    &report
        .checks
        .iter()
        .find(|c| c.item == item)
        .unwrap_or_else(|| panic!("no row for {item:?}"))
        .outcome
}

fn observed_of(report: &TokenReport, item: Item) -> Option<&Observed> {
    report.checks.iter().find(|c| c.item == item)?.observed.as_ref()
}

/// Objects the application sees in the token: (token objects, session objects).
async fn object_counts(pool: &TokenPool) -> Result<(usize, usize)> {
    pool.run(Operation::FindKey, |session| {
        let count = |token| {
            session
                .find_objects(&[Attribute::Token(token)])
                .map(|found| found.len())
                .map_err(Error::pkcs11(Operation::FindKey))
        };
        Ok((count(true)?, count(false)?))
    })
    .await
}

token_tests!(
    serves_with_the_oaep_its_token_opens_ps256_and_ecdsa_and_leaves_nothing_behind,
    the_sessions_asked_for_open_beside_the_pools_own,
);

/// SoftHSM2 2.6.1 as FACTS.md measured it refuses OAEP with SHA-256 (CKR_ARGUMENTS_BAD),
/// so RSA-OAEP; Kryoptic opens it, so RSA-OAEP-256. Both sign PS256 and ECDSA P-256, keep
/// the keys they made secret (refusing to wrap them in their own words), and hold
/// afterwards what they held before.
async fn serves_with_the_oaep_its_token_opens_ps256_and_ecdsa_and_leaves_nothing_behind(token: Token) -> Result<()> {
    // The check logs in a second time: alone with the tokens.
    let _exclusive = LOGIN_STATE.write().await;
    let pool = TokenPool::connect(&module(token)?, hsm_test_config(token)?).await?;
    let before = object_counts(&pool).await?;

    let report = check_token(&pool, CheckOptions { sessions: 4 }).await?;

    let (key_wrap, wrap_refusal) = match token {
        Token::SoftHsm => (OaepHash::Sha1, RvError::KeyUnextractable),
        Token::Kryoptic => (OaepHash::Sha256, RvError::KeyFunctionNotPermitted),
    };
    assert_eq!(
        report.verdict(),
        Verdict::CanServe(Configuration {
            signature: RsaScheme::PssSha256,
            key_wrap,
            tls_key_type: TlsKeyType::EcdsaP256,
        }),
        "{report:#?}"
    );
    let oaep_sha256 = outcome_of(&report, Item::OaepDecrypt(OaepHash::Sha256));
    match token {
        Token::SoftHsm => assert!(
            matches!(oaep_sha256, Outcome::Refused(CkRv(RvError::ArgumentsBad))),
            "{oaep_sha256:?}"
        ),
        Token::Kryoptic => assert!(matches!(oaep_sha256, Outcome::Works), "{oaep_sha256:?}"),
    }
    for item in [
        Item::Signature(RsaScheme::Pkcs1Sha256),
        Item::OaepDecrypt(OaepHash::Sha1),
        Item::OaepUnwrap,
        Item::AllowedMechanisms,
        Item::Mechanism(MechanismType::RSA_PKCS_OAEP),
        Item::Mechanism(MechanismType::ECDSA),
    ] {
        assert!(
            matches!(outcome_of(&report, item), Outcome::Works),
            "{item:?}: {report:#?}"
        );
    }
    assert_eq!(
        observed_of(&report, Item::PrivateExponentHidden),
        Some(&Observed::Answered(CkRv(RvError::AttributeSensitive)))
    );
    assert_eq!(
        observed_of(&report, Item::WrapRefused),
        Some(&Observed::Answered(CkRv(wrap_refusal)))
    );
    assert_eq!(observed_of(&report, Item::OpenSessions), Some(&Observed::Opened(4)));
    assert_eq!(report.token.label, "hsm-test");

    assert_eq!(object_counts(&pool).await?, before, "no key left, none lost");
    let state = pool
        .run(Operation::CheckSession, |session| {
            session
                .get_session_info()
                .map(|info| info.session_state())
                .map_err(Error::pkcs11(Operation::CheckSession))
        })
        .await?;
    assert!(
        matches!(state, SessionState::RwUser),
        "the pool is still logged in: {state:?}"
    );
    Ok(())
}

/// A pool of one session still opens the sessions asked for besides its own.
async fn the_sessions_asked_for_open_beside_the_pools_own(token: Token) -> Result<()> {
    let _exclusive = LOGIN_STATE.write().await;
    let config = TokenConfig {
        sessions: 1,
        ..hsm_test_config(token)?
    };
    let pool = TokenPool::connect(&module(token)?, config).await?;
    let report = check_token(&pool, CheckOptions { sessions: 12 }).await?;
    assert!(matches!(outcome_of(&report, Item::OpenSessions), Outcome::Works));
    assert_eq!(observed_of(&report, Item::OpenSessions), Some(&Observed::Opened(12)));
    assert_eq!(report.sessions, 12);
    Ok(())
}

/// A report whose rows all work, but for `failing`, refused with CKR_MECHANISM_INVALID.
fn report_without(failing: &[Item]) -> TokenReport {
    let items = [
        Item::RsaKeyPairs,
        Item::KeyPolicy,
        Item::PrivateExponentHidden,
        Item::WrapRefused,
        Item::Signature(RsaScheme::Pkcs1Sha256),
        Item::Signature(RsaScheme::PssSha256),
        Item::OaepDecrypt(OaepHash::Sha1),
        Item::OaepDecrypt(OaepHash::Sha256),
        Item::OaepUnwrap,
        Item::EcKeyPair,
        Item::EcdsaSignature,
        Item::SessionLimit,
        Item::OpenSessions,
        Item::SecondLogin,
    ];
    TokenReport {
        token: TokenFacts {
            label: "t".into(),
            manufacturer: String::new(),
            model: String::new(),
            firmware: "0.0".into(),
            library: String::new(),
            max_sessions: SessionLimit::Infinite,
            max_rw_sessions: SessionLimit::Infinite,
        },
        sessions: 4,
        checks: items
            .into_iter()
            .map(|item| CheckResult {
                item,
                outcome: if failing.contains(&item) {
                    Outcome::Refused(CkRv(RvError::MechanismInvalid))
                } else {
                    Outcome::Works
                },
                observed: None,
            })
            .collect(),
    }
}

#[test]
fn the_configuration_takes_oaep_256_pss_and_ecdsa_when_they_work() {
    assert_eq!(
        report_without(&[]).verdict(),
        Verdict::CanServe(Configuration {
            signature: RsaScheme::PssSha256,
            key_wrap: OaepHash::Sha256,
            tls_key_type: TlsKeyType::EcdsaP256,
        })
    );
    // What is informational never decides.
    assert!(matches!(
        report_without(&[Item::OaepUnwrap]).verdict(),
        Verdict::CanServe(_)
    ));
}

#[test]
fn without_ecdsa_tls_keys_are_rsa_and_without_pss_tokens_are_rs256() {
    let Verdict::CanServe(no_ecdsa) = report_without(&[Item::EcdsaSignature]).verdict() else {
        panic!("RSA-PSS TLS keys serve");
    };
    assert_eq!(no_ecdsa.tls_key_type, TlsKeyType::Rsa);
    let Verdict::CanServe(no_pss) = report_without(&[Item::Signature(RsaScheme::PssSha256)]).verdict() else {
        panic!("RS256 and ECDSA serve");
    };
    assert_eq!(
        (no_pss.signature, no_pss.tls_key_type),
        (RsaScheme::Pkcs1Sha256, TlsKeyType::EcdsaP256)
    );
}

#[test]
fn a_token_short_of_a_job_or_a_required_check_cannot_serve_and_says_which() {
    let no_oaep = report_without(&[Item::OaepDecrypt(OaepHash::Sha1), Item::OaepDecrypt(OaepHash::Sha256)]);
    assert_eq!(
        no_oaep.verdict(),
        Verdict::CannotServe(vec![Shortfall::NoOaepDecryption])
    );
    let no_tls = report_without(&[Item::EcKeyPair, Item::Signature(RsaScheme::PssSha256)]);
    assert_eq!(no_tls.verdict(), Verdict::CannotServe(vec![Shortfall::NoTlsKeyType]));
    let no_signature = report_without(&[
        Item::Signature(RsaScheme::Pkcs1Sha256),
        Item::Signature(RsaScheme::PssSha256),
    ]);
    assert_eq!(
        no_signature.verdict(),
        Verdict::CannotServe(vec![Shortfall::NoTokenSignature])
    );
    let few_sessions = report_without(&[Item::OpenSessions, Item::PrivateExponentHidden]);
    assert_eq!(
        few_sessions.verdict(),
        Verdict::CannotServe(vec![
            Shortfall::Failed(Item::PrivateExponentHidden),
            Shortfall::Failed(Item::OpenSessions)
        ])
    );
}

#[test]
fn ck_rvs_show_their_pkcs11_names() {
    for (rv, name) in [
        (RvError::ArgumentsBad, "CKR_ARGUMENTS_BAD"),
        (RvError::UserAlreadyLoggedIn, "CKR_USER_ALREADY_LOGGED_IN"),
        (RvError::KeyUnextractable, "CKR_KEY_UNEXTRACTABLE"),
        (RvError::MechanismInvalid, "CKR_MECHANISM_INVALID"),
        (RvError::VendorDefined(0x8000_0001), "CKR_VENDOR_DEFINED(0x80000001)"),
    ] {
        assert_eq!(CkRv(rv).to_string(), name);
    }
}
