//! The status a DV reports, computed from what was validated and what runs. Pure: the reconciler
//! compares the result with the current status and writes only when it differs. The conditions
//! themselves (placement, diversity, what the planner waits for) are made in `conditions`.

pub mod client_move;
mod conditions;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::cached::{Pod, StatefulSet};
use super::model::{Cluster, Invalid};
use crate::api::reasons;
use crate::api::{
    DistributedValidator, DistributedValidatorStatus, MemberStatus, Phase, condition_types as types,
};
use conditions::*;

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

fn restarts(pod: &Pod) -> u32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count.max(0) as u32).sum())
        .unwrap_or(0)
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

/// The status of a member run by another organisation: ready while a member here saw it
/// answer within the window.
///
/// `lastSeen` is shown while the member is not seen (when it last answered), not refreshed on
/// every read while it answers: a status that changed with every read would be a write per
/// reconcile. Before the operator has read anything (just restarted), the last word stands.
fn remote_member_status(
    member: &super::model::RosterEntry,
    peers: &crate::domain::peers::PeerHealth,
    previous: Option<&MemberStatus>,
) -> MemberStatus {
    let (ready, last_seen) = if peers.observed {
        let ready = peers.up.contains(&member.index);
        let last_seen = (!ready)
            .then(|| peers.last_seen.get(&member.index).cloned().map(Time))
            .flatten();
        (ready, last_seen)
    } else {
        // Nothing read yet: not counted toward quorum (the safe side), last word kept.
        (false, previous.and_then(|m| m.last_seen.clone()))
    };
    MemberStatus {
        name: member.name.clone(),
        index: member.index,
        validator_client: member.client,
        ready,
        remote: true,
        last_seen,
        ..MemberStatus::default()
    }
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

/// Status of a built DV from what runs.
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
    let n = quorum.members();
    let t = quorum.threshold();
    let mut members: Vec<MemberStatus> = Vec::new();
    for member in &cluster.roster {
        let previous_member = previous.members.iter().find(|m| m.name == member.name);
        if member.remote {
            members.push(remote_member_status(
                member,
                &cluster.peers,
                previous_member,
            ));
            continue;
        }
        let seen = observed.get(&member.name).cloned().unwrap_or_default();
        let built = cluster.members.iter().find(|m| m.name == member.name);
        let ready = seen.pod.is_some_and(pod_is_ready);
        // A member that stayed Ready for minReadySeconds has recovered: its backoff starts over.
        let settled = ready
            && seen
                .pod
                .and_then(|p| {
                    p.status
                        .as_ref()?
                        .conditions
                        .as_ref()?
                        .iter()
                        .find(|c| c.type_ == "Ready")?
                        .last_transition_time
                        .clone()
                })
                .is_some_and(|since| {
                    let settled_at = since.0.checked_add(outcome.min_ready).unwrap_or(since.0);
                    settled_at <= now.0
                });
        let restarted = outcome.restarted.get(&member.name);
        let previous_move = previous_member.and_then(|m| m.client_move.as_ref());
        let client_move = match built {
            Some(built) => client_move::observe(
                built,
                seen.pod.filter(|_| !shows_outdated(&seen)),
                previous_move,
                now,
            ),
            None => previous_move.cloned(),
        };
        // Until the move finishes the member runs (or is stopped on) its old client.
        let validator_client = match &client_move {
            Some(m) if m.phase != crate::api::ClientMovePhase::Moved && built.is_some() => {
                Some(m.from)
            }
            _ => built.map(|m| m.client).or(member.client),
        };
        members.push(MemberStatus {
            name: member.name.clone(),
            index: member.index,
            zone: built
                .and_then(|m| m.zone.clone())
                .or_else(|| seen.zone.clone()),
            node: seen.pod.and_then(|p| p.spec.as_ref()?.node_name.clone()),
            validator_client,
            client_move,
            ready,
            restarts: seen.pod.map(restarts).unwrap_or(0),
            last_restart_reason: restarted
                .map(|r| r.reason.clone())
                .or_else(|| previous_member.and_then(|m| m.last_restart_reason.clone())),
            last_restart_time: restarted
                .map(|r| r.at.clone())
                .or_else(|| previous_member.and_then(|m| m.last_restart_time.clone())),
            share_public_key_verified: if built.is_some() {
                Some(true)
            } else if cluster
                .share_mismatches
                .iter()
                .any(|p| p.member == member.name)
            {
                Some(false)
            } else {
                None
            },
            outdated: shows_outdated(&seen),
            consecutive_restarts: match restarted {
                Some(r) => r.consecutive,
                None if settled => 0,
                None => previous_member.map_or(0, |m| m.consecutive_restarts),
            },
            stranded: outcome.stranded.contains(&member.name),
            // Only what Charon said (read every few seconds, and forgotten by a restarted
            // operator until the next read: the last word stands until then).
            not_ready_reason: if ready {
                None
            } else if let Some(why) = seen.pod.and_then(client_move::unmoved_history) {
                Some(why)
            } else if cluster.peers.observed {
                cluster
                    .peers
                    .not_ready
                    .get(&member.index)
                    .map(ToString::to_string)
            } else {
                previous_member.and_then(|m| m.not_ready_reason.clone())
            },
            last_seen: None,
            remote: false,
        });
    }
    members.sort_by_key(|m| m.index);
    let ready = members.iter().filter(|m| m.ready).count() as u32;
    let outdated_members: Vec<&str> = members
        .iter()
        .filter(|m| m.outdated)
        .map(|m| m.name.as_str())
        .collect();
    let not_ready: Vec<String> = members
        .iter()
        .filter(|m| !m.ready)
        .map(|m| match (&m.not_ready_reason, m.remote) {
            (Some(why), _) => format!("{} ({why})", m.name),
            (None, true) => format!("{} (remote, not seen)", m.name),
            (None, false) => m.name.clone(),
        })
        .collect();
    let not_ready: Vec<&str> = not_ready.iter().map(String::as_str).collect();
    let was_available = previous
        .conditions
        .iter()
        .any(|c| c.type_ == types::AVAILABLE && c.status == "True")
        || matches!(
            previous.phase,
            Some(Phase::Available | Phase::Degraded | Phase::QuorumLost)
        );
    let phase = if ready == n {
        Phase::Available
    } else if !was_available {
        Phase::Progressing
    } else if ready >= t {
        Phase::Degraded
    } else {
        Phase::QuorumLost
    };
    let list = |names: &[&str]| names.join(", ");
    let mut conditions = vec![
        if ready == n {
            condition(
                &previous.conditions,
                types::AVAILABLE,
                true,
                crate::api::reasons::ALL_MEMBERS_READY,
                format!("all {n} members are ready"),
                generation,
                now,
            )
        } else {
            condition(
                &previous.conditions,
                types::AVAILABLE,
                false,
                crate::api::reasons::MEMBERS_NOT_READY,
                format!("{ready}/{n} members ready; not ready: {}", list(&not_ready)),
                generation,
                now,
            )
        },
        if ready >= t {
            condition(
                &previous.conditions,
                types::QUORUM_AVAILABLE,
                true,
                crate::api::reasons::QUORUM_READY,
                format!("{ready} members ready, {t} needed to sign"),
                generation,
                now,
            )
        } else {
            condition(
                &previous.conditions,
                types::QUORUM_AVAILABLE,
                false,
                crate::api::reasons::BELOW_THRESHOLD,
                format!("{ready} members ready, {t} needed to sign: the validator cannot sign"),
                generation,
                now,
            )
        },
        condition(
            &previous.conditions,
            types::FAULT_TOLERANT,
            ready > t,
            if ready > t {
                reasons::CAN_LOSE_MEMBERS
            } else {
                reasons::NO_MARGIN_LEFT
            },
            format!(
                "{} more member(s) may fail before signing stops",
                ready.saturating_sub(t)
            ),
            generation,
            now,
        ),
    ];
    conditions.push(if !cluster.blocked.is_empty() {
        condition(
            &previous.conditions,
            types::PROGRESSING,
            true,
            reasons::SECRET_MISSING,
            format!(
                "waiting for Secrets: {}",
                cluster
                    .blocked
                    .iter()
                    .map(|p| p.why.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            generation,
            now,
        )
    } else if !cluster.client_changes_held.is_empty() {
        condition(
            &previous.conditions,
            types::PROGRESSING,
            true,
            reasons::CLIENT_CHANGE_HELD,
            cluster
                .client_changes_held
                .iter()
                .map(|held| held.message())
                .collect::<Vec<_>>()
                .join("; "),
            generation,
            now,
        )
    } else if !outdated_members.is_empty() {
        condition(
            &previous.conditions,
            types::PROGRESSING,
            true,
            if outcome.held_by_budget {
                crate::api::reasons::ROLLOUT_HELD_BY_BUDGET
            } else {
                crate::api::reasons::MEMBERS_OUTDATED
            },
            format!(
                "members running an older revision: {}{}",
                list(&outdated_members),
                planner_says(&outcome.waiting)
            ),
            generation,
            now,
        )
    } else if ready < n {
        condition(
            &previous.conditions,
            types::PROGRESSING,
            true,
            crate::api::reasons::MEMBERS_STARTING,
            format!(
                "waiting for members to become ready: {}{}",
                list(&not_ready),
                planner_says(&outcome.waiting)
            ),
            generation,
            now,
        )
    } else {
        condition(
            &previous.conditions,
            types::PROGRESSING,
            false,
            reasons::CONVERGED,
            "every member runs the desired revision and is ready".to_owned(),
            generation,
            now,
        )
    });
    conditions.push(if outcome.paused {
        condition(
            &previous.conditions,
            types::RECONCILIATION_PAUSED,
            true,
            reasons::PAUSED,
            "spec.rollout.paused or the dvt.io/paused annotation: no restarts or rollouts"
                .to_owned(),
            generation,
            now,
        )
    } else {
        condition(
            &previous.conditions,
            types::RECONCILIATION_PAUSED,
            false,
            reasons::ACTIVE,
            "restarts and rollouts proceed within the quorum budget".to_owned(),
            generation,
            now,
        )
    });
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
    conditions.extend(client_move::verdict(&members).map(|(ok, reason, message)| {
        condition(
            &previous.conditions,
            types::CLIENT_MOVED,
            ok,
            reason,
            message,
            generation,
            now,
        )
    }));
    let whys = |list: &[super::model::MemberProblem]| {
        list.iter()
            .map(|p| p.why.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    conditions.push(if !cluster.blocked.is_empty() {
        condition(&previous.conditions, types::KEY_SHARES_VERIFIED, false, reasons::SECRET_MISSING, whys(&cluster.blocked), generation, now)
    } else if !cluster.share_mismatches.is_empty() {
        condition(
            &previous.conditions,
            types::KEY_SHARES_VERIFIED,
            false,
            reasons::SHARE_MISMATCH,
            format!("not created or changed: {}", whys(&cluster.share_mismatches)),
            generation,
            now,
        )
    } else {
        condition(
            &previous.conditions,
            types::KEY_SHARES_VERIFIED,
            true,
            reasons::SHARES_MATCH_LOCK,
            format!(
                "the lock's {} validator(s) verify (any {t} public shares interpolate to the group key) and every member's keystores hold its own share",
                cluster.lock_summary.validators
            ),
            generation,
            now,
        )
    });
    DistributedValidatorStatus {
        observed_generation: generation,
        threshold: Some(t),
        fault_tolerance: Some(quorum.liveness_budget()),
        ready_members: ready,
        ready: Some(format!("{ready}/{n}")),
        disruption_budget: Some(quorum.disruption_budget(ready) as i32),
        phase: Some(phase),
        members,
        conditions: merge(&previous.conditions, conditions),
    }
}
