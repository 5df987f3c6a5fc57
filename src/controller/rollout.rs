//! Rollout execution: restarts and rolls members one at a time within the quorum budget, as
//! [`crate::domain::planner`] decides; only the API calls and Events live here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use tracing::{info, warn};

use super::context::Context;
use super::events::{publish, publish_about};
use super::{cached, health, model, names, pod_reference, status, waiting_on};
use crate::api::{DistributedValidator, DistributedValidatorStatus, reasons};
use crate::domain::planner::{self, Disruption};

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
) -> (status::Outcome, Option<Timestamp>) {
    let settings = &cluster.rollout;
    let previous = dv.status.clone().unwrap_or_default();
    let node = |name: &str| ctx.caches.nodes.get(&ObjectRef::new(name));
    let members = planner_members(cluster, observed, &previous, node, now);
    let plan = planner::plan(&members, settings, now.0);
    let waiting = explained_waiting(&plan, cluster, &members);
    if plan.held_by_budget && !settings.paused && !held_by_budget_before(&previous) {
        let note = waiting.last().cloned().unwrap_or_default();
        publish(
            ctx,
            dv,
            EventType::Warning,
            reasons::ROLLOUT_HELD_BY_BUDGET,
            "Rollout",
            note,
        )
        .await;
    }
    let mut outcome = status::Outcome {
        stranded: plan.stranded.clone(),
        paused: settings.paused,
        waiting,
        held_by_budget: plan.held_by_budget,
        min_ready: settings.min_ready,
        ..status::Outcome::default()
    };
    let retry_at = carry_out(dv, ctx, &plan, observed, &previous, now, &mut outcome).await;
    announce_stranded(dv, ctx, &plan, &previous).await;
    // While members wait for a rollout, look again now and then even without an event.
    let recheck = members
        .iter()
        .any(|m| m.outdated)
        .then(|| after(now, ROLLOUT_RECHECK));
    (outcome, planner::next_wake(plan.wake_at, retry_at, recheck))
}

fn after(now: &Time, wait: Duration) -> Timestamp {
    now.0.checked_add(wait).unwrap_or(now.0)
}

