//! The parts of Charon's `cluster-lock.json` the controller relies on: threshold, operators and
//! validator count. Unknown fields are ignored, so every v1.x lock parses; the fields we use are
//! required, and a lock without them is refused with a message naming the field.

use serde::Deserialize;

/// Why a lock cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LockError {
    #[error(
        "the cluster lock is not valid JSON with cluster_definition.threshold, cluster_definition.operators and distributed_validators: {0}"
    )]
    Parse(String),
}

#[derive(Deserialize)]
struct RawLock {
    cluster_definition: RawDefinition,
    distributed_validators: Vec<RawValidator>,
    #[serde(default)]
    lock_hash: Option<String>,
}

#[derive(Deserialize)]
struct RawValidator {
    distributed_public_key: String,
    public_shares: Vec<String>,
}

#[derive(Deserialize)]
struct RawDefinition {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    threshold: u32,
    operators: Vec<serde::de::IgnoredAny>,
    #[serde(default)]
    fork_version: Option<String>,
    /// Per validator since lock v1.3 (`validators[].fee_recipient_address`).
    #[serde(default)]
    validators: Vec<RawValidatorAddresses>,
    /// One for all validators in locks before v1.3.
    #[serde(default)]
    fee_recipient_address: Option<String>,
}

#[derive(Deserialize)]
struct RawValidatorAddresses {
    #[serde(default)]
    fee_recipient_address: Option<String>,
}

/// What the controller reads from a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockSummary {
    pub name: Option<String>,
    pub version: Option<String>,
    pub threshold: u32,
    pub operators: usize,
    pub validators: usize,
    pub lock_hash: Option<String>,
    /// Per validator: the group public key and the public share of each operator (hex, as in
    /// the lock; operator `i` holds share `i`).
    pub public_keys: Vec<ValidatorKeys>,
    /// Per validator (in the order of `public_keys`), the fee recipient the lock names, if any.
    pub fee_recipients: Vec<Option<String>>,
    /// `cluster_definition.fork_version`: the network's genesis fork version (hex).
    pub fork_version: Option<String>,
}

/// Mainnet's genesis fork version (charon v1.10.3 eth2util/network.go:44).
pub const MAINNET_FORK_VERSION: &str = "0x00000000";

impl LockSummary {
    /// Whether the lock was made for mainnet.
    pub fn is_mainnet(&self) -> bool {
        self.fork_version
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case(MAINNET_FORK_VERSION))
    }
}

/// One distributed validator's public keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorKeys {
    pub distributed_public_key: String,
    pub public_shares: Vec<String>,
}

/// One problem `verify` finds: about one validator of the lock, or (`validator: None`) about
/// the lock as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockProblem {
    pub validator: Option<usize>,
    pub what: String,
}

impl LockProblem {
    fn lock(what: String) -> LockProblem {
        LockProblem {
            validator: None,
            what,
        }
    }
    fn validator(validator: usize, what: String) -> LockProblem {
        LockProblem {
            validator: Some(validator),
            what,
        }
    }
}

