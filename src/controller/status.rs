//! The status a DV reports, computed from what was validated and what runs. Pure: the reconciler
//! compares the result with the current status and writes only when it differs.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::model::{Cluster, Invalid};
use crate::api::reasons;
use crate::api::{
    DistributedValidator, DistributedValidatorStatus, MemberStatus, Phase, condition_types as types,
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

/// The planner's reasons for holding back, appended to the Progressing message: what a user
/// needs to see why a rollout or a repair has not happened yet.
fn planner_says(waiting: &[String]) -> String {
    if waiting.is_empty() {
        String::new()
    } else {
        format!("; {}", waiting.join("; "))
    }
}

/// What runs for one member, as read from the caches.
#[derive(Clone, Debug, Default)]
pub struct Observed<'a> {
    pub statefulset: Option<&'a StatefulSet>,
    pub pod: Option<&'a Pod>,
    /// Zone label of the pod's node.
    pub zone: Option<String>,
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

/// Sets a condition, keeping `lastTransitionTime` when its status did not change.
fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" };
    condition_with(previous, type_, status, reason, message, generation, now)
}

fn condition_with(
    previous: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: since,
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
                problem.reason,
                message.clone(),
                generation,
                now,
            ),
            condition(
                &previous.conditions,
                types::PROGRESSING,
                false,
                problem.reason,
                format!("nothing is created or changed until this is fixed: {message}"),
                generation,
                now,
            ),
        ],
    );
    status
}

/// Replaces the conditions in `updates`, keeps the others, sorted by type.
fn merge(previous: &[Condition], updates: Vec<Condition>) -> Vec<Condition> {
    let mut by_type: BTreeMap<String, Condition> = previous
        .iter()
        .map(|c| (c.type_.clone(), c.clone()))
        .collect();
    for update in updates {
        by_type.insert(update.type_.clone(), update);
    }
    by_type.into_values().collect()
}

fn placement_condition(
    members: &[MemberStatus],
    n: u32,
    t: u32,
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let unplaced: Vec<&str> = members
        .iter()
        .filter(|m| m.zone.is_none())
        .map(|m| m.name.as_str())
        .collect();
    if !unplaced.is_empty() {
        return condition(
            previous,
            types::PLACEMENT_SATISFIED,
            false,
            reasons::NO_ZONES,
            format!(
                "no zone known for {}: nodes carry no zone label",
                unplaced.join(", ")
            ),
            generation,
            now,
        );
    }
    let zones = crate::placement::spread(members.iter().filter_map(|m| m.zone.clone()), n, t);
    let bound = n.saturating_sub(t);
    if zones.live {
        condition(
            previous,
            types::PLACEMENT_SATISFIED,
            true,
            reasons::ZONES_SPREAD,
            format!(
                "members per zone: {}; at most {bound} per zone, so the DV survives {} zone outage(s) with {t} members left to sign",
                zones.describe(),
                zones.survives
            ),
            generation,
            now,
        )
    } else {
        condition(
            previous,
            types::PLACEMENT_SATISFIED,
            false,
            reasons::ZONE_OVERLOADED,
            format!(
                "members per zone: {}; a zone holding {} members (more than {bound}) stops signing when it fails: the DV survives {} zone outage(s); add nodes in more zones",
                zones.describe(),
                zones.worst,
                zones.survives
            ),
            generation,
            now,
        )
    }
}