/// The planner's view of each member that was built (a blocked member has no pod to act on),
/// from its pod, its node (`node` looks one up by name) and its last status. Pure.
fn planner_members(
    cluster: &model::Cluster,
    observed: &BTreeMap<String, status::Observed<'_>>,
    previous: &DistributedValidatorStatus,
    node: impl Fn(&str) -> Option<Arc<Node>>,
    now: &Time,
) -> Vec<planner::Member> {
    cluster
        .members
        .iter()
        .map(|m| {
            let seen = observed.get(&m.name);
            let pod = seen.and_then(|s| s.pod);
            let node = pod
                .and_then(|p| p.spec.as_ref()?.node_name.clone())
                .and_then(|n| node(&n));
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
        .collect()
}

/// The planner's reasons for waiting; when the budget holds the rollout across organisations,
/// its last word says whose members count.
fn explained_waiting(
    plan: &planner::Plan,
    cluster: &model::Cluster,
    members: &[planner::Member],
) -> Vec<String> {
    let mut waiting = plan.waiting.clone();
    let across_organisations = cluster.roster.iter().any(|m| m.remote);
    if plan.held_by_budget
        && across_organisations
        && let Some(last) = waiting.last_mut()
    {
        *last = held_across_organisations(cluster, members);
    }
    waiting
}

/// The last status already says the budget holds the rollout (and its Event was published).
fn held_by_budget_before(previous: &DistributedValidatorStatus) -> bool {
    previous.conditions.iter().any(|c| {
        c.type_ == crate::api::condition_types::PROGRESSING
            && c.reason == reasons::ROLLOUT_HELD_BY_BUDGET
    })
}

/// Carries out the plan's restarts while this operator leads, recording each in `outcome` and
/// an Event; returns when to retry if one failed.
async fn carry_out(
    dv: &DistributedValidator,
    ctx: &Context,
    plan: &planner::Plan,
    observed: &BTreeMap<String, status::Observed<'_>>,
    previous: &DistributedValidatorStatus,
    now: &Time,
    outcome: &mut status::Outcome,
) -> Option<Timestamp> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &dv.namespace().unwrap_or_default());
    let mut retry_at = None;
    for action in &plan.actions {
        let member = action.member();
        let Some(pod) = observed.get(member).and_then(|s| s.pod) else {
            continue;
        };
        if !ctx.fence.holds() {
            // Lost the lease mid-pass: the new leader decides from here.
            warn!(member = %member, "not restarting: no longer the leader");
            break;
        }
        let disruption = action.disruption();
        let note = format!(
            "member {member}: {}; quorum budget {} (ready minus threshold)",
            action.reason(),
            plan.budget
        );
        let related = Some(pod_reference(pod));
        match disrupt(&pods, pod, disruption).await {
            Ok(()) => {
                info!(member = %member, reason = %action.reason(), budget = plan.budget, "restarted a member");
                let before = previous
                    .members
                    .iter()
                    .find(|m| m.name == member)
                    .map_or(0, |m| m.consecutive_restarts);
                outcome.restarted.insert(
                    member.to_owned(),
                    status::Restarted {
                        at: now.clone(),
                        reason: action.reason().to_owned(),
                        consecutive: action.consecutive_repairs(before),
                    },
                );
                ctx.metrics.observe_restart(disruption.kind());
                let reason = event_reason(disruption);
                publish_about(ctx, dv, related, EventType::Normal, reason, "Restart", note).await;
            }
            Err(error) => {
                warn!(member = %member, %error, "could not restart a member");
                // Nothing else may wake this DV soon (an eviction refused by the budget changes
                // no watched object): look again shortly.
                retry_at = Some(after(now, RETRY_FAILED_ACTION));
                let note = format!("{note}: {error}");
                let reason = reasons::RESTART_FAILED;
                publish_about(
                    ctx,
                    dv,
                    related,
                    EventType::Warning,
                    reason,
                    "Restart",
                    note,
                )
                .await;
            }
        }
    }
    retry_at
}

/// Takes a member's pod down as the plan says.
async fn disrupt(
    pods: &Api<Pod>,
    pod: &cached::Pod,
    disruption: Disruption,
) -> Result<(), kube::Error> {
    let pod_name = pod.name_any();
    if disruption == Disruption::Evict {
        // A rollout restart goes through the eviction API: the PodDisruptionBudget is a second
        // guard on top of the planner's budget.
        return waiting_on(pods.evict(&pod_name, &kube::api::EvictParams::default()))
            .await
            .map(drop);
    }
    // The uid precondition keeps a late action from deleting the member's next pod.
    let params = kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        grace_period_seconds: (disruption == Disruption::ForceDelete).then_some(0),
        ..kube::api::DeleteParams::default()
    };
    waiting_on(pods.delete(&pod_name, &params)).await.map(drop)
}

fn event_reason(disruption: Disruption) -> &'static str {
    match disruption {
        Disruption::Evict => reasons::ROLLING_RESTART,
        Disruption::Delete => reasons::REPAIRING,
        Disruption::ForceDelete => reasons::FORCE_DELETED,
    }
}

/// A Warning for each member newly stranded on an unreachable node.
async fn announce_stranded(
    dv: &DistributedValidator,
    ctx: &Context,
    plan: &planner::Plan,
    previous: &DistributedValidatorStatus,
) {
    for member in &plan.stranded {
        let already = previous
            .members
            .iter()
            .any(|m| &m.name == member && m.stranded);
        if !already {
            let note = format!(
                "member {member}: its node is unreachable; the pod is left alone until the node returns, is deleted, or is tainted node.kubernetes.io/out-of-service"
            );
            publish(
                ctx,
                dv,
                EventType::Warning,
                reasons::MEMBER_STRANDED,
                "Observe",
                note,
            )
            .await;
        }
    }
}

/// Why a rollout waits when members of other organisations count: ready members here, remote
/// members seen, the threshold, and which remote members are not seen.
fn held_across_organisations(cluster: &model::Cluster, members: &[planner::Member]) -> String {
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
