//! The public key of each EIP-2335 keystore in a member's key-share Secret, and whether they
//! match the lock. Only the `pubkey` field is read: passwords (`keystore-N.txt`) and the
//! encrypted key are never parsed, kept or logged.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::crypto::lock::LockSummary;

#[derive(Deserialize)]
struct PublicPart {
    pubkey: String,
}

/// `keystore-N.json` → N.
fn keystore_index(key: &str) -> Option<usize> {
    key.strip_prefix("keystore-")?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

fn normalise(hex: &str) -> String {
    hex.trim().trim_start_matches("0x").to_ascii_lowercase()
}

/// The public key of every `keystore-N.json` entry, by N. `entries` yields (key, bytes) of the
/// Secret's data; other keys are skipped without being read.
pub fn public_keys<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<BTreeMap<usize, String>, String> {
    let mut keys = BTreeMap::new();
    for (key, bytes) in entries {
        let Some(index) = keystore_index(key) else {
            continue;
        };
        let public: PublicPart = serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "{key} is not an EIP-2335 keystore with a pubkey: {}",
                e.classify_name()
            )
        })?;
        keys.insert(index, normalise(&public.pubkey));
    }
    Ok(keys)
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    // The error's own text may quote the input, which is a keystore: name its class only.
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "no pubkey field",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}

/// Problems with member `index`'s keystores against the lock, one line each, naming the
/// validator; `names` gives the member at each share index, for "holds bravo's share" messages.
pub fn check_member(
    member: &str,
    index: usize,
    secret: &str,
    keys: &BTreeMap<usize, String>,
    lock: &LockSummary,
    names: &BTreeMap<usize, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (v, validator) in lock.public_keys.iter().enumerate() {
        let Some(expected) = validator.public_shares.get(index).map(|s| normalise(s)) else {
            problems.push(format!(
                "member {member}: validator {v}: the lock has no public share {index}"
            ));
            continue;
        };
        match keys.get(&v) {
            None => problems.push(format!(
                "member {member}: validator {v}: Secret {secret:?} has no keystore-{v}.json"
            )),
            Some(found) if *found == expected => {}
            Some(found) => {
                let owner = validator
                    .public_shares
                    .iter()
                    .position(|s| normalise(s) == *found)
                    .map(|i| match names.get(&i) {
                        Some(name) => format!(", which is share {i} (member {name})"),
                        None => format!(", which is share {i}"),
                    })
                    .unwrap_or_default();
                problems.push(format!(
                    "member {member}: validator {v}: keystore-{v}.json in Secret {secret:?} holds public key 0x{}...{owner}, not the lock's share {index}",
                    &found[..found.len().min(12)]
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keystore_pubkeys_are_read() {
        let entries = [
            (
                "keystore-0.json",
                br#"{"pubkey": "0xAB12", "crypto": {"cipher": "x"}}"#.as_slice(),
            ),
            ("keystore-0.txt", b"not json at all".as_slice()),
            ("other", b"ignored".as_slice()),
        ];
        let keys = public_keys(entries).unwrap();
        assert_eq!(keys, BTreeMap::from([(0, "ab12".to_owned())]));
        let error =
            public_keys([("keystore-1.json", b"{\"secret\": \"hunter2\"".as_slice())]).unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
    }
}
