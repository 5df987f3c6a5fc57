//! What the operator does next to keep members running and up to date without ever being the
//! reason a DV drops below its threshold. Pure: facts and the time in, at most a few actions out,
//! each with its reason.
//!
//! Budget = ready members − `t`. Taking down a member that is up (rolling out an outdated one)
//! needs budget > 0, at most `maxUnavailable` at a time, and waits until the members restarted
//! before have been Ready for `minReadySeconds`. A member that is itself broken is already down,
//! so it may be restarted whatever the budget, with a per-member exponential backoff. Healthy
//! members that are only unready (Charon waits for peers) are never touched. A pod on an
//! unreachable node is never replaced while the node may come back: two pods for one member
//! would be two signers with one key share.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// Why a member counts as broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Broken {
    /// A container waits with this reason (CrashLoopBackOff, ImagePullBackOff, ...).
    Waiting(String),
    /// Its containers were OOM-killed repeatedly.
    OomKilled,
    /// The pod cannot be scheduled.
    Unschedulable(String),
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::Waiting(reason) => write!(f, "{reason}"),
            Broken::OomKilled => f.write_str("repeated OOM kills"),
            Broken::Unschedulable(why) => write!(f, "unschedulable: {why}"),
        }
    }
}

/// Where a member's node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeHealth {
    Ready,
    /// NotReady or unknown: it may come back with the pod still running.
    Unreachable,
    /// Deleted, or tainted `node.kubernetes.io/out-of-service`: the pod is certainly stopped.
    Gone,
}

/// One member, as the planner sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub name: String,
    pub index: u32,
    /// The member has a pod (not being deleted).
    pub has_pod: bool,
    /// The pod is being deleted.
    pub terminating: bool,
    pub ready: bool,
    /// Since when the pod is Ready (when it is).
    pub ready_since: Option<Timestamp>,
    /// Since when the member is not ready (when it is not).
    pub unready_since: Option<Timestamp>,
    /// Broken, and why.
    pub broken: Option<Broken>,
    pub node: NodeHealth,
    /// Runs an older revision than its StatefulSet wants.
    pub outdated: bool,
    /// When and how often in a row the operator restarted it (from status).
    pub last_restart: Option<Timestamp>,
    pub consecutive_restarts: u32,
    /// Outdated because a restart was asked for it (`kubectl dv restart`): said so in the
    /// restart's reason.
    pub restart_requested: bool,
}

/// The DV's rollout settings and threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub threshold: u32,
    pub max_unavailable: u32,
    pub min_ready: Duration,
    pub restart_delay: Duration,
    pub restart_backoff: Duration,
    pub max_restart_backoff: Duration,
    pub paused: bool,
}

/// What kind of restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartKind {
    /// The member is broken; restarting it costs no budget.
    Repair,
    /// The member is up but outdated; restarting it costs one unit of budget.
    Rollout,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Delete the member's pod so its StatefulSet recreates it from the current template.
    Restart {
        member: String,
        kind: RestartKind,
        reason: String,
    },
    /// Remove the pod of a member whose node is gone (it cannot be running anywhere).
    ForceDelete { member: String, reason: String },
}

/// How an action reaches the members' pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disruption {
    /// Through the eviction API, so the PodDisruptionBudget guards it too: a rollout step.
    Evict,
    /// A plain delete of a broken member's pod.
    Delete,
    /// A delete with no grace period, of a pod whose node is gone.
    ForceDelete,
}

impl Disruption {
    /// The kind counted in the operator's restart metric.
    pub fn kind(self) -> &'static str {
        match self {
            Disruption::Evict => "rollout",
            Disruption::Delete => "repair",
            Disruption::ForceDelete => "force-delete",
        }
    }
}

impl Action {
    pub fn member(&self) -> &str {
        match self {
            Action::Restart { member, .. } | Action::ForceDelete { member, .. } => member,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Action::Restart { reason, .. } | Action::ForceDelete { reason, .. } => reason,
        }
    }

