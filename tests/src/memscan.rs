//! Looking for a private key's secret bytes in a process's memory.

use std::io::{Read, Seek, SeekFrom};

use anyhow::{Context, Result};

/// The byte strings that betray an RSA key given as PKCS#1 `RSAPrivateKey` DER: d, p and q
/// (big- and little-endian), named `<name>.d big-endian` and so on. Read with the
/// workspace's one PKCS#1 reader, [`hsm::RsaPrivateComponents::from_pkcs1_der`].
pub fn rsa_secrets(name: &str, pkcs1_der: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let key = hsm::RsaPrivateComponents::from_pkcs1_der(pkcs1_der).context("not a PKCS#1 RSAPrivateKey")?;
    let mut patterns = Vec::new();
    for (label, value) in [("d", &key.d), ("p", &key.p), ("q", &key.q)] {
        let mut little = value.clone();
        little.reverse();
        patterns.push((format!("{name}.{label} big-endian"), value.clone()));
        patterns.push((format!("{name}.{label} little-endian"), little));
    }
    Ok(patterns)
}

/// Which of `patterns` (name, bytes) occur anywhere in the readable memory of `pid`.
pub fn scan(pid: u32, patterns: &[(String, Vec<u8>)]) -> Result<Vec<String>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
    let mut found = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (start, end) = (u64::from_str_radix(start, 16)?, u64::from_str_radix(end, 16)?);
        let mut region = vec![0u8; usize::try_from(end - start)?];
        if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut region).is_err() {
            continue;
        }
        for (name, pattern) in patterns {
            if !found.contains(name) && contains(&region, pattern) {
                found.push(name.clone());
            }
        }
    }
    Ok(found)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let mut from = 0;
    while let Some(offset) = haystack[from..].iter().position(|&b| b == first) {
        let at = from + offset;
        if haystack.len() - at < needle.len() {
            return false;
        }
        if &haystack[at + 1..at + needle.len()] == rest {
            return true;
        }
        from = at + 1;
    }
    false
}