impl std::fmt::Display for LockProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.validator {
            Some(v) => write!(f, "validator {v}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// Checks every validator of a lock: one share per operator, every point a valid G1 public
/// key, the first `threshold` shares interpolating (share index i at x = i + 1) to the
/// distributed public key, and every other share on the same polynomial. Returns one message per
/// problem, naming the validator and the share.
pub fn verify(summary: &LockSummary) -> Vec<LockProblem> {
    use crate::crypto::bls::{G1, interpolate};
    let mut problems = Vec::new();
    let t = summary.threshold as usize;
    // A threshold that does not fit is reported, and the points are still checked one by one.
    let threshold_fits = t > 0 && t <= summary.operators;
    if !threshold_fits {
        problems.push(LockProblem::lock(format!(
            "threshold {} does not fit {} operators",
            summary.threshold, summary.operators
        )));
    }
    for (v, keys) in summary.public_keys.iter().enumerate() {
        if keys.public_shares.len() != summary.operators {
            problems.push(LockProblem::validator(
                v,
                format!(
                    "{} public shares for {} operators",
                    keys.public_shares.len(),
                    summary.operators
                ),
            ));
            continue;
        }
        let group = match G1::from_hex(&keys.distributed_public_key) {
            Ok(point) => point,
            Err(error) => {
                problems.push(LockProblem::validator(
                    v,
                    format!("distributed_public_key: {error}"),
                ));
                continue;
            }
        };
        let mut shares = Vec::with_capacity(keys.public_shares.len());
        let mut bad = false;
        for (i, share) in keys.public_shares.iter().enumerate() {
            match G1::from_hex(share) {
                Ok(point) => shares.push((i as u64 + 1, point)),
                Err(error) => {
                    problems.push(LockProblem::validator(
                        v,
                        format!("public share {i}: {error}"),
                    ));
                    bad = true;
                }
            }
        }
        if bad || !threshold_fits {
            continue;
        }
        let basis = &shares[..t];
        if interpolate(basis, 0) != Some(group) {
            problems.push(LockProblem::validator(
                v,
                format!(
                    "public shares 0..{} do not interpolate to the distributed public key {}",
                    t - 1,
                    keys.distributed_public_key
                ),
            ));
            continue;
        }
        for &(x, share) in &shares[t..] {
            if interpolate(basis, x) != Some(share) {
                problems.push(LockProblem::validator(
                    v,
                    format!(
                        "public share {} is not on the polynomial of the others",
                        x - 1
                    ),
                ));
            }
        }
    }
    problems
}

/// Reads the summary of a lock document.
pub fn summarize(text: &str) -> Result<LockSummary, LockError> {
    let raw: RawLock = serde_json::from_str(text).map_err(|e| LockError::Parse(e.to_string()))?;
    let legacy = raw.cluster_definition.fee_recipient_address.clone();
    let fee_recipients = (0..raw.distributed_validators.len())
        .map(|i| {
            raw.cluster_definition
                .validators
                .get(i)
                .and_then(|v| v.fee_recipient_address.clone())
                .or_else(|| legacy.clone())
                .filter(|address| !address.is_empty())
        })
        .collect();
    Ok(LockSummary {
        fee_recipients,
        name: raw.cluster_definition.name,
        fork_version: raw.cluster_definition.fork_version,
        version: raw.cluster_definition.version,
        threshold: raw.cluster_definition.threshold,
        operators: raw.cluster_definition.operators.len(),
        validators: raw.distributed_validators.len(),
        lock_hash: raw.lock_hash,
        public_keys: raw
            .distributed_validators
            .into_iter()
            .map(|v| ValidatorKeys {
                distributed_public_key: v.distributed_public_key,
                public_shares: v.public_shares,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lock: &LockSummary) -> Vec<String> {
        verify(lock).iter().map(ToString::to_string).collect()
    }

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/charon");

    #[test]
    fn real_locks_summarize() {
        let lock =
            std::fs::read_to_string(format!("{FIXTURES}/cluster-lock-v1.7.0-3of4.json")).unwrap();
        let summary = summarize(&lock).unwrap();
        assert_eq!((summary.threshold, summary.operators), (3, 4));
        assert!(summary.validators >= 1);
        assert_eq!(summary.version.as_deref(), Some("v1.7.0"));
        assert_eq!(
            summary.fee_recipients,
            [
                Some("0xe6a9d54824a121e5bdb8e86021f9778b00fecef6".to_owned()),
                Some("0x42d6156bff50e4b1f98f105cd194d19fa4dcdd71".to_owned()),
                Some("0x9f31b90aaec5dc9e5730f47190d45638ea1d49be".to_owned()),
            ]
        );
        let newer =
            std::fs::read_to_string(format!("{FIXTURES}/cluster-lock-v1.10.0-format-only.json"))
                .unwrap();
        let summary = summarize(&newer).unwrap();
        assert_eq!(
            (summary.threshold, summary.operators, summary.validators),
            (3, 2, 2)
        );
    }

    fn fixture() -> LockSummary {
        summarize(
            &std::fs::read_to_string(format!("{FIXTURES}/cluster-lock-v1.7.0-3of4.json")).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn the_real_lock_verifies() {
        assert_eq!(texts(&fixture()), Vec::<String>::new());
    }

    #[test]
    fn a_flipped_share_is_named() {
        let mut lock = fixture();
        let other = lock.public_keys[1].public_shares[3].clone();
        lock.public_keys[0].public_shares[3] = other;
        assert_eq!(
            texts(&lock),
            ["validator 0: public share 3 is not on the polynomial of the others"]
        );
    }

    #[test]
    fn swapped_shares_are_caught() {
        let mut lock = fixture();
        lock.public_keys[2].public_shares.swap(0, 1);
        let problems = texts(&lock);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("validator 2: public shares 0..2 do not interpolate"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_changed_threshold_fails() {
        let mut lock = fixture();
        lock.threshold = 2;
        let problems = texts(&lock);
        assert!(!problems.is_empty());
        assert!(
            problems.iter().all(|p| p.contains("do not interpolate")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_corrupted_point_is_named() {
        let mut lock = fixture();
        let share = &mut lock.public_keys[1].public_shares[2];
        let mut bytes: Vec<char> = share.chars().collect();
        bytes[40] = if bytes[40] == '0' { '1' } else { '0' };
        *share = bytes.into_iter().collect();
        let problems = texts(&lock);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("validator 1: public share 2:"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_format_only_lock_parses_and_fails_verification() {
        let lock = summarize(
            &std::fs::read_to_string(format!("{FIXTURES}/cluster-lock-v1.10.0-format-only.json"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(lock.public_keys.len(), 2);
        assert!(!texts(&lock).is_empty());
    }

    #[test]
    fn a_lock_without_a_threshold_is_refused_by_name() {
        let error =
            summarize(r#"{"cluster_definition": {"operators": []}, "distributed_validators": []}"#)
                .unwrap_err();
        assert!(error.to_string().contains("threshold"), "{error}");
    }
}