    pub fn disruption(&self) -> Disruption {
        match self {
            Action::Restart {
                kind: RestartKind::Rollout,
                ..
            } => Disruption::Evict,
            Action::Restart {
                kind: RestartKind::Repair,
                ..
            } => Disruption::Delete,
            Action::ForceDelete { .. } => Disruption::ForceDelete,
        }
    }

    /// The member's repairs in a row once this action is done, from `before`: a repair adds
    /// one (its backoff grows), anything else starts the count over.
    pub fn consecutive_repairs(&self, before: u32) -> u32 {
        match self {
            Action::Restart {
                kind: RestartKind::Repair,
                ..
            } => before + 1,
            _ => 0,
        }
    }
}

/// When to look at a DV again: the plan's own time, a retry of an action that failed, and while
/// members wait for a rollout a periodic recheck (nothing else may change then).
pub fn next_wake(
    plan_wake: Option<Timestamp>,
    retry_at: Option<Timestamp>,
    rollout_recheck: Option<Timestamp>,
) -> Option<Timestamp> {
    [plan_wake, retry_at, rollout_recheck]
        .into_iter()
        .flatten()
        .min()
}

/// The planner's answer.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Ready members minus threshold, before the actions.
    pub budget: i64,
    /// When to look again (a backoff or `minReadySeconds` ending), if something waits.
    pub wake_at: Option<Timestamp>,
    /// Members on unreachable nodes, left alone.
    pub stranded: Vec<String>,
    /// Why nothing (more) was done, for status and logs.
    pub waiting: Vec<String>,
    /// An outdated member could roll but the quorum budget allows no disruption (ready members
    /// at or below the threshold): the rollout holds until a member is back.
    pub held_by_budget: bool,
}

fn after(at: Timestamp, wait: Duration) -> Timestamp {
    at.checked_add(wait).unwrap_or(at)
}

/// Backoff before the next repair of a member restarted `consecutive` times in a row.
pub fn restart_backoff(consecutive: u32, settings: &Settings) -> Duration {
    if consecutive == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (consecutive - 1).min(20);
    settings
        .restart_backoff
        .saturating_mul(factor)
        .min(settings.max_restart_backoff)
}

impl Plan {
    /// Look again at `at` at the latest.
    fn wake(&mut self, at: Timestamp) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    /// Something waits until `until`, for the reason `why`.
    fn wait(&mut self, until: Timestamp, why: String) {
        self.wake(until);
        self.waiting.push(why);
    }
}

/// The next actions for the members of one DV, in order: pods whose node is gone, repairs of
/// broken members, then the rollout of outdated ones within the budget.
pub fn plan(members: &[Member], settings: &Settings, now: Timestamp) -> Plan {
    // A member on an unreachable node may be down whatever its pod last said: it does not count
    // toward the budget (found by the budget's property test: counted, it let a rollout take a
    // second member down while the first one's node was silent).
    let ready = members
        .iter()
        .filter(|m| m.ready && m.node != NodeHealth::Unreachable)
        .count() as i64;
    let mut plan = Plan {
        budget: ready - i64::from(settings.threshold),
        ..Plan::default()
    };
    let mut ordered: Vec<&Member> = members.iter().collect();
    ordered.sort_by_key(|m| m.index);
    plan.stranded = ordered
        .iter()
        .filter(|m| m.node == NodeHealth::Unreachable)
        .map(|m| m.name.clone())
        .collect();
    if settings.paused {
        plan.waiting
            .push("paused: no restarts or rollouts".to_owned());
        return plan;
    }
    plan.actions.extend(force_deletes(&ordered));
    for member in &ordered {
        plan_repair(&mut plan, member, settings, now);
    }
    plan_rollout(&mut plan, &ordered, settings, now);
    plan
}

/// Pods whose node is gone can go at once: nothing can be running there. A pod still reported
/// Ready is not stopped, whatever its node says: it is left alone.
fn force_deletes<'a>(ordered: &'a [&Member]) -> impl Iterator<Item = Action> + 'a {
    ordered
        .iter()
        .filter(|m| (m.has_pod || m.terminating) && m.node == NodeHealth::Gone && !m.ready)
        .map(|m| Action::ForceDelete {
            member: m.name.clone(),
            reason: "its node is gone or out of service".to_owned(),
        })
}

