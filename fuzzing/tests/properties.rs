//! Every fuzz target on stable: on its seeds, on arbitrary bytes, and on structured
//! mutations of its seeds (bytes flipped, cut, spliced from another seed; a base64url part
//! of a compact token decoded, edited and re-encoded; a JSON member replaced, dropped,
//! added or repeated). Case counts are bounded so the file runs in seconds.

use std::fs;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestError, TestRunner};
use serde_json::Value;

const ARBITRARY_CASES: u32 = 512;
const MUTATED_CASES: u32 = 2048;

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Flip {
        at: Index,
        bit: u8,
    },
    Overwrite {
        at: Index,
        byte: u8,
    },
    Truncate {
        at: Index,
    },
    Remove {
        at: Index,
        len: u8,
    },
    Insert {
        at: Index,
        bytes: Vec<u8>,
    },
    /// A run of another seed's bytes, written over this one's.
    Splice {
        seed: Index,
        from: Index,
        at: Index,
        len: u8,
    },
    /// An edit of the JSON object the bytes hold, if they hold one.
    Json(JsonEdit),
}

/// One edit of a JSON object's members; values are JSON text, so numbers serde cannot
/// hold (`98765432109876543210`) appear too.
#[derive(Debug, Clone)]
enum JsonEdit {
    Replace { at: Index, value: String },
    Remove { at: Index },
    Add { key: String, value: String },
    Repeat { at: Index, value: String },
}

/// An edit of the whole input, or of one dot-separated part (decoded first when it is
/// base64url, as in a compact JWS or JWE).
#[derive(Debug, Clone)]
struct Mutation {
    part: Option<Index>,
    edit: Edit,
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        vec(any::<char>(), 0..12).prop_map(String::from_iter),
        Just("4111111111111111".to_owned()),
        Just("a\nFORGED\u{1b}[31m".to_owned()),
    ]
}

fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(Value::Array),
            vec((text(), inner), 0..3).prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    });
    let raw_number = (
        prop_oneof![Just(""), Just("-")],
        vec(b'0'..=b'9', 1..30),
        prop_oneof![Just(""), Just(".5"), Just("e3"), Just("e400")],
    )
        .prop_map(|(sign, digits, tail)| format!("{sign}{}{tail}", String::from_utf8_lossy(&digits)));
    prop_oneof![4 => value.prop_map(|v| v.to_string()), 1 => raw_number]
}

fn edit() -> impl Strategy<Value = Edit> {
    let json = prop_oneof![
        (any::<Index>(), json_text()).prop_map(|(at, value)| JsonEdit::Replace { at, value }),
        any::<Index>().prop_map(|at| JsonEdit::Remove { at }),
        (text(), json_text()).prop_map(|(key, value)| JsonEdit::Add { key, value }),
        (any::<Index>(), json_text()).prop_map(|(at, value)| JsonEdit::Repeat { at, value }),
    ];
    prop_oneof![
        1 => (any::<Index>(), 0..8u8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Edit::Overwrite { at, byte }),
        1 => any::<Index>().prop_map(|at| Edit::Truncate { at }),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, len)| Edit::Remove { at, len }),
        1 => (any::<Index>(), vec(any::<u8>(), 1..8)).prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        1 => (any::<Index>(), any::<Index>(), any::<Index>(), any::<u8>())
            .prop_map(|(seed, from, at, len)| Edit::Splice { seed, from, at, len }),
        3 => json.prop_map(Edit::Json),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (proptest::option::of(any::<Index>()), edit()).prop_map(|(part, edit)| Mutation { part, edit })
}

/// `at` as a position in `len` bytes (the end included).
fn position(at: &Index, len: usize) -> usize {
    at.index(len + 1)
}

fn apply_edit(bytes: &mut Vec<u8>, edit: &Edit, seeds: &[Vec<u8>]) {
    let len = bytes.len();
    match edit {
        Edit::Flip { at, bit } if len > 0 => bytes[at.index(len)] ^= 1 << bit,
        Edit::Overwrite { at, byte } if len > 0 => bytes[at.index(len)] = *byte,
        Edit::Flip { .. } | Edit::Overwrite { .. } => {}
        Edit::Truncate { at } => bytes.truncate(position(at, len)),
        Edit::Remove { at, len: n } => {
            let start = position(at, len);
            bytes.drain(start..(start + usize::from(*n)).min(len));
        }
        Edit::Insert { at, bytes: new } => {
            let start = position(at, len);
            bytes.splice(start..start, new.iter().copied());
        }
        Edit::Splice { seed, from, at, len: n } => {
            let other = &seeds[seed.index(seeds.len())];
            let from = position(from, other.len());
            let chunk = &other[from..(from + usize::from(*n)).min(other.len())];
            let start = position(at, len);
            let end = (start + chunk.len()).min(len);
            bytes.splice(start..end, chunk.iter().copied());
        }
        Edit::Json(json) => {
            if let Some(edited) = edit_json(bytes, json) {
                *bytes = edited;
            }
        }
    }
}

