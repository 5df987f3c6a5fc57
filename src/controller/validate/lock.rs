//! The lock checks of validation: which lock the DV names, that it was read and parses, that it
//! agrees with the spec, that it is sound, and that it names what the members' clients need.

use crate::api::{DistributedValidatorSpec, ValidatorClient};
use crate::controller::model::{Facts, Invalid, LockVolume, ReadLock, Refusal};
use crate::crypto::lock::{LockSummary, MAINNET_FORK_VERSION};
use crate::domain::quorum::Quorum;

/// The DV's lock, read and checked against its spec.
pub struct CheckedLock<'a> {
    /// Where the pods mount it from.
    pub volume: LockVolume,
    /// "ConfigMap NAME" or "Secret NAME": how problems name it.
    pub label: String,
    pub read: &'a ReadLock,
    pub summary: &'a LockSummary,
}

/// The lock `spec.clusterLock` names, read, agreeing with the spec and sound.
pub fn checked<'a>(
    spec: &DistributedValidatorSpec,
    facts: &'a Facts,
    quorum: Quorum,
) -> Result<CheckedLock<'a>, Invalid> {
    let (volume, label) = volume(spec)?;
    let read = facts
        .lock
        .as_ref()
        .map_err(|why| Invalid::one(Refusal::LockUnavailable, why.clone()))?;
    let summary = read
        .summary
        .as_ref()
        .map_err(|e| Invalid::one(Refusal::LockUnavailable, format!("{label}: {e}")))?;
    let mismatches = mismatches(spec, summary, quorum, &label);
    if !mismatches.is_empty() {
        return Err(Invalid::new(Refusal::LockMismatch, mismatches));
    }
    // A lock whose shares do not belong to its group keys would run a weaker cluster than it
    // claims: nothing is built from it.
    if !read.problems.is_empty() {
        return Err(Invalid::new(
            Refusal::LockInvalid,
            read.problems
                .iter()
                .map(|p| format!("{label}: {p}"))
                .collect(),
        ));
    }
    Ok(CheckedLock {
        volume,
        label,
        read,
        summary,
    })
}

/// Where the lock is mounted from, and how problems name it.
fn volume(spec: &DistributedValidatorSpec) -> Result<(LockVolume, String), Invalid> {
    match (&spec.cluster_lock.config_map, &spec.cluster_lock.secret) {
        (Some(cm), _) => Ok((
            LockVolume::ConfigMap {
                name: cm.name.clone(),
                key: cm.key.clone(),
            },
            format!("ConfigMap {}", cm.name),
        )),
        (None, Some(secret)) => Ok((
            LockVolume::Secret {
                name: secret.name.clone(),
                key: secret.key.clone(),
            },
            format!("Secret {}", secret.name),
        )),
        (None, None) => Err(Invalid::one(
            Refusal::InvalidSpec,
            "spec.clusterLock: set exactly one of configMap or secret",
        )),
    }
}

/// Where the lock and the spec disagree: operators, threshold, or test-network mode on mainnet.
fn mismatches(
    spec: &DistributedValidatorSpec,
    summary: &LockSummary,
    quorum: Quorum,
    label: &str,
) -> Vec<String> {
    let mut mismatches = Vec::new();
    if summary.operators != spec.members.len() {
        mismatches.push(format!(
            "the lock in {label} has {} operators but the DV has {} members",
            summary.operators,
            spec.members.len()
        ));
    }
    if summary.threshold != quorum.threshold() {
        mismatches.push(format!(
            "the lock in {label} has threshold {} but the DV's threshold is {}",
            summary.threshold,
            quorum.threshold()
        ));
    }
    if spec.test_network.is_some() && summary.is_mainnet() {
        mismatches.push(format!(
            "the lock in {label} is for mainnet (fork version {MAINNET_FORK_VERSION}): test-network mode is refused for mainnet"
        ));
    }
    mismatches
}

/// Teku refuses to start without a fee recipient (its ValidatorConfig), and the only right one
/// is the lock's: a lock that names none cannot run a Teku member.
pub fn check_fee_recipients(
    lock: &CheckedLock,
    clients: &[Option<ValidatorClient>],
) -> Result<(), Invalid> {
    let without_fee_recipient: Vec<usize> = lock
        .summary
        .fee_recipients
        .iter()
        .enumerate()
        .filter(|(_, recipient)| recipient.is_none())
        .map(|(validator, _)| validator)
        .collect();
    if without_fee_recipient.is_empty() || !clients.contains(&Some(ValidatorClient::Teku)) {
        return Ok(());
    }
    Err(Invalid::one(
        Refusal::LockInvalid,
        format!(
            "the lock in {} names no fee recipient for validator(s) {:?}, which Teku members need; use another client for them or a lock with fee_recipient_address",
            lock.label, without_fee_recipient
        ),
    ))
}
