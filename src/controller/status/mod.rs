//! The status a DV reports, computed from what was validated and what runs. Pure: the reconciler
//! compares the result with the current status and writes only when it differs. The conditions
//! themselves (placement, diversity, what the planner waits for) are made in `conditions`.

pub mod client_move;
mod conditions;
mod members;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::cached::{Pod, StatefulSet};
use super::model::{Cluster, Invalid};
use crate::api::{
    DistributedValidator, DistributedValidatorStatus, Phase, condition_types as types,
};
use conditions::{
    Counts, Setting, availability_conditions, condition, diversity_conditions,
    key_shares_condition, merge, paused_condition, peers_condition, placement_condition,
    progressing_condition,
};

/// A restart the operator made this pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Restarted {
    pub at: Time,
    pub reason: String,
    /// Repairs of the member in a row, this one included (0 for a rollout step).
    pub consecutive: u32,
}

/// What the quorum planner did and saw this pass, for status.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Members restarted now, by name.
    pub restarted: BTreeMap<String, Restarted>,
    pub stranded: Vec<String>,
    pub paused: bool,
    /// Why the planner holds back, one line each.
    pub waiting: Vec<String>,
    /// The rollout holds because the quorum budget allows no disruption.
    pub held_by_budget: bool,
    pub min_ready: std::time::Duration,
}

/// What runs for one member, as read from the caches.
#[derive(Clone, Debug, Default)]
pub struct Observed<'a> {
    pub statefulset: Option<&'a StatefulSet>,
    pub pod: Option<&'a Pod>,
    /// Zone label of the pod's node.
    pub zone: Option<String>,
    /// The operator wrote a new template for this member's StatefulSet in this pass, so the
    /// cached StatefulSet (and its update revision) is older than what the server holds.
    pub template_written: bool,
}

pub fn pod_is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A member is outdated when its StatefulSet has a newer revision than the one its pod runs.
pub fn is_outdated(observed: &Observed<'_>) -> bool {
    let update_revision = observed
        .statefulset
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.update_revision.as_deref());
    let pod_revision = observed
        .pod
        .and_then(|p| p.metadata.labels.as_ref())
        .and_then(|l| l.get("controller-revision-hash"))
        .map(String::as_str);
    matches!((update_revision, pod_revision), (Some(u), Some(p)) if u != p)
}

/// Whether status shows the member as outdated: as [`is_outdated`], and also while its
/// StatefulSet's new template is not yet reflected in an update revision (written this pass, or
/// not yet observed by the StatefulSet controller). Without this, a status written in that
/// moment would call a rollout finished before it began. The planner does not restart on this
/// alone: a StatefulSet write that leaves the template as it was would restart a healthy member.
pub fn shows_outdated(observed: &Observed<'_>) -> bool {
    let unobserved = observed.statefulset.is_some_and(|set| {
        let generation = set.metadata.generation.unwrap_or_default();
        let seen = set
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .unwrap_or(generation);
        seen < generation
    });
    is_outdated(observed) || (observed.pod.is_some() && (observed.template_written || unobserved))
}

/// Status of a DV that cannot be built.
pub fn invalid(
    dv: &DistributedValidator,
    problem: &Invalid,
    now: &Time,
) -> DistributedValidatorStatus {
    let previous = dv.status.clone().unwrap_or_default();
    let generation = dv.metadata.generation;
    let mut status = previous.clone();
    status.observed_generation = generation;
    status.phase = Some(Phase::Pending);
    let message = problem.message();
    status.conditions = merge(
        &previous.conditions,
        vec![
            condition(
                &previous.conditions,
                types::AVAILABLE,
                false,
                problem.reason(),
                message.clone(),
                generation,
                now,
            ),
            condition(
                &previous.conditions,
                types::PROGRESSING,
                false,
                problem.reason(),
                format!("nothing is created or changed until this is fixed: {message}"),
                generation,
                now,
            ),
        ],
    );
    status
}

/// Whether `next` differs from `previous` only in where members run (node, zone) and in the
/// wording of condition messages: details a reader can wait a moment for, while members are
/// scheduled one after another. Readiness, phase, condition states and everything the planner
/// keeps in status (restarts, backoff, rollout progress) are never held back.
pub fn only_details_differ(
    previous: &DistributedValidatorStatus,
    next: &DistributedValidatorStatus,
) -> bool {
    fn without_details(status: &DistributedValidatorStatus) -> DistributedValidatorStatus {
        let mut status = status.clone();
        for member in &mut status.members {
            member.node = None;
            member.zone = None;
        }
        for condition in &mut status.conditions {
            condition.message.clear();
        }
        status
    }
    previous != next && without_details(previous) == without_details(next)
}

