//! What the token says about itself: the mechanisms the services use, its session limits,
//! sessions opened at once, and a second login.

use cryptoki::context::Pkcs11;
use cryptoki::error::RvError;
use cryptoki::mechanism::{MechanismInfo, MechanismType};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Limit, Slot};

use super::{CheckResult, CkRv, Item, Observed, Outcome, Problem, SessionLimit, TokenFacts};
use crate::error::{Error, Operation, Result, rv_of};
use crate::pool::TokenConfig;

/// The token's facts and its rows: mechanisms first, sessions and login last.
pub(super) struct Inspection {
    pub(super) facts: TokenFacts,
    pub(super) mechanisms: Vec<CheckResult>,
    pub(super) sessions: Vec<CheckResult>,
}

/// A capability a mechanism must have for the services.
#[derive(Clone, Copy)]
enum Flag {
    GenerateKeyPair,
    Sign,
    Decrypt,
}

/// The mechanisms the services use, what for, and at which key size (bits).
const MECHANISMS: [(MechanismType, Flag, usize); 6] = [
    (MechanismType::RSA_PKCS_KEY_PAIR_GEN, Flag::GenerateKeyPair, 2048),
    (MechanismType::SHA256_RSA_PKCS, Flag::Sign, 2048),
    (MechanismType::RSA_PKCS_PSS, Flag::Sign, 2048),
    (MechanismType::RSA_PKCS_OAEP, Flag::Decrypt, 2048),
    (MechanismType::ECC_KEY_PAIR_GEN, Flag::GenerateKeyPair, 256),
    (MechanismType::ECDSA, Flag::Sign, 256),
];

/// Reads what the token says and tries `sessions` sessions and a second login, with `ctx`
/// the module instance `session` belongs to.
pub(super) fn inspect(ctx: &Pkcs11, config: &TokenConfig, session: &Session, sessions: usize) -> Result<Inspection> {
    let slot = session
        .get_session_info()
        .map_err(Error::pkcs11(Operation::CheckSession))?
        .slot_id();
    let info = ctx
        .get_token_info(slot)
        .map_err(Error::pkcs11(Operation::ReadTokenInfo))?;
    let library = ctx
        .get_library_info()
        .map_err(Error::pkcs11(Operation::ReadTokenInfo))?;
    let facts = TokenFacts {
        label: info.label().trim_end().to_owned(),
        manufacturer: info.manufacturer_id().trim_end().to_owned(),
        model: info.model().trim_end().to_owned(),
        firmware: info.firmware_version().to_string(),
        library: format!(
            "{} {} ({})",
            library.library_description().trim_end(),
            library.library_version(),
            library.manufacturer_id().trim_end()
        ),
        max_sessions: limit(info.max_session_count()),
        max_rw_sessions: limit(info.max_rw_session_count()),
    };
    let listed = ctx.get_mechanism_list(slot);
    let mechanisms = MECHANISMS
        .iter()
        .map(|&(mechanism, flag, bits)| mechanism_row(ctx, slot, listed.as_deref(), mechanism, flag, bits))
        .collect();
    let sessions = vec![
        session_limit_row(&facts, sessions),
        open_sessions_row(ctx, slot, sessions),
        second_login_row(config, session),
    ];
    Ok(Inspection {
        facts,
        mechanisms,
        sessions,
    })
}

fn limit(limit: Limit) -> SessionLimit {
    match limit {
        Limit::Max(n) => SessionLimit::Max(n),
        Limit::Infinite => SessionLimit::Infinite,
        Limit::Unavailable => SessionLimit::NotStated,
    }
}

