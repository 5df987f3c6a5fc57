//! Each member's status: what runs for it (pod, readiness, restarts, client move) and, for a
//! member run by another organisation, whether a member here saw it answer.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Observed, Outcome, client_move, pod_is_ready, shows_outdated};
use crate::api::{ClientMove, ClientMovePhase, MemberStatus, ValidatorClient};
use crate::controller::cached::Pod;
use crate::controller::health::container_failure;
use crate::controller::model::{Cluster, Member, RosterEntry};

/// Every member's status, by share index.
pub(super) fn statuses(
    cluster: &Cluster,
    observed: &BTreeMap<String, Observed<'_>>,
    outcome: &Outcome,
    previous: &[MemberStatus],
    now: &Time,
) -> Vec<MemberStatus> {
    let mut members: Vec<MemberStatus> = cluster
        .roster
        .iter()
        .map(|member| {
            let previous_member = previous.iter().find(|m| m.name == member.name);
            if member.remote {
                remote_member_status(member, &cluster.peers, previous_member)
            } else {
                let seen = observed.get(&member.name).cloned().unwrap_or_default();
                local_member_status(cluster, member, &seen, outcome, previous_member, now)
            }
        })
        .collect();
    members.sort_by_key(|m| m.index);
    members
}

/// The status of a member run here, from its pod and what the planner did this pass.
fn local_member_status(
    cluster: &Cluster,
    member: &RosterEntry,
    seen: &Observed<'_>,
    outcome: &Outcome,
    previous: Option<&MemberStatus>,
    now: &Time,
) -> MemberStatus {
    let built = cluster.members.iter().find(|m| m.name == member.name);
    let ready = seen.pod.is_some_and(pod_is_ready);
    let restarted = outcome.restarted.get(&member.name);
    let previous_move = previous.and_then(|m| m.client_move.as_ref());
    let client_move = match built {
        Some(built) => client_move::observe(
            built,
            seen.pod.filter(|_| !shows_outdated(seen)),
            previous_move,
            now,
        ),
        None => previous_move.cloned(),
    };
    MemberStatus {
        name: member.name.clone(),
        index: member.index,
        zone: built
            .and_then(|m| m.zone.clone())
            .or_else(|| seen.zone.clone()),
        node: seen.pod.and_then(|p| p.spec.as_ref()?.node_name.clone()),
        validator_client: running_client(member, built, client_move.as_ref()),
        client_move,
        ready,
        restarts: seen.pod.map(restarts).unwrap_or(0),
        last_restart_reason: restarted
            .map(|r| r.reason.clone())
            .or_else(|| previous.and_then(|m| m.last_restart_reason.clone())),
        last_restart_time: restarted
            .map(|r| r.at.clone())
            .or_else(|| previous.and_then(|m| m.last_restart_time.clone())),
        share_public_key_verified: share_verified(cluster, &member.name, built.is_some()),
        outdated: shows_outdated(seen),
        consecutive_restarts: match restarted {
            Some(r) => r.consecutive,
            None if ready && settled(seen.pod, outcome.min_ready, now) => 0,
            None => previous.map_or(0, |m| m.consecutive_restarts),
        },
        stranded: outcome.stranded.contains(&member.name),
        not_ready_reason: if ready {
            None
        } else {
            not_ready_reason(cluster, member, seen.pod, previous)
        },
        last_seen: None,
        remote: false,
    }
}

/// A member that stayed Ready for minReadySeconds has recovered: its backoff starts over.
fn settled(pod: Option<&Pod>, min_ready: std::time::Duration, now: &Time) -> bool {
    pod.and_then(|p| {
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
        let settled_at = since.0.checked_add(min_ready).unwrap_or(since.0);
        settled_at <= now.0
    })
}

/// Until the move finishes the member runs (or is stopped on) its old client.
fn running_client(
    member: &RosterEntry,
    built: Option<&Member>,
    client_move: Option<&ClientMove>,
) -> Option<ValidatorClient> {
    match client_move {
        Some(m) if m.phase != ClientMovePhase::Moved && built.is_some() => Some(m.from),
        _ => built.map(|m| m.client).or(member.client),
    }
}

/// Verified for a built member, refused for a mismatched one, unknown for a blocked one.
fn share_verified(cluster: &Cluster, member: &str, built: bool) -> Option<bool> {
    if built {
        Some(true)
    } else if cluster.share_mismatches.iter().any(|p| p.member == member) {
        Some(false)
    } else {
        None
    }
}

/// The history a client move left unmoved, else a container of the pod that crash-loops or
/// failed (with its last line), else what Charon said (read every few seconds, and forgotten by
/// a restarted operator until the next read: the last word stands until then).
fn not_ready_reason(
    cluster: &Cluster,
    member: &RosterEntry,
    pod: Option<&Pod>,
    previous: Option<&MemberStatus>,
) -> Option<String> {
    if let Some(why) = pod.and_then(client_move::unmoved_history) {
        Some(why)
    } else if let Some(why) = pod.and_then(container_failure) {
        // The pod's own word first: a Charon that crash-loops serves no readiness to read.
        Some(why)
    } else if cluster.peers.observed {
        cluster
            .peers
            .not_ready
            .get(&member.index)
            .map(ToString::to_string)
    } else {
        previous.and_then(|m| m.not_ready_reason.clone())
    }
}

fn restarts(pod: &Pod) -> u32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count.max(0) as u32).sum())
        .unwrap_or(0)
}

/// The status of a member run by another organisation: ready while a member here saw it
/// answer within the window.
///
/// `lastSeen` is shown while the member is not seen (when it last answered), not refreshed on
/// every read while it answers: a status that changed with every read would be a write per
/// reconcile. Before the operator has read anything (just restarted), the last word stands.
fn remote_member_status(
    member: &RosterEntry,
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
