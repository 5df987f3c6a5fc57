//! Events: every Event the controller publishes goes through here (fenced: only the leader
//! writes).

use std::collections::BTreeSet;

use super::context::Context;
use super::model;
use super::waiting_on;
use crate::api::DistributedValidator;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::ResourceExt;
use kube::runtime::events::Event;
use kube::runtime::events::EventType;
use tracing::warn;

pub(super) async fn publish(
    ctx: &Context,
    dv: &DistributedValidator,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    publish_about(ctx, dv, None, type_, reason, action, note).await;
}

/// Publishes an Event on the DV; `related` names the child it concerns, which also keeps the
/// recorder from folding events about different children into one series.
pub(super) async fn publish_about(
    ctx: &Context,
    dv: &DistributedValidator,
    related: Option<ObjectReference>,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    if !ctx.fence.holds() {
        return;
    }
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: related,
    };
    if let Err(error) = waiting_on(ctx.recorder.publish(&event, &dv.object_ref(&()))).await {
        warn!(%error, "cannot publish an Event");
    }
}

/// A member problem as reported in an Event: which reason, which member, what is wrong, and the
/// Secrets it names (one Event series each).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ReportedProblem {
    pub reason: &'static str,
    pub member: String,
    pub why: String,
    pub secrets: Vec<String>,
}

/// The problems of a validated cluster that get an Event: members blocked by a missing
/// Secret, members whose keystores do not hold their share, client changes held back.
pub(super) fn member_problems(cluster: &model::Cluster) -> BTreeSet<ReportedProblem> {
    let stopped = cluster
        .blocked
        .iter()
        .chain(&cluster.share_mismatches)
        .map(|p| match &p.kind {
            model::ProblemKind::SecretsMissing(secrets) => ReportedProblem {
                reason: crate::api::reasons::SECRET_MISSING,
                member: p.member.clone(),
                why: p.why.clone(),
                secrets: secrets.clone(),
            },
            model::ProblemKind::ShareMismatch => ReportedProblem {
                reason: crate::api::reasons::SHARE_MISMATCH,
                member: p.member.clone(),
                why: p.why.clone(),
                secrets: Vec::new(),
            },
        });
    let held = cluster
        .client_changes_held
        .iter()
        .map(|held| ReportedProblem {
            reason: crate::api::reasons::CLIENT_CHANGE_HELD,
            member: held.member.clone(),
            why: held.message(),
            secrets: Vec::new(),
        });
    stopped.chain(held).collect()
}

/// Which of `now` were not reported by the previous pass (`before`): those get an Event.
pub(super) fn newly_reported<'a>(
    before: Option<&BTreeSet<ReportedProblem>>,
    now: &'a BTreeSet<ReportedProblem>,
) -> Vec<&'a ReportedProblem> {
    now.iter()
        .filter(|problem| before.is_none_or(|before| !before.contains(problem)))
        .collect()
}

/// One Warning Event per member problem when it appears (a missing Secret names the Secret as
/// the related object, so that each missing Secret is its own Event series: the recorder folds
/// Events with the same reason and related object, and an earlier, different message must not
/// hide this one).
pub(super) async fn report_member_problems(
    dv: &DistributedValidator,
    ctx: &Context,
    cluster: &model::Cluster,
) {
    let key = (dv.namespace().unwrap_or_default(), dv.name_any());
    let now = member_problems(cluster);
    let fresh: Vec<ReportedProblem> = {
        let remembered = ctx.memory.update(&key, |m| {
            let fresh = newly_reported(Some(&m.reported), &now)
                .into_iter()
                .cloned()
                .collect();
            m.reported = now;
            fresh
        });
        let Some(fresh) = remembered else {
            return;
        };
        fresh
    };
    for problem in fresh {
        let note = if problem.reason == crate::api::reasons::CLIENT_CHANGE_HELD {
            problem.why.clone()
        } else {
            format!(
                "member {} is not created or changed: {}",
                problem.member, problem.why
            )
        };
        if problem.secrets.is_empty() {
            publish(
                ctx,
                dv,
                EventType::Warning,
                problem.reason,
                "Validate",
                note,
            )
            .await;
            continue;
        }
        for secret in &problem.secrets {
            let related = ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Secret".to_owned()),
                name: Some(secret.clone()),
                namespace: dv.namespace(),
                ..ObjectReference::default()
            };
            publish_about(
                ctx,
                dv,
                Some(related),
                EventType::Warning,
                problem.reason,
                "Validate",
                note.clone(),
            )
            .await;
        }
    }
}

/// A Warning Event when a DV becomes invalid or its problems change (the Available condition
/// holds the last message: the same problems are not reported again on every pass).
pub(super) async fn report_invalid(
    dv: &DistributedValidator,
    ctx: &Context,
    invalid: &model::Invalid,
) {
    let changed_message = dv
        .status
        .as_ref()
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == crate::api::condition_types::AVAILABLE)
        })
        .is_none_or(|c| c.message != invalid.message());
    if changed_message {
        publish(
            ctx,
            dv,
            EventType::Warning,
            invalid.reason(),
            "Validate",
            invalid.message(),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(reason: &'static str, member: &str, why: &str) -> ReportedProblem {
        ReportedProblem {
            reason,
            member: member.into(),
            why: why.into(),
            secrets: Vec::new(),
        }
    }

    #[test]
    fn a_problem_is_reported_when_it_appears_and_again_only_after_it_went_away() {
        let missing = problem(crate::api::reasons::SECRET_MISSING, "alpha", "no Secret a");
        let mismatch = problem(crate::api::reasons::SHARE_MISMATCH, "bravo", "wrong key");
        let first: BTreeSet<_> = [missing.clone()].into();
        assert_eq!(newly_reported(None, &first), vec![&missing]);
        let second: BTreeSet<_> = [missing.clone(), mismatch.clone()].into();
        assert_eq!(newly_reported(Some(&first), &second), vec![&mismatch]);
        assert!(newly_reported(Some(&second), &second).is_empty());
        // The same member with a different problem is a new problem.
        let other = problem(crate::api::reasons::SECRET_MISSING, "alpha", "no Secret b");
        let third: BTreeSet<_> = [other.clone()].into();
        assert_eq!(newly_reported(Some(&second), &third), vec![&other]);
    }

    #[test]
    fn a_blocked_member_is_reported_with_each_missing_secret_and_a_blocked_client_counts() {
        let (dv, mut facts) = crate::controller::testing::example("stader-4.yaml");
        facts.secrets.remove("stader-4-bravo-keystore");
        facts.secrets.remove("stader-4-bravo-enr");
        let cluster = crate::controller::validate::validate(&dv, &facts).unwrap();
        let problems: Vec<ReportedProblem> = member_problems(&cluster).into_iter().collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].reason, crate::api::reasons::SECRET_MISSING);
        assert_eq!(problems[0].member, "bravo");
        assert_eq!(
            problems[0].secrets,
            vec!["stader-4-bravo-keystore", "stader-4-bravo-enr"]
        );
        // The blocked member stays on the roster (with its client) for status and diversity.
        assert_eq!(cluster.roster.len(), 4);
        assert!(cluster.roster.iter().any(|m| m.name == "bravo"));
    }
}