/// A broken member is restarted past the restart delay and its backoff.
fn plan_repair(plan: &mut Plan, member: &Member, settings: &Settings, now: Timestamp) {
    let Some(broken) = &member.broken else {
        return;
    };
    // A member that is still Ready is not down: restarting it would cost budget.
    if member.ready || member.terminating || member.node != NodeHealth::Ready || !member.has_pod {
        return;
    }
    // Down for the restart delay first, then past its backoff since the last repair.
    let name = &member.name;
    let delay_over = after(member.unready_since.unwrap_or(now), settings.restart_delay);
    let backoff_over = member
        .last_restart
        .map(|last| after(last, restart_backoff(member.consecutive_restarts, settings)));
    let waits = if now < delay_over {
        Some((delay_over, "restart delay not over".to_owned()))
    } else {
        backoff_over
            .filter(|over| now < *over)
            .map(|over| (over, format!("backing off until {over}")))
    };
    if let Some((until, why)) = waits {
        plan.wait(until, format!("{name} is broken ({broken}); {why}"));
        return;
    }
    plan.actions.push(Action::Restart {
        member: member.name.clone(),
        kind: RestartKind::Repair,
        reason: format!("broken: {broken}"),
    });
}

/// Rollout: outdated members that are up, one budget unit each, once the previous restarts
/// settled.
fn plan_rollout(plan: &mut Plan, ordered: &[&Member], settings: &Settings, now: Timestamp) {
    let outdated: Vec<&&Member> = ordered
        .iter()
        .filter(|m| m.outdated && m.ready && !m.terminating && m.broken.is_none())
        // Never a restart on a node that cannot carry it out: the pod would stay Terminating
        // there, and the member be counted as taken down by us.
        .filter(|m| m.node == NodeHealth::Ready)
        .collect();
    if outdated.is_empty() || !restarts_settled(plan, ordered, settings, now) {
        return;
    }
    let allowed = plan.budget.min(i64::from(settings.max_unavailable.max(1)));
    if allowed <= 0 {
        plan.held_by_budget = true;
        plan.waiting.push(format!(
            "rollout waits: {} ready, {} needed to sign; no member can be taken down",
            plan.budget + i64::from(settings.threshold),
            settings.threshold
        ));
        return;
    }
    for member in outdated.into_iter().take(allowed as usize) {
        plan.actions.push(Action::Restart {
            member: member.name.clone(),
            kind: RestartKind::Rollout,
            reason: if member.restart_requested {
                "restart requested".to_owned()
            } else {
                "outdated: runs an older revision".to_owned()
            },
        });
    }
}

/// The previous restart must have settled before the next rollout step: nobody terminating,
/// and every member the operator restarted is back and Ready for minReadySeconds. When not,
/// says what the rollout waits for.
fn restarts_settled(
    plan: &mut Plan,
    ordered: &[&Member],
    settings: &Settings,
    now: Timestamp,
) -> bool {
    if ordered.iter().any(|m| m.terminating) {
        plan.waiting
            .push("rollout waits: a member is restarting".to_owned());
        return false;
    }
    for member in ordered {
        // A member on an unreachable node is down for another reason than a restart of ours
        // (it is stranded, and counted by the budget): waiting for it to come back would
        // report the rollout as waiting for a restart that settled long ago.
        if member.last_restart.is_none() || member.node != NodeHealth::Ready {
            continue;
        }
        match (member.ready, member.ready_since) {
            (true, Some(since)) => {
                let settled = after(since, settings.min_ready);
                if now < settled {
                    let seconds = settings.min_ready.as_secs();
                    let why = format!(
                        "rollout waits: {} must be ready for {seconds}s",
                        member.name
                    );
                    plan.wait(settled, why);
                    return false;
                }
            }
            (true, None) => {}
            (false, _) => {
                plan.waiting
                    .push(format!("rollout waits: {} is not ready yet", member.name));
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests;
