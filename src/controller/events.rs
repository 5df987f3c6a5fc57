//! Events: every Event the controller publishes goes through here (fenced: only the leader
//! writes).

use std::collections::BTreeSet;

use super::*;

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

/// A member problem as reported in an Event: which reason, which member, what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ReportedProblem {
    pub reason: &'static str,
    pub member: String,
    pub why: String,
}

/// The problems of a validated cluster that get an Event: members blocked by a missing
/// Secret, members whose keystores do not hold their share, client changes held back.
pub(super) fn member_problems(cluster: &model::Cluster) -> BTreeSet<ReportedProblem> {
    let blocked = cluster.blocked.iter().map(|p| ReportedProblem {
        reason: crate::api::reasons::SECRET_MISSING,
        member: p.member.clone(),
        why: p.why.clone(),
    });
    let mismatched = cluster.share_mismatches.iter().map(|p| ReportedProblem {
        reason: crate::api::reasons::SHARE_MISMATCH,
        member: p.member.clone(),
        why: p.why.clone(),
    });
    let held = cluster
        .client_changes_held
        .iter()
        .map(|held| ReportedProblem {
            reason: crate::api::reasons::CLIENT_CHANGE_HELD,
            member: held.member.clone(),
            why: held.message(),
        });
    blocked.chain(mismatched).chain(held).collect()
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
/// the related object, so that each missing Secret is its own Event series).
pub(super) async fn report_member_problems(
    dv: &DistributedValidator,
    ctx: &Context,
    cluster: &model::Cluster,
    facts: &Facts,
) {
    let key = (dv.namespace().unwrap_or_default(), dv.name_any());
    let now = member_problems(cluster);
    let fresh: Vec<ReportedProblem> = {
        let Ok(mut reported) = ctx.reported.lock() else {
            return;
        };
        let fresh = newly_reported(reported.get(&key), &now)
            .into_iter()
            .cloned()
            .collect();
        if now.is_empty() {
            reported.remove(&key);
        } else {
            reported.insert(key, now);
        }
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
        if problem.reason != crate::api::reasons::SECRET_MISSING {
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
        // One series per missing Secret: the recorder folds Events with the same reason and
        // related object, and an earlier, different message must not hide this one.
        let missing = dv
            .spec
            .members
            .iter()
            .filter(|m| m.name == problem.member)
            .flat_map(|m| [m.key_share_secret.name.clone(), m.enr_secret.name.clone()])
            .filter(|secret| !facts.secrets.contains_key(secret));
        for secret in missing {
            let related = ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Secret".to_owned()),
                name: Some(secret),
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
            invalid.reason,
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
}