/// What differs between two statuses, in a few words for the logs: the phase, ready count,
/// conditions whose state or reason changed, and members whose state changed.
pub fn changes(
    previous: Option<&DistributedValidatorStatus>,
    next: &DistributedValidatorStatus,
) -> String {
    let Some(previous) = previous else {
        return "first status".to_owned();
    };
    let mut changed = Vec::new();
    if previous.phase != next.phase {
        changed.push(format!(
            "phase {} -> {}",
            previous.phase.map_or("-", |p| p.as_str()),
            next.phase.map_or("-", |p| p.as_str())
        ));
    }
    if previous.ready_members != next.ready_members {
        changed.push(format!(
            "ready {} -> {}",
            previous.ready_members, next.ready_members
        ));
    }
    for condition in &next.conditions {
        let before = previous
            .conditions
            .iter()
            .find(|c| c.type_ == condition.type_);
        match before {
            Some(b) if (&b.status, &b.reason) == (&condition.status, &condition.reason) => {
                if b.message != condition.message {
                    changed.push(format!("{} message", condition.type_));
                }
            }
            _ => changed.push(format!(
                "{} {}/{}",
                condition.type_, condition.status, condition.reason
            )),
        }
    }
    for member in &next.members {
        match previous.members.iter().find(|m| m.name == member.name) {
            Some(before) if before == member => {}
            Some(before)
                if (before.node.as_ref(), before.zone.as_ref())
                    != (member.node.as_ref(), member.zone.as_ref()) =>
            {
                changed.push(format!("member {} placed", member.name));
            }
            _ => changed.push(format!("member {}", member.name)),
        }
    }
    if changed.is_empty() {
        changed.push("other fields".to_owned());
    }
    changed.join(", ")
}

/// Available once every member was ready; Degraded or QuorumLost after that, by whether t
/// members are ready.
fn phase_of(previous: &DistributedValidatorStatus, Counts { ready, n, t }: Counts) -> Phase {
    let was_available = previous
        .conditions
        .iter()
        .any(|c| c.type_ == types::AVAILABLE && c.status == "True")
        || matches!(
            previous.phase,
            Some(Phase::Available | Phase::Degraded | Phase::QuorumLost)
        );
    if ready == n {
        Phase::Available
    } else if !was_available {
        Phase::Progressing
    } else if ready >= t {
        Phase::Degraded
    } else {
        Phase::QuorumLost
    }
}

/// Clients the DV may run: those the spec allows for assignment and any a member pins.
fn allowed_clients(dv: &DistributedValidator) -> usize {
    dv.spec
        .client_diversity
        .clients
        .iter()
        .copied()
        .chain(dv.spec.members.iter().filter_map(|m| m.validator_client))
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// Status of a built DV from what runs: each member's, then each condition's.
pub fn compute(
    dv: &DistributedValidator,
    cluster: &Cluster,
    observed: &BTreeMap<String, Observed<'_>>,
    outcome: &Outcome,
    now: &Time,
) -> DistributedValidatorStatus {
    let previous = dv.status.clone().unwrap_or_default();
    let generation = dv.metadata.generation;
    let quorum = cluster.quorum;
    let (n, t) = (quorum.members(), quorum.threshold());
    let members = members::statuses(cluster, observed, outcome, &previous.members, now);
    let ready = members.iter().filter(|m| m.ready).count() as u32;
    let counts = Counts { ready, n, t };
    let at = Setting {
        previous: &previous.conditions,
        generation,
        now,
    };
    let mut conditions = availability_conditions(&at, &members, counts).to_vec();
    conditions.push(progressing_condition(
        &at, cluster, outcome, &members, counts,
    ));
    conditions.push(paused_condition(&at, outcome.paused));
    conditions.push(placement_condition(
        &members,
        n,
        t,
        &previous.conditions,
        generation,
        now,
    ));
    conditions.extend(diversity_conditions(
        cluster,
        allowed_clients(dv),
        &previous.conditions,
        generation,
        now,
    ));
    conditions.extend(peers_condition(
        cluster,
        &previous.conditions,
        generation,
        now,
    ));
    conditions.extend(
        client_move::verdict(&members)
            .map(|(ok, reason, message)| at.set(types::CLIENT_MOVED, ok, reason, message)),
    );
    conditions.push(key_shares_condition(&at, cluster));
    DistributedValidatorStatus {
        observed_generation: generation,
        threshold: Some(t),
        fault_tolerance: Some(quorum.liveness_budget()),
        ready_members: ready,
        ready: Some(format!("{ready}/{n}")),
        disruption_budget: Some(quorum.disruption_budget(ready) as i32),
        phase: Some(phase_of(&previous, counts)),
        members,
        conditions: merge(&previous.conditions, conditions),
    }
}
