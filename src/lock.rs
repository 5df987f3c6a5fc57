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
    distributed_validators: Vec<serde::de::IgnoredAny>,
    #[serde(default)]
    lock_hash: Option<String>,
}

#[derive(Deserialize)]
struct RawDefinition {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    threshold: u32,
    operators: Vec<serde::de::IgnoredAny>,
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
}

/// Reads the summary of a lock document.
pub fn summarize(text: &str) -> Result<LockSummary, LockError> {
    let raw: RawLock = serde_json::from_str(text).map_err(|e| LockError::Parse(e.to_string()))?;
    Ok(LockSummary {
        name: raw.cluster_definition.name,
        version: raw.cluster_definition.version,
        threshold: raw.cluster_definition.threshold,
        operators: raw.cluster_definition.operators.len(),
        validators: raw.distributed_validators.len(),
        lock_hash: raw.lock_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/charon");

    #[test]
    fn real_locks_summarize() {
        let lock =
            std::fs::read_to_string(format!("{FIXTURES}/cluster-lock-v1.7.0-3of4.json")).unwrap();
        let summary = summarize(&lock).unwrap();
        assert_eq!((summary.threshold, summary.operators), (3, 4));
        assert!(summary.validators >= 1);
        assert_eq!(summary.version.as_deref(), Some("v1.7.0"));
        let newer =
            std::fs::read_to_string(format!("{FIXTURES}/cluster-lock-v1.10.0-format-only.json"))
                .unwrap();
        let summary = summarize(&newer).unwrap();
        assert_eq!(
            (summary.threshold, summary.operators, summary.validators),
            (3, 2, 2)
        );
    }

    #[test]
    fn a_lock_without_a_threshold_is_refused_by_name() {
        let error =
            summarize(r#"{"cluster_definition": {"operators": []}, "distributed_validators": []}"#)
                .unwrap_err();
        assert!(error.to_string().contains("threshold"), "{error}");
    }
}