/// Client and operator diversity: safe when no client, operator or class holds `t` members
/// (it could sign alone), live when none holds more than `n - t` (its failure stops signing).
fn diversity_conditions(
    cluster: &Cluster,
    dv: &DistributedValidator,
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let n = cluster.quorum.members();
    let t = cluster.quorum.threshold();
    let clients = crate::placement::spread(
        cluster.members.iter().map(|m| m.client.as_str().to_owned()),
        n,
        t,
    );
    let names = crate::placement::spread(
        dv.spec.members.iter().map(|m| m.operator.name.clone()),
        n,
        t,
    );
    let classes = crate::placement::spread(
        dv.spec
            .members
            .iter()
            .map(|m| m.operator.class.as_str().to_owned()),
        n,
        t,
    );
    let verdict = |s: &crate::placement::Spread, what: &str| -> (bool, String) {
        let text = format!(
            "{what}: {} (survives {} failing {what}{})",
            s.describe(),
            s.survives,
            if s.safe {
                String::new()
            } else {
                format!(
                    "; one {what} holds {} ≥ t={t} members and could sign alone",
                    s.worst
                )
            }
        );
        (s.safe && s.live, text)
    };
    let (clients_ok, clients_text) = verdict(&clients, "clients");
    let (names_ok, names_text) = verdict(&names, "operators");
    let (classes_ok, classes_text) = verdict(&classes, "operator classes");
    vec![
        condition(
            previous,
            types::CLIENT_DIVERSITY,
            clients_ok,
            if clients_ok {
                reasons::CLIENTS_SPREAD
            } else {
                reasons::CLIENT_CONCENTRATED
            },
            clients_text,
            generation,
            now,
        ),
        condition(
            previous,
            types::OPERATOR_DIVERSITY,
            names_ok && classes_ok,
            if names_ok && classes_ok {
                reasons::OPERATORS_SPREAD
            } else {
                reasons::OPERATOR_CONCENTRATED
            },
            format!("{names_text}; {classes_text}"),
            generation,
            now,
        ),
    ]
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
    for member in &dv.spec.members {
        let seen = observed.get(&member.name).cloned().unwrap_or_default();
        let built = cluster.members.iter().find(|m| m.name == member.name);
        let previous_member = previous.members.iter().find(|m| m.name == member.name);
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
        members.push(MemberStatus {
            name: member.name.clone(),
            index: member.index,
            zone: built
                .and_then(|m| m.zone.clone())
                .or_else(|| seen.zone.clone()),
            node: seen.pod.and_then(|p| p.spec.as_ref()?.node_name.clone()),
            validator_client: built.map(|m| m.client).or(member.validator_client),
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
            outdated: is_outdated(&seen),
            consecutive_restarts: match restarted {
                Some(r) => r.consecutive,
                None if settled => 0,
                None => previous_member.map_or(0, |m| m.consecutive_restarts),
            },
            stranded: outcome.stranded.contains(&member.name),
        });
    }
    members.sort_by_key(|m| m.index);
    let ready = members.iter().filter(|m| m.ready).count() as u32;
    let outdated_members: Vec<&str> = members
        .iter()
        .filter(|m| m.outdated)
        .map(|m| m.name.as_str())
        .collect();
    let not_ready: Vec<&str> = members
        .iter()
        .filter(|m| !m.ready)
        .map(|m| m.name.as_str())
        .collect();
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
        dv,
        &previous.conditions,
        generation,
        now,
    ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::model::validate;
    use crate::controller::testing::example;
    use serde_json::json;

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    fn pod(ready: bool, revision: &str, restarts: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "labels": {"controller-revision-hash": revision}},
            "spec": {"nodeName": "node-1", "containers": []},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}], "containerStatuses": [{"name": "charon", "image": "i", "imageID": "", "ready": ready, "restartCount": restarts}]},
        }))
        .unwrap()
    }

    fn set(revision: &str) -> StatefulSet {
        serde_json::from_value(json!({"metadata": {"name": "s"}, "status": {"replicas": 1, "updateRevision": revision}})).unwrap()
    }

    fn status_with(ready: &[bool], revisions: (&str, &str)) -> DistributedValidatorStatus {
        status_after(ready, revisions, &Outcome::default())
    }

    fn status_after(
        ready: &[bool],
        revisions: (&str, &str),
        outcome: &Outcome,
    ) -> DistributedValidatorStatus {
        let (dv, facts) = example("stader-4.yaml");
        let cluster = validate(&dv, &facts).unwrap();
        let pods: Vec<Pod> = ready.iter().map(|r| pod(*r, revisions.1, 2)).collect();
        let sets: Vec<StatefulSet> = ready.iter().map(|_| set(revisions.0)).collect();
        let observed: BTreeMap<String, Observed<'_>> = dv
            .spec
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                (
                    m.name.clone(),
                    Observed {
                        statefulset: sets.get(i),
                        pod: pods.get(i),
                        zone: Some("zone-a".into()),
                    },
                )
            })
            .collect();
        compute(&dv, &cluster, &observed, outcome, &now())
    }

    fn get<'a>(status: &'a DistributedValidatorStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn all_members_ready_is_available_and_fault_tolerant() {
        let status = status_with(&[true, true, true, true], ("r1", "r1"));
        assert_eq!(status.ready.as_deref(), Some("4/4"));
        assert_eq!(status.phase, Some(Phase::Available));
        assert_eq!(get(&status, types::AVAILABLE).status, "True");
        assert_eq!(get(&status, types::FAULT_TOLERANT).status, "True");
        assert_eq!(get(&status, types::PROGRESSING).status, "False");
        assert_eq!(status.disruption_budget, Some(1));
        assert_eq!(status.members[0].restarts, 2);
        assert_eq!(status.members[0].node.as_deref(), Some("node-1"));
    }

    #[test]
    fn a_new_dv_is_progressing_until_first_available() {
        let status = status_with(&[true, false, false, false], ("r1", "r1"));
        assert_eq!(status.phase, Some(Phase::Progressing));
        assert_eq!(get(&status, types::QUORUM_AVAILABLE).status, "False");
        assert!(
            get(&status, types::AVAILABLE)
                .message
                .contains("not ready: bravo, charlie, delta")
        );
    }

    #[test]
    fn a_changed_revision_marks_members_outdated() {
        let status = status_with(&[true, true, true, true], ("r2", "r1"));
        assert!(status.members.iter().all(|m| m.outdated));
        let progressing = get(&status, types::PROGRESSING);
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_str()),
            ("True", "MembersOutdated")
        );
    }

    #[test]
    fn a_rollout_held_by_the_budget_says_why() {
        let held = Outcome {
            waiting: vec![
                "rollout waits: 3 ready, 3 needed to sign; no member can be taken down".into(),
            ],
            held_by_budget: true,
            ..Outcome::default()
        };
        let status = status_after(&[true, true, true, false], ("r2", "r1"), &held);
        let progressing = get(&status, types::PROGRESSING);
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_str()),
            ("True", "RolloutHeldByBudget")
        );
        assert_eq!(
            progressing.message,
            "members running an older revision: alpha, bravo, charlie, delta; rollout waits: 3 ready, 3 needed to sign; no member can be taken down"
        );
    }

    #[test]
    fn a_repair_that_waits_says_why() {
        let waiting = Outcome {
            waiting: vec!["delta is broken (CrashLoopBackOff); restart delay not over".into()],
            ..Outcome::default()
        };
        let status = status_after(&[true, true, true, false], ("r1", "r1"), &waiting);
        let progressing = get(&status, types::PROGRESSING);
        assert_eq!(progressing.reason, "MembersStarting");
        assert_eq!(
            progressing.message,
            "waiting for members to become ready: delta; delta is broken (CrashLoopBackOff); restart delay not over"
        );
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let (mut dv, facts) = example("stader-4.yaml");
        let cluster = validate(&dv, &facts).unwrap();
        let first = compute(&dv, &cluster, &BTreeMap::new(), &Outcome::default(), &now());
        dv.status = Some(first.clone());
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_900_000_000).unwrap());
        let second = compute(&dv, &cluster, &BTreeMap::new(), &Outcome::default(), &later);
        assert_eq!(
            first, second,
            "an unchanged DV computes an unchanged status"
        );
    }

    #[test]
    fn placement_details_may_wait_but_readiness_and_restarts_may_not() {
        let before = status_with(&[false, false, false, false], ("r1", "r1"));
        let mut scheduled = before.clone();
        scheduled.members[0].node = Some("node-9".into());
        scheduled.members[0].zone = Some("zone-d".into());
        scheduled.conditions[0].message.push_str(" (more words)");
        assert!(only_details_differ(&before, &scheduled));
        assert!(
            !only_details_differ(&before, &before),
            "no difference at all"
        );

        let mut ready = scheduled.clone();
        ready.members[0].ready = true;
        assert!(!only_details_differ(&before, &ready));
        let mut restarted = scheduled.clone();
        restarted.members[1].restarts += 1;
        assert!(!only_details_differ(&before, &restarted));
        let mut flipped = scheduled.clone();
        flipped.conditions[0].status = "Unknown".into();
        assert!(!only_details_differ(&before, &flipped));
        let available = status_with(&[true, true, true, true], ("r1", "r1"));
        assert!(!only_details_differ(&before, &available));
    }
}