fn mechanism_row(
    ctx: &Pkcs11,
    slot: Slot,
    listed: std::result::Result<&[MechanismType], &cryptoki::error::Error>,
    mechanism: MechanismType,
    flag: Flag,
    bits: usize,
) -> CheckResult {
    let item = Item::Mechanism(mechanism);
    if let Ok(listed) = listed
        && !listed.contains(&mechanism)
    {
        return CheckResult {
            item,
            outcome: Outcome::Missing,
            observed: None,
        };
    }
    match ctx.get_mechanism_info(slot, mechanism) {
        Ok(info) => {
            let (min, max) = (info.min_key_size(), info.max_key_size());
            let (has_flag, flag_name) = match flag {
                Flag::GenerateKeyPair => (info.generate_key_pair(), "generate_key_pair"),
                Flag::Sign => (info.sign(), "sign"),
                Flag::Decrypt => (info.decrypt(), "decrypt"),
            };
            // 0-0 states no sizes at all.
            let fits = (min == 0 && max == 0) || (min..=max).contains(&bits);
            let outcome = if !has_flag {
                Outcome::Wrong(Problem::LacksFlag(flag_name))
            } else if !fits {
                Outcome::Wrong(Problem::KeySize { min, max, needed: bits })
            } else {
                Outcome::Works
            };
            CheckResult {
                item,
                outcome,
                observed: Some(Observed::Mechanism {
                    min_key_size: min,
                    max_key_size: max,
                    flags: flags(&info),
                }),
            }
        }
        Err(e) if rv_of(&e) == Some(RvError::MechanismInvalid) => CheckResult {
            item,
            outcome: Outcome::Missing,
            observed: None,
        },
        Err(e) => CheckResult {
            item,
            outcome: Outcome::of_error(Error::pkcs11(Operation::ReadTokenInfo)(e)),
            observed: None,
        },
    }
}

/// The capabilities set among those the services use.
fn flags(info: &MechanismInfo) -> Vec<&'static str> {
    [
        (info.sign(), "sign"),
        (info.verify(), "verify"),
        (info.encrypt(), "encrypt"),
        (info.decrypt(), "decrypt"),
        (info.wrap(), "wrap"),
        (info.unwrap(), "unwrap"),
        (info.generate_key_pair(), "generate_key_pair"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect()
}

/// The pool opens read-write sessions: both limits count.
fn session_limit_row(facts: &TokenFacts, wanted: usize) -> CheckResult {
    let max = [facts.max_sessions, facts.max_rw_sessions]
        .into_iter()
        .filter_map(|limit| match limit {
            SessionLimit::Max(n) => Some(n),
            SessionLimit::Infinite | SessionLimit::NotStated => None,
        })
        .min();
    let outcome = match max {
        Some(max) if max < wanted as u64 => Outcome::Wrong(Problem::TooFewSessions { max }),
        _ => Outcome::Works,
    };
    CheckResult {
        item: Item::SessionLimit,
        outcome,
        observed: Some(Observed::SessionLimits {
            max: facts.max_sessions,
            max_rw: facts.max_rw_sessions,
        }),
    }
}

/// Opens `wanted` read-write sessions besides the pool's and holds them all before closing
/// them. The pool's login session stays open, so closing these does not log out.
fn open_sessions_row(ctx: &Pkcs11, slot: Slot, wanted: usize) -> CheckResult {
    let mut open = Vec::with_capacity(wanted);
    let mut outcome = Outcome::Works;
    while open.len() < wanted {
        match ctx.open_rw_session(slot) {
            Ok(session) => open.push(session),
            Err(e) => {
                outcome = Outcome::of_error(Error::pkcs11(Operation::OpenSession)(e));
                break;
            }
        }
    }
    CheckResult {
        item: Item::OpenSessions,
        outcome,
        observed: Some(Observed::Opened(open.len())),
    }
}

/// C_Login while the application is logged in: the pool takes CKR_USER_ALREADY_LOGGED_IN
/// as success (PKCS#11 v2.40 section 5.6), and so may the token answer CKR_OK.
fn second_login_row(config: &TokenConfig, session: &Session) -> CheckResult {
    let (outcome, observed) = match session.login(UserType::User, Some(&config.pin)) {
        Ok(()) => (Outcome::Works, None),
        Err(e) if rv_of(&e) == Some(RvError::UserAlreadyLoggedIn) => (
            Outcome::Works,
            Some(Observed::Answered(CkRv(RvError::UserAlreadyLoggedIn))),
        ),
        Err(e) => (Outcome::of_error(Error::pkcs11(Operation::Login)(e)), None),
    };
    CheckResult {
        item: Item::SecondLogin,
        outcome,
        observed,
    }
}
