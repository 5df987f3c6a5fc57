//! Rollout execution: restarts and rolls members one at a time within the quorum budget, as
//! [`crate::domain::planner`] decides; only the API calls and Events live here.

use super::*;

/// How soon a restart that failed (e.g. an eviction the budget refused) is tried again.
pub(super) const RETRY_FAILED_ACTION: Duration = Duration::from_secs(5);
/// How often a DV with outdated members is looked at without an event.
pub(super) const ROLLOUT_RECHECK: Duration = Duration::from_secs(10);

/// The annotation that pauses every disruptive action on a DV, like `spec.rollout.paused`.
pub const ANNOTATION_PAUSED: &str = "dvt.io/paused";

/// Restarts and rollouts of `dv` are stopped: `spec.rollout.paused` or the annotation.
pub fn is_paused(dv: &DistributedValidator) -> bool {
    dv.spec.rollout.paused
        || dv
            .annotations()
            .get(ANNOTATION_PAUSED)
            .is_some_and(|v| v == "true")
}

/// Plans restarts with the quorum planner and carries them out; returns what happened for
/// status, and when to look again.
pub(super) async fn keep_quorum(
    dv: &DistributedValidator,
    ctx: &Context,
    cluster: &model::Cluster,
    observed: &BTreeMap<String, status::Observed<'_>>,
    now: &Time,
) -> (status::Outcome, Option<k8s_openapi::jiff::Timestamp>) {
    let settings = &cluster.rollout;
    let paused = settings.paused;
    let previous = dv.status.clone().unwrap_or_default();
    // Only members that were built take part: a blocked member has no pod to act on.
    let members: Vec<crate::domain::planner::Member> = cluster
        .members
        .iter()
        .map(|m| {
            let seen = observed.get(&m.name);
            let pod = seen.and_then(|s| s.pod);
            let node = pod
                .and_then(|p| p.spec.as_ref()?.node_name.clone())
                .and_then(|n| ctx.caches.nodes.get(&ObjectRef::new(&n)));
            let outdated = seen.is_some_and(status::is_outdated);
            let mut member = health::member(
                &m.name,
                m.index,
                pod,
                node.as_deref(),
                outdated,
                previous.members.iter().find(|p| p.name == m.name),
                now.0,
            );
            // Outdated by a restart request: the pod does not carry the requested time.
            let requested = m.restart_requested_at.as_deref();
            member.restart_requested = outdated
                && requested.is_some()
                && pod
                    .and_then(|p| p.annotations().get(names::ANNOTATION_RESTARTED_AT))
                    .map(String::as_str)
                    != requested;
            member
        })
        .collect();
    let plan = crate::domain::planner::plan(&members, settings, now.0);
    let mut waiting = plan.waiting.clone();
    if plan.held_by_budget {
        // The planner's last word is the budget; across organisations, say whose members count.
        if let Some(last) = waiting
            .last_mut()
            .filter(|_| cluster.roster.iter().any(|m| m.remote))
        {
            *last = held_across_organisations(cluster, &members);
        }
        let already = previous.conditions.iter().any(|c| {
            c.type_ == crate::api::condition_types::PROGRESSING
                && c.reason == crate::api::reasons::ROLLOUT_HELD_BY_BUDGET
        });
        if !already && !paused {
            let note = waiting.last().cloned().unwrap_or_default();
            publish(
                ctx,
                dv,
                EventType::Warning,
                crate::api::reasons::ROLLOUT_HELD_BY_BUDGET,
                "Rollout",
                note,
            )
            .await;
        }
    }
    let mut outcome = status::Outcome {
        stranded: plan.stranded.clone(),
        paused,
        waiting,
        held_by_budget: plan.held_by_budget,
        min_ready: settings.min_ready,
        ..status::Outcome::default()
    };
    let namespace = dv.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut retry_at: Option<k8s_openapi::jiff::Timestamp> = None;
    for action in &plan.actions {
        let (member, reason, force, evict) = match action {
            crate::domain::planner::Action::Restart {
                member,
                kind,
                reason,
            } => (
                member,
                reason,
                false,
                *kind == crate::domain::planner::RestartKind::Rollout,
            ),
            crate::domain::planner::Action::ForceDelete { member, reason } => {
                (member, reason, true, false)
            }
        };
        let Some(pod) = observed.get(member).and_then(|s| s.pod) else {
            continue;
        };
        let pod_name = pod.name_any();
        if !ctx.fence.holds() {
            // Lost the lease mid-pass: the new leader decides from here.
            warn!(member = %member, "not restarting: no longer the leader");
            break;
        }
        let result = if evict {
            // A rollout restart goes through the eviction API: the PodDisruptionBudget is a
            // second guard on top of the planner's budget.
            waiting_on(pods.evict(&pod_name, &kube::api::EvictParams::default()))
                .await
                .map(drop)
        } else {
            // The uid precondition keeps a late action from deleting the member's next pod.
            let params = kube::api::DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: pod.uid(),
                    resource_version: None,
                }),
                grace_period_seconds: force.then_some(0),
                ..kube::api::DeleteParams::default()
            };
            waiting_on(pods.delete(&pod_name, &params)).await.map(drop)
        };
        let note = format!(
            "member {member}: {reason}; quorum budget {} (ready minus threshold)",
            plan.budget
        );
        match result {
            Ok(()) => {
                info!(member = %member, reason = %reason, budget = plan.budget, "restarted a member");
                let consecutive = match action {
                    crate::domain::planner::Action::Restart {
                        kind: crate::domain::planner::RestartKind::Repair,
                        ..
                    } => {
                        previous
                            .members
                            .iter()
                            .find(|m| &m.name == member)
                            .map_or(0, |m| m.consecutive_restarts)
                            + 1
                    }
                    _ => 0,
                };
                outcome.restarted.insert(
                    member.clone(),
                    status::Restarted {
                        at: now.clone(),
                        reason: reason.clone(),
                        consecutive,
                    },
                );
                let (event_reason, kind) = if force {
                    (crate::api::reasons::FORCE_DELETED, "force-delete")
                } else if evict {
                    (crate::api::reasons::ROLLING_RESTART, "rollout")
                } else {
                    (crate::api::reasons::REPAIRING, "repair")
                };
                ctx.metrics.observe_restart(kind);
                let related = Some(pod_reference(pod));
                publish_about(
                    ctx,
                    dv,
                    related,
                    EventType::Normal,
                    event_reason,
                    "Restart",
                    note,
                )
                .await;
            }
            Err(error) => {
                warn!(member = %member, %error, "could not restart a member");
                // Nothing else may wake this DV soon (an eviction refused by the budget changes
                // no watched object): look again shortly.
                let soon = now.0.checked_add(RETRY_FAILED_ACTION).unwrap_or(now.0);
                retry_at =
                    Some(retry_at.map_or(soon, |r: k8s_openapi::jiff::Timestamp| r.min(soon)));
                publish_about(
                    ctx,
                    dv,
                    Some(pod_reference(pod)),
                    EventType::Warning,
                    crate::api::reasons::RESTART_FAILED,
                    "Restart",
                    format!("{note}: {error}"),
                )
                .await;
            }
        }
    }
    for member in &plan.stranded {
        let already = previous
            .members
            .iter()
            .any(|m| &m.name == member && m.stranded);
        if !already {
            publish(ctx, dv, EventType::Warning, crate::api::reasons::MEMBER_STRANDED, "Observe", format!("member {member}: its node is unreachable; the pod is left alone until the node returns, is deleted, or is tainted node.kubernetes.io/out-of-service")).await;
        }
    }
    let wake_at = match (plan.wake_at, retry_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // While members wait for a rollout, look again now and then even without an event.
    let outdated_waiting = members.iter().any(|m| m.outdated);
    let wake_at = if outdated_waiting {
        let check = now.0.checked_add(ROLLOUT_RECHECK).unwrap_or(now.0);
        Some(wake_at.map_or(check, |w| w.min(check)))
    } else {
        wake_at
    };
    (outcome, wake_at)
}

/// Why a rollout waits when members of other organisations count: ready members here, remote
/// members seen, the threshold, and which remote members are not seen.
fn held_across_organisations(
    cluster: &model::Cluster,
    members: &[crate::domain::planner::Member],
) -> String {
    let ready_here = members.iter().filter(|m| m.ready).count();
    let remote: Vec<&model::RosterEntry> = cluster.roster.iter().filter(|m| m.remote).collect();
    let unseen: Vec<&str> = remote
        .iter()
        .filter(|m| !cluster.peers.up.contains(&m.index))
        .map(|m| m.name.as_str())
        .collect();
    let mut text = format!(
        "rollout waits: {ready_here} ready here and {} of {} remote members seen, {} needed to sign; no member can be taken down",
        cluster.remote_up,
        remote.len(),
        cluster.quorum.threshold()
    );
    if !unseen.is_empty() {
        text.push_str(&format!(" (not seen: {})", unseen.join(", ")));
    }
    text
}