/// The object in `bytes` with `edit` applied, written member by member so that a repeated
/// key survives; `None` if `bytes` is not a JSON object.
fn edit_json(bytes: &[u8], edit: &JsonEdit) -> Option<Vec<u8>> {
    let Value::Object(object) = serde_json::from_slice(bytes).ok()? else {
        return None;
    };
    let mut members: Vec<(String, String)> = object.into_iter().map(|(k, v)| (k, v.to_string())).collect();
    let count = members.len();
    match edit {
        JsonEdit::Replace { at, value } if count > 0 => members[at.index(count)].1 = value.clone(),
        JsonEdit::Remove { at } if count > 0 => {
            members.remove(at.index(count));
        }
        JsonEdit::Repeat { at, value } if count > 0 => {
            let key = members[at.index(count)].0.clone();
            members.push((key, value.clone()));
        }
        JsonEdit::Add { key, value } => members.push((key.clone(), value.clone())),
        JsonEdit::Replace { .. } | JsonEdit::Remove { .. } | JsonEdit::Repeat { .. } => {}
    }
    let members: Vec<String> = members
        .iter()
        .map(|(key, value)| format!("{}:{value}", Value::from(key.as_str())))
        .collect();
    Some(format!("{{{}}}", members.join(",")).into_bytes())
}

fn mutate(seeds: &[Vec<u8>], seed: &Index, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seeds[seed.index(seeds.len())].clone();
    for Mutation { part, edit } in mutations {
        let mut parts: Vec<Vec<u8>> = bytes.split(|&b| b == b'.').map(<[u8]>::to_vec).collect();
        match part {
            Some(at) if parts.len() > 1 => {
                let count = parts.len();
                let part = &mut parts[at.index(count)];
                match URL_SAFE_NO_PAD.decode(&*part) {
                    Ok(mut decoded) => {
                        apply_edit(&mut decoded, edit, seeds);
                        *part = URL_SAFE_NO_PAD.encode(decoded).into_bytes();
                    }
                    Err(_) => apply_edit(part, edit, seeds),
                }
                bytes = parts.join(&b'.');
            }
            _ => apply_edit(&mut bytes, edit, seeds),
        }
    }
    bytes
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    paths.sort();
    let seeds: Vec<Vec<u8>> = paths.iter().map(|p| fs::read(p).expect("a seed file")).collect();
    assert!(!seeds.is_empty(), "{} has no seeds", dir.display());
    seeds
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        // A failure is reported with its input below; nothing is written next to the tests.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs target `name` on its seeds, arbitrary bytes and mutated seeds; a failure names
/// the smallest input proptest found, as bytes.
fn holds(name: &str) {
    let (_, target) = fuzzing::TARGETS
        .iter()
        .find(|(target, _)| *target == name)
        .unwrap_or_else(|| panic!("no target {name}"));
    let seeds = seeds(name);
    for seed in &seeds {
        target(seed);
    }

    let arbitrary = TestRunner::new(config(ARBITRARY_CASES)).run(&vec(any::<u8>(), 0..1024), |data| {
        target(&data);
        Ok(())
    });
    match arbitrary {
        Ok(()) => {}
        Err(TestError::Fail(reason, data)) => panic!("{name} on {:?}: {reason}", String::from_utf8_lossy(&data)),
        Err(TestError::Abort(reason)) => panic!("{name}: {reason}"),
    }

    let strategy = (any::<Index>(), vec(mutation(), 1..4));
    let mutated = TestRunner::new(config(MUTATED_CASES)).run(&strategy, |(seed, mutations)| {
        target(&mutate(&seeds, &seed, &mutations));
        Ok(())
    });
    match mutated {
        Ok(()) => {}
        Err(TestError::Fail(reason, (seed, mutations))) => {
            let data = mutate(&seeds, &seed, &mutations);
            panic!("{name} on {:?}: {reason}", String::from_utf8_lossy(&data));
        }
        Err(TestError::Abort(reason)) => panic!("{name}: {reason}"),
    }
}

#[test]
fn access_tokens() {
    holds("access_token");
}

#[test]
fn access_claims() {
    holds("access_claims");
}

#[test]
fn holder_shares() {
    holds("holder_share");
}

#[test]
fn envelopes() {
    holds("envelope");
}

#[test]
fn jwk_documents() {
    holds("jwk_document");
}

#[test]
fn store_key_requests() {
    holds("store_key_request");
}

#[test]
fn store_envelope_requests() {
    holds("store_envelope_request");
}

#[test]
fn der_elements() {
    holds("der_element");
}

#[test]
fn subject_public_key_infos() {
    holds("spki");
}

#[test]
fn pkcs1_private_keys() {
    holds("pkcs1_private_key");
}

#[test]
fn rsa_components() {
    holds("rsa_components");
}

#[test]
fn every_target_is_tested_here_and_fuzzed_in_fuzz() {
    let source = include_str!("properties.rs");
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let manifest = fs::read_to_string(fuzz.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in fuzzing::TARGETS {
        assert!(source.contains(&format!("holds(\"{name}\")")), "{name} has no test");
        let target = fs::read_to_string(fuzz.join(format!("fuzz_targets/{name}.rs"))).unwrap_or_default();
        assert!(
            target.contains(&format!("fuzzing::{name}(data)")),
            "fuzz/fuzz_targets/{name}.rs"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name} is not a bin of fuzz/"
        );
    }
}
