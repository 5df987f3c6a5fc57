//! Each member's own Secrets: a member run here names its key share and ENR Secrets, a remote one
//! none, no Secret serves two members, and the lock is not in a member's Secret.

use super::Report;
use super::member_path;
use crate::api::DistributedValidatorSpec;
use std::collections::BTreeMap;

/// Each member mounts its own key share and ENR key and nothing else, so no Secret may serve two
/// members, and the lock must not live in a member's Secret.
pub(super) fn check_secrets(spec: &DistributedValidatorSpec, report: &mut Report) {
    if spec.members.iter().all(|m| m.remote) {
        report.error(
            "spec.members",
            "every member is remote: at least one member must run in this cluster",
        );
    }
    let mut owner: BTreeMap<&str, (usize, &'static str)> = BTreeMap::new();
    for (i, member) in spec.members.iter().enumerate() {
        // A member run here needs both Secrets; one run by another organisation has its keys
        // there, and naming a Secret here for it would mount what is not its own.
        for (field, set) in [
            ("keyShareSecret", member.key_share_secret.is_some()),
            ("enrSecret", member.enr_secret.is_some()),
        ] {
            if member.remote && set {
                report.error(
                    member_path(i, field),
                    "a remote member's keys are with the organisation that runs it: name no Secret for it here",
                );
            } else if !member.remote && !set {
                report.error(
                    member_path(i, field),
                    "required for a member run in this cluster (or set remote: true)",
                );
            }
        }
        let named = [
            member
                .key_share_secret
                .as_ref()
                .map(|s| ("keyShareSecret.name", s.name.as_str())),
            member
                .enr_secret
                .as_ref()
                .map(|s| ("enrSecret.name", s.name.as_str())),
        ];
        for (field, secret) in named.into_iter().flatten() {
            match owner.get(secret) {
                Some(&(other, other_field)) if other != i => report.error(
                    member_path(i, field),
                    format!(
                        "Secret {secret:?} is already spec.members[{other}].{other_field}; each member must have its own Secrets"
                    ),
                ),
                Some(_) => {}
                None => {
                    owner.insert(secret, (i, field));
                }
            }
        }
    }
    let lock = &spec.cluster_lock;
    match (&lock.config_map, &lock.secret) {
        (Some(_), Some(_)) | (None, None) => {
            report.error("spec.clusterLock", "set exactly one of configMap or secret")
        }
        (None, Some(secret)) => {
            if let Some(&(member, field)) = owner.get(secret.name.as_str()) {
                report.error(
                    "spec.clusterLock.secret.name",
                    format!(
                        "Secret {:?} is spec.members[{member}].{field}; keep the lock out of member Secrets so that no pod mounts another member's keys",
                        secret.name
                    ),
                );
            }
        }
        (Some(_), None) => {}
    }
}
